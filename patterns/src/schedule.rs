//! The communication phase of a superstep as rounds of transfers between neighbours. Pure.
//!
//! Every operation travels only over edges of the topology, so what VTTIF infers from the
//! traffic is the topology (for a reduction: the spanning tree of it that carries data).
//! A round's transfers depend only on what ranks held after the previous round, and a rank
//! sends all of a round's transfers before it waits for the round's receipts; as every
//! receipt of round r is a send of round r, no rank ever waits for a rank that waits for it,
//! so a schedule that passes [`Schedule::check`] cannot deadlock.

use crate::topology::Graph;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::str::FromStr;

/// What the ranks do in each communication phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Every rank sends a message to each neighbour and receives one from each.
    Exchange,
    /// An all-reduce (byte-wise sum) up a spanning tree of the topology to rank 0 and the
    /// result back down.
    Reduce,
    /// Every rank sends a distinct message to every other rank, forwarded hop by hop along
    /// shortest paths of the topology.
    AllToAll,
}

impl FromStr for Operation {
    type Err = String;
    fn from_str(s: &str) -> Result<Operation, String> {
        match s {
            "exchange" | "neighbour-exchange" | "neighbor-exchange" => Ok(Operation::Exchange),
            "reduce" | "reduction" => Ok(Operation::Reduce),
            "all-to-all" | "alltoall" => Ok(Operation::AllToAll),
            _ => Err(format!(
                "unknown operation `{s}`: use exchange, reduce or all-to-all"
            )),
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Exchange => "exchange",
            Operation::Reduce => "reduce",
            Operation::AllToAll => "all-to-all",
        })
    }
}

/// One message-sized piece of data inside a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Item {
    /// Data made by `origin` for `dest` (exchange and all-to-all).
    Direct { origin: u32, dest: u32 },
    /// The reduction of the subtree rooted at the sender, travelling up to its parent.
    Partial,
    /// The reduction of all ranks, travelling down from rank 0.
    Total,
}

/// What one rank sends to a neighbour in one round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub from: usize,
    pub to: usize,
    pub items: Vec<Item>,
}

/// The rounds of one communication phase, for all ranks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    pub ranks: usize,
    pub rounds: Vec<Vec<Transfer>>,
}

/// One rank's part of a round: what it sends to whom and what it receives from whom.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RankRound {
    pub sends: Vec<(usize, Vec<Item>)>,
    pub receives: Vec<(usize, Vec<Item>)>,
}

impl Schedule {
    pub fn new(graph: &Graph, op: Operation) -> Schedule {
        let rounds = match op {
            Operation::Exchange => vec![exchange(graph)],
            Operation::Reduce => reduce(graph),
            Operation::AllToAll => all_to_all(graph),
        };
        Schedule {
            ranks: graph.ranks(),
            rounds,
        }
    }

    /// The rounds as rank `rank` sees them.
    pub fn for_rank(&self, rank: usize) -> Vec<RankRound> {
        self.rounds
            .iter()
            .map(|round| RankRound {
                sends: round
                    .iter()
                    .filter(|t| t.from == rank)
                    .map(|t| (t.to, t.items.clone()))
                    .collect(),
                receives: round
                    .iter()
                    .filter(|t| t.to == rank)
                    .map(|t| (t.from, t.items.clone()))
                    .collect(),
            })
            .collect()
    }

    /// The ranks `rank` exchanges data with, in either direction.
    pub fn partners(&self, rank: usize) -> Vec<usize> {
        let mut p: Vec<usize> = self
            .rounds
            .iter()
            .flatten()
            .filter_map(|t| match (t.from == rank, t.to == rank) {
                (true, _) => Some(t.to),
                (_, true) => Some(t.from),
                _ => None,
            })
            .collect();
        p.sort_unstable();
        p.dedup();
        p
    }

    /// Every (sender, receiver) pair that carries data in a superstep, sorted.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        let mut p: Vec<_> = self
            .rounds
            .iter()
            .flatten()
            .map(|t| (t.from, t.to))
            .collect();
        p.sort_unstable();
        p.dedup();
        p
    }

    /// Frames (transfers) received by `rank` in one superstep.
    pub fn frames_received(&self, rank: usize) -> usize {
        self.rounds
            .iter()
            .flatten()
            .filter(|t| t.to == rank)
            .count()
    }

    /// The largest number of items in one transfer: what bounds a frame's size.
    pub fn max_items(&self) -> usize {
        let t = self.rounds.iter().flatten();
        t.map(|t| t.items.len()).max().unwrap_or(0)
    }
}

fn exchange(graph: &Graph) -> Vec<Transfer> {
    let mut round = Vec::new();
    for (i, ns) in graph.neighbours.iter().enumerate() {
        for &j in ns {
            let items = vec![Item::Direct {
                origin: i as u32,
                dest: j as u32,
            }];
            round.push(Transfer {
                from: i,
                to: j,
                items,
            });
        }
    }
    round
}

