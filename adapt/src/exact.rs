//! The exact solver: depth-first branch and bound over the VMs' hosts, bounded by what each
//! demand could get on its own (`pairs`), and at each complete mapping a second branch and
//! bound over every demand's simple paths. When no host can hold two VMs and the objective is
//! `cost` (the quadratic assignment problem), the Gilmore–Lawler bound (`gilmore`) tightens
//! the per-demand one. Starts from the search's answer; when the time
//! limit stops it, the bound is the best of the branches it left open.

use crate::check::{self, Objective, EPS};
use crate::gilmore::GilmoreLawler;
use crate::pairs::{Loads, Pairs};
use crate::{route, search, Error, Found, Options, Problem, Solution};
use std::time::{Duration, Instant};

/// More simple paths than this between two hosts and the routing is not proven optimal.
const PATH_CAP: usize = 2000;

pub fn solve(p: &Problem, o: &Options, deadline: Instant) -> Result<Found, Error> {
    prove(p, o, deadline, true).map(|(found, _)| found)
}

/// What the branch and bound did (the benchmark's measure of a bound).
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Nodes visited.
    pub nodes: u64,
    /// The bound at the root (before any branching).
    pub root: f64,
    /// Time in the branch and bound, after the search that gives the first incumbent.
    pub seconds: f64,
}

/// `solve`, with the Gilmore–Lawler bound on or off where it applies, and its statistics.
pub fn prove(
    p: &Problem,
    o: &Options,
    deadline: Instant,
    gilmore_lawler: bool,
) -> Result<(Found, Stats), Error> {
    let warm = Instant::now() + o.time_limit.min(Duration::from_secs(3600)) / 10;
    let incumbent = search::solve(p, o, warm.min(deadline), None).ok();
    let started = Instant::now();
    let mut bb = Mapper::new(p, o, deadline, incumbent);
    if !gilmore_lawler {
        bb.gl = None;
    }
    let mut partial = vec![None; p.vms.len()];
    let mut loads = Loads::new(p);
    for (v, vm) in p.vms.iter().enumerate() {
        if let (true, Some(h)) = (vm.pinned, vm.host) {
            partial[v] = Some(h);
            loads.add(p, v, h);
        }
    }
    let root = bb.bound(&partial).unwrap_or(f64::INFINITY);
    bb.branch(0, &mut partial, &mut loads, 0);
    let complete = bb.complete;
    let stats = Stats {
        nodes: bb.nodes,
        root,
        seconds: started.elapsed().as_secs_f64(),
    };
    match bb.best {
        Some(mut found) => {
            let open = bb.open_bound.min(found.score);
            found.optimal = complete;
            found.bound = Some(if complete { found.score } else { open });
            Ok((found, stats))
        }
        None if complete => Err(Error::Infeasible(bb.reason())),
        None => Err(Error::Infeasible(format!(
            "time limit: exact found no solution in time ({})",
            bb.reason()
        ))),
    }
}

struct Mapper<'a> {
    p: &'a Problem,
    obj: Objective,
    budget: Option<usize>,
    deadline: Instant,
    pairs: Pairs,
    least: Least,
    gl: Option<GilmoreLawler>,
    nodes: u64,
    order: Vec<usize>,
    best: Option<Found>,
    complete: bool,
    open_bound: f64,
    unroutable: Option<usize>,
}

