//! V206: black holes. A frame to a named MAC is sent over a link to a daemon where no rule
//! matches it, and is dropped there.
//!
//! Every edge A → B of a class's graph is taken by the frames of that class entering at A's
//! interface, so a black hole is an edge A → B (for a class whose destination is named) where
//! B's decision is empty; no path search is needed. The classes are not enumerated globally:
//! each daemon A is walked over its own local classes, each of which stands for a set of global
//! classes, and B answers from a short precomputed list of the local classes it drops.

use super::net::{contains, FxBuild, Local, Net, NodeId};
use super::{describe, Reporter};
use crate::diag::{Code, Diagnostic};
use crate::mac::Mac;
use crate::model::Decision;
use std::collections::HashSet;

/// Decisions the walk makes at most: the local classes of realistic files number about one
/// per rule, and this bounds adversarial ones (many sources times many destinations).
const WALK_LIMIT: usize = 4_000_000;

/// What a daemon drops for one local destination class.
struct Drops {
    dst: Local,
    /// Frames from sources that do not change the decision (`None` among them) are dropped.
    rest: bool,
    /// The sources, each deciding on its own, whose frames are dropped.
    sources: Vec<Mac>,
    /// The sources that decide on their own for this destination.
    relevant: Vec<Mac>,
}

/// The decisions of every local class of every daemon, made once: V206 checks the edges
/// against the drops, and V205 reads which rules fired (every class of frames decides as one of
/// these local classes, so a rule that fired in none of them never fires).
pub(super) struct Walk {
    drops: Vec<Vec<Drops>>,
    sent: Vec<Sent>,
    /// For each rule of the state, by position: whether it fired for some class. One array
    /// for all daemons rather than one per daemon.
    fired: Vec<bool>,
    /// The daemons walked are `0..walked`; the others were past the work limit.
    walked: u32,
}

/// An edge of some class's graph: daemon `a` sends frames of its local class (`src`, `dst`) to
/// `b` by rule `index`.
struct Sent {
    a: NodeId,
    index: u32,
    b: NodeId,
    src: Local,
    dst: Local,
    /// Whether the edge was checked as it was found (`b` had been walked already): then `src`
    /// and `dst` are the frame B drops, not the local class.
    checked: bool,
}

pub(super) fn find_black_holes(net: &Net, walk: Walk, report: &mut Reporter) {
    let Walk { drops, sent, .. } = walk;
    let mut reported: HashSet<(NodeId, u32, NodeId), FxBuild> = HashSet::default();
    for edge in sent {
        let drops = &drops[edge.b as usize];
        if drops.is_empty() || reported.contains(&(edge.a, edge.index, edge.b)) {
            continue;
        }
        let example = match (edge.checked, edge.dst) {
            (true, Some(d)) => Some((edge.src, d)),
            _ => dropped_example(net, &edge, drops),
        };
        if let Some((s, d)) = example {
            reported.insert((edge.a, edge.index, edge.b));
            report_hole(net, &edge, s, d, report);
            if report.full() {
                return;
            }
        }
    }
}

impl Walk {
    /// Whether rule `index` of daemon `n` fired for some class; `None` when the daemon was
    /// not walked.
    pub fn fired(&self, net: &Net, n: NodeId, index: u32) -> Option<bool> {
        (n < self.walked).then(|| self.fired[net.rule_id(n, index) as usize])
    }
}

