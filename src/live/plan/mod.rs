//! A plan: the primitive operations that take the live daemons to a desired state, in
//! dependency order, with the fingerprint of the live state it was computed against (so a
//! saved plan can be refused once the daemons have moved on).

pub mod consistent;
pub mod diff;
pub mod order;

use super::fetch::Live;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use vnet_grammar::model::{HostDef, LinkKey, RuleDef, State};
use vnet_proto::control::LinkSpec;
use vnet_proto::Change;

/// One primitive operation on one daemon's tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    AddLink {
        link: LinkSpec,
    },
    /// The same pair with another transport, dialer or peer address (the daemon swaps it in
    /// one step, so rules over it never point at nothing).
    ReplaceLink {
        link: LinkSpec,
        was: LinkSpec,
    },
    DeleteLink {
        link: LinkSpec,
    },
    AddRule {
        rule: RuleDef,
    },
    DeleteRule {
        rule: RuleDef,
    },
}

impl Op {
    /// Order of the phases on one daemon: rules off, links off, links on, rules on.
    pub fn phase(&self) -> u8 {
        match self {
            Op::DeleteRule { .. } => 0,
            Op::DeleteLink { .. } => 1,
            Op::AddLink { .. } | Op::ReplaceLink { .. } => 2,
            Op::AddRule { .. } => 3,
        }
    }

    /// The statement it adds, removes or changes, as `.vnet` text.
    pub fn text(&self) -> String {
        match self {
            Op::AddLink { link } | Op::ReplaceLink { link, .. } | Op::DeleteLink { link } => {
                link.link.to_string()
            }
            Op::AddRule { rule } | Op::DeleteRule { rule } => rule.to_string(),
        }
    }

    pub fn sign(&self) -> char {
        match self {
            Op::AddLink { .. } | Op::AddRule { .. } => '+',
            Op::ReplaceLink { .. } => '~',
            Op::DeleteLink { .. } | Op::DeleteRule { .. } => '-',
        }
    }

    pub fn link_key(&self) -> Option<LinkKey> {
        match self {
            Op::AddLink { link } | Op::ReplaceLink { link, .. } | Op::DeleteLink { link } => {
                Some(link.link.key())
            }
            _ => None,
        }
    }

    /// The daemon request that performs it.
    pub fn change(&self) -> Change {
        match self {
            Op::AddLink { link } | Op::ReplaceLink { link, .. } => {
                Change::AddLink { link: link.clone() }
            }
            Op::DeleteLink { link } => Change::DeleteLink {
                key: link.link.key(),
            },
            Op::AddRule { rule } => Change::AddRule { rule: rule.clone() },
            Op::DeleteRule { rule } => Change::DeleteRule { rule: rule.clone() },
        }
    }
}

/// An operation placed in the plan: its number, its daemon, and the steps it waits for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub id: usize,
    pub daemon: String,
    #[serde(flatten)]
    pub op: Op,
    pub after: Vec<usize>,
}

/// Which daemon process, at which table generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub instance: String,
    pub generation: u64,
}

/// The live state a plan was made against: every daemon's instance and generation, and a
/// digest of their tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub digest: String,
    pub daemons: BTreeMap<String, Version>,
}

impl Fingerprint {
    pub fn of(live: &Live) -> Fingerprint {
        let mut hasher = Sha256::new();
        let mut daemons = BTreeMap::new();
        for (name, snap) in &live.snapshots {
            let tables =
                serde_json::json!([name, snap.instance, snap.generation, snap.links, snap.rules]);
            hasher.update(tables.to_string().as_bytes());
            hasher.update([0]);
            daemons.insert(
                name.clone(),
                Version {
                    instance: snap.instance.clone(),
                    generation: snap.generation,
                },
            );
        }
        let digest = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Fingerprint { digest, daemons }
    }

