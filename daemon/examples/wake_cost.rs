//! What one hand-over between two threads costs on this machine, by CPU placement: a byte
//! sent back and forth over a socket pair, `GAP_US` apart (default 10,000: long enough for an
//! idle CPU to go to sleep), `COUNT` times; prints the median and 90th percentile round trip
//! with both threads on one CPU, on two CPUs, and wherever the kernel puts them. Each round
//! trip is two wake-ups. This is the cost behind a user-space data path's RTT
//! (ARCHITECTURE.md, "Latency: the home CPU").
//!
//! `cargo run --release -p vnet-daemon --example wake_cost`

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn pin(cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    // SAFETY: cpu_set_t is plain data; CPU_SET within its size (CPUs here are < 1024).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
}

/// Round trips (µs, sorted) between this thread on `a` and an echo thread on `b`.
fn round_trips(a: Option<usize>, b: Option<usize>, gap: Duration, count: usize) -> Vec<f64> {
    let (mut here, mut there) = UnixStream::pair().expect("socket pair");
    let echo = std::thread::spawn(move || {
        pin(b);
        let mut byte = [0u8];
        while there.read_exact(&mut byte).is_ok() && there.write_all(&byte).is_ok() {}
    });
    pin(a);
    let mut rtts = Vec::with_capacity(count);
    let mut byte = [1u8];
    for _ in 0..count {
        std::thread::sleep(gap);
        let t = Instant::now();
        here.write_all(&byte).expect("send");
        here.read_exact(&mut byte).expect("echo");
        rtts.push(t.elapsed().as_secs_f64() * 1e6);
    }
    drop(here);
    let _ = echo.join();
    rtts.sort_by(f64::total_cmp);
    rtts
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let gap = Duration::from_micros(env("GAP_US", 10_000));
    let count = env("COUNT", 200).max(1) as usize;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("round trip over a socket pair, {count} times {gap:?} apart; {cpus} CPUs");
    let mut cases = vec![("one CPU (0, 0)", Some(0), Some(0))];
    if cpus > 1 {
        cases.push(("two CPUs (0, 1)", Some(0), Some(1)));
    }
    cases.push(("the kernel's choice", None, None));
    for (name, a, b) in cases {
        let r = round_trips(a, b, gap, count);
        println!(
            "{name:<20} median {:>7.1} µs   p90 {:>7.1} µs",
            r[r.len() / 2],
            r[r.len() * 9 / 10]
        );
    }
}
