//! Strongly connected components and the cycles a frame can really go round.
//!
//! A frame's branch never goes straight back over the link it came in on (split horizon), so a
//! frame can come back to a daemon exactly when the graph of its class has a simple directed
//! cycle of length ≥ 3 (a first revisit closes a simple cycle; length 2 would be a reversal).
//! A strongly connected component holds such a cycle unless all its edges are mutual and, seen
//! as an undirected graph, it is a tree.

use super::net::{FxBuild, NodeId};
use std::collections::{HashMap, VecDeque};

/// The maps of the cycle searches, keyed by node: a loop through every daemon of a large file
/// fills one with all of them.
type NodeMap<V> = HashMap<NodeId, V, FxBuild>;

const UNVISITED: u32 = u32::MAX;

/// Tarjan's algorithm, iterative (no recursion depth limit) and restartable: the arrays are
/// sized once for the whole network and only the visited entries are reset after a run, so a
/// run costs what it visits, not the size of the network.
pub(super) struct Scc {
    index: Vec<u32>,
    low: Vec<u32>,
    on_stack: Vec<bool>,
    stack: Vec<NodeId>,
    touched: Vec<NodeId>,
    call: Vec<(NodeId, usize)>,
    /// Membership stamps for "is this node in the component at hand".
    stamp: Vec<u32>,
    generation: u32,
}

impl Scc {
    pub fn new(nodes: usize) -> Scc {
        Scc {
            index: vec![UNVISITED; nodes],
            low: vec![0; nodes],
            on_stack: vec![false; nodes],
            stack: Vec::new(),
            touched: Vec::new(),
            call: Vec::new(),
            stamp: vec![0; nodes],
            generation: 0,
        }
    }

