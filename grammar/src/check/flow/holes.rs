//! V206: black holes. A frame to a named MAC is sent over a link to a daemon where no rule
//! matches it, and is dropped there.
//!
//! Every edge A → B of a class's graph is taken by the frames of that class entering at A's
//! interface, so a black hole is an edge A → B (for a class whose destination is named) where
//! B's decision is empty; no path search is needed. The classes are not enumerated globally:
//! each daemon A is walked over its own local classes, each of which stands for a set of global
//! classes, and B answers from a short precomputed list of the local classes it drops.

use super::net::{contains, FxBuild, Local, Net, Node, NodeId};
use super::{describe, Reporter};
use crate::diag::{Code, Diagnostic};
use crate::mac::Mac;
use crate::model::Decision;
use std::collections::HashSet;

/// Decisions the walk makes at most (before a daemon, and within one): realistic files make
/// about one per rule (0.5–1.2 in every shape of the generator), so they have twenty times
/// that, and adversarial ones (many sources times many destinations: a daemon whose rules
/// `s NOT d` each name their own source and destination decides per source for every
/// destination) cost at most that, linear in the file; a daemon past the limit is counted,
/// not walked.
pub(super) fn walk_limit(net: &Net) -> usize {
    (20 * net.rules.len()).max(100_000)
}

/// What a daemon drops for one local destination class.
#[derive(Clone)]
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
    /// The classes of the daemons walked, daemon after daemon, in one set of arrays rather
    /// than a set per daemon (a large file has a daemon per rule or two).
    classes: Classes,
    /// Where each daemon's classes start in `classes`, and one more entry for the end. The
    /// daemons walked are the first ones; the others were past the work limit.
    starts: Vec<u32>,
    /// For each rule of the state, by position: whether it fired for some class.
    fired: Vec<bool>,
}

/// Daemons' walks, class by class (per daemon, the class of unnamed destinations, then each
/// destination it names, in order): what each class sends where, which rules fired, what it
/// drops. A daemon's classes depend on its own table only, so the next analysis copies those
/// of the classes an edit did not touch (see `memo.rs`).
#[derive(Default)]
pub(super) struct Classes {
    /// Per class, where its edges, fired rules and drops end in the lists below, and the
    /// decisions made up to it.
    ends: Vec<[u32; 4]>,
    edges: Vec<Edge>,
    /// Table indices of the rules that fired, per class (with repeats).
    fired: Vec<u32>,
    drops: Vec<Drops>,
}

/// An edge of some class's graph: the daemon sends frames of its local class (`src`, `dst`)
/// to `b` by rule `index`.
#[derive(Clone, Copy)]
struct Edge {
    index: u32,
    b: NodeId,
    src: Local,
    dst: Local,
}

pub(super) fn find_black_holes(net: &Net, walk: &Walk, report: &mut Reporter) {
    let mut reported: HashSet<(NodeId, u32, NodeId), FxBuild> = HashSet::default();
    for a in 0..walk.walked() as NodeId {
        for edge in walk.classes.edges(walk.range(a)) {
            let drops = walk.drops(edge.b);
            if drops.is_empty() || reported.contains(&(a, edge.index, edge.b)) {
                continue;
            }
            if let Some((s, d)) = dropped_example(net, a, edge, drops) {
                reported.insert((a, edge.index, edge.b));
                report_hole(net, a, edge, s, d, report);
                if report.full() {
                    return;
                }
            }
        }
    }
}

impl Walk {
    /// The walk put together from its daemons' classes (`starts` as in [`Walk`]).
    pub fn new(net: &Net, classes: Classes, starts: Vec<u32>) -> Walk {
        let mut walk = Walk {
            classes,
            starts,
            fired: vec![false; net.rules.len()],
        };
        for n in 0..walk.walked() as NodeId {
            for &index in walk.classes.fired(walk.range(n)) {
                walk.fired[net.rule_id(n, index) as usize] = true;
            }
        }
        walk
    }

    /// How many daemons were walked, from the first.
    fn walked(&self) -> usize {
        self.starts.len() - 1
    }

    /// The classes of daemon `n` (walked).
    pub fn range(&self, n: NodeId) -> std::ops::Range<usize> {
        self.starts[n as usize] as usize..self.starts[n as usize + 1] as usize
    }

    pub fn classes(&self) -> &Classes {
        &self.classes
    }

    /// What daemon `b` drops, per destination class; nothing when it was not walked.
    fn drops(&self, b: NodeId) -> &[Drops] {
        match (b as usize) < self.walked() {
            true => self.classes.drops(self.range(b)),
            false => &[],
        }
    }

