//! VTTIF in real daemons: reports from the daemons' matrices reach the Proxy, whose answers
//! follow the traffic (threshold, aging out, a capped flood); garbage and strangers' reports
//! are refused and counted; the Prometheus endpoint, read by a real parser, matches `stats`.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use vnet_daemon::proto::{ProxySpec, VttifState};
use vnet_daemon::{auth, framing, Client};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::Match;
use vnet_grammar::Mac;
use vnet_vttif::{PairCount, Report};

fn tell(proxy: &Vnetd, all: &[&Vnetd]) {
    let spec = ProxySpec {
        name: proxy.name.clone(),
        addr: proxy.addr.to_string(),
        members: all.iter().map(|d| d.name.clone()).collect(),
    };
    for d in all {
        assert!(d.client().set_proxy(spec.clone()).expect("set proxy"));
        assert!(
            !d.client().set_proxy(spec.clone()).expect("again"),
            "idempotent"
        );
    }
}

/// Daemon `a` sends everything from its VM to the Proxy `p`, which delivers it to its VM.
fn pair_of_daemons(dir: &TempDir, net: u8, extra: &[&str]) -> (Vnetd, Vnetd, Vm, Vm) {
    let mut p = loopback_vnetd(dir.path(), net, 1, "p");
    if !extra.is_empty() {
        p.kill();
        p.spawn(extra);
    }
    let a = loopback_vnetd(dir.path(), net, 2, "a");
    connect(Transport::Tcp, &a, &p);
    let rule = edge(&a, Match::Any, Match::Any, &p);
    a.client().add_rule(rule).expect("rule at a");
    let deliver = to_iface(&p, Match::Any, Match::Any, "vm");
    p.client().add_rule(deliver).expect("rule at p");
    wait_links_up(&[&a, &p], Duration::from_secs(10));
    tell(&p, &[&p, &a]);
    let vm_p = loopback_vm(net, 1, mac(2));
    vm_p.send(mac(99), b"here"); // the dgram interface learns where its VM is
    (p, a, loopback_vm(net, 2, mac(1)), vm_p)
}

/// A frame from any source MAC (a VM may send as several, as a flood does).
fn frame_from(src: Mac, dst: Mac, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len.max(14));
    f.extend_from_slice(&dst.0);
    f.extend_from_slice(&src.0);
    f.extend_from_slice(&[0x88, 0xb5]);
    f.resize(len.max(14), 0xab);
    f
}

