//! Per pair of hosts, what the best path between them could give a demand if it had the
//! network to itself: the search's estimate of a mapping, and the exact solver's bound.

use crate::check::{Objective, EPS};
use crate::model::Problem;
use crate::route::{tree, Mode};

pub struct Pairs {
    n: usize,
    /// Least latency within `max_hops` (infinite when unreachable).
    min_lat: Vec<f64>,
    /// Largest bottleneck bandwidth within `max_hops` (-infinite when unreachable).
    widest: Vec<f64>,
    /// Smallest such bottleneck.
    narrowest: Vec<f64>,
}

impl Pairs {
    pub fn new(p: &Problem) -> Pairs {
        let n = p.hosts.len();
        let bw: Vec<f64> = p.links.iter().map(|l| l.bw).collect();
        let mut pairs = Pairs {
            n,
            min_lat: vec![f64::INFINITY; n * n],
            widest: vec![f64::NEG_INFINITY; n * n],
            narrowest: vec![f64::INFINITY; n * n],
        };
        for a in 0..n {
            let lat = tree(p, &bw, 0.0, f64::INFINITY, a, Mode::Latency);
            let wide = tree(p, &bw, 0.0, f64::INFINITY, a, Mode::Widest);
            let narrow = tree(p, &bw, 0.0, f64::INFINITY, a, Mode::Narrowest);
            for b in 0..n {
                if let Some((key, _)) = lat.best(b) {
                    pairs.min_lat[a * n + b] = key;
                }
                if let Some((key, _)) = wide.best(b) {
                    pairs.widest[a * n + b] = -key;
                }
                if let Some((key, _)) = narrow.best(b) {
                    pairs.narrowest[a * n + b] = key;
                }
            }
        }
        pairs
    }

    pub fn min_lat(&self, a: usize, b: usize) -> f64 {
        self.min_lat[a * self.n + b]
    }

    pub fn widest(&self, a: usize, b: usize) -> f64 {
        self.widest[a * self.n + b]
    }

    /// Whether demand `d` could be routed from `a` to `b` alone (reachable within the hops,
    /// the latency bound and some path's bandwidth).
    pub fn possible(&self, p: &Problem, d: usize, a: usize, b: usize) -> bool {
        if a == b {
            return true;
        }
        let demand = &p.demands[d];
        let i = a * self.n + b;
        let bound = demand.lat.unwrap_or(f64::INFINITY);
        self.min_lat[i] <= bound + EPS * (1.0 + bound)
            && self.widest[i] >= demand.bw - EPS * (1.0 + demand.bw)
    }

    /// A lower bound of demand `d`'s score (objective as minimised) between hosts `a`, `b`;
    /// `None` when impossible.
    pub fn bound(&self, p: &Problem, obj: Objective, d: usize, a: usize, b: usize) -> Option<f64> {
        if !self.possible(p, d, a, b) {
            return None;
        }
        let demand = &p.demands[d];
        let i = a * self.n + b;
        Some(match (obj, a == b) {
            (Objective::Cost, true) => 0.0,
            (Objective::Cost, false) => demand.bw * self.min_lat[i],
            (Objective::Residual, true) => -p.local_bw,
            (Objective::Residual, false) => -(self.widest[i] - demand.bw),
            (Objective::Tight, true) => p.local_bw,
            (Objective::Tight, false) => 0.0,
        })
    }

    /// The search's estimate of demand `d`'s score between `a` and `b`: the bound, except
    /// that a tight fit expects the narrowest path's room.
    pub fn estimate(
        &self,
        p: &Problem,
        obj: Objective,
        d: usize,
        a: usize,
        b: usize,
    ) -> Option<f64> {
        let bound = self.bound(p, obj, d, a, b)?;
        if obj == Objective::Tight && a != b {
            let room = self.narrowest[a * self.n + b] - p.demands[d].bw;
            return Some(room.max(0.0));
        }
        Some(bound)
    }
}

/// The compute and size used on every host.
#[derive(Clone, Debug)]
pub struct Loads {
    compute: Vec<f64>,
    size: Vec<f64>,
}

impl Loads {
    pub fn new(p: &Problem) -> Loads {
        Loads {
            compute: vec![0.0; p.hosts.len()],
            size: vec![0.0; p.hosts.len()],
        }
    }

    pub fn of(p: &Problem, mapping: &[usize]) -> Loads {
        let mut loads = Loads::new(p);
        for (v, &h) in mapping.iter().enumerate() {
            loads.add(p, v, h);
        }
        loads
    }

    /// Whether VM `v` fits on host `h` next to what is there, less the VM `leaving` (a swap).
    pub fn fits(&self, p: &Problem, v: usize, h: usize, leaving: Option<usize>) -> bool {
        let (host, vm) = (&p.hosts[h], &p.vms[v]);
        let (c, s) = leaving.map_or((0.0, 0.0), |w| (p.vms[w].compute, p.vms[w].size));
        self.compute[h] - c + vm.compute <= host.compute + EPS * (1.0 + host.compute)
            && self.size[h] - s + vm.size <= host.size + EPS * (1.0 + host.size)
    }

    pub fn add(&mut self, p: &Problem, v: usize, h: usize) {
        self.compute[h] += p.vms[v].compute;
        self.size[h] += p.vms[v].size;
    }

    pub fn remove(&mut self, p: &Problem, v: usize, h: usize) {
        self.compute[h] -= p.vms[v].compute;
        self.size[h] -= p.vms[v].size;
    }
}