impl<'a> Mapper<'a> {
    fn new(p: &'a Problem, o: &Options, deadline: Instant, best: Option<Found>) -> Mapper<'a> {
        let mut weight = vec![0.0; p.vms.len()];
        for d in &p.demands {
            weight[d.src] += d.bw;
            weight[d.dst] += d.bw;
        }
        let mut order: Vec<usize> = (0..p.vms.len()).filter(|&v| !p.vms[v].pinned).collect();
        order.sort_by(|&a, &b| weight[b].total_cmp(&weight[a]).then(a.cmp(&b)));
        let pairs = Pairs::new(p);
        Mapper {
            p,
            obj: o.objective,
            budget: o.max_migrations,
            deadline,
            least: Least::new(p, o.objective, &pairs),
            gl: GilmoreLawler::new(p, o.objective, &pairs),
            nodes: 0,
            pairs,
            order,
            best,
            complete: true,
            open_bound: f64::INFINITY,
            unroutable: None,
        }
    }

    fn incumbent(&self) -> f64 {
        self.best.as_ref().map_or(f64::INFINITY, |b| b.score)
    }

    /// A lower bound of the score of every completion of `partial`; `Err(d)` when demand `d`
    /// already has no possible path.
    fn bound(&self, partial: &[Option<usize>]) -> Result<f64, usize> {
        let h = self.p.hosts.len();
        let mut total = 0.0;
        for (d, demand) in self.p.demands.iter().enumerate() {
            let best = match (partial[demand.src], partial[demand.dst]) {
                (Some(a), Some(b)) => self
                    .pairs
                    .bound(self.p, self.obj, d, a, b)
                    .unwrap_or(f64::INFINITY),
                (Some(a), None) => self.least.from[d * h + a],
                (None, Some(b)) => self.least.to[d * h + b],
                (None, None) => self.least.any[d],
            };
            if best == f64::INFINITY {
                return Err(d);
            }
            total += best;
        }
        Ok(match &self.gl {
            Some(gl) => total.max(gl.bound(partial)),
            None => total,
        })
    }

    fn prunes(&self, bound: f64) -> bool {
        !check::improves(bound, self.incumbent())
    }

    fn branch(
        &mut self,
        depth: usize,
        partial: &mut Vec<Option<usize>>,
        loads: &mut Loads,
        moved: usize,
    ) {
        self.nodes += 1;
        let bound = match self.bound(partial) {
            Ok(bound) => bound,
            Err(d) => {
                self.unroutable.get_or_insert(d);
                return;
            }
        };
        if self.prunes(bound) {
            return;
        }
        if Instant::now() > self.deadline {
            self.complete = false;
            self.open_bound = self.open_bound.min(bound);
            return;
        }
        let Some(&v) = self.order.get(depth) else {
            return self.leaf(partial);
        };
        let p = self.p;
        let home = p.vms[v].host;
        let mut hosts: Vec<usize> = (0..p.hosts.len()).collect();
        hosts.sort_by_key(|&h| (Some(h) != home) as u8);
        for h in hosts {
            let step = (home.is_some() && Some(h) != home) as usize;
            if !loads.fits(p, v, h, None) || self.budget.is_some_and(|b| moved + step > b) {
                continue;
            }
            partial[v] = Some(h);
            loads.add(p, v, h);
            self.branch(depth + 1, partial, loads, moved + step);
            loads.remove(p, v, h);
            partial[v] = None;
            if !self.complete && Instant::now() > self.deadline {
                // The children not tried are covered by this node's bound.
                self.open_bound = self.open_bound.min(bound);
                break;
            }
        }
    }

    fn leaf(&mut self, partial: &[Option<usize>]) {
        let mapping: Vec<usize> = partial.iter().map(|h| h.unwrap_or(0)).collect();
        let (found, complete) =
            route_exactly(self.p, self.obj, &mapping, self.incumbent(), self.deadline);
        if !complete {
            self.complete = false;
            if let Ok(b) = self.bound(partial) {
                self.open_bound = self.open_bound.min(b);
            }
        }
        match found {
            Some((score, paths)) => {
                self.best = Some(Found {
                    solution: Solution { mapping, paths },
                    score,
                    optimal: false,
                    bound: None,
                })
            }
            None if complete && self.best.is_none() => {
                if let Some(d) = self.first_unroutable(&mapping) {
                    self.unroutable = Some(d);
                }
            }
            None => {}
        }
    }

    fn first_unroutable(&self, mapping: &[usize]) -> Option<usize> {
        route::route(self.p, self.obj, mapping, &route::by_traffic(self.p)).err()
    }

    fn reason(&self) -> String {
        match self.unroutable {
            Some(d) if !self.p.demands.is_empty() => crate::unroutable(self.p, d),
            _ => match self.budget {
                Some(b) => {
                    format!("max_migrations {b} with the capacities and pins: no placement fits")
                }
                None => "capacity: no placement fits every VM".into(),
            },
        }
    }
}

/// Per demand, the least of `Pairs::bound` over the host pairs still open to it, with its
/// source placed (`from`, per host), its destination placed (`to`), or neither (`any`);
/// infinite when none is possible. Both VMs on one host counts only if some host could hold
/// the two of them, which is what makes the bound bite when every host holds one VM.
struct Least {
    from: Vec<f64>,
    to: Vec<f64>,
    any: Vec<f64>,
}

impl Least {
    fn new(p: &Problem, obj: Objective, pairs: &Pairs) -> Least {
        let h = p.hosts.len();
        let n = p.demands.len();
        let mut least = Least {
            from: vec![f64::INFINITY; n * h],
            to: vec![f64::INFINITY; n * h],
            any: vec![f64::INFINITY; n],
        };
        for (d, demand) in p.demands.iter().enumerate() {
            let (s, t) = (&p.vms[demand.src], &p.vms[demand.dst]);
            let share = p.hosts.iter().any(|host| {
                s.compute + t.compute <= host.compute + EPS * (1.0 + host.compute)
                    && s.size + t.size <= host.size + EPS * (1.0 + host.size)
            });
            for a in 0..h {
                for b in (0..h).filter(|&b| share || b != a) {
                    let Some(x) = pairs.bound(p, obj, d, a, b) else {
                        continue;
                    };
                    least.from[d * h + a] = least.from[d * h + a].min(x);
                    least.to[d * h + b] = least.to[d * h + b].min(x);
                    least.any[d] = least.any[d].min(x);
                }
            }
        }
        least
    }
}

/// A routing's score and every demand's links.
pub type Routing = (f64, Vec<Vec<usize>>);

/// The best routing of `mapping` that beats `incumbent`: its score and paths, and whether the
/// search was complete (false when the time limit or the path cap cut it short).
pub fn route_exactly(
    p: &Problem,
    obj: Objective,
    mapping: &[usize],
    incumbent: f64,
    deadline: Instant,
) -> (Option<Routing>, bool) {
    let mut order = route::by_traffic(p);
    let mut complete = true;
    let mut candidates = vec![Vec::new(); p.demands.len()];
    for (d, demand) in p.demands.iter().enumerate() {
        let (from, to) = (mapping[demand.src], mapping[demand.dst]);
        let (mut paths, whole) = route::all_paths(p, from, to, PATH_CAP);
        complete &= whole;
        let bound = demand.lat.unwrap_or(f64::INFINITY);
        paths.retain(|path| {
            check::path_lat(p, path) <= bound + EPS * (1.0 + bound)
                && path.iter().all(|&e| p.links[e].bw >= demand.bw - EPS)
        });
        let key = |path: &Vec<usize>| -> f64 {
            let narrow = path
                .iter()
                .map(|&e| p.links[e].bw)
                .fold(f64::INFINITY, f64::min);
            match obj {
                Objective::Cost => check::path_lat(p, path),
                Objective::Residual => -narrow,
                Objective::Tight => narrow,
            }
        };
        paths.sort_by(|a, b| key(a).total_cmp(&key(b)).then(a.len().cmp(&b.len())));
        if paths.is_empty() {
            return (None, complete);
        }
        candidates[d] = paths;
    }
    // Demands with one choice first: they only constrain the others.
    order.sort_by_key(|&d| candidates[d].len() > 1);
    let mut router = Router {
        p,
        obj,
        deadline,
        candidates,
        order,
        residual: p.links.iter().map(|l| l.bw).collect(),
        paths: vec![Vec::new(); p.demands.len()],
        best: None,
        incumbent,
        complete,
    };
    router.branch(0);
    (router.best, router.complete)
}

struct Router<'a> {
    p: &'a Problem,
    obj: Objective,
    deadline: Instant,
    candidates: Vec<Vec<Vec<usize>>>,
    order: Vec<usize>,
    residual: Vec<f64>,
    paths: Vec<Vec<usize>>,
    best: Option<Routing>,
    incumbent: f64,
    complete: bool,
}

