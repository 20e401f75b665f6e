//! Application topologies: which ranks are neighbours. Pure.

use std::fmt;
use std::str::FromStr;

/// The most ranks a program may have. The routed all-to-all schedule holds every (origin,
/// destination) pair for every hop, so its size grows as n² × diameter; 256 ranks keep a
/// ring's schedule near 4 M item-hops.
pub const MAX_RANKS: usize = 256;

/// A communication topology over ranks `0..n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Topology {
    /// A line: rank i talks to i-1 and i+1.
    Bus,
    /// A line closed into a circle.
    Ring,
    /// An n-dimensional grid; `None` means two dimensions, as square as n allows.
    Mesh(Option<Vec<usize>>),
    /// A mesh whose every dimension wraps around.
    Torus(Option<Vec<usize>>),
    /// log2(n) dimensions of size 2: i talks to i xor 2^k.
    Hypercube,
    /// A binary tree in heap order: parent (i-1)/2, children 2i+1 and 2i+2.
    Tree,
    /// Every rank talks to every other.
    AllToAll,
}

/// Why a topology cannot be used with a number of ranks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopologyError(pub String);

impl fmt::Display for TopologyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TopologyError {}

impl FromStr for Topology {
    type Err = TopologyError;

    /// `bus`, `ring`, `mesh`, `mesh:4x2`, `torus`, `torus:2x2x2`, `hypercube`, `tree`,
    /// `all-to-all`.
    fn from_str(s: &str) -> Result<Topology, TopologyError> {
        let (name, dims) = match s.split_once(':') {
            Some((n, d)) => (n, Some(parse_dims(d)?)),
            None => (s, None),
        };
        let t = match name {
            "bus" => Topology::Bus,
            "ring" => Topology::Ring,
            "mesh" => return Ok(Topology::Mesh(dims)),
            "torus" => return Ok(Topology::Torus(dims)),
            "hypercube" => Topology::Hypercube,
            "tree" => Topology::Tree,
            "all-to-all" | "alltoall" => Topology::AllToAll,
            _ => {
                return Err(TopologyError(format!(
                    "unknown topology `{s}`: use bus, ring, mesh[:AxB..], torus[:AxB..], hypercube, tree or all-to-all"
                )))
            }
        };
        match dims {
            Some(_) => Err(TopologyError(format!(
                "topology `{name}` takes no dimensions (only mesh and torus do)"
            ))),
            None => Ok(t),
        }
    }
}

fn parse_dims(d: &str) -> Result<Vec<usize>, TopologyError> {
    d.split('x')
        .map(|p| match p.parse::<usize>() {
            Ok(v) if v >= 1 => Ok(v),
            _ => Err(TopologyError(format!(
                "bad dimension `{p}` in `{d}`: dimensions are positive integers joined by x, e.g. 4x2"
            ))),
        })
        .collect()
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims = |d: &Option<Vec<usize>>| match d {
            Some(d) => format!(
                ":{}",
                d.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join("x")
            ),
            None => String::new(),
        };
        match self {
            Topology::Bus => f.write_str("bus"),
            Topology::Ring => f.write_str("ring"),
            Topology::Mesh(d) => write!(f, "mesh{}", dims(d)),
            Topology::Torus(d) => write!(f, "torus{}", dims(d)),
            Topology::Hypercube => f.write_str("hypercube"),
            Topology::Tree => f.write_str("tree"),
            Topology::AllToAll => f.write_str("all-to-all"),
        }
    }
}

/// A topology checked against a number of ranks: its neighbour sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Graph {
    /// `neighbours[i]` is sorted and holds neither i nor duplicates.
    pub neighbours: Vec<Vec<usize>>,
}

impl Graph {
    pub fn ranks(&self) -> usize {
        self.neighbours.len()
    }

    /// Every undirected edge once, as (lower, higher), sorted.
    pub fn edges(&self) -> Vec<(usize, usize)> {
        let mut e = Vec::new();
        for (i, ns) in self.neighbours.iter().enumerate() {
            e.extend(ns.iter().filter(|&&j| j > i).map(|&j| (i, j)));
        }
        e
    }
}

