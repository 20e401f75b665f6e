//! V111: forwarding loops.
//!
//! For one class of frames (source class, destination class) every daemon decides the same
//! whatever link the frame came in on (split horizon only removes that link), so the class
//! has a fixed graph: A → B when A sends the class to B. A frame of the class revisits a
//! daemon exactly when that graph has a simple cycle of length ≥ 3 (see `scc.rs`), and every
//! daemon's interface is an entry point, so every such cycle is a real loop.
//!
//! There are too many classes to build every graph (2,000 VMs make millions), so the search
//! is incremental:
//! - `U(d)` is the union over all sources of the graphs of destination class `d`, bounded
//!   from above cheaply ([`Net::bound_into`]); a loop of any class `(s, d)` is a cycle of
//!   `U(d)`.
//! - `U(other)` is checked whole. For a named destination `d`, only the daemons whose rules
//!   name `d` decide differently from `U(other)`, so only cycles through them are new: the
//!   search starts from them and visits what they reach.
//! - A component of `U(d)` with a long cycle is then confirmed class by class with exact
//!   decisions ([`Net::dec`]), which is where the loop's hops and rules come from.

use super::net::{Dec, FxBuild, Local, Net, NodeId};
use super::scc::Scc;
use super::{describe, Reporter};
use crate::diag::{Code, Diagnostic};
use crate::mac::Mac;
use std::collections::HashSet;

/// Node visits (and entries read for the bounds) allowed for the search: realistic files need
/// 1.3–2 per rule (every shape of the generator), so they have fifty times that, and
/// adversarial ones (bounding graphs dense with cycles that no single class has, many
/// destinations each sent down a long chain) cost at most that, linear in the file.
pub(super) fn work_limit(net: &Net) -> usize {
    (100 * net.rules.len()).max(500_000)
}

/// What the loop search found: the bounds of `U(other)` and its loops, then per named
/// destination the loops of its classes. The next analysis keeps the parts an edit did not
/// touch (see `memo.rs`).
pub(super) struct Loops {
    other_edges: Vec<NodeId>,
    /// Where each daemon's bounds are in `other_edges`.
    other_at: Vec<usize>,
    /// The daemons in components of `U(other)` with a long cycle.
    in_suspect: Vec<bool>,
    base: Found,
    /// Each named destination (the net's, in order) with what its search found.
    dsts: Vec<(Mac, Found)>,
    /// Nodes visited in all; past [`work_limit`] the search stopped early.
    work: usize,
}

/// The loops found for one destination class (or `U(other)`), before the loops already
/// reported are left out: each as its cycle and class.
#[derive(Default)]
pub(super) struct Found {
    loops: Vec<(Vec<NodeId>, Local, Local)>,
    /// The daemons of the components confirmed class by class: their decisions made it.
    pub members: Vec<NodeId>,
    work: usize,
}

impl Loops {
    pub fn exhausted(&self, net: &Net) -> bool {
        self.work > work_limit(net)
    }

    /// The work done: nodes visited and rules read.
    #[cfg(test)]
    pub fn work(&self) -> usize {
        self.work
    }

    fn other(&self, v: NodeId) -> &[NodeId] {
        &self.other_edges[self.other_at[v as usize]..self.other_at[v as usize + 1]]
    }

    /// Whether `U(other)` and its loops still hold for the net, given the daemons whose
    /// generic rules may have changed (`whole`): their bounds are the same and none of them
    /// is in a component that was confirmed.
    pub fn base_holds(&self, net: &Net, whole: &[NodeId]) -> bool {
        let mut bound = Vec::new();
        self.other_at.len() == net.len() + 1
            && whole.iter().all(|&n| {
                bound.clear();
                net.bound_into(n, None, &mut bound);
                !self.in_suspect[n as usize] && bound == self.other(n)
            })
    }

    /// What was found for `dst`, if it was searched.
    pub fn take(&mut self, dst: Mac) -> Option<Found> {
        let at = self
            .dsts
            .binary_search_by_key(&dst.to_u64(), |(d, _)| d.to_u64())
            .ok()?;
        Some(std::mem::take(&mut self.dsts[at].1))
    }
}

