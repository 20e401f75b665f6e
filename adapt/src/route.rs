//! Routing demands over the possible links: hop-limited shortest paths whose "length" is the
//! objective's (latency for `cost`, the residual bottleneck for `residual` and `tight`),
//! over links with enough residual bandwidth; then rerouting while the total improves.

use crate::check::{self, Objective, EPS};
use crate::model::Problem;
use std::time::Instant;

/// What a path is chosen for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Least total latency.
    Latency,
    /// Widest: the largest bottleneck of residual minus the demand.
    Widest,
    /// Narrowest: the smallest such bottleneck (the tight fit).
    Narrowest,
}

impl Mode {
    pub fn of(obj: Objective) -> Mode {
        match obj {
            Objective::Cost => Mode::Latency,
            Objective::Residual => Mode::Widest,
            Objective::Tight => Mode::Narrowest,
        }
    }

    fn start(self) -> f64 {
        match self {
            Mode::Latency => 0.0,
            Mode::Widest => f64::NEG_INFINITY,
            Mode::Narrowest => f64::INFINITY,
        }
    }

    /// The key after taking a link with residual `room` (already minus the demand); smaller
    /// keys are better.
    fn extend(self, key: f64, lat: f64, room: f64) -> f64 {
        match self {
            Mode::Latency => key + lat,
            Mode::Widest => key.max(-room),
            Mode::Narrowest => key.min(room),
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Via {
    Start,
    Carry,
    Link(usize),
}

#[derive(Clone, Copy, Debug)]
struct Label {
    key: f64,
    lat: f64,
    via: Via,
}

fn better(a: &Label, b: &Option<Label>) -> bool {
    match b {
        None => true,
        Some(b) => a.key < b.key - EPS || (a.key <= b.key + EPS && a.lat < b.lat - EPS),
    }
}

/// Hop-limited Bellman–Ford from one host: the best label with at most k links, per k.
pub struct Tree {
    layers: Vec<Vec<Option<Label>>>,
}

/// Labels from `from` over links whose residual holds `bw`, pruning paths longer than
/// `lat_bound`.
pub fn tree(
    p: &Problem,
    residual: &[f64],
    bw: f64,
    lat_bound: f64,
    from: usize,
    mode: Mode,
) -> Tree {
    let n = p.hosts.len();
    let mut first = vec![None; n];
    first[from] = Some(Label {
        key: mode.start(),
        lat: 0.0,
        via: Via::Start,
    });
    let mut layers = vec![first];
    for _ in 0..p.max_hops {
        let prev = &layers[layers.len() - 1];
        let mut next: Vec<Option<Label>> = prev
            .iter()
            .map(|l| {
                l.map(|l| Label {
                    via: Via::Carry,
                    ..l
                })
            })
            .collect();
        let mut changed = false;
        for (e, link) in p.links.iter().enumerate() {
            let Some(at) = prev[link.from] else { continue };
            let room = residual[e] - bw;
            let lat = at.lat + link.lat;
            if room < -EPS * (1.0 + bw) || lat > lat_bound + EPS * (1.0 + lat_bound) {
                continue;
            }
            let label = Label {
                key: mode.extend(at.key, link.lat, room),
                lat,
                via: Via::Link(e),
            };
            if link.to != from && better(&label, &next[link.to]) {
                next[link.to] = Some(label);
                changed = true;
            }
        }
        layers.push(next);
        if !changed {
            break;
        }
    }
    Tree { layers }
}

impl Tree {
    /// The best (key, latency) reaching `to`.
    pub fn best(&self, to: usize) -> Option<(f64, f64)> {
        self.layers[self.layers.len() - 1][to].map(|l| (l.key, l.lat))
    }

    /// The links of the best path to `to`, if it is simple.
    pub fn path(&self, p: &Problem, to: usize) -> Option<Vec<usize>> {
        let mut k = self.layers.len() - 1;
        let mut at = to;
        let mut links = Vec::new();
        loop {
            match self.layers[k][at]?.via {
                Via::Start => break,
                Via::Carry => k -= 1,
                Via::Link(e) => {
                    links.push(e);
                    at = p.links[e].from;
                    k -= 1;
                }
            }
        }
        links.reverse();
        let mut seen: Vec<usize> = links.iter().map(|&e| p.links[e].to).collect();
        seen.sort_unstable();
        seen.dedup();
        (seen.len() == links.len()).then_some(links)
    }
}

/// The best path for demand `d` between two hosts given the links' residuals; the
/// least-latency path when the objective's own choice breaks the latency bound or is not simple.
pub fn best_path(
    p: &Problem,
    obj: Objective,
    residual: &[f64],
    d: usize,
    from: usize,
    to: usize,
) -> Option<Vec<usize>> {
    if from == to {
        return Some(Vec::new());
    }
    let demand = &p.demands[d];
    let bound = demand.lat.unwrap_or(f64::INFINITY);
    let mode = Mode::of(obj);
    let path = tree(p, residual, demand.bw, bound, from, mode).path(p, to);
    if path.is_some() || mode == Mode::Latency {
        return path;
    }
    tree(p, residual, demand.bw, bound, from, Mode::Latency).path(p, to)
}

/// `best_path` between the hosts `mapping` gives demand `d`'s VMs.
fn placed_path(
    p: &Problem,
    obj: Objective,
    residual: &[f64],
    mapping: &[usize],
    d: usize,
) -> Option<Vec<usize>> {
    let demand = &p.demands[d];
    best_path(
        p,
        obj,
        residual,
        d,
        mapping[demand.src],
        mapping[demand.dst],
    )
}

/// Routes every demand in `order`, each on its best path given those before it. A demand
/// that finds no path is tried first, a few times, before giving up with its index.
pub fn route(
    p: &Problem,
    obj: Objective,
    mapping: &[usize],
    order: &[usize],
) -> Result<Vec<Vec<usize>>, usize> {
    let mut order = order.to_vec();
    let mut failed = 0;
    for _ in 0..4 {
        match route_in_order(p, obj, mapping, &order) {
            Ok(paths) => return Ok(paths),
            Err(d) => {
                failed = d;
                let at = order.iter().position(|&x| x == d).unwrap_or(0);
                if at == 0 {
                    break;
                }
                order.remove(at);
                order.insert(0, d);
            }
        }
    }
    Err(failed)
}

fn route_in_order(
    p: &Problem,
    obj: Objective,
    mapping: &[usize],
    order: &[usize],
) -> Result<Vec<Vec<usize>>, usize> {
    let mut residual: Vec<f64> = p.links.iter().map(|l| l.bw).collect();
    let mut paths = vec![Vec::new(); p.demands.len()];
    for &d in order {
        let demand = &p.demands[d];
        let path = placed_path(p, obj, &residual, mapping, d).ok_or(d)?;
        for &e in &path {
            residual[e] -= demand.bw;
        }
        paths[d] = path;
    }
    Ok(paths)
}

/// Demands by decreasing bandwidth (ties by index): the thesis's traffic order.
pub fn by_traffic(p: &Problem) -> Vec<usize> {
    let mut order: Vec<usize> = (0..p.demands.len()).collect();
    order.sort_by(|&a, &b| p.demands[b].bw.total_cmp(&p.demands[a].bw).then(a.cmp(&b)));
    order
}

/// Reroutes one demand at a time onto the path that, given all the others, gives the best
/// total: the objective's own best path and, on small problems, up to `ALTERNATIVES` other
/// simple paths; each change that improves the total is kept, until a round changes nothing
/// or time runs out.
pub fn reroute(
    p: &Problem,
    obj: Objective,
    mapping: &[usize],
    paths: &mut [Vec<usize>],
    deadline: Instant,
) {
    let mut score = obj.score(check::value(p, obj, paths));
    let alternatives = if p.demands.len() * p.links.len() <= SMALL {
        ALTERNATIVES
    } else {
        0
    };
    for _round in 0..4 {
        let mut improved = false;
        for d in 0..paths.len() {
            if paths[d].is_empty() || Instant::now() > deadline {
                continue;
            }
            let old = std::mem::take(&mut paths[d]);
            let residual = check::residuals(p, paths);
            let demand = &p.demands[d];
            let (from, to) = (mapping[demand.src], mapping[demand.dst]);
            let mut candidates: Vec<Vec<usize>> = placed_path(p, obj, &residual, mapping, d)
                .into_iter()
                .collect();
            if alternatives > 0 {
                let bound = demand.lat.unwrap_or(f64::INFINITY);
                let (others, _) = all_paths(p, from, to, alternatives);
                candidates.extend(others.into_iter().filter(|path| {
                    path.iter()
                        .all(|&e| residual[e] >= demand.bw - EPS * (1.0 + demand.bw))
                        && check::path_lat(p, path) <= bound + EPS * (1.0 + bound)
                }));
            }
            paths[d] = old;
            for path in candidates {
                let kept = std::mem::replace(&mut paths[d], path);
                let new = obj.score(check::value(p, obj, paths));
                if check::improves(new, score) {
                    score = new;
                    improved = true;
                } else {
                    paths[d] = kept;
                }
            }
        }
        if !improved {
            break;
        }
    }
}

/// Problems with at most this many demand x link pairs try alternative paths when rerouting.
const SMALL: usize = 1 << 14;

/// How many simple paths rerouting tries besides the objective's best.
const ALTERNATIVES: usize = 16;

/// Every simple path from `from` to `to` within `max_hops`, at most `cap` of them; false
/// when the cap cut the list short.
pub fn all_paths(p: &Problem, from: usize, to: usize, cap: usize) -> (Vec<Vec<usize>>, bool) {
    let mut found = Vec::new();
    let mut stack = Vec::new();
    let mut visited = vec![false; p.hosts.len()];
    visited[from] = true;
    let complete = walk(p, from, to, cap, &mut visited, &mut stack, &mut found);
    (found, complete)
}

fn walk(
    p: &Problem,
    at: usize,
    to: usize,
    cap: usize,
    visited: &mut [bool],
    stack: &mut Vec<usize>,
    found: &mut Vec<Vec<usize>>,
) -> bool {
    if at == to {
        if found.len() >= cap {
            return false;
        }
        found.push(stack.clone());
        return true;
    }
    if stack.len() >= p.max_hops {
        return true;
    }
    for &e in &p.out[at] {
        let next = p.links[e].to;
        if visited[next] {
            continue;
        }
        visited[next] = true;
        stack.push(e);
        let complete = walk(p, next, to, cap, visited, stack, found);
        stack.pop();
        visited[next] = false;
        if !complete {
            return false;
        }
    }
    true
}