/// One decision per local class of every daemon: what each daemon drops, and every edge sent.
/// Realistic daemons drop only frames to addresses they do not know (`dst` = `None`), so the
/// drop lists are short and the edges are then checked in constant time.
pub(super) fn walk(net: &Net) -> Walk {
    let mut drops: Vec<Vec<Drops>> = Vec::with_capacity(net.len());
    let mut fired = vec![false; net.rules.len()];
    let mut walked = 0;
    let mut sent = Vec::new();
    let mut decision = Decision::default();
    let mut decided = 0usize;
    for a in 0..net.len() as NodeId {
        if decided > WALK_LIMIT {
            // Leave the rest unexamined rather than run for minutes; what was found stands.
            break;
        }
        let node = net.node(a);
        let mut here = Vec::new();
        walked = a + 1;
        for dst in std::iter::once(None).chain(node.dsts.iter().copied().map(Some)) {
            let relevant = node.relevant_srcs(dst, net.rep(dst));
            decided += relevant.len() + 1;
            let mut drop = Drops {
                dst,
                rest: false,
                sources: Vec::new(),
                relevant: Vec::new(),
            };
            for src in std::iter::once(None).chain(relevant.iter().copied().map(Some)) {
                node.table
                    .decide_into(net.rep(src), net.rep(dst), &mut decision);
                for &index in &decision.rules {
                    fired[net.rule_id(a, index) as usize] = true;
                }
                if decision.rules.is_empty() {
                    match src {
                        None => drop.rest = true,
                        Some(s) => drop.sources.push(s),
                    }
                    continue;
                }
                let first = sent.len();
                for (b, index) in net.links_of(a, &decision) {
                    // Tied rules to the same peer are one edge.
                    if sent[first..].iter().any(|e: &Sent| e.b == b) {
                        continue;
                    }
                    let mut edge = Sent {
                        a,
                        index,
                        b,
                        src,
                        dst,
                        checked: false,
                    };
                    // What a daemon already walked drops is known: check the edge now and keep
                    // it only if it is a black hole. Keeping every edge would cost an edge per
                    // rule on a large file; the order of the kept ones is unchanged.
                    if b < a {
                        let Some((s, d)) = dropped_example(net, &edge, &drops[b as usize]) else {
                            continue;
                        };
                        (edge.src, edge.dst, edge.checked) = (s, Some(d), true);
                    }
                    sent.push(edge);
                }
            }
            if drop.rest || !drop.sources.is_empty() {
                drop.relevant = relevant.into_owned();
                here.push(drop);
            }
        }
        drops.push(here);
    }
    drops.resize_with(net.len(), Vec::new);
    Walk {
        drops,
        sent,
        fired,
        walked,
    }
}

/// A frame (source class, named destination) of the global classes that the edge's local
/// class at A stands for, which A sends to B and B drops. The edge's `src` is exactly that
/// source, or (`None`) every source that does not decide on its own at A; its `dst` is exactly
/// that destination, or (`None`) every named destination A's rules do not name.
fn dropped_example(net: &Net, edge: &Sent, drops: &[Drops]) -> Option<(Local, Mac)> {
    let (node_a, node_b) = (net.node(edge.a), net.node(edge.b));
    for drop in drops {
        let dst = match (edge.dst, drop.dst) {
            (Some(d), local) if node_b.local_dst(Some(d)) == local => d,
            (Some(_), _) => continue,
            (None, Some(d)) if !node_a.names_dst(d) => d,
            (None, Some(_)) => continue,
            (None, None) => match net.unnamed_by_both(edge.a, edge.b) {
                Some(d) => d,
                None => continue,
            },
        };
        let src = match edge.src {
            Some(s) if contains(&drop.relevant, s) => contains(&drop.sources, s).then_some(Some(s)),
            Some(s) => drop.rest.then_some(Some(s)),
            // A's "other" sources include an address nobody names, which B decides as its rest.
            None if drop.rest => Some(None),
            None => {
                let relevant = node_a.relevant_srcs(edge.dst, net.rep(edge.dst));
                drop.sources
                    .iter()
                    .find(|s| !contains(&relevant, **s))
                    .map(|s| Some(*s))
            }
        };
        if let Some(src) = src {
            return Some((src, dst));
        }
    }
    None
}

fn report_hole(net: &Net, edge: &Sent, src: Local, dst: Mac, report: &mut Reporter) {
    let (a, index, b) = (edge.a, edge.index, edge.b);
    let Some(span) = report.rule_span(net.rule_id(a, index)) else {
        return;
    };
    let (from, to) = (net.node(a).name, net.node(b).name);
    let mut d = Diagnostic::new(
        Code::V206,
        span,
        format!(
            "black hole: frames from {} to {dst} are sent from `{from}` to `{to}`, where no rule matches them and they are dropped",
            describe(src)
        ),
    )
    .with_help(format!("add a rule on `{to}` for these frames, or do not send them there"));
    if let Some(host) = report.host_span(to) {
        d = d.with_related(
            host,
            format!(
                "`{to}` has no rule for frames from {} to {dst}",
                describe(src)
            ),
        );
    }
    report.push(d);
}
