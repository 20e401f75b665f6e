//! Forwarding analysis over the folded state: loops (V111), rules that never fire (V205) and
//! black holes (V206).
//!
//! Every decision comes from the model's [`Table`](crate::model::Table), the same code the
//! daemon and `vnetc route` forward with. Rules whose link is missing (V106) stay in the tables
//! (they still outrank other rules on the daemon) but send nothing and are not reported again.

mod holes;
mod loops;
mod memo;
mod net;
mod outranked;
mod scc;

use super::fold::Origins;
use super::named::Named;
use crate::diag::{Diagnostic, MAX_DIAGNOSTICS};
use crate::model::State;
use crate::span::Span;
pub use memo::FlowMemo;
use net::{Local, Net};

/// The flow analysis of a state whose names the fold numbered (`named`).
pub(super) fn check_flow(state: &State, origins: &Origins, named: &Named) -> Vec<Diagnostic> {
    if state.rules.is_empty() {
        return Vec::new();
    }
    analyse(&Net::named(state, named), origins, None, false).0
}

/// The flow analysis of `state`, re-run only for the daemons and classes that changed since
/// the analysis `previous` was kept from (see `memo.rs`); with what to keep for the next one
/// when `keep` says so. The diagnostics are those [`check_flow`] gives.
pub(super) fn check_flow_again(
    state: &State,
    origins: &Origins,
    previous: Option<FlowMemo>,
    keep: bool,
) -> (Vec<Diagnostic>, Option<FlowMemo>) {
    if state.rules.is_empty() {
        return (Vec::new(), None);
    }
    analyse(&Net::new(state), origins, previous, keep)
}

fn analyse(
    net: &Net,
    origins: &Origins,
    previous: Option<FlowMemo>,
    keep: bool,
) -> (Vec<Diagnostic>, Option<FlowMemo>) {
    let (walk, loops) = previous
        .and_then(|memo| memo::rerun(net, memo))
        .unwrap_or_else(|| {
            let walk = holes::walk(net);
            (walk, loops::find_loops(net, None, &mut |_, _| None))
        });
    let mut report = Reporter {
        origins,
        diagnostics: Vec::new(),
    };
    loops::report_loops(net, &loops, &mut report);
    outranked::find_outranked(net, &walk, &mut report);
    holes::find_black_holes(net, &walk, &mut report);
    let memo = keep.then(|| FlowMemo::new(net, walk, loops)).flatten();
    (report.diagnostics, memo)
}

/// Collects the flow diagnostics and knows where things were written.
struct Reporter<'o> {
    origins: &'o Origins,
    diagnostics: Vec<Diagnostic>,
}

impl Reporter<'_> {
    fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Enough found: the front ends show the first [`MAX_DIAGNOSTICS`] and a note counting the
    /// rest, so keep counting well past the cap (the note stays exact up to ten times it) but
    /// not forever: a file with a black hole per rule would otherwise format every one.
    fn full(&self) -> bool {
        self.diagnostics.len() >= 10 * MAX_DIAGNOSTICS
    }

    /// Where the rule at position `id` of the state was written.
    fn rule_span(&self, id: u32) -> Option<Span> {
        self.origins.rule(id as usize).map(|o| o.span)
    }

    /// Where the host of a place in `State::hosts` was declared.
    fn host_span(&self, host: Option<usize>) -> Option<Span> {
        self.origins.host(host?)
    }
}

/// A class of addresses in a message: a MAC, or every address no rule names.
fn describe(class: Local) -> String {
    match class {
        Some(mac) => mac.to_string(),
        None => "any other MAC".to_string(),
    }
}

/// Brute force against the incremental analyses: every global class (each named MAC and one
/// unnamed address, as source and destination) decided at every daemon, on random programs.
#[cfg(test)]
mod brute {
    use super::net::{NodeId, Tgt};
    use super::*;
    use crate::diag::Code;
    use crate::mac::Mac;
    use crate::model::Decision;
    use std::collections::HashSet;

