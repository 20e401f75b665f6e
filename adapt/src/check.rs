//! The one check of every GAPVEE constraint (thesis 8.2), and the objectives' values. Every
//! solver's answer passes through `check` before it is returned, and the tests use it too.

use crate::model::Problem;

/// Tolerance for sums of floating-point bandwidths and latencies.
pub const EPS: f64 = 1e-9;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// Maximise the sum of the demands' residual bottleneck bandwidths (thesis 8).
    Residual,
    /// Minimise that sum (thesis 10.2.1's tight fit).
    Tight,
    /// Minimise the sum of bw x path latency.
    Cost,
}

impl Objective {
    pub fn name(self) -> &'static str {
        match self {
            Objective::Residual => "residual",
            Objective::Tight => "tight",
            Objective::Cost => "cost",
        }
    }

    pub fn maximise(self) -> bool {
        self == Objective::Residual
    }

    /// The value as a score to minimise, so that solvers compare one way.
    pub fn score(self, value: f64) -> f64 {
        if self.maximise() {
            -value
        } else {
            value
        }
    }

    pub fn value(self, score: f64) -> f64 {
        self.score(score)
    }
}

/// A mapping of every VM to a host, and per demand the links of its path (empty when both
/// VMs share a host).
#[derive(Clone, Debug, PartialEq)]
pub struct Solution {
    pub mapping: Vec<usize>,
    pub paths: Vec<Vec<usize>>,
}

/// The constraint a solution breaks, in words that name it.
#[derive(Clone, Debug, PartialEq)]
pub struct Violation(pub String);

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks capacities, pins, paths (connected, simple, within `max_hops` and the latency
/// bound) and that no link's residual is negative.
pub fn check(p: &Problem, s: &Solution) -> Result<(), Violation> {
    if s.mapping.len() != p.vms.len() || s.paths.len() != p.demands.len() {
        return Err(Violation(
            "the solution does not cover every VM and demand".into(),
        ));
    }
    check_hosts(p, &s.mapping)?;
    for d in 0..p.demands.len() {
        check_path(p, &s.mapping, d, &s.paths[d])?;
    }
    let load = link_loads(p, &s.paths);
    for (e, link) in p.links.iter().enumerate() {
        if load[e] > link.bw + EPS * (1.0 + link.bw) {
            return Err(Violation(format!(
                "bandwidth of link {}: demands {} > bw {}",
                p.link_label(e),
                load[e],
                link.bw
            )));
        }
    }
    Ok(())
}

/// Compute and size capacities and pins.
pub fn check_hosts(p: &Problem, mapping: &[usize]) -> Result<(), Violation> {
    let mut compute = vec![0.0; p.hosts.len()];
    let mut size = vec![0.0; p.hosts.len()];
    for (v, vm) in p.vms.iter().enumerate() {
        let h = mapping[v];
        if h >= p.hosts.len() {
            return Err(Violation(format!("vm {} is mapped to no host", vm.name)));
        }
        if vm.pinned && vm.host != Some(h) {
            return Err(Violation(format!("pin of vm {}", vm.name)));
        }
        compute[h] += vm.compute;
        size[h] += vm.size;
    }
    for (h, host) in p.hosts.iter().enumerate() {
        for (what, used, cap) in [
            ("compute", compute[h], host.compute),
            ("size", size[h], host.size),
        ] {
            if used > cap + EPS * (1.0 + cap) {
                return Err(Violation(format!(
                    "{what} of host {}: VMs need {used} > {cap}",
                    host.name
                )));
            }
        }
    }
    Ok(())
}

fn check_path(p: &Problem, mapping: &[usize], d: usize, path: &[usize]) -> Result<(), Violation> {
    let demand = &p.demands[d];
    let (from, to) = (mapping[demand.src], mapping[demand.dst]);
    let name = || p.demand_label(d);
    if path.len() > p.max_hops {
        return Err(Violation(format!(
            "max_hops of demand {}: {} links > {}",
            name(),
            path.len(),
            p.max_hops
        )));
    }
    let mut at = from;
    let mut seen = vec![from];
    for &e in path {
        let link = p
            .links
            .get(e)
            .ok_or_else(|| Violation(format!("path of demand {}: no link {e}", name())))?;
        if link.from != at {
            return Err(Violation(format!(
                "path of demand {} is not connected",
                name()
            )));
        }
        at = link.to;
        if seen.contains(&at) {
            return Err(Violation(format!(
                "path of demand {} visits a host twice",
                name()
            )));
        }
        seen.push(at);
    }
    if at != to {
        return Err(Violation(format!(
            "path of demand {} does not reach host {}",
            name(),
            p.hosts[to].name
        )));
    }
    if let Some(bound) = demand.lat {
        let lat = path_lat(p, path);
        if lat > bound + EPS * (1.0 + bound) {
            return Err(Violation(format!(
                "latency bound of demand {}: path latency {lat} > {bound}",
                name()
            )));
        }
    }
    Ok(())
}

pub fn path_lat(p: &Problem, path: &[usize]) -> f64 {
    path.iter().map(|&e| p.links[e].lat).sum()
}

/// The bandwidth routed over every link.
pub fn link_loads(p: &Problem, paths: &[Vec<usize>]) -> Vec<f64> {
    let mut load = vec![0.0; p.links.len()];
    for (d, path) in paths.iter().enumerate() {
        for &e in path {
            load[e] += p.demands[d].bw;
        }
    }
    load
}

/// One demand's term of the objective, given the links' residuals.
pub fn demand_term(p: &Problem, obj: Objective, d: usize, path: &[usize], residual: &[f64]) -> f64 {
    match obj {
        Objective::Cost => p.demands[d].bw * path_lat(p, path),
        Objective::Residual | Objective::Tight if path.is_empty() => p.local_bw,
        Objective::Residual | Objective::Tight => path
            .iter()
            .map(|&e| residual[e])
            .fold(f64::INFINITY, f64::min),
    }
}

/// The objective's value of a routing (its constraints unchecked).
pub fn value(p: &Problem, obj: Objective, paths: &[Vec<usize>]) -> f64 {
    let residual = residuals(p, paths);
    let total: f64 = (0..paths.len())
        .map(|d| demand_term(p, obj, d, &paths[d], &residual))
        .sum();
    // An empty float sum is -0.0; nobody wants to read "-0".
    total + 0.0
}

pub fn residuals(p: &Problem, paths: &[Vec<usize>]) -> Vec<f64> {
    let load = link_loads(p, paths);
    p.links.iter().zip(load).map(|(l, x)| l.bw - x).collect()
}

/// VMs that would move: those with a current host other than the one mapped.
pub fn migrations(p: &Problem, mapping: &[usize]) -> usize {
    p.vms
        .iter()
        .zip(mapping)
        .filter(|(vm, &h)| vm.host.is_some_and(|c| c != h))
        .count()
}

/// Whether score `new` is better than `old` by more than rounding (`old` may be infinite).
pub fn improves(new: f64, old: f64) -> bool {
    if old.is_infinite() {
        return new < old;
    }
    new < old - EPS * (1.0 + old.abs())
}