impl Router<'_> {
    fn branch(&mut self, depth: usize) {
        if Instant::now() > self.deadline {
            self.complete = false;
            return;
        }
        if !check::improves(self.bound(depth), self.incumbent) {
            return;
        }
        let Some(&d) = self.order.get(depth) else {
            let score = self.obj.score(check::value(self.p, self.obj, &self.paths));
            if check::improves(score, self.incumbent) {
                self.incumbent = score;
                self.best = Some((score, self.paths.clone()));
            }
            return;
        };
        let bw = self.p.demands[d].bw;
        for i in 0..self.candidates[d].len() {
            let path = std::mem::take(&mut self.candidates[d][i]);
            if path
                .iter()
                .all(|&e| self.residual[e] >= bw - EPS * (1.0 + bw))
            {
                path.iter().for_each(|&e| self.residual[e] -= bw);
                self.paths[d].clone_from(&path);
                self.branch(depth + 1);
                path.iter().for_each(|&e| self.residual[e] += bw);
                self.paths[d].clear();
            }
            self.candidates[d][i] = path;
            if !self.complete {
                break;
            }
        }
    }

    /// A lower bound of the score of every completion of the first `depth` demands' paths:
    /// residuals only shrink as more demands are routed.
    fn bound(&self, depth: usize) -> f64 {
        let p = self.p;
        let (routed, rest) = self.order.split_at(depth.min(self.order.len()));
        let rest_bw: f64 = rest.iter().map(|&d| p.demands[d].bw).sum();
        let narrow = |path: &[usize]| {
            path.iter()
                .map(|&e| self.residual[e])
                .fold(f64::INFINITY, f64::min)
        };
        let mut total = 0.0;
        for &d in routed {
            let path = &self.paths[d];
            total += match self.obj {
                Objective::Cost => check::demand_term(p, self.obj, d, path, &self.residual),
                _ if path.is_empty() => self.obj.score(p.local_bw),
                Objective::Residual => -narrow(path),
                Objective::Tight => (narrow(path) - rest_bw).max(0.0),
            };
        }
        for &d in rest {
            let bw = p.demands[d].bw;
            let options = self.candidates[d].iter().map(|path| match self.obj {
                Objective::Cost => bw * check::path_lat(p, path),
                _ if path.is_empty() => self.obj.score(p.local_bw),
                Objective::Residual => -(narrow(path) - bw),
                Objective::Tight => 0.0,
            });
            total += options.fold(f64::INFINITY, f64::min);
        }
        total
    }
}