impl Topology {
    /// The neighbour sets for `n` ranks, or why this topology does not fit `n`.
    pub fn graph(&self, n: usize) -> Result<Graph, TopologyError> {
        if n == 0 || n > MAX_RANKS {
            return Err(TopologyError(format!(
                "{n} ranks: a program has 1 to {MAX_RANKS} ranks"
            )));
        }
        let neighbours = match self {
            Topology::Bus => grid_neighbours(&[n], false, n),
            Topology::Ring => grid_neighbours(&[n], true, n),
            Topology::Mesh(d) => grid_neighbours(&self.dims(d, n)?, false, n),
            Topology::Torus(d) => grid_neighbours(&self.dims(d, n)?, true, n),
            Topology::Hypercube => hypercube(n)?,
            Topology::Tree => (0..n).map(|i| tree_neighbours(i, n)).collect(),
            Topology::AllToAll => (0..n)
                .map(|i| (0..n).filter(|&j| j != i).collect())
                .collect(),
        };
        Ok(Graph { neighbours })
    }

    fn dims(&self, d: &Option<Vec<usize>>, n: usize) -> Result<Vec<usize>, TopologyError> {
        let Some(d) = d else {
            return Ok(square_dims(n));
        };
        let product = d.iter().try_fold(1usize, |p, &v| p.checked_mul(v));
        if product != Some(n) {
            return Err(TopologyError(format!(
                "topology `{self}` has {} ranks, not {n}: the dimensions must multiply to the number of ranks",
                product.map_or("too many".to_string(), |p| p.to_string())
            )));
        }
        Ok(d.clone())
    }
}

/// Two dimensions a × b = n with a the largest divisor not above √n.
fn square_dims(n: usize) -> Vec<usize> {
    let a = (1..=n)
        .take_while(|a| a * a <= n)
        .filter(|a| n % a == 0)
        .last();
    let a = a.unwrap_or(1);
    vec![n / a, a]
}

/// Neighbours in a grid whose first dimension varies fastest; `wrap` makes it a torus.
fn grid_neighbours(dims: &[usize], wrap: bool, n: usize) -> Vec<Vec<usize>> {
    (0..n)
        .map(|rank| {
            let mut ns = Vec::new();
            let mut stride = 1;
            for &size in dims {
                let c = (rank / stride) % size;
                let mut step = |to: usize| ns.push(rank - c * stride + to * stride);
                if c > 0 {
                    step(c - 1);
                } else if wrap && size > 1 {
                    step(size - 1);
                }
                if c + 1 < size {
                    step(c + 1);
                } else if wrap && size > 1 {
                    step(0);
                }
                stride *= size;
            }
            ns.sort_unstable();
            ns.dedup();
            ns.retain(|&j| j != rank);
            ns
        })
        .collect()
}

fn hypercube(n: usize) -> Result<Vec<Vec<usize>>, TopologyError> {
    if !n.is_power_of_two() {
        return Err(TopologyError(format!(
            "a hypercube needs a power of two ranks, not {n}"
        )));
    }
    let dims = n.trailing_zeros();
    Ok((0..n)
        .map(|i| {
            let mut ns: Vec<usize> = (0..dims).map(|k| i ^ (1 << k)).collect();
            ns.sort_unstable();
            ns
        })
        .collect())
}