    /// Whether rule `index` of daemon `n` fired for some class; `None` when the daemon was
    /// not walked.
    pub fn fired(&self, net: &Net, n: NodeId, index: u32) -> Option<bool> {
        ((n as usize) < self.walked()).then(|| self.fired[net.rule_id(n, index) as usize])
    }

    /// Whether every daemon was walked.
    pub fn complete(&self, net: &Net) -> bool {
        self.walked() == net.len()
    }
}

impl Classes {
    /// Room for a walk of the whole net as realistic files make it (a class per daemon and
    /// destination it names, an edge or so and a rule fired per class), so that the lists of
    /// a large file are not copied as they grow.
    pub fn with_capacity(net: &Net) -> Classes {
        let classes = net.len() + net.namings();
        Classes {
            ends: Vec::with_capacity(classes),
            edges: Vec::with_capacity(classes),
            fired: Vec::with_capacity(classes.max(net.rules.len())),
            drops: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Where class `k`'s lists start: where the one before ends.
    fn start(&self, k: usize) -> [u32; 4] {
        k.checked_sub(1).map_or([0; 4], |before| self.ends[before])
    }

    /// The span of one of the lists (`list`: 0 edges, 1 fired, 2 drops, 3 decisions) over a
    /// run of classes.
    fn span(&self, classes: &std::ops::Range<usize>, list: usize) -> std::ops::Range<usize> {
        if classes.is_empty() {
            return 0..0;
        }
        self.start(classes.start)[list] as usize..self.ends[classes.end - 1][list] as usize
    }

    fn edges(&self, classes: std::ops::Range<usize>) -> &[Edge] {
        &self.edges[self.span(&classes, 0)]
    }

    fn fired(&self, classes: std::ops::Range<usize>) -> &[u32] {
        &self.fired[self.span(&classes, 1)]
    }

    fn drops(&self, classes: std::ops::Range<usize>) -> &[Drops] {
        &self.drops[self.span(&classes, 2)]
    }

    /// The decisions made for a run of classes.
    pub fn decided(&self, classes: std::ops::Range<usize>) -> usize {
        self.span(&classes, 3).len()
    }

    fn end_class(&mut self, decided: usize) {
        let before = self.start(self.ends.len())[3] as usize;
        let lens = [self.edges.len(), self.fired.len(), self.drops.len()];
        self.ends.push([
            lens[0] as u32,
            lens[1] as u32,
            lens[2] as u32,
            (before + decided) as u32,
        ]);
    }

    /// Appends classes `run` of `old` unchanged.
    pub fn copy_classes(&mut self, old: &Classes, run: std::ops::Range<usize>) {
        for k in run {
            let copied = self.copy_class(old, k, Some);
            debug_assert!(copied);
        }
    }

    /// Appends class `k` of `old` with its table indices renamed by `renamed` (old index →
    /// new, `None` for a rule that is gone); false, with nothing appended, when it names a
    /// rule that is gone.
    pub fn copy_class(
        &mut self,
        old: &Classes,
        k: usize,
        renamed: impl Fn(u32) -> Option<u32>,
    ) -> bool {
        let (start, end) = (old.start(k), old.ends[k]);
        let range = |i: usize| start[i] as usize..end[i] as usize;
        let edges = &old.edges[range(0)];
        let fired = &old.fired[range(1)];
        if edges.iter().any(|e| renamed(e.index).is_none())
            || fired.iter().any(|i| renamed(*i).is_none())
        {
            return false;
        }
        let new = |index: u32| renamed(index).unwrap_or(index);
        self.edges.extend(edges.iter().map(|e| Edge {
            index: new(e.index),
            ..*e
        }));
        self.fired.extend(fired.iter().map(|i| new(*i)));
        self.drops.extend_from_slice(&old.drops[range(2)]);
        self.end_class((end[3] - start[3]) as usize);
        true
    }
}

/// One decision per local class of every daemon: what each daemon drops, and every edge sent.
/// Realistic daemons drop only frames to addresses they do not know (`dst` = `None`), so the
/// drop lists are short and the edges are then checked in constant time.
pub(super) fn walk(net: &Net) -> Walk {
    let mut classes = Classes::with_capacity(net);
    let mut starts = Vec::with_capacity(net.len() + 1);
    starts.push(0);
    let (mut decision, limit) = (Decision::default(), walk_limit(net));
    for a in 0..net.len() as NodeId {
        if classes.decided(0..classes.len()) > limit {
            // Leave the rest unexamined rather than run for minutes; what was found stands.
            break;
        }
        if !walk_node(net, a, &mut classes, &mut decision) {
            break;
        }
        // Classes are one per rule or fewer, so fewer than 2^32.
        starts.push(classes.len() as u32);
    }
    Walk::new(net, classes, starts)
}

/// Every local class of daemon `a`, appended to `out`; false, with nothing appended, when the
/// daemon alone needs more than [`walk_limit`] decisions (the walk then ends before it).
pub(super) fn walk_node(net: &Net, a: NodeId, out: &mut Classes, decision: &mut Decision) -> bool {
    if decisions_exceed(net, a, walk_limit(net)) {
        return false;
    }
    for dst in classes(net.node(a)) {
        walk_class(net, a, dst, out, decision);
    }
    true
}

/// Whether daemon `a`'s walk would make more than `limit` decisions: one per relevant source
/// of each class and one for the other sources, counted before any is made, so that a daemon
/// past the limit costs no decisions (an adversarial one would otherwise make `limit` of them
/// and throw them away).
fn decisions_exceed(net: &Net, a: NodeId, limit: usize) -> bool {
    let node = net.node(a);
    // At most every named source decides on its own in every class.
    if (node.dsts.len() + 1).saturating_mul(node.srcs.len() + 1) <= limit {
        return false;
    }
    let mut decided = 0usize;
    classes(node).any(|dst| {
        decided += node.relevant_srcs(dst, net.rep(dst)).len() + 1;
        decided > limit
    })
}

/// The local destination classes of a daemon in the order they are walked.
pub(super) fn classes<'n>(node: &'n Node) -> impl Iterator<Item = Local> + 'n {
    std::iter::once(None).chain(node.dsts.iter().copied().map(Some))
}