    /// The components reachable from `roots` that hold a cycle a frame can go round, and the
    /// number of nodes visited (the work done).
    pub fn long_cycle_components<'a>(
        &mut self,
        roots: impl IntoIterator<Item = NodeId>,
        adj: impl Fn(NodeId) -> &'a [NodeId],
    ) -> (Vec<Vec<NodeId>>, usize) {
        let mut components = Vec::new();
        for root in roots {
            if self.index[root as usize] == UNVISITED {
                self.visit(root, &adj, &mut components);
            }
        }
        let visited = self.touched.len();
        for node in self.touched.drain(..) {
            self.index[node as usize] = UNVISITED;
            self.on_stack[node as usize] = false;
        }
        components.retain(|c| self.has_long_cycle(c, &adj));
        (components, visited)
    }

    fn visit<'a>(
        &mut self,
        root: NodeId,
        adj: &impl Fn(NodeId) -> &'a [NodeId],
        out: &mut Vec<Vec<NodeId>>,
    ) {
        self.open(root);
        self.call.push((root, 0));
        while let Some(&(v, pos)) = self.call.last() {
            let edges = adj(v);
            if let Some(&w) = edges.get(pos) {
                if let Some(top) = self.call.last_mut() {
                    top.1 += 1;
                }
                if self.index[w as usize] == UNVISITED {
                    self.open(w);
                    self.call.push((w, 0));
                } else if self.on_stack[w as usize] {
                    self.low[v as usize] = self.low[v as usize].min(self.index[w as usize]);
                }
                continue;
            }
            self.call.pop();
            if let Some(&(parent, _)) = self.call.last() {
                self.low[parent as usize] = self.low[parent as usize].min(self.low[v as usize]);
            }
            if self.low[v as usize] == self.index[v as usize] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w as usize] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                // One node alone has no cycle: there are no links from a daemon to itself.
                if component.len() > 1 {
                    out.push(component);
                }
            }
        }
    }

    fn open(&mut self, v: NodeId) {
        let next = self.touched.len() as u32;
        self.index[v as usize] = next;
        self.low[v as usize] = next;
        self.on_stack[v as usize] = true;
        self.stack.push(v);
        self.touched.push(v);
    }

    /// Marks `nodes` as the current component; `member` then answers in O(1).
    fn mark(&mut self, nodes: &[NodeId]) {
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.stamp.iter_mut().for_each(|s| *s = 0);
            self.generation = 1;
        }
        for &n in nodes {
            self.stamp[n as usize] = self.generation;
        }
    }

    fn member(&self, n: NodeId) -> bool {
        self.stamp[n as usize] == self.generation
    }

    /// Whether a strongly connected component holds a simple cycle of length ≥ 3: it does
    /// unless every edge is mutual and the undirected edges number nodes − 1 (a tree).
    /// Adjacency lists are sorted, so the mutual test is a binary search.
    fn has_long_cycle<'a>(
        &mut self,
        component: &[NodeId],
        adj: &impl Fn(NodeId) -> &'a [NodeId],
    ) -> bool {
        self.mark(component);
        let mut directed = 0usize;
        for &v in component {
            for &w in adj(v) {
                if !self.member(w) {
                    continue;
                }
                if adj(w).binary_search(&v).is_err() {
                    return true;
                }
                directed += 1;
            }
        }
        directed / 2 != component.len() - 1
    }

    /// One simple cycle of length ≥ 3 inside a component that has one, as the list of its
    /// nodes in order (the last one leads back to the first).
    pub fn cycle_in<'a>(
        &mut self,
        component: &[NodeId],
        adj: impl Fn(NodeId) -> &'a [NodeId],
    ) -> Option<Vec<NodeId>> {
        self.mark(component);
        for &u in component {
            for &v in adj(u) {
                if self.member(v) && adj(v).binary_search(&u).is_err() {
                    return self.close_one_way(u, v, component.len(), &adj);
                }
            }
        }
        self.undirected_cycle(component, &adj)
    }

    /// The edge u → v has no reverse, so the shortest path v ⇝ u has at least two hops and,
    /// with the edge, makes a simple cycle of length ≥ 3.
    fn close_one_way<'a>(
        &self,
        u: NodeId,
        v: NodeId,
        size: usize,
        adj: &impl Fn(NodeId) -> &'a [NodeId],
    ) -> Option<Vec<NodeId>> {
        // The search may reach the whole component (of `size` nodes): sized once for it.
        let mut parent: NodeMap<NodeId> =
            NodeMap::with_capacity_and_hasher(size, FxBuild::default());
        let mut queue = VecDeque::from([v]);
        parent.insert(v, v);
        while let Some(x) = queue.pop_front() {
            if x == u {
                let mut path = vec![u];
                let mut at = u;
                while at != v {
                    at = *parent.get(&at)?;
                    path.push(at);
                }
                // path is u, …, v backwards along the BFS tree; the cycle is u → v → … → u.
                path.reverse();
                path.pop();
                path.insert(0, u);
                return Some(path);
            }
            for &y in adj(x) {
                if self.member(y) && !parent.contains_key(&y) {
                    parent.insert(y, x);
                    queue.push_back(y);
                }
            }
        }
        None
    }

    /// Every edge is mutual: a depth-first search of the undirected graph meets a node already
    /// on its path (not its parent) and the path between them is the cycle.
    fn undirected_cycle<'a>(
        &self,
        component: &[NodeId],
        adj: &impl Fn(NodeId) -> &'a [NodeId],
    ) -> Option<Vec<NodeId>> {
        let start = *component.first()?;
        let mut on_path: NodeMap<usize> = NodeMap::default();
        let mut seen: NodeMap<()> = NodeMap::default();
        let mut path: Vec<(NodeId, usize)> = vec![(start, 0)];
        on_path.insert(start, 0);
        seen.insert(start, ());
        while let Some(&(v, pos)) = path.last() {
            let edges = adj(v);
            let Some(&w) = edges.get(pos) else {
                on_path.remove(&v);
                path.pop();
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            let parent = path.len().checked_sub(2).map(|i| path[i].0);
            if !self.member(w) || Some(w) == parent {
                continue;
            }
            if let Some(&at) = on_path.get(&w) {
                return Some(path[at..].iter().map(|(n, _)| *n).collect());
            }
            if seen.insert(w, ()).is_none() {
                on_path.insert(w, path.len());
                path.push((w, 0));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(u32, u32)], n: usize) -> Vec<Vec<u32>> {
        let mut adj = vec![Vec::new(); n];
        for &(a, b) in edges {
            adj[a as usize].push(b);
        }
        adj.iter_mut().for_each(|l| l.sort_unstable());
        adj
    }

    fn cycles(edges: &[(u32, u32)], n: usize) -> Vec<Vec<u32>> {
        let adj = graph(edges, n);
        let mut scc = Scc::new(n);
        let (components, _) = scc.long_cycle_components(0..n as u32, |v| &adj[v as usize]);
        components
            .iter()
            .filter_map(|c| scc.cycle_in(c, |v| &adj[v as usize]))
            .collect()
    }

    fn assert_is_cycle(cycle: &[u32], edges: &[(u32, u32)]) {
        assert!(cycle.len() >= 3, "{cycle:?}");
        for i in 0..cycle.len() {
            let edge = (cycle[i], cycle[(i + 1) % cycle.len()]);
            assert!(edges.contains(&edge), "{edge:?} of {cycle:?}");
        }
        let mut sorted = cycle.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), cycle.len(), "not simple: {cycle:?}");
    }

    #[test]
    fn two_cycles_and_mutual_trees_are_not_loops() {
        assert!(cycles(&[(0, 1), (1, 0)], 2).is_empty());
        let star = [
            (0, 1),
            (1, 0),
            (0, 2),
            (2, 0),
            (0, 3),
            (3, 0),
            (3, 4),
            (4, 3),
        ];
        assert!(cycles(&star, 5).is_empty());
    }

    #[test]
    fn one_way_ring_and_mutual_ring_are_loops() {
        let ring = [(0, 1), (1, 2), (2, 0)];
        let found = cycles(&ring, 3);
        assert_eq!(found.len(), 1);
        assert_is_cycle(&found[0], &ring);
        let both = [
            (0, 1),
            (1, 0),
            (1, 2),
            (2, 1),
            (2, 3),
            (3, 2),
            (3, 0),
            (0, 3),
        ];
        let found = cycles(&both, 4);
        assert_eq!(found.len(), 1);
        assert_is_cycle(&found[0], &both);
    }

    #[test]
    fn a_one_way_edge_beside_a_mutual_pair_closes_a_long_cycle() {
        let edges = [(0, 1), (1, 0), (1, 2), (2, 1), (2, 0)];
        let found = cycles(&edges, 3);
        assert_eq!(found.len(), 1);
        assert_is_cycle(&found[0], &edges);
    }

    #[test]
    fn roots_limit_the_search() {
        let edges = [(0, 1), (1, 2), (2, 0), (3, 4)];
        let adj = graph(&edges, 5);
        let mut scc = Scc::new(5);
        let (components, visited) = scc.long_cycle_components([3], |v| &adj[v as usize]);
        assert!(components.is_empty());
        assert_eq!(visited, 2);
        let (components, _) = scc.long_cycle_components([1], |v| &adj[v as usize]);
        assert_eq!(components.len(), 1);
    }
}
