//! `vnetc route`: the hop-by-hop path(s) of one frame through the desired state (SPEC 2.4).
//!
//! The frame enters at a daemon's interface and is forwarded with the model's
//! [`Table`](crate::model::Table), the code the daemon forwards with, so the simulation and the
//! daemon agree by construction. The result is a tree: fan-out branches it, and each branch
//! ends in a delivery, a loop (a daemon already on the branch), a black hole (no rule matches),
//! a drop (hop limit, missing link) or nothing (split horizon removed every destination).

use crate::ast::Transport;
use crate::mac::Mac;
use crate::model::{LinkKey, RuleDef, State, Table, Target};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;

/// The hop limit a frame enters the overlay with (SPEC 2.4).
pub const HOP_LIMIT: u8 = 16;

/// Daemon visits simulated before the tree is cut short; fan-out over a dense mesh can
/// otherwise grow exponentially with the hop limit.
const MAX_VISITS: usize = 10_000;

/// The simulated route of one frame.
#[derive(Clone, Debug, Serialize)]
pub struct Route {
    pub from: String,
    pub src: Mac,
    pub dst: Mac,
    pub hop_limit: u8,
    pub entry: Visit,
    pub summary: Summary,
    /// The simulation stopped after too many visits; some branches are missing.
    pub truncated: bool,
}

/// How the branches of the tree ended.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub delivered: usize,
    pub loops: usize,
    pub black_holes: usize,
    pub dropped: usize,
}

/// The frame at one daemon.
#[derive(Clone, Debug, Serialize)]
pub struct Visit {
    pub daemon: String,
    /// Whether a HOST line declares the daemon.
    pub declared: bool,
    /// The frame's hop limit on arrival.
    pub hops_left: u8,
    /// The rules that fired (all the matching rules of the highest priority), as written.
    pub rules: Vec<String>,
    /// What happened to each destination of the firing rules.
    pub steps: Vec<Step>,
}

impl Visit {
    /// No rule matched: at the entry the frame is dropped, elsewhere it is a black hole.
    pub fn no_match(&self) -> bool {
        self.rules.is_empty()
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    /// Injected into a local interface.
    Deliver { interface: String },
    /// Sent over a link; `visit` is what happened at the other end.
    Hop {
        transport: Transport,
        to: String,
        visit: Box<Visit>,
    },
    /// Sent over a link to a daemon already on this branch: a loop; the branch stops.
    Loop { transport: Transport, to: String },
    /// Not sent: the hop limit was used up.
    HopLimit { to: String },
    /// Not sent: the rule's link is not in the state.
    MissingLink { to: String },
    /// Not sent back where it came from (split horizon).
    SplitHorizon { to: String },
    /// Not simulated: the visit limit was reached.
    Truncated { to: String },
}

/// Simulates a frame from `src` to `dst` entering at the interface of daemon `from`.
pub fn route(state: &State, from: &str, src: Mac, dst: Mac) -> Route {
    let mut sim = Sim {
        state,
        tables: tables(state),
        src,
        dst,
        summary: Summary::default(),
        visits: 0,
        truncated: false,
        path: Vec::new(),
    };
    let entry_iface = state.host(from).map(|h| Target::Interface {
        name: h.iface.clone(),
    });
    let entry = sim.visit(from, HOP_LIMIT, entry_iface.as_ref(), true);
    Route {
        from: from.to_string(),
        src,
        dst,
        hop_limit: HOP_LIMIT,
        entry,
        summary: sim.summary,
        truncated: sim.truncated,
    }
}

type Tables<'s> = HashMap<&'s str, (Table<Target>, Vec<&'s RuleDef>)>;

/// One table per daemon, with the rule behind each table index.
fn tables(state: &State) -> Tables<'_> {
    let mut out: Tables<'_> = HashMap::new();
    for rule in &state.rules {
        let (table, rules) = out
            .entry(rule.daemon.as_str())
            .or_insert_with(|| (Table::new(), Vec::new()));
        let index = table.insert(rule.src, rule.dst, rule.target.clone());
        if index as usize == rules.len() {
            rules.push(rule);
        }
    }
    out
}

struct Sim<'s> {
    state: &'s State,
    tables: Tables<'s>,
    src: Mac,
    dst: Mac,
    summary: Summary,
    visits: usize,
    truncated: bool,
    /// The daemons on the current branch, to see a loop.
    path: Vec<String>,
}

