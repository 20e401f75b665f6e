//! The default solver: a robust tabu search (Taillard's RoTS, with random tenures and
//! aspiration) over mappings, with moves (one VM to another host) and swaps (two VMs trade
//! hosts), each scored incrementally by the pair estimates of `pairs`; perturbed restarts from
//! the best mapping when it stalls. Mappings that improve the estimate are routed for real
//! (residual-aware paths, then rerouting), and the best routed solution wins. It starts from
//! greedy's answer (and the current placement), so it is never worse than greedy.

use crate::check::{self, Objective, Solution, EPS};
use crate::flow::{Flow, Swaps};
use crate::pairs::{Loads, Pairs};
use crate::{exact, greedy, route, unroutable, Error, Found, Options, Problem};
use std::collections::HashSet;
use std::time::Instant;

pub fn solve(
    p: &Problem,
    o: &Options,
    deadline: Instant,
    before: Option<&Found>,
) -> Result<Found, Error> {
    let greedy = greedy::solve(p, o);
    let mut best: Option<Found> = None;
    let mut failure = None;
    match greedy {
        Ok(found) => best = Some(found),
        Err(e) => failure = Some(e),
    }
    if let Some(b) = before {
        if best.as_ref().is_none_or(|g| b.score < g.score) {
            best = Some(b.clone());
        }
    }
    let start = match &best {
        Some(found) => found.solution.mapping.clone(),
        None => first_fit(p, o)?,
    };
    let pairs = Pairs::new(p);
    let mut tabu = Tabu::new(p, o, &pairs, start);
    let mut keeper = Keeper {
        seen: HashSet::new(),
        p,
        obj: o.objective,
        deadline,
        best,
        failure,
    };
    tabu.run(&mut keeper);
    let mut found = keeper.best.ok_or_else(|| {
        keeper
            .failure
            .unwrap_or_else(|| Error::Infeasible("no placement found".into()))
    })?;
    let mapping = found.solution.mapping.clone();
    route::reroute(
        p,
        o.objective,
        &mapping,
        &mut found.solution.paths,
        deadline,
    );
    found.score = o
        .objective
        .score(check::value(p, o.objective, &found.solution.paths));
    Ok(found)
}

/// A start when neither greedy nor the current placement gave one: pinned VMs first, then
/// the others by decreasing compute, each on its current host if it fits, else the first
/// host with room.
fn first_fit(p: &Problem, o: &Options) -> Result<Vec<usize>, Error> {
    let mut loads = Loads::new(p);
    let mut mapping = vec![0; p.vms.len()];
    let mut order: Vec<usize> = (0..p.vms.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&p.vms[a], &p.vms[b]);
        y.pinned
            .cmp(&x.pinned)
            .then(y.compute.total_cmp(&x.compute))
    });
    for &v in &order {
        let vm = &p.vms[v];
        let h = match (vm.pinned, vm.host) {
            (true, Some(h)) => Some(h),
            _ => vm
                .host
                .filter(|&h| loads.fits(p, v, h, None))
                .or_else(|| (0..p.hosts.len()).find(|&h| loads.fits(p, v, h, None))),
        };
        let h = h.ok_or_else(|| {
            Error::Infeasible(format!(
                "capacity: no host left with room for vm {}",
                vm.name
            ))
        })?;
        loads.add(p, v, h);
        mapping[v] = h;
    }
    greedy::within_budget(p, o, mapping, &order)
}

/// Routes candidate mappings for real and keeps the best solution.
struct Keeper<'a> {
    p: &'a Problem,
    obj: Objective,
    deadline: Instant,
    best: Option<Found>,
    failure: Option<Error>,
    seen: HashSet<Vec<usize>>,
}

/// The most mappings remembered as routed already.
const SEEN_MAX: usize = 1 << 16;

impl Keeper<'_> {
    /// `offer`, once per distinct mapping (up to a memory cap).
    fn offer_new(&mut self, mapping: &[usize]) {
        if self.seen.contains(mapping) {
            return;
        }
        if self.seen.len() < SEEN_MAX {
            self.seen.insert(mapping.to_vec());
        }
        self.offer(mapping);
    }

    /// Routes `mapping` and keeps it if it beats the best so far.
    fn offer(&mut self, mapping: &[usize]) {
        let p = self.p;
        let mut paths = match route::route(p, self.obj, mapping, &route::by_traffic(p)) {
            Ok(paths) => paths,
            Err(d) => {
                self.failure = Some(Error::Infeasible(unroutable(p, d)));
                return;
            }
        };
        route::reroute(p, self.obj, mapping, &mut paths, self.deadline);
        let score = self.obj.score(check::value(p, self.obj, &paths));
        self.keep(mapping, score, paths);
    }

    /// Keeps a routed mapping if it beats the best so far.
    fn keep(&mut self, mapping: &[usize], score: f64, paths: Vec<Vec<usize>>) {
        if self
            .best
            .as_ref()
            .is_none_or(|b| check::improves(score, b.score))
        {
            self.best = Some(Found {
                solution: Solution {
                    mapping: mapping.to_vec(),
                    paths,
                },
                score,
                optimal: false,
                bound: None,
            });
        }
    }
}

