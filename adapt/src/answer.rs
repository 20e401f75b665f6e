//! The answer as SPEC 5.3's JSON, and as text for people.

use crate::{Answer, Problem};
use serde_json::{json, Value};

/// `{"objective", "solver", "value", "before", "optimal", "bound", "mapping", "migrations",
/// "paths", "links"}`; `links` are the overlay links the paths use, in first-use order.
pub fn to_json(p: &Problem, a: &Answer) -> Value {
    let host = |h: usize| p.hosts[h].name.clone();
    let mapping: serde_json::Map<String, Value> = p
        .vms
        .iter()
        .zip(&a.solution.mapping)
        .map(|(vm, &h)| (vm.name.clone(), Value::String(host(h))))
        .collect();
    json!({
        "objective": a.objective.name(),
        "solver": a.solver.name(),
        "value": number(a.value),
        "before": a.before.map(number),
        "optimal": a.optimal,
        "bound": a.bound.map(number),
        "mapping": mapping,
        "migrations": migrations(p, a).iter().map(|(v, from, to)| json!({
            "vm": p.vms[*v].name,
            "from": from.map(host),
            "to": host(*to),
        })).collect::<Vec<_>>(),
        "paths": p.demands.iter().zip(&a.solution.paths).map(|(d, path)| {
            let mut hosts = vec![host(a.solution.mapping[d.src])];
            hosts.extend(path.iter().map(|&e| host(p.links[e].to)));
            json!({"src": p.vms[d.src].name, "dst": p.vms[d.dst].name, "hosts": hosts})
        }).collect::<Vec<_>>(),
        "links": used_links(a).into_iter().map(|e| json!({
            "from": host(p.links[e].from),
            "to": host(p.links[e].to),
        })).collect::<Vec<_>>(),
    })
}

/// JSON has no infinity: an unbounded value (an empty sum of bottlenecks over no link, say)
/// is written as null rather than an invalid document.
fn number(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

/// (vm, current host, new host) for every VM whose host changes or that gets its first.
pub fn migrations(p: &Problem, a: &Answer) -> Vec<(usize, Option<usize>, usize)> {
    p.vms
        .iter()
        .zip(&a.solution.mapping)
        .enumerate()
        .filter(|(_, (vm, &h))| vm.host != Some(h))
        .map(|(v, (vm, &h))| (v, vm.host, h))
        .collect()
}

fn used_links(a: &Answer) -> Vec<usize> {
    let mut links = Vec::new();
    for &e in a.solution.paths.iter().flatten() {
        if !links.contains(&e) {
            links.push(e);
        }
    }
    links
}

pub fn to_text(p: &Problem, a: &Answer) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let before = a
        .before
        .map_or("none (some VM has no usable current host)".into(), |b| {
            b.to_string()
        });
    let _ = writeln!(
        out,
        "{} by {}: {} (before: {before})",
        a.objective.name(),
        a.solver.name(),
        a.value
    );
    match (a.optimal, a.bound) {
        (true, _) => out.push_str("proven optimal\n"),
        (false, Some(b)) => {
            let _ = writeln!(
                out,
                "not proven optimal: stopped at the time limit; bound {b}"
            );
        }
        _ => {}
    }
    for (v, from, to) in migrations(p, a) {
        let from = from.map_or("(nowhere)", |h| p.hosts[h].name.as_str());
        let _ = writeln!(
            out,
            "migrate {} {from} -> {}",
            p.vms[v].name, p.hosts[to].name
        );
    }
    for (d, path) in p.demands.iter().zip(&a.solution.paths) {
        let mut hosts = vec![p.hosts[a.solution.mapping[d.src]].name.as_str()];
        hosts.extend(path.iter().map(|&e| p.hosts[p.links[e].to].name.as_str()));
        let _ = writeln!(
            out,
            "path {} -> {}: {}",
            p.vms[d.src].name,
            p.vms[d.dst].name,
            hosts.join(" ")
        );
    }
    out
}