impl Sim<'_> {
    fn visit(
        &mut self,
        daemon: &str,
        hops_left: u8,
        came_from: Option<&Target>,
        entry: bool,
    ) -> Visit {
        self.visits += 1;
        let mut visit = Visit {
            daemon: daemon.to_string(),
            declared: self.state.host(daemon).is_some(),
            hops_left,
            rules: Vec::new(),
            steps: Vec::new(),
        };
        let Some((table, rules)) = self.tables.get(daemon) else {
            self.count_no_match(entry);
            return visit;
        };
        let decision = table.decide(self.src, self.dst);
        visit.rules = decision
            .rules
            .iter()
            .map(|i| rules[*i as usize].to_string())
            .collect();
        if visit.rules.is_empty() {
            self.count_no_match(entry);
            return visit;
        }
        let sent: Vec<Target> = table
            .forward(self.src, self.dst, came_from)
            .into_iter()
            .cloned()
            .collect();
        if let Some(back) =
            came_from.filter(|c| decision.rules.iter().any(|i| table.target(*i) == *c))
        {
            visit.steps.push(Step::SplitHorizon {
                to: describe_target(back),
            });
        }
        self.path.push(daemon.to_string());
        for target in sent {
            let step = self.step(daemon, &target, hops_left);
            visit.steps.push(step);
        }
        self.path.pop();
        visit
    }

    fn count_no_match(&mut self, entry: bool) {
        if entry {
            self.summary.dropped += 1;
        } else {
            self.summary.black_holes += 1;
        }
    }

    fn step(&mut self, here: &str, target: &Target, hops_left: u8) -> Step {
        let peer = match target {
            Target::Interface { name } => {
                self.summary.delivered += 1;
                return Step::Deliver {
                    interface: name.to_string(),
                };
            }
            Target::Link { peer } => peer.to_string(),
        };
        let Some(link) = self.state.links.get(&LinkKey::new(here, &peer)) else {
            self.summary.dropped += 1;
            return Step::MissingLink { to: peer };
        };
        if hops_left == 0 {
            self.summary.dropped += 1;
            return Step::HopLimit { to: peer };
        }
        if self.path.contains(&peer) {
            self.summary.loops += 1;
            return Step::Loop {
                transport: link.transport,
                to: peer,
            };
        }
        if self.visits >= MAX_VISITS {
            self.truncated = true;
            return Step::Truncated { to: peer };
        }
        let back = Target::Link { peer: here.into() };
        let visit = self.visit(&peer, hops_left - 1, Some(&back), false);
        Step::Hop {
            transport: link.transport,
            to: peer,
            visit: Box::new(visit),
        }
    }
}

fn describe_target(target: &Target) -> String {
    match target {
        Target::Interface { name } => format!("interface {name}"),
        Target::Link { peer } => peer.to_string(),
    }
}

impl Route {
    /// Plain text: one line per branch (the path and how it ended), then the rules that fired
    /// at each daemon, indented by depth, then the summary.
    pub fn render(&self) -> String {
        let mut out = format!(
            "frame {} → {} entering at {} (hop limit {})\n",
            self.src, self.dst, self.from, self.hop_limit
        );
        let mut prefix = self.from.clone();
        render_paths(&self.entry, &mut prefix, true, &mut out);
        out.push_str("rules that fired:\n");
        render_rules(&self.entry, 1, &mut out);
        let s = &self.summary;
        let _ = writeln!(
            out,
            "{} delivered, {} loop{}, {} black hole{}, {} dropped{}",
            s.delivered,
            s.loops,
            plural(s.loops),
            s.black_holes,
            plural(s.black_holes),
            s.dropped,
            if self.truncated {
                " (cut short: too many branches)"
            } else {
                ""
            }
        );
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Writes the end of every branch under `visit`; `prefix` is the path so far.
fn render_paths(visit: &Visit, prefix: &mut String, entry: bool, out: &mut String) {
    let here = visit.daemon.as_str();
    if visit.no_match() {
        let what = if entry { "dropped at" } else { "black hole at" };
        let _ = writeln!(out, "{prefix} ({what} {here}: no rule matches)");
        return;
    }
    let moving: Vec<&Step> = visit
        .steps
        .iter()
        .filter(|s| !matches!(s, Step::SplitHorizon { .. }))
        .collect();
    if moving.is_empty() {
        let why = visit.steps.iter().find_map(|s| match s {
            Step::SplitHorizon { to } => Some(to.as_str()),
            _ => None,
        });
        match why {
            Some(to) => {
                let _ = writeln!(
                    out,
                    "{prefix} (stops at {here}: not sent back to {to}, split horizon)"
                );
            }
            None => {
                let _ = writeln!(out, "{prefix} (stops at {here})");
            }
        }
        return;
    }
    for step in moving {
        match step {
            Step::Deliver { interface } => {
                let _ = writeln!(out, "{prefix} ⇒ interface {interface} (delivered)");
            }
            Step::Hop {
                transport,
                to,
                visit,
            } => {
                let len = prefix.len();
                let _ = write!(prefix, " --[{}]--> {to}", transport.keyword());
                render_paths(visit, prefix, false, out);
                prefix.truncate(len);
            }
            Step::Loop { transport, to } => {
                let _ = writeln!(
                    out,
                    "{prefix} --[{}]--> {to} (loop: back at {to})",
                    transport.keyword()
                );
            }
            Step::HopLimit { to } => {
                let _ = writeln!(
                    out,
                    "{prefix} (dropped at {here}: hop limit reached before the link to {to})"
                );
            }
            Step::MissingLink { to } => {
                let _ = writeln!(out, "{prefix} (dropped at {here}: no link to {to})");
            }
            Step::Truncated { to } => {
                let _ = writeln!(out, "{prefix} --> {to} (not simulated: too many branches)");
            }
            Step::SplitHorizon { .. } => {}
        }
    }
}

fn render_rules(visit: &Visit, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    if visit.rules.is_empty() {
        let _ = writeln!(out, "{indent}{}: no rule matches", visit.daemon);
    }
    for (i, rule) in visit.rules.iter().enumerate() {
        let label = if i == 0 {
            format!("{}:", visit.daemon)
        } else {
            " ".repeat(visit.daemon.len() + 1)
        };
        let _ = writeln!(out, "{indent}{label} {rule}");
    }
    for step in &visit.steps {
        if let Step::Hop { visit, .. } = step {
            render_rules(visit, depth + 1, out);
        }
    }
}