struct Tabu<'a> {
    p: &'a Problem,
    obj: Objective,
    pairs: &'a Pairs,
    budget: Option<usize>,
    incident: Vec<Vec<usize>>,
    movable: Vec<usize>,
    mapping: Vec<usize>,
    loads: Loads,
    score: f64,
    migrations: usize,
    tabu: Vec<u64>,
    penalty: f64,
    rng: fastrand::Rng,
    /// The estimate is the objective itself: `cost` with no link that demands could fill.
    exact_estimate: bool,
    terms: Option<Vec<f64>>,
    flow: Option<Flow>,
    /// Every swap's delta, when the estimate has the flow form.
    swaps: Option<Swaps>,
    /// Small problems route every mapping visited: the estimate ignores how demands share
    /// links, and there routing is cheap.
    route_each: bool,
    /// Iterations after which an unused swap is forced (long-term aspiration).
    long_term: u64,
}

/// The most demand x link pairs for which every visited mapping is routed.
const ROUTE_EACH_MAX: usize = 4096;

/// Long-term aspiration after this many times n^2 iterations (Taillard's RoTS uses 2-10).
const LONG_TERM: u64 = 5;

/// Exact-routing descents in a row without a better solution before the search stops.
const DULL_DESCENTS: usize = 30;

/// The largest table of estimates kept (8 bytes each).
const TERMS_MAX: usize = 1 << 23;

#[derive(Clone, Copy)]
enum Step {
    Move(usize, usize),
    Swap(usize, usize),
}