/// The loops of every class. With `previous` (what the last search found, `U(other)` still
/// holding: see [`Loops::base_holds`]) a destination for which `reuse` gives the last result
/// is not searched again.
pub(super) fn find_loops(
    net: &Net,
    previous: Option<Loops>,
    reuse: &mut dyn FnMut(&mut Loops, Mac) -> Option<Found>,
) -> Loops {
    let mut search = Search {
        net,
        scc: Scc::new(net.len()),
        work: 0,
        bounds: Vec::new(),
        bounds_at: Vec::new(),
        slot: vec![OUTSIDE; net.len()],
        dec: Dec::default(),
    };
    let mut previous = previous;
    let mut loops = match previous.as_mut() {
        Some(old) => Loops {
            other_edges: std::mem::take(&mut old.other_edges),
            other_at: std::mem::take(&mut old.other_at),
            in_suspect: std::mem::take(&mut old.in_suspect),
            base: std::mem::take(&mut old.base),
            dsts: Vec::new(),
            work: 0,
        },
        None => search_base(&mut search),
    };
    search.work = loops.base.work;
    let mut dsts = Vec::with_capacity(net.dsts.len());
    for (k, &dst) in net.dsts.iter().enumerate() {
        if search.work > work_limit(net) {
            break;
        }
        let found = match previous.as_mut().and_then(|old| reuse(old, dst)) {
            Some(found) => found,
            None => search_dst(&mut search, &loops, k),
        };
        search.work += found.work;
        dsts.push((dst, found));
    }
    loops.dsts = dsts;
    loops.work = search.work;
    loops
}

/// `U(other)`, every daemon's bounds in one array (a vector per daemon would be an allocation
/// per daemon), searched whole and its long cycles confirmed class by class.
fn search_base(search: &mut Search) -> Loops {
    let net = search.net;
    let nodes = net.len() as NodeId;
    let mut other_edges: Vec<NodeId> = Vec::new();
    let mut other_at: Vec<usize> = Vec::with_capacity(net.len() + 1);
    other_at.push(0);
    let mut read = 0;
    for n in 0..nodes {
        read += net.bound_into(n, None, &mut other_edges);
        other_at.push(other_edges.len());
    }
    let other = |v: NodeId| &other_edges[other_at[v as usize]..other_at[v as usize + 1]];
    let (components, _) = search.scc.long_cycle_components(0..nodes, other);
    let mut in_suspect = vec![false; net.len()];
    let mut base = Found {
        work: read,
        ..Found::default()
    };
    for component in &components {
        for &n in component {
            in_suspect[n as usize] = true;
        }
        search.confirm(component, None, &mut base);
    }
    Loops {
        other_edges,
        other_at,
        in_suspect,
        base,
        dsts: Vec::new(),
        work: 0,
    }
}

/// The loops of the classes with destination `net.dsts[k]`.
fn search_dst(search: &mut Search, loops: &Loops, k: usize) -> Found {
    let net = search.net;
    let (dst, namers) = (net.dsts[k], net.namers(k));
    let mut found = Found::default();
    // The bounds of the daemons naming `dst` (the only ones that differ from U(other)), in
    // one array reused from destination to destination; `namers` is sorted by node.
    let (mut bounds, mut at) = (
        std::mem::take(&mut search.bounds),
        std::mem::take(&mut search.bounds_at),
    );
    bounds.clear();
    at.clear();
    at.push(0);
    for &n in namers {
        // Each entry a bound reads counts as a visit: a daemon's generic peers are read again
        // for every destination it names.
        found.work += net.bound_into(n, Some(dst), &mut bounds);
        at.push(bounds.len());
    }
    let bound = |i: usize| &bounds[at[i]..at[i + 1]];
    let changed = |v: NodeId| namers.binary_search(&v).ok().map(bound);
    let other = |v: NodeId| loops.other(v);
    // A cycle through no changed daemon is a cycle of U(other), already searched, unless
    // it runs through a daemon that names `dst` inside a suspect component of U(other).
    let roots = namers
        .iter()
        .enumerate()
        .filter(|&(i, &n)| loops.in_suspect[n as usize] || bound(i) != other(n))
        .map(|(_, &n)| n);
    if roots.clone().next().is_some() {
        let adj = |v: NodeId| changed(v).unwrap_or_else(|| other(v));
        let (components, visited) = search.scc.long_cycle_components(roots, adj);
        found.work += visited;
        for component in components
            .iter()
            .filter(|c| c.iter().any(|n| namers.binary_search(n).is_ok()))
        {
            search.confirm(component, Some(dst), &mut found);
        }
    }
    (search.bounds, search.bounds_at) = (bounds, at);
    found
}

