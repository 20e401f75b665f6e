//! The Proxy's cost and reaction, on the logic alone (no sockets): issue 11's yardsticks.
//! - cost: 64 daemons reporting 256 pairs each at 20 Hz, all pairs changing every period,
//!   for 20 s of simulated time: the CPU time per simulated second (= the share of one core
//!   the Proxy's view needs) and the memory its tables hold;
//! - reaction: a ring switches to a star; the time until the answer is settled on the star,
//!   for windows of 0.5, 1 and 2 s (target: window + 0.5 s).
//!
//! Run: `cargo bench -p vnet-vttif --bench proxy`

use std::time::Instant;
use vnet_grammar::Mac;
use vnet_vttif::history::PAIR_BYTES;
use vnet_vttif::{Limits, PairCount, Reporter, View};

fn mac(n: u32) -> Mac {
    Mac([2, 0, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8])
}

fn cost() {
    let (daemons, per, seconds) = (64u32, 256u32, 20u64);
    let mut view = View::new(Limits::default());
    let mut reporters: Vec<Reporter> = (0..daemons)
        .map(|d| Reporter::new(&format!("h{d}"), 1, 20))
        .collect();
    let mut cells: Vec<Vec<PairCount>> = (0..daemons)
        .map(|d| {
            (0..per)
                .map(|p| PairCount {
                    src: mac(d * per + p),
                    dst: mac((d * per + p + 1) % (daemons * per)),
                    frames: 0,
                    bytes: 0,
                })
                .collect()
        })
        .collect();
    let mut reports = Vec::new();
    let mut spent = std::time::Duration::ZERO;
    let (mut in_ingest, mut in_tick) = (0.0, 0.0);
    let mut now = 0;
    for _ in 0..seconds * 20 {
        now += 50;
        reports.clear();
        for (d, r) in reporters.iter_mut().enumerate() {
            for c in &mut cells[d] {
                c.frames += 10;
                c.bytes += 10_000;
            }
            reports.extend(r.next(cells[d].iter().copied()));
        }
        let start = Instant::now();
        let t0 = cpu();
        for r in &reports {
            view.ingest(now, r).expect("well-formed");
        }
        let t1 = cpu();
        view.tick(now);
        let t2 = cpu();
        in_ingest += t1 - t0;
        in_tick += t2 - t1;
        if now % 1000 == 0 {
            view.query(now, 2000, 0.1).expect("valid");
        }
        spent += start.elapsed();
    }
    let wall = spent.as_secs_f64() / seconds as f64;
    let share = (in_ingest + in_tick) / seconds as f64;
    println!(
        "cost: thread CPU {:.2}% (reports {:.2}%, ticks {:.2}%), wall {:.2}% (inflated by load)",
        share * 100.0,
        in_ingest / seconds as f64 * 100.0,
        in_tick / seconds as f64 * 100.0,
        wall * 100.0
    );
    let pairs = view.pair_count();
    let memory = pairs * (PAIR_BYTES + 64) + (daemons * per) as usize * 48;
    println!(
        "cost: {daemons} daemons x {per} pairs at 20 Hz: {:.2}% of one core, tables ~{:.1} MiB ({pairs} pairs x {PAIR_BYTES} B history)  [target < 10%, < 64 MB]",
        share * 100.0,
        memory as f64 / (1 << 20) as f64
    );
}

fn reaction(window: u64) {
    let mut view = View::new(Limits::default());
    let mut reporter = Reporter::new("a", 1, 20);
    let mut cells: Vec<PairCount> = Vec::new();
    let send = |cells: &mut Vec<PairCount>, s: u32, d: u32| {
        let (src, dst) = (mac(s), mac(d));
        match cells.iter_mut().find(|c| c.src == src && c.dst == dst) {
            Some(c) => {
                c.frames += 50;
                c.bytes += 50_000;
            }
            None => cells.push(PairCount {
                src,
                dst,
                frames: 50,
                bytes: 50_000,
            }),
        }
    };
    let ring = [(0, 1), (1, 2), (2, 3), (3, 0)];
    let star = [(1, 0), (2, 0), (3, 0), (0, 1), (0, 2), (0, 3)];
    let mut now = 0;
    let mut step =
        |pairs: &[(u32, u32)], view: &mut View, now: &mut u64, cells: &mut Vec<PairCount>| {
            *now += 50;
            for &(s, d) in pairs {
                send(cells, s, d);
            }
            if let Some(r) = reporter.next(cells.iter().copied()) {
                view.ingest(*now, &r).expect("well-formed");
            }
            view.tick(*now);
        };
    for _ in 0..(3 * window / 50 + 40) {
        step(&ring, &mut view, &mut now, &mut cells);
        view.query(now, window, 0.1).expect("valid");
    }
    let switched = now;
    let mut changed = None;
    let mut star_topology: Vec<(Mac, Mac)> = star.iter().map(|&(s, d)| (mac(s), mac(d))).collect();
    star_topology.sort();
    for _ in 0..(10 * window / 50) {
        step(&star, &mut view, &mut now, &mut cells);
        let a = view.query(now, window, 0.1).expect("valid");
        let mut t: Vec<_> = a.topology.iter().map(|p| (p.src, p.dst)).collect();
        t.sort();
        if t == star_topology {
            changed.get_or_insert(now - switched);
            if a.settled {
                println!(
                    "reaction: window {:.1} s: new answer after {} ms, settled after {} ms  [target: window + 0.5 s = {} ms]",
                    window as f64 / 1000.0,
                    changed.unwrap_or(0),
                    now - switched,
                    window + 500
                );
                return;
            }
        }
    }
    println!("reaction: window {window} ms: did not settle");
}

/// This thread's CPU time in seconds: unlike wall time, not inflated by a loaded machine.
fn cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    cost();
    for w in [500, 1000, 2000] {
        reaction(w);
    }
}
