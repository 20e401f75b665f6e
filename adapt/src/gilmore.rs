//! The Gilmore–Lawler bound for `cost` when no host can hold two VMs (the quadratic
//! assignment problem, with the least latency between hosts as distance). For a partial
//! mapping: the placed VMs' cost among themselves, plus the least linear assignment of the
//! others to the free hosts, where placing VM i on host k costs its flow to the placed VMs
//! times their latencies from k, plus the least scalar product of i's flows to the unplaced
//! VMs with k's latencies to the free hosts (one sorted up, the other down). A demand's path
//! is never shorter than the least latency, so this bounds every routing of every completion.

use crate::assign;
use crate::check::Objective;
use crate::pairs::{Loads, Pairs};
use crate::Problem;

pub struct GilmoreLawler {
    vms: usize,
    hosts: usize,
    /// Bandwidth from VM to VM, summed over demands.
    flow: Vec<f64>,
    /// Least latency from host to host (infinite when unreachable, 0 on the diagonal).
    lat: Vec<f64>,
    /// Whether VM v fits host h alone.
    fits: Vec<bool>,
}

/// No bound above this many VM pairs x hosts in the one-VM-per-host check.
const CHECK_MAX: usize = 1 << 22;

/// Flow x latency, where no flow costs nothing even between unreachable hosts.
fn term(f: f64, l: f64) -> f64 {
    if f == 0.0 {
        0.0
    } else {
        f * l
    }
}

/// The least of sum f[i] x l[σ(i)] over injections σ: the largest flows meet the smallest
/// latencies. `f` sorted down, `l` sorted up, `l` at least as long as `f`.
fn least_product(f: &[f64], l: &[f64]) -> f64 {
    f.iter().zip(l).map(|(&f, &l)| term(f, l)).sum()
}

impl GilmoreLawler {
    /// The bound's data, when the problem has the assignment shape: `cost`, at most as many
    /// VMs as hosts, and no host that could hold any two VMs.
    pub fn new(p: &Problem, obj: Objective, pairs: &Pairs) -> Option<GilmoreLawler> {
        let (vms, hosts) = (p.vms.len(), p.hosts.len());
        if obj != Objective::Cost || vms > hosts || vms * vms * hosts > CHECK_MAX {
            return None;
        }
        let empty = Loads::new(p);
        let mut fits = vec![false; vms * hosts];
        for h in 0..hosts {
            for v in 0..vms {
                fits[v * hosts + h] = empty.fits(p, v, h, None);
            }
            for v in (0..vms).filter(|&v| fits[v * hosts + h]) {
                let mut one = Loads::new(p);
                one.add(p, v, h);
                if (v + 1..vms).any(|w| one.fits(p, w, h, None)) {
                    return None;
                }
            }
        }
        let mut flow = vec![0.0; vms * vms];
        for d in &p.demands {
            flow[d.src * vms + d.dst] += d.bw;
        }
        let mut lat = vec![0.0; hosts * hosts];
        for a in 0..hosts {
            for b in (0..hosts).filter(|&b| b != a) {
                lat[a * hosts + b] = pairs.min_lat(a, b);
            }
        }
        Some(GilmoreLawler {
            vms,
            hosts,
            flow,
            lat,
            fits,
        })
    }

    /// A lower bound of the `cost` of every completion of `partial` (VM to host).
    pub fn bound(&self, partial: &[Option<usize>]) -> f64 {
        let (f, l) = (
            |v: usize, w: usize| self.flow[v * self.vms + w],
            |a: usize, b: usize| self.lat[a * self.hosts + b],
        );
        let placed: Vec<(usize, usize)> = (0..self.vms)
            .filter_map(|v| partial[v].map(|h| (v, h)))
            .collect();
        let open: Vec<usize> = (0..self.vms).filter(|&v| partial[v].is_none()).collect();
        let mut taken = vec![false; self.hosts];
        placed.iter().for_each(|&(_, h)| taken[h] = true);
        let free: Vec<usize> = (0..self.hosts).filter(|&h| !taken[h]).collect();
        let mut fixed = 0.0;
        for &(v, a) in &placed {
            fixed += placed
                .iter()
                .map(|&(w, b)| term(f(v, w), l(a, b)))
                .sum::<f64>();
        }
        if open.is_empty() {
            return fixed;
        }
        if open.len() > free.len() {
            return f64::INFINITY;
        }
        let sorted = |mut xs: Vec<f64>, down: bool| {
            xs.sort_by(|a, b| if down { b.total_cmp(a) } else { a.total_cmp(b) });
            xs
        };
        let others = |i: usize, out: bool| {
            let row = open.iter().filter(|&&j| j != i);
            sorted(
                row.map(|&j| if out { f(i, j) } else { f(j, i) }).collect(),
                true,
            )
        };
        let away = |k: usize, out: bool| {
            let row = free.iter().filter(|&&m| m != k);
            sorted(
                row.map(|&m| if out { l(k, m) } else { l(m, k) }).collect(),
                false,
            )
        };
        let lat_rows: Vec<(Vec<f64>, Vec<f64>)> = free
            .iter()
            .map(|&k| (away(k, true), away(k, false)))
            .collect();
        let (n, m) = (open.len(), free.len());
        let mut cost = vec![f64::INFINITY; n * m];
        for (r, &i) in open.iter().enumerate() {
            let (out, inn) = (others(i, true), others(i, false));
            for (c, &k) in free.iter().enumerate() {
                if !self.fits[i * self.hosts + k] {
                    continue;
                }
                let linear: f64 = placed
                    .iter()
                    .map(|&(j, h)| term(f(i, j), l(k, h)) + term(f(j, i), l(h, k)))
                    .sum();
                let (lout, lin) = &lat_rows[c];
                // Each unplaced pair's flow counts once out of i and once into j: half each.
                let quadratic = 0.5 * (least_product(&out, lout) + least_product(&inn, lin));
                cost[r * m + c] = linear + quadratic;
            }
        }
        fixed + assign::least(&cost, n, m)
    }
}