/// Reports the loops found, in the order they were found, each cycle once (the first class
/// that goes round it).
pub(super) fn report_loops(net: &Net, loops: &Loops, report: &mut Reporter) {
    let mut seen: HashSet<Vec<NodeId>, FxBuild> = HashSet::default();
    let all = std::iter::once(&loops.base).chain(loops.dsts.iter().map(|(_, f)| f));
    for (cycle, src, dst) in all.flat_map(|f| &f.loops) {
        if report.full() {
            return;
        }
        let mut key = cycle.clone();
        let smallest = key
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| **n)
            .map_or(0, |(i, _)| i);
        key.rotate_left(smallest);
        if seen.insert(key) {
            report_loop(net, cycle, *src, *dst, report);
        }
    }
}

struct Search<'n, 's> {
    net: &'n Net<'s>,
    scc: Scc,
    work: usize,
    /// [`search_dst`]'s arrays, kept from one destination to the next.
    bounds: Vec<NodeId>,
    bounds_at: Vec<usize>,
    /// Each daemon's place in the component being confirmed ([`OUTSIDE`] for the others), so
    /// that its class graphs are arrays rather than maps: a loop through every daemon of a
    /// large file makes a component of all of them.
    slot: Vec<u32>,
    dec: Dec,
}

/// Marks a daemon outside the component in `Search::slot`.
const OUTSIDE: u32 = u32::MAX;

/// A class's graph inside a component: the out-edges (sorted, inside the component) of some
/// of its daemons, by their place in it, in one array.
#[derive(Default)]
struct ClassGraph {
    /// The daemons' places in the component, increasing.
    places: Vec<u32>,
    at: Vec<u32>,
    peers: Vec<NodeId>,
}

impl ClassGraph {
    /// The edges of the daemon at `place` in the component, if the graph has them.
    fn get(&self, place: u32) -> Option<&[NodeId]> {
        // The graph of a whole component has every place at its own index.
        let k = match self.places.get(place as usize) {
            Some(&at) if at == place => place as usize,
            _ => self.places.binary_search(&place).ok()?,
        };
        Some(&self.peers[self.at[k] as usize..self.at[k + 1] as usize])
    }
}

impl Search<'_, '_> {
    fn exhausted(&self, found: &Found) -> bool {
        self.work + found.work > work_limit(self.net)
    }

    /// Finds the real loops inside a component of a bounding graph, class by class: first the
    /// sources no rule in it names, then each source it names (only the daemons naming that
    /// source decide differently, so the search starts from them).
    fn confirm(&mut self, component: &[NodeId], dst: Local, found: &mut Found) {
        let net = self.net;
        found.members.extend_from_slice(component);
        let mut sources: Vec<_> = component
            .iter()
            .flat_map(|&n| net.node(n).srcs.iter().copied())
            .collect();
        sources.sort_unstable();
        sources.dedup();
        for (place, &n) in component.iter().enumerate() {
            // A component is at most every daemon, and there are fewer than 2^32.
            self.slot[n as usize] = place as u32;
        }
        let base = self.class_graph(component, None, dst);
        let none = ClassGraph::default();
        let roots = component.iter().copied();
        self.search_class(roots, &base, &none, (None, dst), found);
        for src in sources {
            if self.exhausted(found) {
                break;
            }
            let namers: Vec<NodeId> = component
                .iter()
                .copied()
                .filter(|&n| net.node(n).names_src(src))
                .collect();
            let changed = self.class_graph(&namers, Some(src), dst);
            self.search_class(namers, &base, &changed, (Some(src), dst), found);
        }
        for &n in component {
            self.slot[n as usize] = OUTSIDE;
        }
    }

    /// The exact edges of the class (src, dst) out of `nodes` (in the order of the component),
    /// kept inside the component.
    fn class_graph(&mut self, nodes: &[NodeId], src: Local, dst: Local) -> ClassGraph {
        let mut graph = ClassGraph {
            places: Vec::with_capacity(nodes.len()),
            at: Vec::with_capacity(nodes.len() + 1),
            peers: Vec::new(),
        };
        graph.at.push(0);
        for &n in nodes {
            self.net.dec_global(n, src, dst, &mut self.dec);
            let inside = self.dec.links.iter().map(|(p, _)| *p);
            let slot = &self.slot;
            graph
                .peers
                .extend(inside.filter(|p| slot[*p as usize] != OUTSIDE));
            graph.places.push(self.slot[n as usize]);
            // Edges are at most one per rule, and rules fewer than 2^32.
            graph.at.push(graph.peers.len() as u32);
        }
        graph
    }

