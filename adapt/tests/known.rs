//! Small problems whose optimum was worked out by hand, for every objective and solver, and
//! the thesis's reduction from edge-disjoint paths (section 8.4).

use serde_json::{json, Value};
use std::time::Duration;
use vnet_adapt::{check, solve, Answer, Error, Objective, Options, Problem, Solver};

const SOLVERS: [Solver; 3] = [Solver::Greedy, Solver::Search, Solver::Exact];

fn problem(doc: Value) -> Problem {
    Problem::from_json(&doc.to_string()).expect("a well-formed problem")
}

fn run(p: &Problem, objective: Objective, solver: Solver) -> Answer {
    let o = Options {
        objective,
        solver,
        time_limit: Duration::from_secs(5),
        ..Options::default()
    };
    let answer = solve(p, &o).unwrap_or_else(|e| panic!("{solver:?}: {e}"));
    check(p, &answer.solution).expect("the answer meets every constraint");
    answer
}

fn link(from: &str, to: &str, bw: f64, lat: f64) -> Value {
    json!({"from": from, "to": to, "bw": bw, "lat": lat})
}

fn hosts(names: &[&str]) -> Value {
    names
        .iter()
        .map(|n| json!({"name": n, "compute": 1}))
        .collect()
}

fn vm(name: &str, host: &str, pinned: bool) -> Value {
    json!({"name": name, "host": host, "compute": 1, "pinned": pinned})
}

fn host_of(p: &Problem, a: &Answer, vm: &str) -> String {
    let v = p.vm_index(vm).expect("vm");
    p.hosts[a.solution.mapping[v]].name.clone()
}

/// h1 -> h2 is wide, h1 -> h3 narrower, h2 -> h3 narrow; a is pinned on h1, b must move.
fn triangle(max_hops: Option<usize>) -> Problem {
    problem(json!({
        "hosts": hosts(&["h1", "h2", "h3"]),
        "links": [link("h1", "h2", 100.0, 1.0), link("h1", "h3", 50.0, 1.0), link("h2", "h3", 10.0, 1.0)],
        "vms": [vm("a", "h1", true), vm("b", "h1", false)],
        "demands": [{"src": "a", "dst": "b", "bw": 10}],
        "max_hops": max_hops,
        "local_bw": 1000,
    }))
}

#[test]
fn residual_puts_the_partner_behind_the_widest_link() {
    // b is on h1 beside a, over capacity: it must move; on h2 the residual is 100 - 10.
    let p = triangle(None);
    for solver in SOLVERS {
        let a = run(&p, Objective::Residual, solver);
        assert_eq!(a.value, 90.0, "{solver:?}");
        assert_eq!(host_of(&p, &a, "b"), "h2");
        assert_eq!(a.before, None, "the current placement breaks h1's compute");
    }
    assert!(run(&p, Objective::Residual, Solver::Exact).optimal);
}

#[test]
fn tight_takes_the_path_that_fills_a_link() {
    // b on h3 through h2 fills h2->h3 exactly: residual 0, the tightest fit.
    let p = triangle(None);
    for solver in [Solver::Search, Solver::Exact] {
        let a = run(&p, Objective::Tight, solver);
        assert_eq!(a.value, 0.0, "{solver:?}");
        assert_eq!(host_of(&p, &a, "b"), "h3");
    }
    // One hop only: the direct link h1->h3 leaves 40, h1->h2 leaves 90.
    let p = triangle(Some(1));
    for solver in [Solver::Search, Solver::Exact] {
        assert_eq!(run(&p, Objective::Tight, solver).value, 40.0, "{solver:?}");
    }
}

#[test]
fn cost_with_a_full_link_detours_the_smaller_demand() {
    // Direct h1->h2 holds only one demand; the detour through h3 costs 2 per unit.
    let p = problem(json!({
        "hosts": hosts(&["h1", "h2", "h3"]).as_array().unwrap().iter().map(|h| {
            let mut h = h.clone(); h["compute"] = json!(2); h }).collect::<Vec<_>>(),
        "links": [link("h1", "h2", 10.0, 1.0), link("h1", "h3", 100.0, 1.0), link("h3", "h2", 100.0, 1.0)],
        "vms": [vm("a", "h1", true), vm("b", "h2", true), vm("c", "h1", true), vm("d", "h2", true)],
        "demands": [{"src": "a", "dst": "b", "bw": 10}, {"src": "c", "dst": "d", "bw": 5}],
    }));
    for solver in SOLVERS {
        let a = run(&p, Objective::Cost, solver);
        assert_eq!(a.value, 20.0, "{solver:?}: 10 x 1 direct + 5 x 2 around");
        assert_eq!(a.solution.paths[1].len(), 2);
    }
}