    /// A tiny deterministic generator (xorshift), so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const MACS: [&str; 3] = [
        "00:00:00:00:00:01",
        "00:00:00:00:00:02",
        "ff:ff:ff:ff:ff:ff",
    ];

    fn field(rng: &mut Rng, dst: bool) -> String {
        let mac = MACS[rng.next(MACS.len())];
        match rng.next(if dst { 4 } else { 3 }) {
            0 => mac.to_string(),
            1 => format!("NOT {mac}"),
            2 => "ANY".to_string(),
            _ => "NONE".to_string(),
        }
    }

    fn random_program(rng: &mut Rng) -> String {
        let daemons = 2 + rng.next(6);
        let mut text = String::from("BEGIN\n");
        for d in 0..daemons {
            text.push_str(&format!("HOST u AT d{d} 1 i{d}\n"));
        }
        text.push_str("ADD\n");
        for a in 0..daemons {
            for b in a + 1..daemons {
                if rng.next(3) > 0 {
                    text.push_str(&format!("    LINK TCP d{a} d{a} d{b}\n"));
                }
            }
        }
        for _ in 0..rng.next(24) {
            let (d, src, dst) = (rng.next(daemons), field(rng, false), field(rng, true));
            let peer = rng.next(daemons + 1);
            if peer == d || peer == daemons {
                text.push_str(&format!("    FORWARD INTERFACE d{d} {src} {dst} i{d}\n"));
            } else {
                text.push_str(&format!("    FORWARD EDGE d{d} {src} {dst} d{d} d{peer}\n"));
            }
        }
        text.push_str("END\n");
        text
    }

    /// Every global class: sources and destinations named anywhere, and one unnamed address.
    fn classes(net: &Net) -> (Vec<Mac>, Vec<Mac>) {
        let mut srcs: Vec<Mac> = net.nodes.iter().flat_map(|n| n.srcs.clone()).collect();
        srcs.push(net.other);
        net::sort_macs(&mut srcs);
        let mut dsts = net.dsts.clone();
        dsts.push(net.other);
        net::sort_macs(&mut dsts);
        (srcs, dsts)
    }

    fn links(net: &Net, n: NodeId, decision: &Decision) -> Vec<(NodeId, u32)> {
        let mut out: Vec<(NodeId, u32)> = Vec::new();
        for (peer, index) in net.links_of(n, decision) {
            if !out.iter().any(|(p, _)| *p == peer) {
                out.push((peer, index));
            }
        }
        out
    }

    /// Whether a frame of this class, entering at some daemon's interface, comes back to a
    /// daemon: a depth-first walk of every branch with split horizon (the daemon's semantics).
    fn loops_for(net: &Net, src: Mac, dst: Mac) -> bool {
        fn go(net: &Net, path: &mut Vec<NodeId>, from: Option<NodeId>, src: Mac, dst: Mac) -> bool {
            let Some(&here) = path.last() else {
                return false;
            };
            let decision = net.node(here).table.decide(src, dst);
            for (peer, _) in links(net, here, &decision) {
                if Some(peer) == from {
                    continue;
                }
                if path.contains(&peer) {
                    return true;
                }
                path.push(peer);
                let found = go(net, path, Some(here), src, dst);
                path.pop();
                if found {
                    return true;
                }
            }
            false
        }
        (0..net.len() as NodeId).any(|entry| go(net, &mut vec![entry], None, src, dst))
    }

    #[test]
    fn incremental_analyses_agree_with_brute_force() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for case in 0..4000 {
            let text = random_program(&mut rng);
            cross_check(&format!("case {case}"), &text);
        }
    }

    /// The generator's topology shapes, small, each damaged at random (rules dropped, fields
    /// widened to `ANY`/`NONE`, targets turned round) so that they have loops, dead rules and
    /// black holes of those shapes to find.
    #[test]
    fn shapes_agree_with_brute_force() {
        use crate::gen::{Field, Shape, Stmt};
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let mut totals = [0usize; 3];
        for shape in Shape::ALL {
            for case in 0..12 {
                // Small enough for the brute force, and loops shorter than the route
                // simulation's hop limit (a ring of singles is one loop through every daemon).
                let rules = match shape {
                    Shape::Singles => 6 + rng.next(9),
                    _ => 20 + rng.next(20),
                };
                let mut program = shape.generate(rules);
                if case > 0 {
                    program.rules.retain(|_| rng.next(8) > 0);
                    let mut extra = Vec::new();
                    for rule in &mut program.rules {
                        let roll = rng.next(12);
                        // The same rule for any destination: the default one never fires.
                        if let (
                            3,
                            Stmt::Edge {
                                dst: Field::None, ..
                            },
                        ) = (roll, &rule)
                        {
                            let mut wider = rule.clone();
                            if let Stmt::Edge { dst, .. } = &mut wider {
                                *dst = Field::Any;
                            }
                            extra.push(wider);
                        }
                        match rule {
                            Stmt::Edge {
                                src,
                                dst,
                                daemon,
                                peer,
                            } => match roll {
                                0 => *src = Field::Any,
                                1 => *dst = Field::None,
                                2 => std::mem::swap(daemon, peer),
                                _ => {}
                            },
                            Stmt::Interface { src, .. } if roll == 0 => *src = Field::Any,
                            _ => {}
                        }
                    }
                    program.rules.extend(extra);
                }
                let found =
                    cross_check(&format!("{} case {case}", shape.name()), &program.to_vnet());
                totals = [0, 1, 2].map(|i| totals[i] + found[i]);
            }
        }
        // The damage must have made something to find, or the agreement proves little.
        assert!(
            totals.iter().all(|t| *t > 0),
            "loops, dead rules, holes: {totals:?}"
        );
    }

    /// The net built from the fold's numbered names is the one built from the state's strings:
    /// the same daemons in the same order, with the same tables and targets (links that
    /// exist and links that do not, interfaces), on random programs and damaged shapes.
    #[test]
    fn the_folds_names_give_the_net_of_the_state() {
        let mut rng = Rng(0x5851_f42d_4c95_7f2d);
        let mut texts: Vec<String> = (0..300).map(|_| random_program(&mut rng)).collect();
        for shape in crate::gen::Shape::ALL {
            let mut program = shape.generate(40);
            program.rules.retain(|_| rng.next(6) > 0);
            program.links.retain(|_| rng.next(6) > 0);
            texts.push(program.to_vnet());
        }
        for text in &texts {
            let parsed = crate::parse(text);
            let (state, _, _, named) =
                crate::check::fold::fold(&parsed.file, &crate::model::State::default());
            let (a, b) = (Net::named(&state, &named), Net::new(&state));
            assert_eq!(a.len(), b.len(), "{text}");
            for n in 0..a.len() as NodeId {
                let (x, y) = (a.node(n), b.node(n));
                assert_eq!(x.name, y.name, "{text}");
                assert_eq!(a.host(n), b.host(n), "{text}");
                let rules = |net: &Net, n| -> Vec<_> {
                    let table = &net.node(n).table;
                    table
                        .iter()
                        .map(|(i, s, d, t)| (net.rule_id(n, i), s, d, *t))
                        .collect()
                };
                assert_eq!(rules(&a, n), rules(&b, n), "{text}");
            }
        }
    }

    /// Every class of frames decided at every daemon, against the analysis' diagnostics; returns
    /// how many V111, V205 and V206 there were.
    fn cross_check(case: &str, text: &str) -> [usize; 3] {
        let analysis = crate::analyze(text);
        let net = Net::new(&analysis.state);
        let (srcs, dsts) = classes(&net);
        let mut fired: HashSet<(NodeId, u32)> = HashSet::new();
        let mut holes: HashSet<(NodeId, u32, NodeId)> = HashSet::new();
        let mut any_loop = false;
        for &s in &srcs {
            for &d in &dsts {
                let looped = loops_for(&net, s, d);
                any_loop |= looped;
                let routed = analysis.state.hosts.iter().any(|h| {
                    crate::route::route(&analysis.state, &h.machine, s, d)
                        .summary
                        .loops
                        > 0
                });
                assert_eq!(routed, looped, "{case}: route loops for {s} → {d}\n{text}");
                for a in 0..net.len() as NodeId {
                    let decision = net.node(a).table.decide(s, d);
                    fired.extend(decision.rules.iter().map(|i| (a, *i)));
                    if d == net.other {
                        continue;
                    }
                    for (b, index) in links(&net, a, &decision) {
                        if net.node(b).table.decide(s, d).rules.is_empty() {
                            holes.insert((a, index, b));
                        }
                    }
                }
            }
        }
        let count = |code: Code| {
            analysis
                .diagnostics
                .iter()
                .filter(|d| d.code == code)
                .count()
        };
        let never: usize = (0..net.len() as NodeId)
            .map(|n| {
                let node = net.node(n);
                node.table
                    .iter()
                    .filter(|(i, _, _, t)| {
                        !matches!(t, Tgt::Missing(_)) && !fired.contains(&(n, *i))
                    })
                    .count()
            })
            .sum();
        assert_eq!(count(Code::V205), never, "{case}: V205\n{text}");
        assert_eq!(count(Code::V206), holes.len(), "{case}: V206\n{text}");
        assert_eq!(count(Code::V111) > 0, any_loop, "{case}: V111\n{text}");
        [count(Code::V111), never, holes.len()]
    }
}

