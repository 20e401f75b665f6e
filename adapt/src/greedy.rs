//! The thesis's greedy heuristics (section 9.3.2, Appendix B): MapVM places pairs of
//! communicating VMs, by decreasing intensity, on free pairs of hosts by decreasing
//! throughput, then each straggler on the host with the best throughput to its partner;
//! AdaptTopology takes the hosts' traffic in decreasing order and each demand is routed on
//! its best path in that order. What the thesis left out (capacities, pins, the migration
//! budget) is honoured the least intrusive way: a host pair is free only if both VMs fit.

use crate::check::{self, Solution};
use crate::pairs::Loads;
use crate::route;
use crate::{unroutable, Error, Found, Options, Problem};

pub fn solve(p: &Problem, o: &Options) -> Result<Found, Error> {
    let mapping = map_vms(p, o)?;
    let order = topology_order(p, &mapping);
    let paths = route::route(p, o.objective, &mapping, &order)
        .map_err(|d| Error::Infeasible(unroutable(p, d)))?;
    let score = o.objective.score(check::value(p, o.objective, &paths));
    Ok(Found {
        solution: Solution { mapping, paths },
        score,
        optimal: false,
        bound: None,
    })
}

/// MapVM(A, B, G), with the order in which VMs were placed kept for the budget's repair.
pub fn map_vms(p: &Problem, o: &Options) -> Result<Vec<usize>, Error> {
    let demands = route::by_traffic(p);
    let mut host_pairs: Vec<usize> = (0..p.links.len()).collect();
    host_pairs.sort_by(|&a, &b| p.links[b].bw.total_cmp(&p.links[a].bw).then(a.cmp(&b)));
    let mut placed: Vec<Option<usize>> = vec![None; p.vms.len()];
    let mut order = Vec::new();
    let mut loads = Loads::new(p);
    let mut used = vec![false; p.hosts.len()];
    for (v, vm) in p.vms.iter().enumerate() {
        if let (true, Some(h)) = (vm.pinned, vm.host) {
            place(p, &mut placed, &mut loads, v, h);
            used[h] = true;
        }
    }
    // First pass: every pair of which neither VM is mapped goes to the first free host pair.
    for &d in &demands {
        let (s, t) = (p.demands[d].src, p.demands[d].dst);
        if placed[s].is_some() || placed[t].is_some() {
            continue;
        }
        let free = host_pairs.iter().map(|&e| &p.links[e]).find(|l| {
            !used[l.from]
                && !used[l.to]
                && loads.fits(p, s, l.from, None)
                && loads.fits(p, t, l.to, None)
        });
        if let Some(link) = free {
            let (a, b) = (link.from, link.to);
            place(p, &mut placed, &mut loads, s, a);
            place(p, &mut placed, &mut loads, t, b);
            used[a] = true;
            used[b] = true;
            order.extend([s, t]);
        }
    }
    // Second pass: stragglers, in list order, next to their partner.
    for &d in &demands {
        let (s, t) = (p.demands[d].src, p.demands[d].dst);
        for (x, partner, outgoing) in [(s, t, true), (t, s, false)] {
            if placed[x].is_some() {
                continue;
            }
            let h = straggler_host(p, &loads, x, placed[partner], outgoing)
                .ok_or_else(|| no_room(p, x))?;
            place(p, &mut placed, &mut loads, x, h);
            order.push(x);
        }
    }
    // VMs in no demand stay where they are when they can.
    for v in 0..p.vms.len() {
        if placed[v].is_none() {
            let h = p.vms[v]
                .host
                .filter(|&h| loads.fits(p, v, h, None))
                .or_else(|| (0..p.hosts.len()).find(|&h| loads.fits(p, v, h, None)))
                .ok_or_else(|| no_room(p, v))?;
            place(p, &mut placed, &mut loads, v, h);
        }
    }
    let mapping: Vec<usize> = placed.into_iter().map(|h| h.unwrap_or(0)).collect();
    within_budget(p, o, mapping, &order)
}

fn place(p: &Problem, placed: &mut [Option<usize>], loads: &mut Loads, v: usize, h: usize) {
    placed[v] = Some(h);
    loads.add(p, v, h);
}

fn no_room(p: &Problem, v: usize) -> Error {
    Error::Infeasible(format!(
        "capacity: greedy found no host with room for vm {}",
        p.vms[v].name
    ))
}

/// The host with the highest throughput to the partner's (its own host counts `local_bw`);
/// with no partner placed yet, the VM's current host or the host with the widest links.
fn straggler_host(
    p: &Problem,
    loads: &Loads,
    x: usize,
    partner: Option<usize>,
    outgoing: bool,
) -> Option<usize> {
    let throughput = |h: usize| -> f64 {
        match partner {
            Some(q) if q == h => p.local_bw,
            Some(q) => {
                let (a, b) = if outgoing { (h, q) } else { (q, h) };
                p.out[a]
                    .iter()
                    .map(|&e| &p.links[e])
                    .find(|l| l.to == b)
                    .map_or(0.0, |l| l.bw)
            }
            None => p.out[h].iter().map(|&e| p.links[e].bw).fold(0.0, f64::max),
        }
    };
    if partner.is_none() {
        if let Some(h) = p.vms[x].host.filter(|&h| loads.fits(p, x, h, None)) {
            return Some(h);
        }
    }
    (0..p.hosts.len())
        .filter(|&h| loads.fits(p, x, h, None))
        .max_by(|&a, &b| throughput(a).total_cmp(&throughput(b)).then(b.cmp(&a)))
}

/// AdaptTopology: the demands ordered by their host pair's total traffic, decreasing.
fn topology_order(p: &Problem, mapping: &[usize]) -> Vec<usize> {
    let n = p.hosts.len();
    let mut traffic = std::collections::HashMap::new();
    for demand in &p.demands {
        *traffic
            .entry(mapping[demand.src] * n + mapping[demand.dst])
            .or_insert(0.0) += demand.bw;
    }
    let pair = |d: usize| mapping[p.demands[d].src] * n + mapping[p.demands[d].dst];
    let mut order = route::by_traffic(p);
    order.sort_by(|&a, &b| {
        traffic[&pair(b)]
            .total_cmp(&traffic[&pair(a)])
            .then(pair(a).cmp(&pair(b)))
    });
    order
}

/// Undoes the latest moves until at most `max_migrations` VMs move: each VM goes back to
/// its current host where it fits.
pub fn within_budget(
    p: &Problem,
    o: &Options,
    mut mapping: Vec<usize>,
    order: &[usize],
) -> Result<Vec<usize>, Error> {
    let Some(budget) = o.max_migrations else {
        return Ok(mapping);
    };
    let mut loads = Loads::of(p, &mapping);
    for &v in order.iter().rev() {
        if check::migrations(p, &mapping) <= budget {
            break;
        }
        let Some(home) = p.vms[v].host.filter(|&h| h != mapping[v]) else {
            continue;
        };
        if loads.fits(p, v, home, None) {
            loads.remove(p, v, mapping[v]);
            loads.add(p, v, home);
            mapping[v] = home;
        }
    }
    if check::migrations(p, &mapping) <= budget {
        return Ok(mapping);
    }
    match p.current_mapping() {
        Some(current) if check::check_hosts(p, &current).is_ok() => Ok(current),
        _ => Err(Error::Infeasible(format!(
            "max_migrations {budget}: greedy's placement needs more migrations"
        ))),
    }
}
