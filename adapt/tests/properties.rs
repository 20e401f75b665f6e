//! Random small problems: every solver's answer meets every constraint, search is never worse
//! than greedy, and exact equals an enumeration of every mapping and every routing.

use proptest::prelude::*;
use serde_json::{json, Value};
use std::time::Duration;
use vnet_adapt::check::{self, Objective};
use vnet_adapt::{solve, Error, Options, Problem, Solution, Solver};

const OBJECTIVES: [Objective; 3] = [Objective::Residual, Objective::Tight, Objective::Cost];

/// The links present among `hosts` x `hosts` optional (bw, lat), row-major, as JSON.
fn links_json(links: &[Option<(u8, u8)>], hosts: usize) -> Vec<Value> {
    let name = |i: usize| format!("h{i}");
    links
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let (a, b) = (i / hosts, i % hosts);
            let (bw, lat) = (*l)?;
            (a != b).then(|| json!({"from": name(a), "to": name(b), "bw": bw, "lat": lat}))
        })
        .collect()
}

/// 2–3 hosts, 2–4 VMs, some of the six possible links, 1–4 demands.
fn problems() -> impl Strategy<Value = Value> {
    (2usize..=3, 2usize..=4).prop_flat_map(|(hosts, vms)| {
        let host = proptest::option::weighted(0.7, 1u8..=3);
        let link = proptest::option::weighted(0.7, (1u8..=6, 1u8..=4));
        let vm = (0..hosts, proptest::bool::weighted(0.2), 1u8..=2);
        let demand = (0..vms, 1..vms, 1u8..=4, proptest::option::weighted(0.3, 1u8..=4));
        (
            proptest::collection::vec(host, hosts),
            proptest::collection::vec(link, hosts * hosts),
            proptest::collection::vec(vm, vms),
            proptest::collection::vec(demand, 1..=4),
            proptest::option::of(1usize..=2),
        )
            .prop_map(move |(caps, links, vm_list, demands, max_hops)| {
                let name = |i: usize| format!("h{i}");
                let links = links_json(&links, hosts);
                let demands: Vec<Value> = demands
                    .iter()
                    .map(|&(s, off, bw, lat)| {
                        let d = (s + off) % vm_list.len();
                        json!({"src": format!("v{s}"), "dst": format!("v{d}"), "bw": bw, "lat": lat})
                    })
                    .collect();
                json!({
                    "hosts": caps.iter().enumerate().map(|(i, c)| json!({"name": name(i), "compute": c})).collect::<Vec<_>>(),
                    "links": links,
                    "vms": vm_list.iter().enumerate().map(|(i, &(h, pinned, c))| json!({
                        "name": format!("v{i}"), "host": name(h), "pinned": pinned, "compute": c})).collect::<Vec<_>>(),
                    "demands": demands,
                    "max_hops": max_hops,
                    "local_bw": 5,
                })
            })
    })
}

fn options(objective: Objective, solver: Solver, max_migrations: Option<usize>) -> Options {
    Options {
        objective,
        solver,
        max_migrations,
        time_limit: Duration::from_secs(20),
        ..Options::default()
    }
}

/// Every simple path from a to b within the hop limit.
fn paths(p: &Problem, a: usize, b: usize) -> Vec<Vec<usize>> {
    fn go(
        p: &Problem,
        at: usize,
        b: usize,
        seen: &mut Vec<usize>,
        path: &mut Vec<usize>,
        out: &mut Vec<Vec<usize>>,
    ) {
        if at == b {
            out.push(path.clone());
            return;
        }
        if path.len() == p.max_hops {
            return;
        }
        for (e, l) in p.links.iter().enumerate() {
            if l.from == at && !seen.contains(&l.to) {
                seen.push(l.to);
                path.push(e);
                go(p, l.to, b, seen, path, out);
                path.pop();
                seen.pop();
            }
        }
    }
    let mut out = Vec::new();
    go(p, a, b, &mut vec![a], &mut Vec::new(), &mut out);
    out
}

