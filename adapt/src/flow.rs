//! The `cost` estimate in quadratic-assignment form: when every demand could take the least
//! latency path between any two hosts (no latency bound, no path too narrow), a mapping's
//! estimate is sum over VM pairs of flow x latency, and a move's or swap's change is one pass
//! over two rows of the flow matrix instead of a walk over demands.

use crate::check::Objective;
use crate::pairs::Pairs;
use crate::Problem;

pub struct Flow {
    vms: usize,
    hosts: usize,
    /// Bandwidth from VM to VM, summed over demands.
    flow: Vec<f64>,
    /// Least latency from host to host (0 on the diagonal).
    lat: Vec<f64>,
}

/// No flow matrix above this many VMs (n x n floats).
const VMS_MAX: usize = 2048;

impl Flow {
    pub fn new(p: &Problem, obj: Objective, pairs: &Pairs) -> Option<Flow> {
        let (vms, hosts) = (p.vms.len(), p.hosts.len());
        if obj != Objective::Cost || vms > VMS_MAX || p.demands.iter().any(|d| d.lat.is_some()) {
            return None;
        }
        let widest = p.demands.iter().map(|d| d.bw).fold(0.0, f64::max);
        let mut lat = vec![0.0; hosts * hosts];
        for a in 0..hosts {
            for b in (0..hosts).filter(|&b| b != a) {
                if pairs.widest(a, b) < widest || !pairs.min_lat(a, b).is_finite() {
                    return None;
                }
                lat[a * hosts + b] = pairs.min_lat(a, b);
            }
        }
        let mut flow = vec![0.0; vms * vms];
        for d in &p.demands {
            flow[d.src * vms + d.dst] += d.bw;
        }
        Some(Flow {
            vms,
            hosts,
            flow,
            lat,
        })
    }

    fn f(&self, v: usize, w: usize) -> f64 {
        self.flow[v * self.vms + w]
    }

    fn l(&self, a: usize, b: usize) -> f64 {
        self.lat[a * self.hosts + b]
    }

    /// The change in estimate if `i` and `j` traded hosts.
    pub fn swap(&self, mapping: &[usize], i: usize, j: usize) -> f64 {
        self.delta(mapping, i, mapping[j], Some((j, mapping[i])))
    }

    /// The change in estimate if `v` went to `hv` and (for a swap) `w` to `hw`.
    pub fn delta(
        &self,
        mapping: &[usize],
        v: usize,
        hv: usize,
        other: Option<(usize, usize)>,
    ) -> f64 {
        let a = mapping[v];
        let (w, hw) = other.unwrap_or((usize::MAX, 0));
        let mut delta = 0.0;
        for (k, &mk) in mapping.iter().enumerate() {
            if k == v || k == w {
                continue;
            }
            delta += self.f(v, k) * (self.l(hv, mk) - self.l(a, mk))
                + self.f(k, v) * (self.l(mk, hv) - self.l(mk, a));
            if other.is_some() {
                let b = mapping[w];
                delta += self.f(w, k) * (self.l(hw, mk) - self.l(b, mk))
                    + self.f(k, w) * (self.l(mk, hw) - self.l(mk, b));
            }
        }
        if other.is_some() {
            let b = mapping[w];
            delta += self.f(v, w) * (self.l(hv, hw) - self.l(a, b))
                + self.f(w, v) * (self.l(hw, hv) - self.l(b, a));
        }
        delta
    }
}

/// Every swap's delta, kept current after each swap in O(n^2) (Taillard's update for the
/// robust tabu search): only the terms between the swapped pair and the others change.
pub struct Swaps {
    n: usize,
    delta: Vec<f64>,
}

impl Swaps {
    pub fn new(flow: &Flow, mapping: &[usize]) -> Swaps {
        let n = mapping.len();
        let mut swaps = Swaps {
            n,
            delta: vec![0.0; n * n],
        };
        for i in 0..n {
            for j in i + 1..n {
                swaps.delta[i * n + j] = flow.swap(mapping, i, j);
            }
        }
        swaps
    }

