//! VTTIF at a real Proxy (`vnetd`), over the real control protocol:
//!
//! - cost: N simulated reporters (threads, each its own authenticated connection and its own
//!   `vnet_vttif::Reporter`) report 256 pairs each at 20 Hz, every pair changing every
//!   period; the Proxy's CPU share (utime + stime from /proc over the run) and memory (VmHWM);
//! - reaction: 8 reporters switch from a ring to a star of pairs; the time until the Proxy's
//!   answer is settled on the new topology, for windows of 0.5, 1 and 2 s.
//!
//! `cargo bench -p vnet-daemon --bench vttif` (`VNET_BENCH_SECS`, default 10: each cost run).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{key, mac, TempDir, Vnetd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use vnet_daemon::proto::ProxySpec;
use vnet_daemon::Client;
use vnet_grammar::Mac;
use vnet_vttif::{PairCount, Reporter};

const HZ: u64 = 20;
const HUB: Mac = Mac([2, 0, 0, 0, 0, 100]);

fn proxy(dir: &TempDir, net: u8, reporters: usize) -> Vnetd {
    let p = Vnetd::start(dir.path(), "proxy", &format!("127.{net}.0.1:7000"), &[]);
    let mut members: Vec<String> = (0..reporters).map(|i| format!("r{i}")).collect();
    members.push("proxy".into());
    p.client()
        .set_proxy(ProxySpec {
            name: "proxy".into(),
            addr: p.addr.to_string(),
            members,
        })
        .expect("set proxy");
    p
}

/// One reporter's run: `pairs(period)` gives its pairs' cumulative counts at each period.
fn report(p: &Vnetd, name: &str, stop: &AtomicBool, pairs: &dyn Fn(u64) -> Vec<PairCount>) {
    let mut c = Client::connect(p.addr, &key()).expect("connect");
    let mut r = Reporter::new(name, 1, HZ);
    let started = Instant::now();
    let mut period = 0u64;
    while !stop.load(Ordering::Relaxed) {
        if let Some(rep) = r.next(pairs(period)) {
            c.report(&rep).expect("report");
        }
        period += 1;
        let next = started + Duration::from_millis(period * 1000 / HZ);
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, r)| r)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 (1-based); after the name, 11 and 12 (0-based).
    (ticks(11) + ticks(12)) / 100.0
}

fn peak_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn cost(reporters: usize, pairs: usize, seconds: u64, net: u8) {
    let dir = TempDir::new("bench-vttif-cost");
    let p = proxy(&dir, net, reporters);
    let pid = p.pid().expect("pid");
    let stop = AtomicBool::new(false);
    let (cpu0, t0) = (cpu_seconds(pid), Instant::now());
    std::thread::scope(|s| {
        for i in 0..reporters {
            let (p, stop) = (&p, &stop);
            s.spawn(move || {
                let cells = move |period: u64| -> Vec<PairCount> {
                    (0..pairs)
                        .map(|j| PairCount {
                            src: Mac([2, 1, i as u8, (i >> 8) as u8, 0, j as u8]),
                            dst: Mac([2, 2, 0, 0, (j >> 8) as u8, j as u8]),
                            frames: period * 10,
                            bytes: period * 10_000,
                        })
                        .collect()
                };
                report(p, &format!("r{i}"), stop, &cells)
            });
        }
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
    });
    let cpu = cpu_seconds(pid) - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let state = p.client().vttif().expect("state");
    println!(
        "| {reporters} × {pairs} pairs at {HZ} Hz | {:.1}% of a core | {:.0} MiB peak RSS | {} reports taken, {} pairs |",
        100.0 * cpu / wall,
        peak_mib(pid),
        state.reports_taken,
        state.pairs
    );
}

/// Every reporter talks to the next in a ring, then all switch to one hub (100 kB/s a pair).
fn reaction(window_ms: u64, net: u8) {
    let n = 8usize;
    let dir = TempDir::new("bench-vttif-react");
    let p = proxy(&dir, net, n);
    let stop = AtomicBool::new(false);
    let switch_at = 4 * HZ + 2 * window_ms * HZ / 1000; // settled on the ring first
    let switched = std::sync::Mutex::new(None::<Instant>);
    let result = std::thread::scope(|s| {
        for i in 0..n {
            let (p, stop, switched) = (&p, &stop, &switched);
            s.spawn(move || {
                let cells = move |period: u64| -> Vec<PairCount> {
                    let ring = (i + 1) % n;
                    let (ring_periods, hub_periods) = match period.checked_sub(switch_at) {
                        None => (period, 0),
                        Some(after) => {
                            if i == 0 {
                                switched.lock().unwrap().get_or_insert_with(Instant::now);
                            }
                            (switch_at, after)
                        }
                    };
                    let count = |dst: Mac, periods: u64| PairCount {
                        src: mac(i as u8 + 1),
                        dst,
                        frames: periods,
                        bytes: periods * 5000,
                    };
                    vec![
                        count(mac(ring as u8 + 1), ring_periods),
                        count(HUB, hub_periods),
                    ]
                };
                report(p, &format!("r{i}"), stop, &cells)
            });
        }
        let mut c = p.client();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut first_new = None;
        let out = loop {
            let a = c.infer(window_ms, 0.1).expect("infer");
            let star = a.topology.len() == n && a.topology.iter().all(|x| x.dst == HUB);
            let at = *switched.lock().unwrap();
            if let (Some(at), true) = (at, star) {
                first_new.get_or_insert(at.elapsed());
                if a.settled {
                    break Some((first_new, at.elapsed(), a.changes));
                }
            }
            if Instant::now() > deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        stop.store(true, Ordering::Relaxed);
        out
    });
    match result {
        Some((Some(first), settled, changes)) => println!(
            "| {} s | {:.2} s | {:.2} s | {changes} |",
            window_ms as f64 / 1000.0,
            first.as_secs_f64(),
            settled.as_secs_f64()
        ),
        _ => println!(
            "| {} s | not settled within 30 s | | |",
            window_ms as f64 / 1000.0
        ),
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let secs: u64 = std::env::var("VNET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    println!("| reporters × pairs | Proxy CPU | Proxy memory | taken |\n| --- | --- | --- | --- |");
    let sizes: Vec<usize> = std::env::var("VNET_BENCH_REPORTERS")
        .ok()
        .map(|s| s.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_else(|| vec![16, 32, 64]);
    for (i, reporters) in sizes.into_iter().enumerate() {
        cost(reporters, 256, secs, 181 + i as u8);
    }
    if std::env::var_os("VNET_BENCH_NO_REACTION").is_some() {
        return;
    }
    println!("\n| window | first answer on the new topology | settled | changes |\n| --- | --- | --- | --- |");
    for (i, w) in [500, 1000, 2000].into_iter().enumerate() {
        reaction(w, 185 + i as u8);
    }
}