impl<'a> Tabu<'a> {
    fn new(p: &'a Problem, o: &Options, pairs: &'a Pairs, mapping: Vec<usize>) -> Tabu<'a> {
        let mut incident = vec![Vec::new(); p.vms.len()];
        for (d, demand) in p.demands.iter().enumerate() {
            incident[demand.src].push(d);
            incident[demand.dst].push(d);
        }
        let total_bw: f64 = p.demands.iter().map(|d| d.bw).sum();
        let scale: f64 = p.demands.iter().map(|d| d.bw).sum::<f64>()
            * (1.0 + p.local_bw + p.links.iter().map(|l| l.bw + l.lat).fold(0.0, f64::max));
        let mut tabu = Tabu {
            p,
            obj: o.objective,
            pairs,
            budget: o.max_migrations,
            incident,
            movable: (0..p.vms.len()).filter(|&v| !p.vms[v].pinned).collect(),
            loads: Loads::of(p, &mapping),
            migrations: check::migrations(p, &mapping),
            mapping,
            score: 0.0,
            tabu: vec![0; p.vms.len() * p.hosts.len()],
            penalty: 10.0 * (scale + 1.0),
            rng: fastrand::Rng::with_seed(o.seed),
            exact_estimate: o.objective == Objective::Cost
                && p.links.iter().all(|l| l.bw >= total_bw),
            terms: None,
            flow: Flow::new(p, o.objective, pairs),
            route_each: false,
            swaps: None,
            long_term: LONG_TERM * (p.vms.len() * p.vms.len()) as u64,
        };
        tabu.swaps = tabu.flow.as_ref().map(|f| Swaps::new(f, &tabu.mapping));
        tabu.route_each = !tabu.exact_estimate && p.demands.len() * p.links.len() <= ROUTE_EACH_MAX;
        if tabu.flow.is_none() {
            tabu.tabulate();
        }
        tabu.score = tabu.full_score();
        tabu
    }

    fn term(&self, d: usize, a: usize, b: usize) -> f64 {
        let hosts = self.p.hosts.len();
        match &self.terms {
            Some(terms) => terms[(d * hosts + a) * hosts + b],
            None => self
                .pairs
                .estimate(self.p, self.obj, d, a, b)
                .unwrap_or(self.penalty),
        }
    }

    /// Every demand's estimate between every pair of hosts, when that table is small: the
    /// neighbourhood scan reads it millions of times.
    fn tabulate(&mut self) {
        let hosts = self.p.hosts.len();
        if self.p.demands.len() * hosts * hosts > TERMS_MAX {
            return;
        }
        let mut terms = Vec::with_capacity(self.p.demands.len() * hosts * hosts);
        for d in 0..self.p.demands.len() {
            for a in 0..hosts {
                terms.extend((0..hosts).map(|b| self.term(d, a, b)));
            }
        }
        self.terms = Some(terms);
    }

    fn full_score(&self) -> f64 {
        let m = &self.mapping;
        (0..self.p.demands.len())
            .map(|d| self.term(d, m[self.p.demands[d].src], m[self.p.demands[d].dst]))
            .sum()
    }

    /// The change in score if `v` went to `hv` and (for a swap) `w` to `hw`.
    fn delta(&self, v: usize, hv: usize, other: Option<(usize, usize)>) -> f64 {
        if let Some(flow) = &self.flow {
            return flow.delta(&self.mapping, v, hv, other);
        }
        let at = |x: usize| match other {
            _ if x == v => hv,
            Some((w, hw)) if x == w => hw,
            _ => self.mapping[x],
        };
        let mut delta = 0.0;
        let mut add = |d: usize| {
            let demand = &self.p.demands[d];
            let (s, t) = (demand.src, demand.dst);
            delta += self.term(d, at(s), at(t)) - self.term(d, self.mapping[s], self.mapping[t]);
        };
        self.incident[v].iter().for_each(|&d| add(d));
        if let Some((w, _)) = other {
            for &d in &self.incident[w] {
                let demand = &self.p.demands[d];
                if demand.src != v && demand.dst != v {
                    add(d);
                }
            }
        }
        delta
    }

    fn moved(&self, v: usize, h: usize) -> isize {
        match self.p.vms[v].host {
            Some(home) => (h != home) as isize - (self.mapping[v] != home) as isize,
            None => 0,
        }
    }

    fn within_budget(&self, change: isize) -> bool {
        self.budget
            .is_none_or(|b| (self.migrations as isize + change) <= b as isize)
    }

    fn is_tabu(&self, v: usize, h: usize, iter: u64) -> bool {
        self.tabu[v * self.p.hosts.len() + h] > iter
    }

    /// The best admissible step: not tabu, or better than the best score seen (aspiration).
    /// A step whose every part was last undone more than `long` iterations ago is taken at
    /// once (Taillard's long-term aspiration: it diversifies where restarts alone stall).
    fn best_step(&mut self, iter: u64, best_score: f64) -> Option<(Step, f64)> {
        let hosts = self.p.hosts.len();
        let mut chosen: Option<(Step, f64)> = None;
        let mut forced: Option<(Step, f64)> = None;
        let long = self.long_term;
        let stale = |t: &Tabu, v: usize, h: usize| t.tabu[v * hosts + h] + long < iter;
        let mut ties = 0u32;
        let mut consider = |step: Step, delta: f64, tabu: bool, rng: &mut fastrand::Rng| {
            let aspired = check::improves(self.score + delta, best_score);
            if tabu && !aspired {
                return;
            }
            match chosen {
                Some((_, d)) if delta > d + EPS * (1.0 + d.abs()) => {}
                Some((_, d)) if delta >= d - EPS * (1.0 + d.abs()) => {
                    ties += 1;
                    if rng.u32(0..=ties) == 0 {
                        chosen = Some((step, delta));
                    }
                }
                _ => {
                    ties = 0;
                    chosen = Some((step, delta));
                }
            }
        };
        let mut rng = std::mem::replace(&mut self.rng, fastrand::Rng::with_seed(0));
        for (i, &v) in self.movable.iter().enumerate() {
            let a = self.mapping[v];
            for h in (0..hosts).filter(|&h| h != a) {
                if self.loads.fits(self.p, v, h, None) && self.within_budget(self.moved(v, h)) {
                    consider(
                        Step::Move(v, h),
                        self.delta(v, h, None),
                        self.is_tabu(v, h, iter),
                        &mut rng,
                    );
                }
            }
            for &w in &self.movable[i + 1..] {
                let b = self.mapping[w];
                if a == b
                    || !self.loads.fits(self.p, v, b, Some(w))
                    || !self.loads.fits(self.p, w, a, Some(v))
                    || !self.within_budget(self.moved(v, b) + self.moved(w, a))
                {
                    continue;
                }
                let tabu = self.is_tabu(v, b, iter) && self.is_tabu(w, a, iter);
                let delta = match &self.swaps {
                    Some(swaps) => swaps.get(v, w),
                    None => self.delta(v, b, Some((w, a))),
                };
                if forced.is_none() && stale(self, v, b) && stale(self, w, a) {
                    forced = Some((Step::Swap(v, w), delta));
                }
                consider(Step::Swap(v, w), delta, tabu, &mut rng);
            }
        }
        self.rng = rng;
        match (chosen, forced) {
            (Some((_, d)), Some(f)) if !check::improves(self.score + d, best_score) => Some(f),
            (chosen, forced) => chosen.or(forced),
        }
    }

    fn apply(&mut self, step: Step, delta: f64, tenure: u64) {
        let hosts = self.p.hosts.len();
        let relocate = |t: &mut Tabu, v: usize, h: usize| {
            let a = t.mapping[v];
            t.migrations = (t.migrations as isize + t.moved(v, h)) as usize;
            t.loads.remove(t.p, v, a);
            t.loads.add(t.p, v, h);
            t.mapping[v] = h;
            t.tabu[v * hosts + a] = tenure;
        };
        match step {
            Step::Move(v, h) => relocate(self, v, h),
            Step::Swap(v, w) => {
                let (a, b) = (self.mapping[v], self.mapping[w]);
                relocate(self, v, b);
                relocate(self, w, a);
            }
        }
        self.score += delta;
        if let (Some(swaps), Some(flow)) = (&mut self.swaps, &self.flow) {
            match step {
                Step::Swap(v, w) => swaps.after_swap(flow, &self.mapping, v, w),
                Step::Move(..) => *swaps = Swaps::new(flow, &self.mapping),
            }
        }
    }

    fn run(&mut self, keeper: &mut Keeper) {
        let n = self.movable.len() as u64;
        if n == 0 || self.p.hosts.len() < 2 {
            return;
        }
        let stall = 200.max(20 * n);
        let mut best_mapping = self.mapping.clone();
        let mut best_score = self.score;
        let (mut iter, mut since_best, mut dull_restarts) = (0u64, 0u64, 0u32);
        // Small problems keep half the time for the exact-routing descent.
        let now = Instant::now();
        let stop = match self.route_each {
            true => now + keeper.deadline.saturating_duration_since(now) / 2,
            false => keeper.deadline,
        };
        while Instant::now() < stop && dull_restarts < 200 {
            iter += 1;
            let Some((step, delta)) = self.best_step(iter, best_score) else {
                break;
            };
            let tenure = iter + self.rng.u64((9 * n / 10).max(1)..=(11 * n / 10).max(2));
            self.apply(step, delta, tenure);
            since_best += 1;
            if check::improves(self.score, best_score) {
                best_score = self.score;
                best_mapping.clone_from(&self.mapping);
                since_best = 0;
                dull_restarts = 0;
                // Routing every improvement costs more than it tells when the estimate is exact.
                if !self.exact_estimate && !self.route_each && Instant::now() < keeper.deadline {
                    keeper.offer(&self.mapping);
                }
            }
            if self.route_each && Instant::now() < keeper.deadline {
                keeper.offer_new(&self.mapping);
            }
            if since_best > stall {
                since_best = 0;
                dull_restarts += 1;
                // Kicks grow while restarts find nothing, to leave a deep basin.
                self.perturb(&best_mapping, 1 + (dull_restarts as usize - 1) % 4);
            }
        }
        keeper.offer(&best_mapping);
        if self.route_each {
            self.polish(keeper);
            self.polish_exactly(keeper);
        }
    }

    /// Then iterated descents with every mapping routed exactly (`exact::route_exactly`, cut
    /// off at the score to beat): the heuristic routing misses how demands that share links
    /// lower each other's residuals, which is all of `tight`. Each descent starts from the
    /// best mapping kicked by random steps, growing while descents find nothing better.
    fn polish_exactly(&mut self, keeper: &mut Keeper) {
        let Some(best) = &keeper.best else { return };
        let mut start = (best.solution.mapping.clone(), best.score);
        let mut dull = 0usize;
        // Like the tabu's restarts, give up after descents that find nothing better.
        while Instant::now() < keeper.deadline && dull < DULL_DESCENTS {
            let before = keeper.best.as_ref().map_or(f64::INFINITY, |b| b.score);
            self.descend_exactly(keeper, std::mem::take(&mut start.0), start.1);
            let Some(best) = &keeper.best else { return };
            dull = if check::improves(best.score, before) {
                0
            } else {
                dull + 1
            };
            self.perturb(&best.solution.mapping.clone(), 1 + dull % 4);
            let kicked = self.mapping.clone();
            let routed =
                exact::route_exactly(self.p, self.obj, &kicked, f64::INFINITY, keeper.deadline);
            if let Some((score, paths)) = routed.0 {
                keeper.keep(&kicked, score, paths);
                start = (kicked, score);
            } else {
                start.0.clone_from(&best.solution.mapping);
                start.1 = best.score;
            }
        }
    }

    /// First-improvement descent from `mapping` over moves and swaps, routed exactly.
    fn descend_exactly(&mut self, keeper: &mut Keeper, mut mapping: Vec<usize>, mut score: f64) {
        'descent: while Instant::now() < keeper.deadline {
            for next in self.neighbours(&mapping) {
                let routed = exact::route_exactly(self.p, self.obj, &next, score, keeper.deadline);
                if let (Some((s, paths)), _) = routed {
                    keeper.keep(&next, s, paths);
                    (mapping, score) = (next, s);
                    continue 'descent;
                }
                if Instant::now() >= keeper.deadline {
                    return;
                }
            }
            return;
        }
    }

    /// On small problems, a descent on the routed objective itself: from the best solution,
    /// route every neighbour (each move and swap), move to the best, until none improves.
    fn polish(&mut self, keeper: &mut Keeper) {
        while Instant::now() < keeper.deadline {
            let Some(best) = &keeper.best else { return };
            let (start, score) = (best.solution.mapping.clone(), best.score);
            for next in self.neighbours(&start) {
                keeper.offer_new(&next);
                if Instant::now() >= keeper.deadline {
                    return;
                }
            }
            if !keeper
                .best
                .as_ref()
                .is_some_and(|b| check::improves(b.score, score))
            {
                return;
            }
        }
    }

    /// Every mapping one move or swap from `start` (which becomes the current mapping).
    fn neighbours(&mut self, start: &[usize]) -> Vec<Vec<usize>> {
        self.mapping = start.to_vec();
        self.loads = Loads::of(self.p, &self.mapping);
        self.migrations = check::migrations(self.p, &self.mapping);
        let step_to = |step: Step| {
            let mut next = start.to_vec();
            match step {
                Step::Move(v, h) => next[v] = h,
                Step::Swap(v, w) => next.swap(v, w),
            }
            next
        };
        self.steps().into_iter().map(step_to).collect()
    }

    /// Every move and swap that keeps capacities and the migration budget.
    fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        for (i, &v) in self.movable.iter().enumerate() {
            let a = self.mapping[v];
            for h in (0..self.p.hosts.len()).filter(|&h| h != a) {
                if self.loads.fits(self.p, v, h, None) && self.within_budget(self.moved(v, h)) {
                    steps.push(Step::Move(v, h));
                }
            }
            for &w in &self.movable[i + 1..] {
                let b = self.mapping[w];
                if a != b
                    && self.loads.fits(self.p, v, b, Some(w))
                    && self.loads.fits(self.p, w, a, Some(v))
                    && self.within_budget(self.moved(v, b) + self.moved(w, a))
                {
                    steps.push(Step::Swap(v, w));
                }
            }
        }
        steps
    }

    /// Restarts from the best mapping with `strength` x n/4 random steps that keep capacities.
    fn perturb(&mut self, best: &[usize], strength: usize) {
        // The swap table is rebuilt once at the end, not after every kick.
        let swaps = self.swaps.take();
        self.mapping = best.to_vec();
        self.loads = Loads::of(self.p, &self.mapping);
        self.migrations = check::migrations(self.p, &self.mapping);
        let kicks = (self.movable.len() / 4).max(2) * strength;
        for _ in 0..kicks {
            let v = self.movable[self.rng.usize(..self.movable.len())];
            let w = self.movable[self.rng.usize(..self.movable.len())];
            let h = self.rng.usize(..self.p.hosts.len());
            let (a, b) = (self.mapping[v], self.mapping[w]);
            if h != a
                && self.loads.fits(self.p, v, h, None)
                && self.within_budget(self.moved(v, h))
                && self.rng.bool()
            {
                self.apply(Step::Move(v, h), 0.0, 0);
            } else if a != b
                && self.loads.fits(self.p, v, b, Some(w))
                && self.loads.fits(self.p, w, a, Some(v))
                && self.within_budget(self.moved(v, b) + self.moved(w, a))
            {
                self.apply(Step::Swap(v, w), 0.0, 0);
            }
        }
        self.score = self.full_score();
        if let (Some(_), Some(flow)) = (swaps, &self.flow) {
            self.swaps = Some(Swaps::new(flow, &self.mapping));
        }
    }
}
