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
//!   from above cheaply ([`Net::bound`]); a loop of any class `(s, d)` is a cycle of `U(d)`.
//! - `U(other)` is checked whole. For a named destination `d`, only the daemons whose rules
//!   name `d` decide differently from `U(other)`, so only cycles through them are new: the
//!   search starts from them and visits what they reach.
//! - A component of `U(d)` with a long cycle is then confirmed class by class with exact
//!   decisions ([`Net::dec`]), which is where the loop's hops and rules come from.

use super::net::{FxBuild, Local, Net, NodeId};
use super::scc::Scc;
use super::{describe, Reporter};
use crate::diag::{Code, Diagnostic};
use std::collections::{HashMap, HashSet};

/// Node visits allowed for confirming loops class by class: bounds adversarial files whose
/// bounding graphs are dense with cycles that no single class has.
const WORK_LIMIT: usize = 20_000_000;

pub(super) fn find_loops(net: &Net, report: &mut Reporter) {
    let mut search = Search {
        net,
        scc: Scc::new(net.len()),
        seen: HashSet::default(),
        work: 0,
    };
    let nodes = net.len() as NodeId;
    // The bounds of U(other), every daemon's in one array (`other_at` says where each is):
    // a vector per daemon would be an allocation per daemon.
    let mut other_edges: Vec<NodeId> = Vec::new();
    let mut other_at: Vec<usize> = Vec::with_capacity(net.len() + 1);
    other_at.push(0);
    for n in 0..nodes {
        net.bound_into(n, None, &mut other_edges);
        other_at.push(other_edges.len());
    }
    let other = |v: NodeId| &other_edges[other_at[v as usize]..other_at[v as usize + 1]];
    let (components, _) = search.scc.long_cycle_components(0..nodes, other);
    let mut in_suspect = vec![false; net.len()];
    for component in &components {
        for &n in component {
            in_suspect[n as usize] = true;
        }
        search.confirm(component, None, report);
    }
    for &dst in &net.dsts {
        if search.exhausted(report) {
            return;
        }
        let Some(namers) = net.dst_namers.get(&dst) else {
            continue;
        };
        let changed: HashMap<NodeId, Vec<NodeId>, FxBuild> = namers
            .iter()
            .map(|&n| (n, net.bound(n, Some(dst))))
            .collect();
        // A cycle through no changed daemon is a cycle of U(other), already searched, unless
        // it runs through a daemon that names `dst` inside a suspect component of U(other).
        let roots: Vec<NodeId> = namers
            .iter()
            .copied()
            .filter(|n| {
                in_suspect[*n as usize] || changed.get(n).map(Vec::as_slice) != Some(other(*n))
            })
            .collect();
        if roots.is_empty() {
            continue;
        }
        let adj = |v: NodeId| changed.get(&v).map_or_else(|| other(v), Vec::as_slice);
        let (components, visited) = search.scc.long_cycle_components(roots, adj);
        search.work += visited;
        for component in components
            .iter()
            .filter(|c| c.iter().any(|n| changed.contains_key(n)))
        {
            search.confirm(component, Some(dst), report);
        }
    }
}

struct Search<'n, 's> {
    net: &'n Net<'s>,
    scc: Scc,
    /// Loops already reported, as their node cycles rotated to start at the smallest node.
    seen: HashSet<Vec<NodeId>, FxBuild>,
    work: usize,
}

impl Search<'_, '_> {
    fn exhausted(&self, report: &Reporter) -> bool {
        self.work > WORK_LIMIT || report.full()
    }

    /// Finds the real loops inside a component of a bounding graph, class by class: first the
    /// sources no rule in it names, then each source it names (only the daemons naming that
    /// source decide differently, so the search starts from them).
    fn confirm(&mut self, component: &[NodeId], dst: Local, report: &mut Reporter) {
        let net = self.net;
        let mut sources: Vec<_> = component
            .iter()
            .flat_map(|&n| net.node(n).srcs.iter().copied())
            .collect();
        sources.sort_unstable();
        sources.dedup();
        let members: HashSet<NodeId, FxBuild> = component.iter().copied().collect();
        let base = self.class_graph(component, None, dst, &members);
        self.search_class(
            component.iter().copied(),
            &base,
            &HashMap::default(),
            None,
            dst,
            report,
        );
        for src in sources {
            if self.exhausted(report) {
                return;
            }
            let namers: Vec<NodeId> = component
                .iter()
                .copied()
                .filter(|&n| net.node(n).names_src(src))
                .collect();
            let changed = self.class_graph(&namers, Some(src), dst, &members);
            self.search_class(
                namers.iter().copied(),
                &base,
                &changed,
                Some(src),
                dst,
                report,
            );
        }
    }

    /// The exact edges of the class (src, dst) out of `nodes`, kept inside the component.
    fn class_graph(
        &self,
        nodes: &[NodeId],
        src: Local,
        dst: Local,
        members: &HashSet<NodeId, FxBuild>,
    ) -> HashMap<NodeId, Vec<NodeId>, FxBuild> {
        nodes
            .iter()
            .map(|&n| {
                let dec = self.net.dec_global(n, src, dst);
                let peers = dec
                    .links
                    .iter()
                    .map(|(p, _)| *p)
                    .filter(|p| members.contains(p))
                    .collect();
                (n, peers)
            })
            .collect()
    }

    fn search_class(
        &mut self,
        roots: impl IntoIterator<Item = NodeId>,
        base: &HashMap<NodeId, Vec<NodeId>, FxBuild>,
        changed: &HashMap<NodeId, Vec<NodeId>, FxBuild>,
        src: Local,
        dst: Local,
        report: &mut Reporter,
    ) {
        const NONE: &[NodeId] = &[];
        let adj = |v: NodeId| {
            changed
                .get(&v)
                .or_else(|| base.get(&v))
                .map_or(NONE, Vec::as_slice)
        };
        let (components, visited) = self.scc.long_cycle_components(roots, adj);
        self.work += visited;
        for component in components {
            let Some(cycle) = self.scc.cycle_in(&component, adj) else {
                continue;
            };
            let mut key = cycle.clone();
            let smallest = key
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| **n)
                .map_or(0, |(i, _)| i);
            key.rotate_left(smallest);
            if self.seen.insert(key) {
                self.report_loop(&cycle, src, dst, report);
            }
        }
    }

    /// One V111: the primary span is the hop rule written last in the file (the one that
    /// closes the cycle), the other hops are related spans in the order a frame takes them.
    fn report_loop(&self, cycle: &[NodeId], src: Local, dst: Local, report: &mut Reporter) {
        let net = self.net;
        let hops: Vec<(NodeId, NodeId, Option<crate::span::Span>)> = (0..cycle.len())
            .map(|i| {
                let (from, to) = (cycle[i], cycle[(i + 1) % cycle.len()]);
                let rule = net
                    .dec_global(from, src, dst)
                    .rule_to(to)
                    .map(|index| net.rule_id(from, index));
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
        let path = format!("{} → {}", names.join(" → "), names[0]);
        let (last_from, last_to, Some(primary)) = order[order.len() - 1] else {
            return;
        };
        let mut d = Diagnostic::new(
            Code::V111,
            primary,
            format!(
                "forwarding loop: frames from {} to {} go round {path}",
                describe(src),
                describe(dst)
            ),
        )
        .with_help(format!(
            "this rule sends them from `{}` back to `{}`, where they started; change a rule on the loop so they leave it",
            net.node(last_from).name,
            net.node(last_to).name
        ));
        for (i, (from, to, span)) in order[..order.len() - 1].iter().enumerate() {
            if let Some(span) = span {
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
}