#[test]
fn residual_splits_two_demands_over_two_paths() {
    // Both direct would leave 40 each; one around through h3 leaves 70 + 70.
    let p = problem(json!({
        "hosts": [{"name": "h1"}, {"name": "h2"}, {"name": "h3"}],
        "links": [link("h1", "h2", 100.0, 1.0), link("h1", "h3", 100.0, 1.0), link("h3", "h2", 100.0, 1.0)],
        "vms": [vm("a", "h1", true), vm("b", "h2", true), vm("c", "h1", true), vm("d", "h2", true)],
        "demands": [{"src": "a", "dst": "b", "bw": 30}, {"src": "c", "dst": "d", "bw": 30}],
    }));
    for solver in SOLVERS {
        assert_eq!(
            run(&p, Objective::Residual, solver).value,
            140.0,
            "{solver:?}"
        );
    }
}

/// Three hosts on a line (distance 1 between neighbours, 2 end to end), one VM each;
/// a-b talk 10, b-c talk 1. Now a is on h1, b on h3, c on h2: cost 10 x 2 + 1 = 21;
/// swapping b and c gives 10 + 1 = 11, the optimum.
fn line(max_migrations: Option<usize>, min_gain: f64, solver: Solver) -> (Problem, Answer) {
    let mut links = Vec::new();
    for (x, y, d) in [("h1", "h2", 1.0), ("h2", "h3", 1.0), ("h1", "h3", 2.0)] {
        links.push(link(x, y, 100.0, d));
        links.push(link(y, x, 100.0, d));
    }
    let p = problem(json!({
        "hosts": hosts(&["h1", "h2", "h3"]),
        "links": links,
        "vms": [vm("a", "h1", false), vm("b", "h3", false), vm("c", "h2", false)],
        "demands": [{"src": "a", "dst": "b", "bw": 10}, {"src": "b", "dst": "c", "bw": 1}],
        "max_hops": 1,
    }));
    let o = Options {
        objective: Objective::Cost,
        solver,
        max_migrations,
        min_gain,
        time_limit: Duration::from_secs(5),
        ..Options::default()
    };
    let a = solve(&p, &o).expect("solvable");
    check(&p, &a.solution).expect("valid");
    (p, a)
}

#[test]
fn stability_budget_and_minimum_gain() {
    for solver in SOLVERS {
        let (_, free) = line(None, 0.0, solver);
        assert_eq!((free.value, free.before), (11.0, Some(21.0)), "{solver:?}");
        // A swap is two migrations; no host is free for a single move.
        let (_, one) = line(Some(1), 0.0, solver);
        assert_eq!(one.value, 21.0, "{solver:?}: one migration cannot help");
        let (_, two) = line(Some(2), 0.0, solver);
        assert_eq!(two.value, 11.0, "{solver:?}");
        // The gain is 10 of 21 (48%): below a 60% threshold nothing moves.
        let (p, timid) = line(None, 0.6, solver);
        assert_eq!(timid.value, 21.0, "{solver:?}");
        assert!(vnet_adapt::answer::migrations(&p, &timid).is_empty());
        assert_eq!(line(None, 0.4, solver).1.value, 11.0, "{solver:?}");
    }
}

#[test]
fn pins_are_honoured() {
    // Pinning b where it is leaves only c movable, which cannot help: 21 stays.
    let mut p = line(None, 0.0, Solver::Exact).0;
    p.vms[1].pinned = true;
    for solver in SOLVERS {
        let a = run(&p, Objective::Cost, solver);
        assert_eq!(host_of(&p, &a, "b"), "h3", "{solver:?}");
        // Best with b fixed on h3: a beside it on h2 (10) and c on h1 (2): 12.
        assert!(a.value >= 12.0);
    }
    assert_eq!(run(&p, Objective::Cost, Solver::Exact).value, 12.0);
}

/// EDPP (thesis 8.4): a complete graph whose edges of G have bw 1 + eps and the others 1,
/// and a demand of 1 per pair. Edge-disjoint paths exist iff the optimum is k x eps.
fn edp(nodes: usize, edges: &[(usize, usize)], pairs: &[(usize, usize)], eps: f64) -> Problem {
    let name = |i: usize| format!("h{i}");
    let mut links = Vec::new();
    for a in 0..nodes {
        for b in (0..nodes).filter(|&b| b != a) {
            let bw = if edges.contains(&(a, b)) {
                1.0 + eps
            } else {
                1.0
            };
            links.push(link(&name(a), &name(b), bw, 1.0));
        }
    }
    let mut vms = Vec::new();
    let mut demands = Vec::new();
    for (i, &(s, d)) in pairs.iter().enumerate() {
        vms.push(vm(&format!("s{i}"), &name(s), true));
        vms.push(vm(&format!("d{i}"), &name(d), true));
        demands.push(json!({"src": format!("s{i}"), "dst": format!("d{i}"), "bw": 1}));
    }
    problem(json!({
        "hosts": (0..nodes).map(|i| json!({"name": name(i)})).collect::<Vec<_>>(),
        "links": links, "vms": vms, "demands": demands,
    }))
}