/// The work limits hold on a shape that needs sources times destinations of work.
#[cfg(test)]
mod limits {
    use super::*;
    use crate::gen::Shape;

    #[test]
    fn a_daemon_whose_rules_each_exclude_a_destination_is_analysed_within_the_limits() {
        // 5,000 sources times 5,000 destinations at one daemon: 25 M decisions.
        let text = Shape::Excluding.generate(10_000).to_vnet();
        let analysis = crate::analyze(&text);
        assert!(
            analysis.diagnostics.is_empty(),
            "{:?}",
            analysis.diagnostics
        );
        let net = Net::new(&analysis.state);
        let walk = holes::walk(&net);
        let decided = walk.classes().decided(0..walk.classes().len());
        assert!(!walk.complete(&net), "{decided} decisions");
        // The daemon past the limit was counted, not walked: no decision was made for it.
        assert_eq!(decided, 0);
        // Its bounds read its one peer, not its 5,000 rules, once per destination: the loop
        // search covers every destination.
        let loops = loops::find_loops(&net, None, &mut |_, _| None);
        assert!(!loops.exhausted(&net));
        assert!(loops.work() <= 4 * net.rules.len(), "{}", loops.work());
        // Below the limits the same shape is analysed whole (and agrees with the brute force:
        // `brute::shapes_agree_with_brute_force`).
        let small = crate::analyze(&Shape::Excluding.generate(400).to_vnet()).state;
        let net = Net::new(&small);
        assert!(holes::walk(&net).complete(&net));
        assert!(!loops::find_loops(&net, None, &mut |_, _| None).exhausted(&net));
    }

