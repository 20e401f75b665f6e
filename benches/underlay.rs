//! The emulated underlay and `vnetc measure` on loopback, with real `vnetd` processes:
//!
//! 1. accuracy: two daemons shaped symmetrically at several delays and rates; what
//!    `vnetc measure` reports against what was configured;
//! 2. cost when off: round trip and frame rate between two VMs through two daemons, with the
//!    underlay off and with it on for an unrelated peer (the per-frame check runs, nothing is
//!    held);
//! 3. `vnetc measure` wall time against the number of daemons.
//!
//! Run: `scripts/bench-underlay` (builds release `vnetd` and `vnetc`, then this).

#[path = "../tests/live_common/mod.rs"]
mod live_common;

use live_common::daemons::{hosts_file, start_daemons, Daemons};
use live_common::*;
use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{LinkDef, Match, RuleDef, Target};
use vnet_grammar::Mac;
use vnet_proto::control::{LinkSpec, Shape};
use vnet_proto::{Client, Key};
use vnet_underlay::estimate::Measurement;

const KEY: &str = "bench-underlay-key-0123456789abcdef";

fn key() -> Key {
    Key::from_bytes(KEY.as_bytes()).expect("key")
}

fn start(w: &World, addrs: &[String]) -> Daemons {
    start_daemons(w, KEY, addrs, &[], true)
}

fn client(a: &str) -> Client {
    Client::connect(format!("{a}:7000"), &key()).expect("connect")
}

fn measure(w: &World, file: &str, duration: &str) -> (Measurement, Duration) {
    let start = Instant::now();
    let out = w.vnetc(&["measure", file, "--format", "json", "--duration", duration]);
    let took = start.elapsed();
    expect_code(&out, 0);
    (serde_json::from_str(&stdout(&out)).expect("JSON"), took)
}

fn accuracy() {
    println!("## accuracy: configured vs measured (vnetc measure --duration 1s), both directions");
    println!(
        "| delay ms | rate Mbit/s | lat a→b | lat b→a | lat ratio | bw a→b | bw b→a | bw ratio |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut w = World::new("bench-underlay-acc", 182);
    let addrs: Vec<String> = (0..2).map(|i| w.addr(i)).collect();
    let _d = start(&w, &addrs);
    let file = w.write("hosts.vnet", &hosts_file(&addrs));
    for (delay, rate) in [
        (1.0, 10.0),
        (5.0, 50.0),
        (20.0, 100.0),
        (50.0, 200.0),
        (10.0, 500.0),
    ] {
        for (me, peer) in [(0, 1), (1, 0)] {
            let shape = Shape {
                delay_ms: delay,
                rate_mbps: Some(rate),
            };
            client(&addrs[me])
                .set_underlay(BTreeMap::from([(addrs[peer].clone(), shape)]))
                .expect("set underlay");
        }
        let (m, _) = measure(&w, &file, "1s");
        let l: Vec<_> = m.links.iter().collect();
        let lat = (l[0].lat + l[1].lat) / 2.0;
        let bw = (l[0].bw + l[1].bw) / 2.0;
        println!(
            "| {delay} | {rate} | {:.2} | {:.2} | {:.3} | {:.1} | {:.1} | {:.3} |",
            l[0].lat,
            l[1].lat,
            lat / delay,
            l[0].bw,
            l[1].bw,
            bw / rate
        );
    }
}

fn mac(n: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, n])
}

/// VM n at ADDR:6001 on daemon n's `vm`.
fn vm(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(format!("{addr}:6001")).expect("VM socket");
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    s
}

fn frame(src: Mac, dst: Mac, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len.max(14)];
    f[0..6].copy_from_slice(&dst.0);
    f[6..12].copy_from_slice(&src.0);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    f
}

