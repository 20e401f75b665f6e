//! The thesis's configuration-time measurements (section 9.2.1, Figure 10, and 9.4) redone on
//! loopback with real `vnetd` processes started by `vnetc up`: the resilient star among 8
//! daemons, the all-to-all fast path added to it, and the all-to-all among 28 daemons. Each
//! time is the wall time of one `vnetc apply` process, from its start to its exit; "converged"
//! runs with `--wait`, so every primitive is acknowledged and every link is up at both ends.
//!
//! Run: `scripts/bench-live` (builds release `vnetd`, then `cargo bench --bench live`).
//! `VNET_BENCH_ROUNDS` sets the repetitions (default 10).

#[path = "../tests/live_common/mod.rs"]
mod live_common;

use live_common::*;
use std::time::{Duration, Instant};

/// Thesis numbers, seconds.
const THESIS_STAR_8: f64 = 0.94;
const THESIS_FAST_8: f64 = 1.6;
const THESIS_STAR_28: f64 = 2.9;
const THESIS_ALL_28: f64 = 20.5;

struct Fleet {
    world: World,
    empty: String,
    star: String,
    all: String,
}

fn fleet(tag: &str, net: u8, n: usize) -> Fleet {
    let mut world = World::new(tag, net);
    let empty = world.write("empty.vnet", &topology(net, n, 7000, Shape::Empty));
    let star = world.write("star.vnet", &topology(net, n, 7000, Shape::Star));
    let all = world.write("all.vnet", &topology(net, n, 7000, Shape::AllToAll));
    let out = world.vnetc(&[&["up", "--fresh", &star][..], &DGRAM].concat());
    expect_code(&out, 0);
    Fleet {
        world,
        empty,
        star,
        all,
    }
}

/// One timed `vnetc apply` (must succeed).
fn timed(f: &Fleet, file: &str, wait: bool) -> Duration {
    let mut args = vec!["apply", file];
    if wait {
        args.push("--wait");
    }
    let start = Instant::now();
    let out = f.world.vnetc(&args);
    let t = start.elapsed();
    expect_code(&out, 0);
    t
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn row(name: &str, thesis: f64, acked: Vec<Duration>, converged: Vec<Duration>) {
    let (a, c) = (median(acked.clone()), median(converged.clone()));
    let best = converged.iter().min().copied().unwrap_or_default();
    println!(
        "| {name} | {thesis:.2} s | {:.1} ms | {:.1} ms | {:.1} ms | {:.0}x |",
        a.as_secs_f64() * 1e3,
        c.as_secs_f64() * 1e3,
        best.as_secs_f64() * 1e3,
        thesis / c.as_secs_f64()
    );
}

fn main() {
    // `cargo bench` passes --bench; no other arguments are meaningful here.
    let rounds: usize = std::env::var("VNET_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10)
        .max(1);
    let eight = fleet("bench8", 171, 8);
    let twenty_eight = fleet("bench28", 172, 28);
    let (mut star8, mut star8w, mut fast8, mut fast8w) = (vec![], vec![], vec![], vec![]);
    let (mut star28, mut star28w, mut all28, mut all28w) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        for wait in [false, true] {
            timed(&eight, &eight.empty, false);
            let s = timed(&eight, &eight.star, wait);
            let f = timed(&eight, &eight.all, wait);
            timed(&twenty_eight, &twenty_eight.empty, false);
            let s28 = timed(&twenty_eight, &twenty_eight.star, wait);
            let a28 = timed(&twenty_eight, &twenty_eight.all, wait);
            if wait {
                star8w.push(s);
                fast8w.push(f);
                star28w.push(s28);
                all28w.push(a28);
            } else {
                star8.push(s);
                fast8.push(f);
                star28.push(s28);
                all28.push(a28);
            }
        }
    }
    let links = |n: usize| (n - 1) + (n - 1) * (n - 2) / 2;
    println!("\nvnetc apply on loopback, {rounds} rounds (median; best converged), release build, {} cores\n", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("| topology change | thesis | acknowledged | converged (--wait) | best converged | thesis / converged |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let star_rules = |n: usize| 5 * (n - 1) + 2;
    let fast_rules = |n: usize| (n - 1) * (n - 2);
    row(
        &format!("star among 8 daemons (7 links, {} rules)", star_rules(8)),
        THESIS_STAR_8,
        star8,
        star8w,
    );
    row(
        &format!(
            "+ all-to-all fast path among 8 ({} more links, {} more rules)",
            links(8) - 7,
            fast_rules(8)
        ),
        THESIS_FAST_8,
        fast8,
        fast8w,
    );
    row(
        &format!("star among 28 daemons (27 links, {} rules)", star_rules(28)),
        THESIS_STAR_28,
        star28,
        star28w,
    );
    row(
        &format!(
            "+ all-to-all among 28 ({} more links, {} more rules)",
            links(28) - 27,
            fast_rules(28)
        ),
        THESIS_ALL_28,
        all28,
        all28w,
    );
    drop(eight);
    drop(twenty_eight);
}