/// Whether the walk of every daemon, in order (their classes start at `starts`), stays within
/// the work limit, before each daemon and within it: what [`walk`] would then have walked
/// them all.
pub(super) fn within_limit(net: &Net, classes: &Classes, starts: &[u32]) -> bool {
    let limit = walk_limit(net);
    starts.windows(2).all(|w| {
        let (start, end) = (w[0] as usize, w[1] as usize);
        classes.decided(0..start) <= limit && classes.decided(start..end) <= limit
    })
}

/// Daemon `a`'s decisions for destination class `dst`, appended to `out` as one class.
pub(super) fn walk_class(
    net: &Net,
    a: NodeId,
    dst: Local,
    out: &mut Classes,
    decision: &mut Decision,
) {
    let node = net.node(a);
    let relevant = node.relevant_srcs(dst, net.rep(dst));
    let mut drop = Drops {
        dst,
        rest: false,
        sources: Vec::new(),
        relevant: Vec::new(),
    };
    for src in std::iter::once(None).chain(relevant.iter().copied().map(Some)) {
        node.table.decide_into(net.rep(src), net.rep(dst), decision);
        out.fired.extend_from_slice(&decision.rules);
        if decision.rules.is_empty() {
            match src {
                None => drop.rest = true,
                Some(s) => drop.sources.push(s),
            }
            continue;
        }
        let first = out.edges.len();
        for (b, index) in net.links_of(a, decision) {
            // Tied rules to the same peer are one edge.
            if out.edges[first..].iter().any(|e| e.b == b) {
                continue;
            }
            out.edges.push(Edge { index, b, src, dst });
        }
    }
    let decided = relevant.len() + 1;
    if drop.rest || !drop.sources.is_empty() {
        drop.relevant = relevant.into_owned();
        out.drops.push(drop);
    }
    out.end_class(decided);
}

/// A frame (source class, named destination) of the global classes that the edge's local
/// class at A stands for, which A sends to B and B drops. The edge's `src` is exactly that
/// source, or (`None`) every source that does not decide on its own at A; its `dst` is exactly
/// that destination, or (`None`) every named destination A's rules do not name.
fn dropped_example(net: &Net, a: NodeId, edge: &Edge, drops: &[Drops]) -> Option<(Local, Mac)> {
    let (node_a, node_b) = (net.node(a), net.node(edge.b));
    for drop in drops {
        let dst = match (edge.dst, drop.dst) {
            (Some(d), local) if node_b.local_dst(Some(d)) == local => d,
            (Some(_), _) => continue,
            (None, Some(d)) if !node_a.names_dst(d) => d,
            (None, Some(_)) => continue,
            (None, None) => match net.unnamed_by_both(a, edge.b) {
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

fn report_hole(net: &Net, a: NodeId, edge: &Edge, src: Local, dst: Mac, report: &mut Reporter) {
    let (index, b) = (edge.index, edge.b);
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
    if let Some(host) = report.host_span(net.host(b)) {
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