fn cost_when_off() {
    println!("\n## cost when off: two VMs through two daemons (UDP link)");
    println!("| underlay | RTT median µs | RTT p90 µs | frames/s one way (1,000 B, 1 s) |");
    println!("| --- | --- | --- | --- |");
    let w = World::new("bench-underlay-off", 183);
    let addrs: Vec<String> = (0..2).map(|i| w.addr(i)).collect();
    let _d = start(&w, &addrs);
    let def = LinkDef::new(Transport::Udp, &addrs[0], &addrs[0], &addrs[1]);
    for (me, other) in [(0, 1), (1, 0)] {
        let mut c = client(&addrs[me]);
        c.add_link(LinkSpec {
            link: def.clone(),
            peer_addr: format!("{}:7000", addrs[other]),
            peer_key: client(&addrs[other]).status().expect("status").public_key,
        })
        .expect("link");
        let rule = |dst: Mac, target: Target| RuleDef {
            daemon: addrs[me].clone().into(),
            src: Match::Any,
            dst: Match::Exact(dst),
            target,
        };
        c.add_rule(rule(
            mac(me as u8 + 1),
            Target::Interface { name: "vm".into() },
        ))
        .expect("rule");
        c.add_rule(rule(
            mac(other as u8 + 1),
            Target::Link {
                peer: addrs[other].clone().into(),
            },
        ))
        .expect("rule");
    }
    let up = wait_until(Duration::from_secs(10), || {
        client(&addrs[0])
            .list_links()
            .is_ok_and(|l| l.iter().all(|l| l.up))
    });
    assert!(up, "link up");
    let (v1, v2) = (vm(&addrs[0]), vm(&addrs[1]));
    let (i1, i2) = (format!("{}:6000", addrs[0]), format!("{}:6000", addrs[1]));
    v1.send_to(&frame(mac(1), mac(99), 60), &i1).expect("hello");
    v2.send_to(&frame(mac(2), mac(99), 60), &i2).expect("hello");
    std::thread::sleep(Duration::from_millis(100));
    for (label, set) in [("off", false), ("on, another peer", true), ("off", false)] {
        let peers = if set {
            BTreeMap::from([(
                "elsewhere".to_string(),
                Shape {
                    delay_ms: 10.0,
                    rate_mbps: None,
                },
            )])
        } else {
            BTreeMap::new()
        };
        client(&addrs[0]).set_underlay(peers).expect("set underlay");
        let mut rtts = Vec::new();
        let mut buf = vec![0u8; 2048];
        for _ in 0..2000 {
            let t0 = Instant::now();
            v1.send_to(&frame(mac(1), mac(2), 60), &i1).expect("send");
            if v2.recv_from(&mut buf).is_err() {
                continue;
            }
            v2.send_to(&frame(mac(2), mac(1), 60), &i2).expect("send");
            if v1.recv_from(&mut buf).is_ok() {
                rtts.push(t0.elapsed());
            }
        }
        rtts.sort();
        let q = |f: f64| rtts[((rtts.len() as f64 - 1.0) * f) as usize].as_micros();
        // One way, paced by the receiver: frames delivered in one second.
        let f = frame(mac(1), mac(2), 1000);
        let start = Instant::now();
        let mut got = 0u64;
        v2.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        while start.elapsed() < Duration::from_secs(1) {
            for _ in 0..16 {
                let _ = v1.send_to(&f, &i1);
            }
            while v2.recv_from(&mut buf).is_ok() {
                got += 1;
                if got.is_multiple_of(16) {
                    break;
                }
            }
        }
        v2.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        while v2.recv_from(&mut buf).is_ok() {}
        println!("| {label} | {} | {} | {got} |", q(0.5), q(0.9));
    }
}

fn measure_time() {
    println!("\n## vnetc measure wall time (--pairs all --duration 500ms)");
    println!("| daemons | ordered pairs | rounds | wall s | s per round |");
    println!("| --- | --- | --- | --- | --- |");
    for n in [2usize, 4, 8] {
        let mut w = World::new(&format!("bench-underlay-n{n}"), 184 + n as u8);
        let addrs: Vec<String> = (0..n).map(|i| w.addr(i)).collect();
        let _d = start(&w, &addrs);
        let file = w.write("hosts.vnet", &hosts_file(&addrs));
        let (m, took) = measure(&w, &file, "500ms");
        assert_eq!(m.links.len(), n * (n - 1));
        let rounds = vnet_underlay::schedule::rounds(n).len();
        println!(
            "| {n} | {} | {rounds} | {:.2} | {:.2} |",
            n * (n - 1),
            took.as_secs_f64(),
            took.as_secs_f64() / rounds as f64
        );
    }
}

fn main() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load before: {load}");
    accuracy();
    cost_when_off();
    measure_time();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("\nload after: {load}");
}