    fn search_class(
        &mut self,
        roots: impl IntoIterator<Item = NodeId>,
        base: &ClassGraph,
        changed: &ClassGraph,
        (src, dst): (Local, Local),
        found: &mut Found,
    ) {
        const NONE: &[NodeId] = &[];
        let slot = &self.slot;
        let adj = |v: NodeId| match slot[v as usize] {
            OUTSIDE => NONE,
            place => changed
                .get(place)
                .unwrap_or_else(|| base.get(place).unwrap_or(NONE)),
        };
        let (components, visited) = self.scc.long_cycle_components(roots, adj);
        found.work += visited;
        for component in components {
            if let Some(cycle) = self.scc.cycle_in(&component, adj) {
                found.loops.push((cycle, src, dst));
            }
        }
    }
}

/// A loop through more daemons than this is shown by its first and last eight: a
/// message, and related hops, through every daemon of a large file are unreadable, and a
/// terminal took seconds to draw a loop through 100,000 of them.
const SHOWN: usize = 16;

/// Whether the `i`th of a loop's `len` daemons (and the hop leaving it) is shown.
fn shown(i: usize, len: usize) -> bool {
    len <= SHOWN || i < SHOWN / 2 || i >= len - SHOWN / 2
}

/// One V111: the primary span is the hop rule written last in the file (the one that
/// closes the cycle), the other hops are related spans in the order a frame takes them.
fn report_loop(net: &Net, cycle: &[NodeId], src: Local, dst: Local, report: &mut Reporter) {
    let mut dec = Dec::default();
    let hops: Vec<(NodeId, NodeId, Option<crate::span::Span>)> = (0..cycle.len())
        .map(|i| {
            let (from, to) = (cycle[i], cycle[(i + 1) % cycle.len()]);
            net.dec_global(from, src, dst, &mut dec);
            let rule = dec.rule_to(to).map(|index| net.rule_id(from, index));
            (from, to, rule.and_then(|r| report.rule_span(r)))
        })
        .collect();
    let Some(closing) = hops
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.2.map(|span| (span.start(), i)))
        .max()
        .map(|(_, i)| i)
    else {
        // Every hop came from the base state of a patch: not this file's mistake.
        return;
    };
    let order: Vec<_> = (1..=hops.len())
        .map(|k| hops[(closing + k) % hops.len()])
        .collect();
    let names: Vec<&str> = order.iter().map(|h| net.node(h.0).name).collect();
    let (last_from, last_to, Some(primary)) = order[order.len() - 1] else {
        return;
    };
    let mut d = Diagnostic::new(
            Code::V111,
            primary,
            format!(
                "forwarding loop: frames from {} to {} go round {}",
                describe(src),
                describe(dst),
                loop_path(&names)
            ),
        )
        .with_help(format!(
            "this rule sends them from `{}` back to `{}`, where they started; change a rule on the loop so they leave it",
            net.node(last_from).name,
            net.node(last_to).name
        ));
    for (i, (from, to, span)) in order[..order.len() - 1].iter().enumerate() {
        if let (true, Some(span)) = (shown(i, order.len()), span) {
            d = d.with_related(
                *span,
                format!(
                    "hop {}: {} → {}",
                    i + 1,
                    net.node(*from).name,
                    net.node(*to).name
                ),
            );
        }
    }
    report.push(d);
}

/// `a → b → c → a`; a loop through more than [`SHOWN`] daemons by the ones [`shown`], with
/// how many it passes.
fn loop_path(names: &[&str]) -> String {
    let len = names.len();
    let mut path: Vec<String> = Vec::with_capacity(SHOWN + 2);
    for (i, name) in names.iter().enumerate() {
        if shown(i, len) {
            path.push(name.to_string());
        } else if shown(i - 1, len) {
            path.push(format!("… {} more …", len - SHOWN));
        }
    }
    path.push(names[0].to_string());
    let path = path.join(" → ");
    match len > SHOWN {
        true => format!("{path} ({len} daemons)"),
        false => path,
    }
}
