//! VADAPT offline (SPEC 5.3, thesis sections 7, 8, 9.3 and Appendix B): the adaptation
//! problem GAPVEE, the one check of its constraints, and three solvers — the thesis's greedy
//! heuristics, a tabu search that starts from them, and an exact branch and bound. No IO.

pub mod answer;
mod assign;
pub mod check;
pub mod exact;
pub mod flow;
mod gilmore;
pub mod greedy;
pub mod model;
pub mod pairs;
pub mod route;
pub mod search;

pub use check::{check, Objective, Solution, Violation};
pub use model::Problem;

use check::EPS;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// The document is not a problem: the field at fault and why (exit 2).
    Malformed { path: String, message: String },
    /// No solution exists, or none was found: the constraint that cannot be met (exit 1).
    Infeasible(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Malformed { path, message } => write!(f, "{path}: {message}"),
            Error::Infeasible(constraint) => write!(f, "infeasible: {constraint}"),
        }
    }
}

impl std::error::Error for Error {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Solver {
    Greedy,
    Search,
    Exact,
}

impl Solver {
    pub fn name(self) -> &'static str {
        match self {
            Solver::Greedy => "greedy",
            Solver::Search => "search",
            Solver::Exact => "exact",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    pub objective: Objective,
    pub solver: Solver,
    pub time_limit: Duration,
    /// At most this many VMs leave their current host.
    pub max_migrations: Option<usize>,
    /// Move nothing unless the objective improves on `before` by at least this fraction of it.
    pub min_gain: f64,
    /// The search's random seed (answers are reproducible given the same time budget).
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            objective: Objective::Residual,
            solver: Solver::Search,
            time_limit: Duration::from_secs(1),
            max_migrations: None,
            min_gain: 0.0,
            seed: 1,
        }
    }
}

/// A solver's result: a solution that passed `check`, and what is known of its quality.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub objective: Objective,
    pub solver: Solver,
    pub value: f64,
    /// The current placement's value with the best routing found for it.
    pub before: Option<f64>,
    /// Proven optimal (the exact solver finished).
    pub optimal: bool,
    /// A proven bound on the optimum's value (the exact solver).
    pub bound: Option<f64>,
    pub solution: Solution,
}

/// What a solver found, in scores (the objective as minimised).
#[derive(Clone, Debug)]
pub struct Found {
    pub solution: Solution,
    pub score: f64,
    pub optimal: bool,
    pub bound: Option<f64>,
}

/// Solves `p` with the options' solver, then applies the stability rules: the current
/// placement is kept unless the answer improves on it by `min_gain`.
pub fn solve(p: &Problem, o: &Options) -> Result<Answer, Error> {
    let deadline = Instant::now() + o.time_limit;
    precheck(p)?;
    let before = current(p, o, deadline);
    let found = match o.solver {
        Solver::Greedy => greedy::solve(p, o)?,
        Solver::Search => search::solve(p, o, deadline, before.as_ref())?,
        Solver::Exact => exact::solve(p, o, deadline)?,
    };
    let obj = o.objective;
    let (solution, score, optimal) = match &before {
        Some(b) if !worth_moving(found.score, b.score, o.min_gain) => {
            let optimal = found.optimal && b.score <= found.score + EPS * (1.0 + found.score.abs());
            (b.solution.clone(), b.score, optimal)
        }
        _ => (found.solution, found.score, found.optimal),
    };
    if let Err(violation) = check(p, &solution) {
        return Err(Error::Infeasible(format!(
            "internal error, the answer breaks: {violation}"
        )));
    }
    Ok(Answer {
        objective: obj,
        solver: o.solver,
        value: obj.value(score),
        before: before.map(|b| obj.value(b.score)),
        optimal,
        bound: found.bound.map(|b| obj.value(b)),
        solution,
    })
}

fn worth_moving(score: f64, before: f64, min_gain: f64) -> bool {
    check::improves(score, before) && before - score >= min_gain * before.abs()
}

/// The current placement, routed as the chosen solver routes; `None` when some VM has no
/// host, or the current placement breaks a capacity or cannot route every demand.
fn current(p: &Problem, o: &Options, deadline: Instant) -> Option<Found> {
    let mapping = p.current_mapping()?;
    check::check_hosts(p, &mapping).ok()?;
    let obj = o.objective;
    let mut best = route::route(p, obj, &mapping, &route::by_traffic(p))
        .ok()
        .map(|mut paths| {
            route::reroute(p, obj, &mapping, &mut paths, deadline);
            (obj.score(check::value(p, obj, &paths)), paths)
        });
    if o.solver == Solver::Exact {
        // The exact routing of the current placement gets a tenth of the time.
        let share = (Instant::now() + o.time_limit / 10).min(deadline);
        let incumbent = best.as_ref().map_or(f64::INFINITY, |b| b.0);
        if let (Some(better), _) = exact::route_exactly(p, obj, &mapping, incumbent, share) {
            best = Some(better);
        }
    }
    best.map(|(score, paths)| Found {
        solution: Solution { mapping, paths },
        score,
        optimal: false,
        bound: None,
    })
}

/// Constraints that no solution can meet, found before any search: pinned VMs over a host's
/// capacity, a VM no host can take, and a demand between pinned VMs with no possible path.
fn precheck(p: &Problem) -> Result<(), Error> {
    let mut loads = pairs::Loads::new(p);
    for (v, vm) in p.vms.iter().enumerate() {
        if let (true, Some(h)) = (vm.pinned, vm.host) {
            if !loads.fits(p, v, h, None) {
                return Err(Error::Infeasible(format!(
                    "capacity of host {}: the VMs pinned to it do not fit (vm {})",
                    p.hosts[h].name, vm.name
                )));
            }
            loads.add(p, v, h);
        }
    }
    for (v, vm) in p.vms.iter().enumerate() {
        if !vm.pinned && !(0..p.hosts.len()).any(|h| loads.fits(p, v, h, None)) {
            return Err(Error::Infeasible(format!(
                "capacity: no host has room for vm {} (compute {}, size {})",
                vm.name, vm.compute, vm.size
            )));
        }
    }
    let table = pairs::Pairs::new(p);
    for (d, demand) in p.demands.iter().enumerate() {
        let (s, t) = (&p.vms[demand.src], &p.vms[demand.dst]);
        if let (true, true, Some(a), Some(b)) = (s.pinned, t.pinned, s.host, t.host) {
            if !table.possible(p, d, a, b) {
                return Err(Error::Infeasible(unroutable(p, d)));
            }
        }
    }
    Ok(())
}

/// The constraint a demand that found no path could not meet.
pub fn unroutable(p: &Problem, d: usize) -> String {
    let demand = &p.demands[d];
    let lat = demand
        .lat
        .map_or(String::new(), |l| format!(", latency bound {l}"));
    format!(
        "routing of demand {} (bw {}): no path with enough residual bandwidth within max_hops {}{lat}",
        p.demand_label(d),
        demand.bw,
        p.max_hops
    )
}