/// The best score over every mapping within the budget and every combination of paths.
fn enumerate(p: &Problem, obj: Objective, budget: Option<usize>) -> Option<f64> {
    let (n, m) = (p.hosts.len(), p.vms.len());
    let mut best: Option<f64> = None;
    for code in 0..n.pow(m as u32) {
        let mapping: Vec<usize> = (0..m).map(|v| code / n.pow(v as u32) % n).collect();
        if check::check_hosts(p, &mapping).is_err()
            || budget.is_some_and(|b| check::migrations(p, &mapping) > b)
        {
            continue;
        }
        let choices: Vec<Vec<Vec<usize>>> = p
            .demands
            .iter()
            .map(|d| paths(p, mapping[d.src], mapping[d.dst]))
            .collect();
        let total: usize = choices.iter().map(|c| c.len()).product();
        for pick in 0..total {
            let mut rest = pick;
            let routes: Vec<Vec<usize>> = choices
                .iter()
                .map(|c| {
                    let r = c[rest % c.len()].clone();
                    rest /= c.len();
                    r
                })
                .collect();
            let s = Solution {
                mapping: mapping.clone(),
                paths: routes,
            };
            if vnet_adapt::check(p, &s).is_ok() {
                let score = obj.score(check::value(p, obj, &s.paths));
                best = Some(best.map_or(score, |b: f64| b.min(score)));
            }
        }
    }
    best
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 100, ..ProptestConfig::default() })]

    #[test]
    fn answers_are_valid_and_ordered(doc in problems(), budget in proptest::option::of(0usize..=2)) {
        let p = Problem::from_json(&doc.to_string()).expect("generated problems are well formed");
        for obj in OBJECTIVES {
            let mut scores = Vec::new();
            for solver in [Solver::Greedy, Solver::Search, Solver::Exact] {
                match solve(&p, &options(obj, solver, budget)) {
                    Ok(a) => {
                        prop_assert!(vnet_adapt::check(&p, &a.solution).is_ok());
                        prop_assert!(budget.is_none_or(|b| check::migrations(&p, &a.solution.mapping) <= b));
                        let value = check::value(&p, obj, &a.solution.paths);
                        prop_assert!((value - a.value).abs() < 1e-9, "reported {} but is {}", a.value, value);
                        scores.push(Some(obj.score(a.value)));
                    }
                    Err(Error::Infeasible(_)) => scores.push(None),
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
            let truth = enumerate(&p, obj, budget);
            let exact = scores[2];
            prop_assert_eq!(exact.is_some(), truth.is_some(), "{:?}: exact {:?}, enumeration {:?}", obj, exact, truth);
            if let (Some(e), Some(t)) = (exact, truth) {
                prop_assert!((e - t).abs() < 1e-9, "{:?}: exact {} != enumeration {}", obj, e, t);
            }
            if let Some(g) = scores[0] {
                let s = scores[1];
                prop_assert!(s.is_some_and(|s| s <= g + 1e-9), "{:?}: search {:?} worse than greedy {}", obj, s, g);
            }
            if let (Some(s), Some(t)) = (scores[1], truth) {
                prop_assert!(s >= t - 1e-9, "{:?}: search {} beats the optimum {}", obj, s, t);
            }
        }
    }
}

/// Quadratic-assignment-shaped problems, where exact uses the Gilmore–Lawler bound: every host
/// holds one VM, `cost`; some links missing, pins, latency bounds, narrow links and two hops
/// keep the bound's shortcuts (least latency, no sharing) honest.
fn assignment_problems() -> impl Strategy<Value = Value> {
    (3usize..=4).prop_flat_map(|hosts| {
        let link = proptest::option::weighted(0.85, (1u8..=6, 1u8..=9));
        let vm = (proptest::bool::weighted(0.15), 0..hosts);
        let demand = (0..hosts, 1..hosts, 1u8..=4, proptest::option::weighted(0.2, 2u8..=12));
        (
            proptest::collection::vec(link, hosts * hosts),
            proptest::collection::vec(vm, 2..=hosts),
            proptest::collection::vec(demand, 1..=5),
            1usize..=2,
        )
            .prop_map(move |(links, vm_list, demands, max_hops)| {
                let name = |i: usize| format!("h{i}");
                let vms = vm_list.len();
                let links = links_json(&links, hosts);
                let demands: Vec<Value> = demands
                    .iter()
                    .map(|&(s, off, bw, lat)| {
                        let (s, d) = (s % vms, (s + off) % vms);
                        json!({"src": format!("v{s}"), "dst": format!("v{d}"), "bw": bw, "lat": lat})
                    })
                    .filter(|d| d["src"] != d["dst"])
                    .collect();
                json!({
                    "hosts": (0..hosts).map(|i| json!({"name": name(i), "compute": 1})).collect::<Vec<_>>(),
                    "links": links,
                    // VM i starts on host i, so the current placement fits; some are pinned.
                    "vms": vm_list.iter().enumerate().map(|(i, &(pinned, _))| json!({
                        "name": format!("v{i}"), "host": name(i), "pinned": pinned, "compute": 1})).collect::<Vec<_>>(),
                    "demands": demands,
                    "max_hops": max_hops,
                })
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 60, ..ProptestConfig::default() })]

    #[test]
    fn exact_with_the_assignment_bound_equals_enumeration(doc in assignment_problems()) {
        let p = Problem::from_json(&doc.to_string()).expect("generated problems are well formed");
        let truth = enumerate(&p, Objective::Cost, None);
        match solve(&p, &options(Objective::Cost, Solver::Exact, None)) {
            Ok(a) => {
                prop_assert!(a.optimal);
                let t = truth.expect("exact found a solution, so the enumeration does");
                prop_assert!((a.value - t).abs() < 1e-9, "exact {} != enumeration {}", a.value, t);
                // The search's first incumbent is often optimal already, so a wrong bound
                // would only prune: check the bound itself against the optimum.
                let o = options(Objective::Cost, Solver::Exact, None);
                let deadline = std::time::Instant::now() + o.time_limit;
                let (_, stats) = vnet_adapt::exact::prove(&p, &o, deadline, true).expect("solved once");
                prop_assert!(stats.root <= t + 1e-9, "root bound {} above the optimum {}", stats.root, t);
            }
            Err(Error::Infeasible(why)) => prop_assert!(truth.is_none(), "exact: {why}; enumeration {truth:?}"),
            Err(e) => prop_assert!(false, "{e}"),
        }
    }
}