/// Breadth-first parents from `root` (neighbours visited in order, so it is deterministic)
/// and depths; the root is its own parent.
pub fn bfs(graph: &Graph, root: usize) -> (Vec<usize>, Vec<usize>) {
    let n = graph.ranks();
    let mut parent = vec![usize::MAX; n];
    let mut depth = vec![0; n];
    parent[root] = root;
    let mut queue = VecDeque::from([root]);
    while let Some(v) = queue.pop_front() {
        for &w in &graph.neighbours[v] {
            if parent[w] == usize::MAX {
                parent[w] = v;
                depth[w] = depth[v] + 1;
                queue.push_back(w);
            }
        }
    }
    (parent, depth)
}

fn reduce(graph: &Graph) -> Vec<Vec<Transfer>> {
    let (parent, depth) = bfs(graph, 0);
    let height = depth.iter().copied().max().unwrap_or(0);
    let (depth, parent) = (&depth, &parent);
    let at = |level: usize| (1..graph.ranks()).filter(move |&v| depth[v] == level);
    let up = (1..=height).rev().map(move |level| {
        at(level)
            .map(|v| Transfer {
                from: v,
                to: parent[v],
                items: vec![Item::Partial],
            })
            .collect()
    });
    let down = (1..=height).map(move |level| {
        at(level)
            .map(|v| Transfer {
                from: parent[v],
                to: v,
                items: vec![Item::Total],
            })
            .collect()
    });
    up.chain(down).collect()
}

fn all_to_all(graph: &Graph) -> Vec<Vec<Transfer>> {
    let n = graph.ranks();
    // toward[d][s]: the next hop from s on a shortest path to d.
    let toward: Vec<Vec<usize>> = (0..n).map(|d| bfs(graph, d).0).collect();
    let mut hops: BTreeMap<(usize, usize, usize), Vec<Item>> = BTreeMap::new();
    for origin in 0..n {
        for dest in (0..n).filter(|&d| d != origin) {
            let item = Item::Direct {
                origin: origin as u32,
                dest: dest as u32,
            };
            let (mut at, mut round) = (origin, 0);
            while at != dest {
                let next = toward[dest][at];
                hops.entry((round, at, next)).or_default().push(item);
                (at, round) = (next, round + 1);
            }
        }
    }
    let rounds = hops.keys().map(|k| k.0 + 1).max().unwrap_or(0);
    let mut out: Vec<Vec<Transfer>> = vec![Vec::new(); rounds];
    for ((round, from, to), items) in hops {
        out[round].push(Transfer { from, to, items });
    }
    out
}

impl Schedule {
    /// Checks what makes the schedule runnable: transfers only between distinct neighbours,
    /// at most one per (sender, receiver) and round, and every item is held by its sender
    /// when the round starts (so nobody waits for data it must first receive in the same
    /// round). Used by the tests for every topology and operation.
    pub fn check(&self, graph: &Graph) -> Result<(), String> {
        let mut holds = Holdings::new(self.ranks, graph);
        for (r, round) in self.rounds.iter().enumerate() {
            let mut seen = std::collections::BTreeSet::new();
            for t in round {
                if t.from == t.to || !graph.neighbours[t.from].contains(&t.to) {
                    return Err(format!("round {r}: {}->{} is not an edge", t.from, t.to));
                }
                if !seen.insert((t.from, t.to)) {
                    return Err(format!("round {r}: two transfers {}->{}", t.from, t.to));
                }
                for item in &t.items {
                    if !holds.has(t.from, item) {
                        return Err(format!("round {r}: {} sends {item:?} it lacks", t.from));
                    }
                }
            }
            for t in round {
                holds.deliver(t);
            }
        }
        Ok(())
    }
}

/// What each rank holds while a schedule runs (for [`Schedule::check`]).
struct Holdings {
    direct: Vec<std::collections::BTreeSet<(u32, u32)>>,
    partial_missing: Vec<usize>,
    has_total: Vec<bool>,
}

impl Holdings {
    fn new(n: usize, graph: &Graph) -> Holdings {
        let (parent, _) = bfs(graph, 0);
        let mut children = vec![0; n];
        for v in 1..n {
            children[parent[v]] += 1;
        }
        let mine = |o: usize| (0..n).map(move |d| (o as u32, d as u32));
        Holdings {
            direct: (0..n).map(|o| mine(o).collect()).collect(),
            has_total: (0..n).map(|v| v == 0 && children[0] == 0).collect(),
            partial_missing: children,
        }
    }

    fn has(&self, rank: usize, item: &Item) -> bool {
        match *item {
            Item::Direct { origin, dest } => self.direct[rank].contains(&(origin, dest)),
            Item::Partial => self.partial_missing[rank] == 0,
            Item::Total => self.has_total[rank],
        }
    }