    /// Why `now` is not the state this fingerprint recorded, one line per daemon; empty when
    /// it is.
    pub fn changes_since(&self, now: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        for (name, then) in &self.daemons {
            match now.daemons.get(name) {
                None => out.push(format!("daemon {name} was not read this time")),
                Some(v) if v.instance != then.instance => out.push(format!(
                    "daemon {name} restarted (instance {} then, {} now)",
                    short(&then.instance),
                    short(&v.instance)
                )),
                Some(v) if v.generation != then.generation => out.push(format!(
                    "daemon {name} changed: generation {} then, {} now",
                    then.generation, v.generation
                )),
                Some(_) => {}
            }
        }
        if out.is_empty() && self.digest != now.digest {
            out.push("the daemons' tables differ from when the plan was made".into());
        }
        out
    }
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// How many operations add, change and remove, on how many daemons.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub add: usize,
    pub change: usize,
    pub remove: usize,
    pub daemons: usize,
}

impl Summary {
    pub fn of<'s>(steps: impl IntoIterator<Item = &'s Step>) -> Summary {
        let mut s = Summary::default();
        let mut daemons = BTreeSet::new();
        for step in steps {
            daemons.insert(step.daemon.as_str());
            match step.op.sign() {
                '+' => s.add += 1,
                '~' => s.change += 1,
                _ => s.remove += 1,
            }
        }
        s.daemons = daemons.len();
        s
    }

    /// `12 to add, 3 to remove on 4 daemons` (with `N to change` when there are any).
    pub fn counts(&self, verbs: [&str; 3]) -> String {
        let mut parts = vec![format!("{} {}", self.add, verbs[0])];
        if self.change > 0 {
            parts.push(format!("{} {}", self.change, verbs[1]));
        }
        parts.push(format!("{} {}", self.remove, verbs[2]));
        format!(
            "{} on {} daemon{}",
            parts.join(", "),
            self.daemons,
            if self.daemons == 1 { "" } else { "s" }
        )
    }
}

pub const FORMAT: &str = "vnet-plan";
pub const VERSION: u32 = 1;

/// A plan as `plan -o` saves it and `apply PLAN` reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub version: u32,
    /// The file it was made from.
    pub source: String,
    /// Whether that file was a patch folded onto the live state.
    pub patch: bool,
    /// The daemons it concerns, as HOST lines.
    pub hosts: Vec<HostDef>,
    /// The state the daemons will be in.
    pub desired: State,
    pub fingerprint: Fingerprint,
    pub steps: Vec<Step>,
    pub summary: Summary,
}

impl Plan {
    /// The plan that takes `live` to `desired`.
    pub fn make(source: &str, patch: bool, desired: &State, live: &Live) -> Plan {
        let ops = diff::daemon_ops(desired, live, patch);
        let steps = order::order(ops);
        Plan {
            format: FORMAT.into(),
            version: VERSION,
            source: source.into(),
            patch,
            hosts: desired.hosts.clone(),
            desired: desired.clone(),
            fingerprint: Fingerprint::of(live),
            summary: Summary::of(&steps),
            steps,
        }
    }

