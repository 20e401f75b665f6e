//! VADAPT benchmarks (BENCHMARKS.md): greedy vs search vs exact, value and time.
//!
//!   cargo run --release -p vnet-adapt --example bench -- qap DIR [SECONDS]
//!       QAPLIB instances (NAME.dat with NAME.sln beside, from a QAPLIB copy you fetched; not
//!       in this repository) as GAPVEE problems: one VM per host, max_hops 1, cost objective.
//!   cargo run --release -p vnet-adapt --example bench -- random [COUNT]
//!       seeded random GAPVEE problems small enough for exact to prove: gaps to the optimum.
//!   cargo run --release -p vnet-adapt --example bench -- prove DIR [MAX_N] [SECONDS]
//!       the exact solver on the QAPLIB instances up to MAX_N, with the per-demand bound alone
//!       and with the Gilmore–Lawler bound: nodes, time to prove, root bound / optimum.
//!   cargo run --release -p vnet-adapt --example bench -- scale
//!       64 VMs on 32 hosts with 300 demands, and the sizes around it.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use vnet_adapt::{solve, Objective, Options, Problem, Solver};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match arg(0) {
        Some("qap") => qap(
            arg(1).expect("a directory of QAPLIB .dat/.sln files"),
            arg(2).map_or(2.0, |s| s.parse().expect("seconds")),
        ),
        Some("random") => random(arg(1).map_or(20, |s| s.parse().expect("count"))),
        Some("scale") => scale(),
        Some("prove") => prove(
            arg(1).expect("a directory of QAPLIB .dat files"),
            arg(2).map_or(12, |s| s.parse().expect("largest n")),
            arg(3).map_or(20.0, |s| s.parse().expect("seconds")),
        ),
        _ => eprintln!(
            "usage: bench qap DIR [SECONDS] | random [COUNT] | scale | prove DIR [MAX_N] [SECONDS]"
        ),
    }
}

fn run(
    p: &Problem,
    objective: Objective,
    solver: Solver,
    seconds: f64,
) -> (Option<vnet_adapt::Answer>, f64) {
    let o = Options {
        objective,
        solver,
        time_limit: Duration::from_secs_f64(seconds),
        ..Options::default()
    };
    let start = Instant::now();
    let answer = solve(p, &o)
        .map_err(|e| eprintln!("{}: {e}", solver.name()))
        .ok();
    (answer, start.elapsed().as_secs_f64())
}

fn numbers(text: &str) -> Vec<f64> {
    text.split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect()
}

/// A QAPLIB instance as GAPVEE: VM i has flow A[i][j] to VM j, host k is at distance B[k][l]
/// from host l, every host holds one VM; `cost` is then sum A[i][j] B[p(i)][p(j)].
/// Some copies put the optimum after n (`n opt`, then the matrices): it is returned too.
fn qap_problem(text: &str) -> Option<(usize, Problem, Option<f64>)> {
    let nums = numbers(text);
    let n = *nums.first()? as usize;
    let (skip, opt) = match nums.len().checked_sub(1 + 2 * n * n)? {
        0 => (1, None),
        1 => (2, Some(nums[1])),
        _ => return None,
    };
    let a = &nums[skip..skip + n * n];
    let b = &nums[skip + n * n..skip + 2 * n * n];
    // A linear term (both diagonals non-zero) has no GAPVEE counterpart.
    if (0..n).any(|i| a[i * n + i] != 0.0) && (0..n).any(|k| b[k * n + k] != 0.0) {
        return None;
    }
    let total: f64 = a.iter().sum::<f64>() + 1.0;
    let mut links = Vec::new();
    let mut demands = Vec::new();
    for i in 0..n {
        for j in (0..n).filter(|&j| j != i) {
            links.push(json!({"from": format!("h{i}"), "to": format!("h{j}"), "bw": total, "lat": b[i * n + j]}));
            if a[i * n + j] > 0.0 {
                demands.push(
                    json!({"src": format!("v{i}"), "dst": format!("v{j}"), "bw": a[i * n + j]}),
                );
            }
        }
    }
    let doc = json!({
        "hosts": (0..n).map(|i| json!({"name": format!("h{i}"), "compute": 1})).collect::<Vec<_>>(),
        "vms": (0..n).map(|i| json!({"name": format!("v{i}"), "host": format!("h{i}"), "compute": 1})).collect::<Vec<_>>(),
        "links": links, "demands": demands, "max_hops": 1,
    });
    Some((n, Problem::from_json(&doc.to_string()).ok()?, opt))
}

fn gap(value: f64, best: f64) -> f64 {
    if best == 0.0 {
        return if value == 0.0 { 0.0 } else { f64::INFINITY };
    }
    100.0 * (value - best) / best.abs()
}