/// Sends ten 1000-byte frames every 10 ms from the VM's MAC and one 100-byte frame every
/// 100 ms per light source, for `seconds`.
fn traffic(vm: &Vm, seconds: f64, light: &[Mac]) {
    let started = Instant::now();
    let mut tick = 0u64;
    while started.elapsed().as_secs_f64() < seconds {
        for _ in 0..10 {
            let f = frame_from(vm.mac, mac(2), 1000);
            vm.sock.send_to(&f, vm.daemon_iface).expect("send");
        }
        if tick.is_multiple_of(10) {
            for src in light {
                let f = frame_from(*src, mac(2), 100);
                vm.sock.send_to(&f, vm.daemon_iface).expect("send");
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn pairs(answer: &vnet_vttif::Answer, topology: bool) -> Vec<(Mac, Mac)> {
    let list = if topology {
        &answer.topology
    } else {
        &answer.pairs
    };
    list.iter().map(|p| (p.src, p.dst)).collect()
}

fn state(d: &Vnetd) -> VttifState {
    d.client().vttif().expect("vttif state")
}

#[test]
fn the_threshold_separates_a_light_flow_and_a_silent_daemon_ages_out() {
    let dir = TempDir::new("vttif-threshold");
    let (p, mut a, vm_a, _vm_p) = pair_of_daemons(&dir, 172, &[]);
    let light = mac(3);
    traffic(&vm_a, 2.5, &[light]);
    let answer = p.client().infer(1000, 0.1).expect("infer");
    assert_eq!(
        pairs(&answer, false),
        vec![(mac(1), mac(2)), (light, mac(2))]
    );
    assert_eq!(pairs(&answer, true), vec![(mac(1), mac(2))], "{answer:?}");
    let heavy = &answer.pairs[0];
    assert_eq!(heavy.src_daemon, "a");
    // About 1000 frames of 1000 bytes a second (the sender sleeps, so at most that).
    assert!((300.0..=1100.0).contains(&heavy.frames_per_s), "{heavy:?}");
    assert!(answer.pairs[1].intensity < 0.1, "{answer:?}");
    let low = p.client().infer(1000, 0.0005).expect("infer");
    assert_eq!(pairs(&low, true).len(), 2, "{low:?}");
    // The reporter's counters say the same.
    assert!(state(&a).reports_sent > 10, "{:?}", state(&a));
    assert!(state(&p).reports_taken > 10, "{:?}", state(&p));

    // Traffic goes on while `a` dies: its pairs leave the answer within one window.
    let keep_sending = std::thread::scope(|s| {
        let h = s.spawn(|| traffic(&vm_a, 2.5, &[]));
        std::thread::sleep(Duration::from_millis(500));
        a.kill();
        let killed = Instant::now();
        let mut gone = None;
        while killed.elapsed() < Duration::from_secs(3) {
            let now = p.client().infer(1000, 0.1).expect("infer");
            if now.pairs.is_empty() {
                gone = Some(killed.elapsed());
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        h.join().expect("sender");
        gone
    });
    let gone = keep_sending.expect("the dead daemon's pairs never aged out");
    assert!(
        gone <= Duration::from_millis(1300),
        "aged out after {gone:?}"
    );
}

#[test]
fn a_random_mac_flood_is_capped_and_marked() {
    let dir = TempDir::new("vttif-flood");
    let (p, a, vm_a, _vm_p) = pair_of_daemons(&dir, 173, &[]);
    // New source MACs until the reporter's matrix holds more pairs than the Proxy keeps
    // (16,384), in batches (the daemon's socket drops some of a fast burst); bounded.
    let mut next = 0u32;
    while next < 100_000
        && a.client()
            .traffic_matrix(false)
            .expect("matrix")
            .entries
            .len()
            < 18_000
    {
        for i in next..next + 2000 {
            let b = i.to_be_bytes();
            let src = Mac([0x02, 0x7a, b[0], b[1], b[2], b[3]]);
            let f = frame_from(src, mac(2), 64);
            vm_a.sock.send_to(&f, vm_a.daemon_iface).expect("send");
            if i.is_multiple_of(20) {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        next += 2000;
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let answer = loop {
        let answer = p.client().infer(10_000, 0.1).expect("infer");
        if answer.capped || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let cells = a
        .client()
        .traffic_matrix(false)
        .expect("matrix")
        .entries
        .len();
    assert!(
        answer.capped,
        "not marked capped: {} pairs ({cells} in the reporter's matrix)",
        answer.pairs.len()
    );
    assert!(answer.dropped > 0);
    let s = state(&p);
    assert!(
        s.pairs <= 16_384,
        "memory is bounded by the pair cap: {s:?}"
    );
    assert!(s.dropped > 0, "{s:?}");
}

/// An authenticated control session speaking raw JSON (to send what the client cannot).
fn raw_session(d: &Vnetd) -> TcpStream {
    let mut s = TcpStream::connect(d.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let nonce = auth::random_bytes::<32>();
    let hello = serde_json::json!({"protocol": "vnet-control", "version": vnet_daemon::proto::PROTOCOL_VERSION, "client_nonce": auth::hex(&nonce)});
    framing::write_frame(&mut s, hello.to_string().as_bytes()).unwrap();
    let mut buf = Vec::new();
    framing::read_frame(&mut s, &mut buf, 1 << 20).unwrap();
    let sh: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    let server = auth::unhex(sh["server_nonce"].as_str().unwrap()).unwrap();
    let proof = key().sign(auth::CONTROL_CLIENT, &[&server, &nonce]);
    let msg = serde_json::json!({"proof": auth::hex(&proof)});
    framing::write_frame(&mut s, msg.to_string().as_bytes()).unwrap();
    framing::read_frame(&mut s, &mut buf, 1 << 20).unwrap();
    s
}

fn report(daemon: &str, pairs: usize) -> Report {
    Report {
        daemon: daemon.into(),
        instance: 1,
        seq: 0,
        full: true,
        pairs: (0..pairs)
            .map(|i| PairCount {
                src: Mac([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
                dst: mac(2),
                frames: 1,
                bytes: 60,
            })
            .collect(),
    }
}

#[test]
fn reports_from_strangers_and_garbage_are_refused_and_counted() {
    let dir = TempDir::new("vttif-garbage");
    let p = loopback_vnetd(dir.path(), 174, 1, "p");
    let a = loopback_vnetd(dir.path(), 174, 2, "a");
    // Not yet the Proxy: reports and questions are refused, naming why.
    let e = p.client().report(&report("a", 1)).unwrap_err().to_string();
    assert!(e.contains("not_proxy"), "{e}");
    let e = p.client().infer(1000, 0.1).unwrap_err().to_string();
    assert!(e.contains("never told who the Proxy is"), "{e}");
    tell(&p, &[&p, &a]);
    let e = a.client().infer(1000, 0.1).unwrap_err().to_string();
    assert!(e.contains("is not the Proxy: ask p"), "{e}");

    let e = p
        .client()
        .report(&report("stranger", 1))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown_daemon"), "{e}");
    let e = p
        .client()
        .report(&report("a", 70_000))
        .unwrap_err()
        .to_string();
    assert!(e.contains("oversized"), "{e}");
    let mut s = raw_session(&p);
    // A binary report frame cut inside its header: answered under its id, counted.
    let mut junk = vnet_proto::report::encode(9, &report("a", 1));
    junk.truncate(20);
    framing::write_frame(&mut s, &junk).unwrap();
    let mut buf = Vec::new();
    framing::read_frame(&mut s, &mut buf, 1 << 20).unwrap();
    let reply: serde_json::Value = serde_json::from_slice(&buf).unwrap();
    assert_eq!(reply["id"], 9);
    assert_eq!(reply["error"]["code"], "malformed", "{reply}");
    // A client without the key never gets to report: refused at authentication, counted.
    let wrong = vnet_daemon::Key::from_bytes(b"another-key-0123456789abcdef").unwrap();
    assert!(Client::connect_timeout(p.addr, &wrong, Duration::from_secs(2)).is_err());

    let s = state(&p);
    let want: BTreeMap<String, u64> = [
        ("malformed", 1),
        ("not_proxy", 1),
        ("oversized", 1),
        ("unknown_daemon", 1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(s.refused, want, "{s:?}");
    let stats = p.client().stats().expect("stats");
    assert_eq!(stats.drops.get("unauthenticated"), Some(&1), "{stats:?}");
    // The Proxy still takes the members' reports and answers.
    let taken = s.reports_taken;
    // An idle daemon still sends a full report every second.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(state(&p).reports_taken > taken);
    p.client()
        .report(&report("a", 3))
        .expect("a member's report");
    assert!(p.client().infer(1000, 0.1).is_ok());
}

/// GET /metrics over plain HTTP: the body.
fn scrape(addr: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("metrics port");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("HTTP reply");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_string()
}

fn value(samples: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[test]
fn the_prometheus_endpoint_matches_stats() {
    let dir = TempDir::new("vttif-metrics");
    let metrics = "127.175.0.1:9100";
    let (p, _a, vm_a, _vm_p) = pair_of_daemons(&dir, 175, &["--metrics", metrics]);
    traffic(&vm_a, 1.5, &[mac(3)]);
    std::thread::sleep(Duration::from_millis(300)); // the last reports arrive
    let body = scrape(metrics);
    let lines = body.lines().map(|l| Ok(l.to_string()));
    let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
    let stats = p.client().stats().expect("stats");
    let (_, vm) = stats
        .interfaces
        .iter()
        .find(|(n, _)| n == "vm")
        .expect("vm");
    let rx = value(
        &parsed,
        "vnet_interface_rx_frames_total",
        &[("interface", "vm")],
    );
    assert_eq!(rx, Some(vm.rx_frames as f64), "{body}");
    let tx = value(
        &parsed,
        "vnet_interface_tx_bytes_total",
        &[("interface", "vm")],
    );
    assert_eq!(tx, Some(vm.tx_bytes as f64), "{body}");
    let (_, link) = stats.links.iter().find(|(n, _)| n == "a").expect("link");
    let link_rx = value(&parsed, "vnet_link_rx_frames_total", &[("link", "a")]);
    assert_eq!(link_rx, Some(link.rx_frames as f64), "{body}");
    for r in &stats.rules {
        let text = r.rule.to_string();
        let got = value(&parsed, "vnet_rule_frames_total", &[("rule", &text)]);
        assert_eq!(got, Some(r.frames as f64), "{text}\n{body}");
    }
    assert_eq!(value(&parsed, "vnet_link_up", &[("link", "a")]), Some(1.0));
    // The link's passive round-trip estimate, once it has one (it never loses it again).
    if let Some(rtt) = stats.link_estimates.get("a").and_then(|e| e.rtt_ms) {
        let again = scrape(metrics);
        let lines = again.lines().map(|l| Ok(l.to_string()));
        let parsed = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
        let got = value(&parsed, "vnet_link_rtt_ms", &[("link", "a")]);
        assert!(got.is_some_and(|g| g > 0.0), "stats say {rtt} ms\n{again}");
    }
    // The Proxy's top pairs, heaviest first, and its report counters.
    let heavy = [("src", "02:00:00:00:00:01"), ("dst", "02:00:00:00:00:02")];
    let rate = value(&parsed, "vnet_vttif_pair_bytes_per_second", &heavy);
    assert!(rate.is_some_and(|r| r > 10_000.0), "{body}");
    let taken = value(&parsed, "vnet_vttif_reports_taken_total", &[]);
    assert!(taken.is_some_and(|t| t > 0.0), "{body}");
    // Anything but GET /metrics is a 404.
    let mut s = TcpStream::connect(metrics).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 404"), "{text}");
}

/// Sends `frames` frames of 1,000 bytes for each (source, destination) of `pairs` through
/// `vm`'s socket (the VM speaks for every source MAC behind its daemon); the bytes sent.
fn burst(vm: &Vm, pairs: &[(u8, u8)], frames: usize) -> u64 {
    let mut sent = 0;
    for &(s, d) in pairs {
        for _ in 0..frames {
            let f = frame_from(mac(s), mac(d), 1000);
            vm.sock.send_to(&f, vm.daemon_iface).expect("send");
            sent += f.len() as u64;
        }
    }
    sent
}

/// Daemons `a` (VMs 1, 2; a UDP link) and `b` (VMs 3, 4; a TCP link) joined through the
/// Proxy `p`, which every frame crosses; `p` is the Proxy for all three.
fn vms_behind_a_and_b_through_proxy(dir: &TempDir, net: u8) -> (Vnetd, Vnetd, Vnetd) {
    let p = loopback_vnetd(dir.path(), net, 1, "p");
    let a = loopback_vnetd(dir.path(), net, 2, "a");
    let b = loopback_vnetd(dir.path(), net, 3, "b");
    connect(Transport::Udp, &a, &p);
    connect(Transport::Tcp, &b, &p);
    for (d, to) in [(&a, &p), (&b, &p)] {
        let rule = edge(d, Match::Any, Match::Any, to);
        d.client().add_rule(rule).expect("edge rule");
    }
    for (m, behind) in [(1, &a), (2, &a), (3, &b), (4, &b)] {
        let rule = edge(&p, Match::Any, Match::Exact(mac(m)), behind);
        p.client().add_rule(rule).expect("rule at the Proxy");
        let deliver = to_iface(behind, Match::Any, Match::Exact(mac(m)), "vm");
        behind.client().add_rule(deliver).expect("delivery rule");
    }
    wait_links_up(&[&a, &b, &p], Duration::from_secs(10));
    tell(&p, &[&p, &a, &b]);
    (p, a, b)
}

/// SPEC 5.1's union, live: two topologies alternating every 200 ms, far faster than a 2 s
/// window, between VMs 1, 2 (behind daemon `a`) and 3, 4 (behind `b`), every frame crossing
/// the Proxy `p` in the middle. The answer is the union of both topologies, settled, and
/// stays put (no change reported while the alternation goes on); each frame is counted once,
/// by the daemon where it entered the overlay, although three daemons forward it.
#[test]
fn alternating_topologies_give_their_union_counted_once() {
    let dir = TempDir::new("vttif-union");
    let net = 176;
    let (p, _a, _b) = vms_behind_a_and_b_through_proxy(&dir, net);
    let (vm_a, vm_b) = (loopback_vm(net, 2, mac(1)), loopback_vm(net, 3, mac(3)));
    // Ring 1→3→2→4→1 and star around VM 1 share 1→3.
    let ring = [(1, 3), (3, 2), (2, 4), (4, 1)];
    let star = [(1, 3), (1, 4), (3, 1), (4, 1)];
    let union: Vec<(Mac, Mac)> = {
        let mut u: Vec<_> = ring
            .iter()
            .chain(&star)
            .map(|&(s, d)| (mac(s), mac(d)))
            .collect();
        u.sort();
        u.dedup();
        u
    };
    let (window, threshold) = (2000, 0.1);
    p.client().infer(window, threshold).expect("start tracking");
    let started = Instant::now();
    let mut sent = 0u64;
    let mut answers = Vec::new();
    let mut tick = 0u64;
    while started.elapsed() < Duration::from_secs(8) {
        let phase = if (started.elapsed().as_millis() / 200).is_multiple_of(2) {
            &ring
        } else {
            &star
        };
        for vm in [&vm_a, &vm_b] {
            let mine: Vec<(u8, u8)> = phase
                .iter()
                .copied()
                .filter(|&(s, _)| (s <= 2) == (vm.mac == mac(1)))
                .collect();
            sent += burst(vm, &mine, 2);
        }
        tick += 1;
        if tick.is_multiple_of(10) && started.elapsed() > Duration::from_secs(4) {
            answers.push(p.client().infer(window, threshold).expect("infer"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let rate_sent = sent as f64 / started.elapsed().as_secs_f64();
    assert!(answers.len() >= 10, "{} answers", answers.len());
    for answer in &answers {
        let mut got = pairs(answer, true);
        got.sort();
        assert_eq!(got, union, "not the union: {answer:?}");
        assert!(answer.settled, "{answer:?}");
    }
    let (first, last) = (&answers[0], &answers[answers.len() - 1]);
    assert_eq!(first.changes, last.changes, "it oscillated: {last:?}");
    // Counted once: at the daemon where the frames entered; the Proxy and the far daemon,
    // which forward them, add nothing (twice or three times the sent rate if they did).
    for pair in &last.pairs {
        let entered = if pair.src.0[5] <= 2 { "a" } else { "b" };
        assert_eq!(pair.src_daemon, entered, "{pair:?}");
    }
    let measured: f64 = last.pairs.iter().map(|p| p.bytes_per_s).sum();
    assert!(
        (0.6 * rate_sent..=1.3 * rate_sent).contains(&measured),
        "measured {measured:.0} B/s for {rate_sent:.0} B/s sent: {last:?}"
    );
    // 1→3 runs in both topologies, the others in one: twice their rate.
    let rate = |s: u8, d: u8| {
        last.pairs
            .iter()
            .find(|x| (x.src, x.dst) == (mac(s), mac(d)))
            .map_or(0.0, |x| x.bytes_per_s)
    };
    let ratio = rate(1, 3) / rate(3, 2);
    assert!(
        (1.5..=2.7).contains(&ratio),
        "1→3 / 3→2 = {ratio:.2}: {last:?}"
    );
}