#[test]
fn edge_disjoint_paths_reduction() {
    let eps = 0.5;
    // Yes: two disjoint paths 0-1-3 and 0-2-3, and 1->2 for a third pair.
    let yes = edp(
        4,
        &[(0, 1), (1, 3), (0, 2), (2, 3), (1, 2)],
        &[(0, 3), (0, 3), (1, 2)],
        eps,
    );
    // No: every path from 0 to 3 in G crosses 1->3.
    let no = edp(4, &[(0, 1), (1, 3), (0, 2), (2, 1)], &[(0, 3), (0, 3)], eps);
    let best_yes = run(&yes, Objective::Residual, Solver::Exact);
    assert!(best_yes.optimal);
    assert!(
        (best_yes.value - 3.0 * eps).abs() < 1e-9,
        "{}",
        best_yes.value
    );
    let best_no = run(&no, Objective::Residual, Solver::Exact);
    assert!(best_no.optimal);
    assert!(best_no.value < 2.0 * eps - 1e-9, "{}", best_no.value);
    assert!(
        (best_no.value - eps).abs() < 1e-9,
        "one pair gets G's path, the other 0"
    );
    for solver in [Solver::Greedy, Solver::Search] {
        let a = run(&yes, Objective::Residual, solver);
        assert!(a.value <= best_yes.value + 1e-9);
        assert!(run(&no, Objective::Residual, solver).value <= best_no.value + 1e-9);
    }
    assert!((run(&yes, Objective::Residual, Solver::Search).value - 3.0 * eps).abs() < 1e-9);
}

#[test]
fn infeasible_names_the_constraint() {
    let p = problem(json!({
        "hosts": [{"name": "h1", "compute": 1}, {"name": "h2", "compute": 1}],
        "links": [link("h1", "h2", 5.0, 1.0)],
        "vms": [vm("a", "h1", true), vm("b", "h2", true)],
        "demands": [{"src": "a", "dst": "b", "bw": 10}],
    }));
    for solver in SOLVERS {
        let o = Options {
            solver,
            ..Options::default()
        };
        match solve(&p, &o) {
            Err(Error::Infeasible(why)) => assert!(why.contains("demand a->b"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
    let crowded = problem(json!({
        "hosts": [{"name": "h1", "compute": 1}],
        "vms": [vm("a", "h1", true), vm("b", "h1", true)],
    }));
    let e = solve(&crowded, &Options::default()).unwrap_err();
    assert!(e.to_string().contains("capacity of host h1"), "{e}");
}

#[test]
fn malformed_names_the_field() {
    let cases = [
        (
            r#"{"hosts": [{"name": "h1", "compute": "x"}], "vms": []}"#,
            "hosts[0].compute",
        ),
        (
            r#"{"hosts": [{"name": "h1"}], "vms": [{"name": "a", "host": "h9"}]}"#,
            "vms[0].host",
        ),
        (
            r#"{"hosts": [{"name": "h1"}], "vms": [], "links": [{"from": "h1", "to": "h1", "bw": 1, "lat": 1}]}"#,
            "links[0].to",
        ),
        (
            r#"{"hosts": [{"name": "h1"}], "vms": [{"name": "a"}], "demands": [{"src": "a", "dst": "a", "bw": 1}]}"#,
            "demands[0].dst",
        ),
        (
            r#"{"hosts": [{"name": "h1"}], "vms": [], "colour": 1}"#,
            "colour",
        ),
        (
            r#"{"hosts": [{"name": "h1"}], "vms": [{"name": "a", "mac": "zz"}]}"#,
            "vms[0].mac",
        ),
        (
            r#"{"hosts": [{"name": "h1"}, {"name": "h2"}], "vms": [], "links": [{"from": "h1", "to": "h2", "bw": -1, "lat": 1}]}"#,
            "links[0].bw",
        ),
        (
            r#"{"hosts": [{"name": "h1"}], "vms": [{"name": "a", "pinned": true}]}"#,
            "vms[0].pinned",
        ),
    ];
    for (text, field) in cases {
        match Problem::from_json(text) {
            Err(e @ Error::Malformed { .. }) => {
                assert!(e.to_string().contains(field), "{e} lacks {field}")
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn degenerate_problems_have_answers() {
    // No VMs; VMs and no demands; one host holding everything.
    let docs = [
        json!({"hosts": [{"name": "h1"}], "vms": []}),
        json!({"hosts": [{"name": "h1"}, {"name": "h2"}], "vms": [vm("a", "h2", false)]}),
        json!({"hosts": [{"name": "h1", "compute": 2}], "vms": [vm("a", "h1", false), vm("b", "h1", false)],
               "demands": [{"src": "a", "dst": "b", "bw": 5}], "local_bw": 7}),
    ];
    for doc in docs {
        let p = problem(doc);
        for objective in [Objective::Residual, Objective::Tight, Objective::Cost] {
            for solver in SOLVERS {
                let a = run(&p, objective, solver);
                assert_eq!(
                    a.value,
                    a.before.expect("everything has a host"),
                    "{solver:?}: nothing to gain"
                );
                assert!(vnet_adapt::answer::migrations(&p, &a).is_empty());
            }
        }
    }
    // The local demand's bottleneck is local_bw.
    let p = problem(
        json!({"hosts": [{"name": "h1", "compute": 2}], "vms": [vm("a", "h1", false), vm("b", "h1", false)],
        "demands": [{"src": "a", "dst": "b", "bw": 5}], "local_bw": 7}),
    );
    assert_eq!(run(&p, Objective::Residual, Solver::Search).value, 7.0);
}