    /// Reads a saved plan; `None` when the text is not one (it is then a `.vnet` file).
    pub fn parse(text: &str) -> Option<Result<Plan, String>> {
        if !text.trim_start().starts_with('{') {
            return None;
        }
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Some(Err(format!("not a readable plan (JSON): {e}"))),
        };
        if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
            return Some(Err(format!(
                "JSON, but not a vnetc plan (no \"format\": \"{FORMAT}\")"
            )));
        }
        let plan: Plan = match serde_json::from_value(value) {
            Ok(p) => p,
            Err(e) => return Some(Err(format!("a damaged plan: {e}"))),
        };
        if plan.version != VERSION {
            return Some(Err(format!(
                "a plan of version {}; this vnetc reads version {VERSION}",
                plan.version
            )));
        }
        if let Err(e) = plan.validate() {
            return Some(Err(format!("a damaged plan: {e}")));
        }
        Some(Ok(plan))
    }

    /// The steps are numbered in order and wait only for earlier steps (so they cannot
    /// deadlock), on daemons the plan names.
    fn validate(&self) -> Result<(), String> {
        for (i, s) in self.steps.iter().enumerate() {
            if s.id != i {
                return Err(format!("step {i} is numbered {}", s.id));
            }
            if !self.hosts.iter().any(|h| h.machine == s.daemon) {
                return Err(format!("step {i} is for undeclared daemon {}", s.daemon));
            }
            if s.after.iter().any(|&a| a >= self.steps.len() || a == i) {
                return Err(format!("step {i} waits for a step that does not exist"));
            }
        }
        let after: Vec<Vec<usize>> = self.steps.iter().map(|s| s.after.clone()).collect();
        if !is_acyclic(&after) {
            return Err("its steps wait for each other in a cycle".into());
        }
        Ok(())
    }

    /// The plan for people: grouped by daemon in HOST order, `+`/`-`/`~` per operation, the
    /// cross-daemon waits spelled out, and the one-line summary.
    pub fn render(&self, color: bool) -> String {
        use std::fmt::Write as _;
        let paint = |sign: char, text: &str| -> String {
            if !color {
                return text.to_string();
            }
            let code = match sign {
                '+' => "32",
                '-' => "31",
                _ => "33",
            };
            format!("\x1b[{code}m{text}\x1b[0m")
        };
        let mut out = String::new();
        if self.steps.is_empty() {
            let _ = writeln!(
                out,
                "No changes. The {} live daemon{} match{} {}.",
                self.fingerprint.daemons.len(),
                if self.fingerprint.daemons.len() == 1 {
                    ""
                } else {
                    "s"
                },
                if self.fingerprint.daemons.len() == 1 {
                    "es"
                } else {
                    ""
                },
                self.source
            );
            return out;
        }
        let _ = writeln!(
            out,
            "vnetc will change the live daemons to match {} (live state {}):",
            self.source,
            self.fingerprint
                .digest
                .get(..12)
                .unwrap_or(&self.fingerprint.digest)
        );
        for host in &self.hosts {
            let mine: Vec<&Step> = self
                .steps
                .iter()
                .filter(|s| s.daemon == host.machine)
                .collect();
            if mine.is_empty() {
                continue;
            }
            let generation = self
                .fingerprint
                .daemons
                .get(host.machine.as_str())
                .map(|v| format!(" (generation {})", v.generation))
                .unwrap_or_default();
            let _ = writeln!(out, "\n  # daemon {}{generation}", host.machine);
            for s in mine {
                let line = format!("  {} {}", s.op.sign(), s.op.text());
                let mut notes: Vec<String> = Vec::new();
                if let Op::ReplaceLink { link, was } = &s.op {
                    if was.link != link.link {
                        notes.push(format!("was {}", was.link));
                    } else {
                        notes.push(format!("peer address was {}", was.peer_addr));
                    }
                }
                let foreign: Vec<String> = s
                    .after
                    .iter()
                    .filter_map(|&a| self.steps.get(a))
                    .filter(|a| a.daemon != s.daemon)
                    .map(|a| format!("after {} {}", a.daemon, describe_wait(&a.op)))
                    .collect();
                notes.extend(foreign);
                if notes.is_empty() {
                    let _ = writeln!(out, "{}", paint(s.op.sign(), &line));
                } else {
                    let _ = writeln!(
                        out,
                        "{}    # {}",
                        paint(s.op.sign(), &line),
                        notes.join("; ")
                    );
                }
            }
        }
        let _ = writeln!(
            out,
            "\nPlan: {}.",
            self.summary.counts(["to add", "to change", "to remove"])
        );
        out
    }
}

fn describe_wait(op: &Op) -> &'static str {
    match op {
        Op::AddLink { .. } | Op::ReplaceLink { .. } => "configures its end (it listens)",
        Op::DeleteLink { .. } => "drops its end (it dials)",
        _ => "is done",
    }
}

/// Whether steps waiting as `after` says (step i waits for every step in `after[i]`, each a
/// valid index) can all run: Kahn's algorithm.
pub fn is_acyclic(after: &[Vec<usize>]) -> bool {
    let mut waiting: Vec<usize> = after.iter().map(Vec::len).collect();
    let mut unblocks: Vec<Vec<usize>> = vec![Vec::new(); after.len()];
    for (id, deps) in after.iter().enumerate() {
        for &d in deps {
            unblocks[d].push(id);
        }
    }
    let mut ready: Vec<usize> = (0..after.len()).filter(|&i| waiting[i] == 0).collect();
    let mut done = 0;
    while let Some(i) = ready.pop() {
        done += 1;
        for &j in &unblocks[i] {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push(j);
            }
        }
    }
    done == after.len()
}