    #[test]
    fn destinations_each_sent_down_a_long_chain_stop_the_loop_search_at_its_limit() {
        // 1,500 destinations times a chain of 1,500 daemons: 2.25 M visits, 3,000 rules.
        let (m, n) = (1500, 1500);
        let analysis = crate::analyze(&named_down_a_chain(m, n));
        assert!(
            analysis.diagnostics.is_empty(),
            "{:?}",
            analysis.diagnostics
        );
        let net = Net::new(&analysis.state);
        assert!(holes::walk(&net).complete(&net));
        let loops = loops::find_loops(&net, None, &mut |_, _| None);
        assert!(loops.exhausted(&net));
        // One destination's search past the limit at most: its bound and the chain.
        assert!(
            loops.work() <= loops::work_limit(&net) + n + 2,
            "{}",
            loops.work()
        );
        // A short chain is searched whole.
        let small = crate::analyze(&named_down_a_chain(40, 40)).state;
        let net = Net::new(&small);
        assert!(!loops::find_loops(&net, None, &mut |_, _| None).exhausted(&net));
    }

    /// Daemon 0 sends each of `m` destinations down a chain of `n` daemons, whose last one
    /// takes every frame: each destination's search visits the whole chain.
    fn named_down_a_chain(m: usize, n: usize) -> String {
        use std::fmt::Write;
        let d = |i: usize| format!("d{i:05}");
        let mut text = String::from("BEGIN\n");
        for i in 0..n {
            let _ = writeln!(text, "HOST vnet AT {} 5000 vmnet1", d(i));
        }
        text.push_str("ADD\n");
        for i in 0..n - 1 {
            let _ = writeln!(text, "LINK TCP {a} {a} {b}", a = d(i), b = d(i + 1));
        }
        let _ = writeln!(text, "FORWARD INTERFACE {} ANY NONE vmnet1", d(0));
        for j in 0..m {
            let mac = format!(
                "00:50:56:{:02x}:{:02x}:{:02x}",
                j >> 16,
                (j >> 8) & 0xff,
                j & 0xff
            );
            let _ = writeln!(
                text,
                "FORWARD EDGE {a} ANY {mac} {a} {b}",
                a = d(0),
                b = d(1)
            );
        }
        for i in 1..n - 1 {
            let _ = writeln!(
                text,
                "FORWARD EDGE {a} ANY NONE {a} {b}",
                a = d(i),
                b = d(i + 1)
            );
        }
        let _ = writeln!(text, "FORWARD INTERFACE {} ANY NONE vmnet1", d(n - 1));
        text.push_str("END\n");
        text
    }
}