fn tree_neighbours(i: usize, n: usize) -> Vec<usize> {
    let parent = (i > 0).then(|| (i - 1) / 2);
    let children = [2 * i + 1, 2 * i + 2].into_iter().filter(|&c| c < n);
    parent.into_iter().chain(children).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(t: &str, n: usize) -> Vec<Vec<usize>> {
        t.parse::<Topology>().unwrap().graph(n).unwrap().neighbours
    }

    #[test]
    fn bus_is_a_line() {
        assert_eq!(g("bus", 4), vec![vec![1], vec![0, 2], vec![1, 3], vec![2]]);
        assert_eq!(g("bus", 1), vec![Vec::<usize>::new()]);
    }

    #[test]
    fn ring_wraps_around() {
        assert_eq!(
            g("ring", 4),
            vec![vec![1, 3], vec![0, 2], vec![1, 3], vec![0, 2]]
        );
        // Two ranks: both directions reach the same rank, once.
        assert_eq!(g("ring", 2), vec![vec![1], vec![0]]);
    }

    #[test]
    fn mesh_has_no_wraparound_and_torus_has() {
        // 3x2, first dimension fastest: rank = x + 3y.
        assert_eq!(g("mesh:3x2", 6)[0], vec![1, 3]);
        assert_eq!(g("mesh:3x2", 6)[4], vec![1, 3, 5]);
        assert_eq!(g("torus:3x2", 6)[0], vec![1, 2, 3]);
        assert_eq!(g("torus:3x2", 6)[5], vec![2, 3, 4]);
        // 3-D torus 3x3x3: every rank has 6 distinct neighbours; corner 0 reaches 2, 6, 18.
        let t = g("torus:3x3x3", 27);
        assert!(t.iter().all(|ns| ns.len() == 6));
        assert_eq!(t[0], vec![1, 2, 3, 6, 9, 18]);
    }

    #[test]
    fn mesh_without_dimensions_is_as_square_as_n_allows() {
        assert_eq!(square_dims(12), vec![4, 3]);
        assert_eq!(square_dims(16), vec![4, 4]);
        assert_eq!(square_dims(7), vec![7, 1]);
        assert_eq!(g("mesh", 4), g("mesh:2x2", 4));
    }

    #[test]
    fn hypercube_degree_is_log2_n() {
        for k in 0..=6 {
            let n = 1 << k;
            let h = g("hypercube", n);
            assert!(h.iter().all(|ns| ns.len() == k), "n={n}");
            for (i, ns) in h.iter().enumerate() {
                assert!(ns.iter().all(|j| (i ^ j).count_ones() == 1));
            }
        }
    }

    #[test]
    fn tree_has_parent_and_children() {
        let t = g("tree", 6);
        assert_eq!(t[0], vec![1, 2]);
        assert_eq!(t[1], vec![0, 3, 4]);
        assert_eq!(t[2], vec![0, 5]);
        assert_eq!(t[5], vec![2]);
        assert_eq!(
            Topology::Tree.graph(6).unwrap().edges().len(),
            5,
            "a tree of n has n-1 edges"
        );
    }

    #[test]
    fn all_to_all_is_complete() {
        let a = Topology::AllToAll.graph(5).unwrap();
        assert_eq!(a.edges().len(), 10);
    }

    #[test]
    fn neighbour_relation_is_symmetric_for_every_topology() {
        for (t, n) in [
            ("bus", 7),
            ("ring", 7),
            ("mesh:4x3", 12),
            ("torus:4x3", 12),
            ("torus:2x2x2", 8),
            ("hypercube", 16),
            ("tree", 11),
            ("all-to-all", 6),
        ] {
            let ns = g(t, n);
            for (i, row) in ns.iter().enumerate() {
                for &j in row {
                    assert!(ns[j].contains(&i), "{t}: {i}->{j} without {j}->{i}");
                    assert_ne!(i, j);
                }
            }
        }
    }

    #[test]
    fn bad_topologies_name_the_problem() {
        let e = Topology::Hypercube.graph(6).unwrap_err();
        assert!(e.0.contains("power of two") && e.0.contains('6'), "{e}");
        let e = "mesh:4x2"
            .parse::<Topology>()
            .unwrap()
            .graph(6)
            .unwrap_err();
        assert!(e.0.contains("mesh:4x2") && e.0.contains("8 ranks"), "{e}");
        assert!("mesh:4x0".parse::<Topology>().is_err());
        assert!("ring:4".parse::<Topology>().is_err());
        assert!("star".parse::<Topology>().unwrap_err().0.contains("star"));
        assert!(Topology::Ring.graph(0).is_err());
        assert!(Topology::Ring.graph(MAX_RANKS + 1).is_err());
        let huge = "mesh:99999999999x99999999999".parse::<Topology>().unwrap();
        assert!(huge.graph(4).is_err());
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "bus",
            "ring",
            "mesh",
            "mesh:4x2",
            "torus:2x2x2",
            "hypercube",
            "tree",
            "all-to-all",
        ] {
            assert_eq!(s.parse::<Topology>().unwrap().to_string(), s);
        }
    }
}