    pub fn get(&self, i: usize, j: usize) -> f64 {
        let (i, j) = if i < j { (i, j) } else { (j, i) };
        self.delta[i * self.n + j]
    }

    /// After `r` and `s` swapped hosts (`mapping` is the new one).
    pub fn after_swap(&mut self, flow: &Flow, mapping: &[usize], r: usize, s: usize) {
        let n = self.n;
        let (pr, ps) = (mapping[r], mapping[s]);
        for i in 0..n {
            for j in i + 1..n {
                if i == r || i == s || j == r || j == s {
                    self.delta[i * n + j] = flow.swap(mapping, i, j);
                    continue;
                }
                let (pi, pj) = (mapping[i], mapping[j]);
                let out = (flow.f(r, i) - flow.f(r, j) + flow.f(s, j) - flow.f(s, i))
                    * (flow.l(ps, pi) - flow.l(ps, pj) + flow.l(pr, pj) - flow.l(pr, pi));
                let into = (flow.f(i, r) - flow.f(j, r) + flow.f(j, s) - flow.f(i, s))
                    * (flow.l(pi, ps) - flow.l(pj, ps) + flow.l(pj, pr) - flow.l(pi, pr));
                self.delta[i * n + j] += out + into;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check;
    use serde_json::json;

    /// Every move's and swap's delta equals the change in the routed cost (capacities never
    /// bind here, so the estimate is the objective).
    #[test]
    fn deltas_match_the_objective() {
        let mut rng = fastrand::Rng::with_seed(3);
        let (hosts, vms) = (4, 6);
        let mut links = Vec::new();
        for a in 0..hosts {
            for b in (0..hosts).filter(|&b| b != a) {
                links.push(json!({"from": format!("h{a}"), "to": format!("h{b}"), "bw": 1000, "lat": rng.u32(1..9)}));
            }
        }
        let demands: Vec<_> = (0..10)
            .map(|_| {
                let s = rng.usize(..vms);
                json!({"src": format!("v{s}"), "dst": format!("v{}", (s + rng.usize(1..vms)) % vms), "bw": rng.u32(1..9)})
            })
            .collect();
        let doc = json!({
            "hosts": (0..hosts).map(|h| json!({"name": format!("h{h}")})).collect::<Vec<_>>(),
            "vms": (0..vms).map(|v| json!({"name": format!("v{v}")})).collect::<Vec<_>>(),
            "links": links, "demands": demands, "max_hops": 2,
        });
        let p = Problem::from_json(&doc.to_string()).expect("problem");
        let pairs = Pairs::new(&p);
        let flow = Flow::new(&p, Objective::Cost, &pairs).expect("flow form applies");
        let cost = |m: &[usize]| -> f64 {
            let order = crate::route::by_traffic(&p);
            let paths = crate::route::route(&p, Objective::Cost, m, &order).expect("routable");
            check::value(&p, Objective::Cost, &paths)
        };
        let mut mapping: Vec<usize> = (0..vms).map(|_| rng.usize(..hosts)).collect();
        let mut swaps = Swaps::new(&flow, &mapping);
        for _ in 0..200 {
            // Walk by swaps, keeping the swap table current as the search does.
            let (r, s) = (rng.usize(..vms), rng.usize(..vms));
            if r != s {
                mapping.swap(r, s);
                swaps.after_swap(&flow, &mapping, r, s);
            }
            let (v, w, h) = (rng.usize(..vms), rng.usize(..vms), rng.usize(..hosts));
            let mut moved = mapping.clone();
            moved[v] = h;
            let want = cost(&moved) - cost(&mapping);
            assert!((flow.delta(&mapping, v, h, None) - want).abs() < 1e-9);
            if v != w {
                assert!((swaps.get(v, w) - flow.swap(&mapping, v, w)).abs() < 1e-9);
                let mut swapped = mapping.clone();
                swapped.swap(v, w);
                let want = cost(&swapped) - cost(&mapping);
                let got = flow.delta(&mapping, v, mapping[w], Some((w, mapping[v])));
                assert!((got - want).abs() < 1e-9, "{got} != {want}");
            }
        }
    }
}