    fn deliver(&mut self, t: &Transfer) {
        for item in &t.items {
            match *item {
                Item::Direct { origin, dest } => {
                    self.direct[t.from].remove(&(origin, dest));
                    self.direct[t.to].insert((origin, dest));
                }
                Item::Partial => {
                    self.partial_missing[t.to] -= 1;
                    if t.to == 0 && self.partial_missing[0] == 0 {
                        self.has_total[0] = true;
                    }
                }
                Item::Total => self.has_total[t.to] = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::Topology;

    const ALL: [(&str, usize); 9] = [
        ("bus", 6),
        ("ring", 7),
        ("mesh:3x3", 9),
        ("torus:4x2", 8),
        ("torus:2x2x2", 8),
        ("hypercube", 16),
        ("tree", 10),
        ("all-to-all", 5),
        ("ring", 1),
    ];
    const OPS: [Operation; 3] = [Operation::Exchange, Operation::Reduce, Operation::AllToAll];

    fn graph(t: &str, n: usize) -> Graph {
        t.parse::<Topology>().unwrap().graph(n).unwrap()
    }

    #[test]
    fn every_schedule_is_runnable() {
        for (t, n) in ALL {
            let g = graph(t, n);
            for op in OPS {
                Schedule::new(&g, op)
                    .check(&g)
                    .unwrap_or_else(|e| panic!("{t} {op}: {e}"));
            }
        }
    }

    #[test]
    fn every_send_has_the_matching_receive() {
        for (t, n) in ALL {
            let g = graph(t, n);
            for op in OPS {
                let s = Schedule::new(&g, op);
                let plans: Vec<_> = (0..n).map(|r| s.for_rank(r)).collect();
                for (r, plan) in plans.iter().enumerate() {
                    for (k, round) in plan.iter().enumerate() {
                        for (to, items) in &round.sends {
                            let back = &plans[*to][k].receives;
                            assert!(back.contains(&(r, items.clone())), "{t} {op} {r}->{to}");
                        }
                        for (from, items) in &round.receives {
                            let there = &plans[*from][k].sends;
                            assert!(there.contains(&(r, items.clone())), "{t} {op} {from}->{r}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn exchange_is_one_round_over_every_edge_both_ways() {
        let g = graph("torus:3x3", 9);
        let s = Schedule::new(&g, Operation::Exchange);
        assert_eq!(s.rounds.len(), 1);
        assert_eq!(s.pairs().len(), 2 * g.edges().len());
        assert_eq!(s.partners(4), g.neighbours[4]);
    }

    #[test]
    fn all_to_all_delivers_every_pair_exactly_once_in_diameter_rounds() {
        for (t, n, diameter) in [
            ("ring", 8, 4),
            ("bus", 5, 4),
            ("hypercube", 8, 3),
            ("all-to-all", 6, 1),
        ] {
            let g = graph(t, n);
            let s = Schedule::new(&g, Operation::AllToAll);
            assert_eq!(s.rounds.len(), diameter, "{t}");
            let mut arrived = std::collections::BTreeMap::new();
            for t in s.rounds.iter().flatten() {
                for item in &t.items {
                    if let Item::Direct { origin, dest } = *item {
                        if dest as usize == t.to {
                            *arrived.entry((origin, dest)).or_insert(0) += 1;
                        }
                    }
                }
            }
            assert_eq!(arrived.len(), n * (n - 1), "{t}");
            assert!(arrived.values().all(|&c| c == 1), "{t}");
            // Only topology edges carry traffic, and on these topologies all of them do.
            assert_eq!(s.pairs().len(), 2 * g.edges().len(), "{t}");
        }
    }

    #[test]
    fn reduce_goes_up_the_tree_and_back_down() {
        // A binary tree of 7: height 2, so 2 rounds up and 2 down.
        let g = graph("tree", 7);
        let s = Schedule::new(&g, Operation::Reduce);
        assert_eq!(s.rounds.len(), 4);
        let first: Vec<_> = s.rounds[0].iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(first, vec![(3, 1), (4, 1), (5, 2), (6, 2)]);
        let last: Vec<_> = s.rounds[3].iter().map(|t| (t.from, t.to)).collect();
        assert_eq!(last, vec![(1, 3), (1, 4), (2, 5), (2, 6)]);
        // On a hypercube the BFS tree is the binomial tree: rank 0 has log2 n children.
        let h = Schedule::new(&graph("hypercube", 8), Operation::Reduce);
        assert_eq!(
            h.for_rank(0)
                .iter()
                .map(|r| r.receives.len())
                .sum::<usize>(),
            3
        );
        assert_eq!(h.pairs().len(), 2 * 7, "a spanning tree of 8 has 7 edges");
    }

    #[test]
    fn a_single_rank_has_nothing_to_send() {
        let g = graph("ring", 1);
        for op in OPS {
            assert!(Schedule::new(&g, op).pairs().is_empty());
        }
    }

    #[test]
    fn check_rejects_a_broken_schedule() {
        let g = graph("ring", 4);
        let mut s = Schedule::new(&g, Operation::Reduce);
        s.rounds.reverse(); // totals before partials
        assert!(s.check(&g).is_err());
        let mut s = Schedule::new(&g, Operation::Exchange);
        s.rounds[0][0].to = 2; // 0 and 2 are not neighbours on a ring of 4
        assert!(s.check(&g).unwrap_err().contains("not an edge"));
    }
}