/// Every `NAME.dat` in `dir` that reads as a QAP of at most `max_n`, by size, with the
/// optimum of `NAME.sln` when there is one.
fn instances(dir: &str, max_n: usize) -> Vec<(usize, String, Option<f64>, Problem)> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).expect("the QAPLIB directory") {
        let name = entry.expect("a directory entry").file_name();
        let Some(name) = name.to_str().and_then(|n| n.strip_suffix(".dat")) else {
            continue;
        };
        let dat = std::fs::read_to_string(format!("{dir}/{name}.dat")).expect("an instance");
        let opt = std::fs::read_to_string(format!("{dir}/{name}.sln"))
            .ok()
            .and_then(|s| numbers(&s).get(1).copied());
        match qap_problem(&dat) {
            Some((n, p, inline)) if n <= max_n => {
                rows.push((n, name.to_string(), opt.or(inline), p))
            }
            Some(_) => {}
            None => eprintln!("{name}: skipped (linear terms or unreadable)"),
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    rows
}

fn prove(dir: &str, max_n: usize, seconds: f64) {
    println!("| instance | n | optimum | per-demand: nodes, s, root/opt | Gilmore–Lawler: nodes, s, root/opt | nodes ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let o = Options {
        objective: Objective::Cost,
        solver: Solver::Exact,
        time_limit: Duration::from_secs_f64(seconds),
        ..Options::default()
    };
    for (n, name, opt, p) in instances(dir, max_n) {
        let mut cells = Vec::new();
        let mut nodes = Vec::new();
        let mut best = opt;
        for gl in [false, true] {
            let deadline = Instant::now() + o.time_limit;
            match vnet_adapt::exact::prove(&p, &o, deadline, gl) {
                Ok((found, stats)) => {
                    if found.optimal {
                        if opt.is_some_and(|o| (o - found.score).abs() > 1e-6) {
                            eprintln!(
                                "{name}: exact proved {} but the optimum is {opt:?}",
                                found.score
                            );
                        }
                        best = best.or(Some(found.score));
                    }
                    if opt.is_some_and(|o| stats.root > o + 1e-6) {
                        eprintln!("{name}: root bound {} above the optimum", stats.root);
                    }
                    let proof = if found.optimal { "" } else { " (limit)" };
                    cells.push((stats, proof));
                    nodes.push(stats.nodes as f64);
                }
                Err(e) => eprintln!("{name}: {e}"),
            }
        }
        let Some(opt) = best else { continue };
        let cell = |(s, proof): &(vnet_adapt::exact::Stats, &str)| {
            format!("{}{proof}, {:.3}, {:.3}", s.nodes, s.seconds, s.root / opt)
        };
        if let [a, b] = &cells[..] {
            println!(
                "| {name} | {n} | {opt} | {} | {} | {:.1}x |",
                cell(a),
                cell(b),
                nodes[0] / nodes[1]
            );
        }
    }
}

fn qap(dir: &str, seconds: f64) {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the QAPLIB directory")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".dat")
                .map(String::from)
        })
        .collect();
    names.sort();
    println!("| instance | n | optimum | greedy (gap %, s) | search (gap %, s) | exact (gap %, bound, s) |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let mut rows = Vec::new();
    for name in names {
        let Ok(sln) = std::fs::read_to_string(format!("{dir}/{name}.sln")) else {
            continue;
        };
        let Ok(dat) = std::fs::read_to_string(format!("{dir}/{name}.dat")) else {
            continue;
        };
        let Some(&opt) = numbers(&sln).get(1) else {
            continue;
        };
        let Some((n, p, _)) = qap_problem(&dat) else {
            eprintln!("{name}: skipped (linear terms or unreadable)");
            continue;
        };
        if n > 50 {
            continue;
        }
        rows.push((n, name, opt, p));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    for (n, name, opt, p) in rows {
        let (g, gt) = run(&p, Objective::Cost, Solver::Greedy, seconds);
        let (s, st) = run(&p, Objective::Cost, Solver::Search, seconds);
        let (e, et) = if n <= 30 {
            run(&p, Objective::Cost, Solver::Exact, seconds)
        } else {
            (None, 0.0)
        };
        let cell = |a: &Option<vnet_adapt::Answer>, t: f64| {
            a.as_ref().map_or("-".into(), |a| {
                format!("{} ({:.2}%, {t:.2})", a.value, gap(a.value, opt))
            })
        };
        let exact = e.as_ref().map_or("-".into(), |a| {
            let bound = a.bound.map_or("-".into(), |b| format!("{b}"));
            let proof = if a.optimal { "proven" } else { "limit" };
            format!(
                "{} ({:.2}%, {proof} bound {bound}, {et:.2})",
                a.value,
                gap(a.value, opt)
            )
        });
        println!(
            "| {name} | {n} | {opt} | {} | {} | {exact} |",
            cell(&g, gt),
            cell(&s, st)
        );
    }
}

/// A seeded random GAPVEE problem: capacities, pins, latency bounds, multi-hop routing.
fn random_problem(
    seed: u64,
    hosts: usize,
    vms: usize,
    demands: usize,
    link_p: f64,
    max_hops: usize,
) -> Problem {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut links = Vec::new();
    for a in 0..hosts {
        for b in (0..hosts).filter(|&b| b != a) {
            if rng.f64() < link_p || b == (a + 1) % hosts {
                links.push(json!({"from": format!("h{a}"), "to": format!("h{b}"), "bw": rng.u32(20..=200), "lat": rng.u32(1..=10)}));
            }
        }
    }
    let capacity = (2 * vms).div_ceil(hosts) as u32;
    let host_list: Vec<Value> = (0..hosts)
        .map(|h| json!({"name": format!("h{h}"), "compute": capacity}))
        .collect();
    let mut used = vec![0u32; hosts];
    let vm_list: Vec<Value> = (0..vms)
        .map(|v| {
            let mut h = rng.usize(..hosts);
            while used[h] >= capacity {
                h = (h + 1) % hosts;
            }
            used[h] += 1;
            json!({"name": format!("v{v}"), "host": format!("h{h}"), "compute": 1, "pinned": rng.f64() < 0.1})
        })
        .collect();
    let demand_list: Vec<Value> = (0..demands)
        .map(|_| {
            let s = rng.usize(..vms);
            let d = (s + rng.usize(1..vms)) % vms;
            let lat = (rng.f64() < 0.2).then(|| rng.u32(10..=30));
            json!({"src": format!("v{s}"), "dst": format!("v{d}"), "bw": rng.u32(1..=30), "lat": lat})
        })
        .collect();
    let doc = json!({"hosts": host_list, "links": links, "vms": vm_list, "demands": demand_list, "max_hops": max_hops, "local_bw": 300});
    Problem::from_json(&doc.to_string()).expect("a generated problem")
}

fn random(count: u64) {
    println!("| objective | problems | exact proved | greedy mean gap % | greedy worst % | search mean gap % | search worst % | search < greedy | greedy s | search s | exact s |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for objective in [Objective::Residual, Objective::Tight, Objective::Cost] {
        let (mut proved, mut better) = (0, 0);
        let (mut gaps_g, mut gaps_s) = (Vec::new(), Vec::new());
        let (mut tg, mut ts, mut te) = (0.0, 0.0, 0.0);
        for seed in 0..count {
            let p = random_problem(seed, 4, 7, 8, 0.5, 2);
            let (e, t3) = run(&p, objective, Solver::Exact, 10.0);
            let (g, t1) = run(&p, objective, Solver::Greedy, 1.0);
            let (s, t2) = run(&p, objective, Solver::Search, 0.2);
            tg += t1;
            ts += t2;
            te += t3;
            let Some(e) = e.filter(|e| e.optimal) else {
                continue;
            };
            proved += 1;
            let (Some(g), Some(s)) = (g, s) else { continue };
            let sign = if objective == Objective::Residual {
                -1.0
            } else {
                1.0
            };
            let rel = |v: f64| sign * (v - e.value) / e.value.abs().max(1.0) * 100.0;
            gaps_g.push(rel(g.value));
            gaps_s.push(rel(s.value));
            better += (sign * s.value < sign * g.value - 1e-9) as usize;
            if sign * s.value < sign * e.value - 1e-6 {
                eprintln!(
                    "seed {seed}: search {} beats exact's proven {}",
                    s.value, e.value
                );
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let worst = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let c = count as f64;
        println!(
            "| {} | {count} | {proved} | {:.2} | {:.2} | {:.2} | {:.2} | {better} | {:.4} | {:.3} | {:.3} |",
            objective.name(), mean(&gaps_g), worst(&gaps_g), mean(&gaps_s), worst(&gaps_s), tg / c, ts / c, te / c
        );
    }
}

fn scale() {
    println!("| VMs | hosts | demands | links | objective | greedy value (s) | search 0.25 s | search 0.5 s | search 1 s |");
    println!("| ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |");
    for (vms, hosts, demands) in [(16, 8, 75), (32, 16, 150), (64, 32, 300), (128, 64, 600)] {
        let p = random_problem(7, hosts, vms, demands, 0.3, 3);
        for objective in [Objective::Residual, Objective::Cost] {
            let (g, gt) = run(&p, objective, Solver::Greedy, 1.0);
            let value =
                |a: Option<vnet_adapt::Answer>| a.map_or("-".into(), |a| format!("{:.0}", a.value));
            let mut cells = Vec::new();
            for limit in [0.25, 0.5, 1.0] {
                let (s, st) = run(&p, objective, Solver::Search, limit);
                cells.push(format!("{} ({st:.2})", value(s)));
            }
            println!(
                "| {vms} | {hosts} | {demands} | {} | {} | {} ({gt:.3}) | {} |",
                p.links.len(),
                objective.name(),
                value(g),
                cells.join(" | ")
            );
        }
    }
}
