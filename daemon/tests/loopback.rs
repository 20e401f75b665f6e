//! Three real `vnetd` processes on loopback, without root: UDP datagram interfaces driven by
//! the test as VMs, links of both transports; frames arrive where the rules say and nowhere
//! else, and the counters match.

mod common;

use common::*;
use std::time::Duration;
use vnet_daemon::proto::{ErrorCode, Expect};
use vnet_daemon::{Change, Client, Key};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{Match, RuleDef};
use vnet_grammar::Mac;

const QUIET: Duration = Duration::from_millis(300);
const WAIT: Duration = Duration::from_secs(5);

struct Net {
    _dir: TempDir,
    a: Vnetd,
    b: Vnetd,
    c: Vnetd,
    vm1: Vm,
    vm2: Vm,
    vm3: Vm,
}

/// A–B over TCP (A dials), B–C over UDP (C dials), A–C over UDP (A dials). VM n has MAC n
/// and sits on daemon n's interface `vm`.
fn three(net: u8) -> Net {
    let dir = TempDir::new(&format!("loop{net}"));
    let a = loopback_vnetd(dir.path(), net, 1, "a");
    let b = loopback_vnetd(dir.path(), net, 2, "b");
    let c = loopback_vnetd(dir.path(), net, 3, "c");
    connect(Transport::Tcp, &a, &b);
    connect(Transport::Udp, &c, &b);
    connect(Transport::Udp, &a, &c);
    let vm1 = loopback_vm(net, 1, mac(1));
    let vm2 = loopback_vm(net, 2, mac(2));
    let vm3 = loopback_vm(net, 3, mac(3));
    // Rules: each daemon delivers its own VM's MAC locally and sends the others over the
    // direct link; broadcast fans out to the two links and the local VM (except its source).
    for (d, me, others) in [
        (&a, 1, [(&b, 2), (&c, 3)]),
        (&b, 2, [(&a, 1), (&c, 3)]),
        (&c, 3, [(&a, 1), (&b, 2)]),
    ] {
        let mut cl = d.client();
        cl.add_rule(to_iface(d, Match::Any, Match::Exact(mac(me)), "vm"))
            .unwrap();
        cl.add_rule(to_iface(
            d,
            Match::Not(mac(me)),
            Match::Exact(Mac::BROADCAST),
            "vm",
        ))
        .unwrap();
        for (o, m) in others {
            cl.add_rule(edge(d, Match::Any, Match::Exact(mac(m)), o))
                .unwrap();
            cl.add_rule(edge(
                d,
                Match::Exact(mac(me)),
                Match::Exact(Mac::BROADCAST),
                o,
            ))
            .unwrap();
        }
    }
    wait_links_up(&[&a, &b, &c], Duration::from_secs(10));
    announce(&[&vm1, &vm2, &vm3]);
    Net {
        _dir: dir,
        a,
        b,
        c,
        vm1,
        vm2,
        vm3,
    }
}

fn rule_frames(d: &Vnetd, dst: Mac) -> u64 {
    d.client()
        .list_rules()
        .unwrap()
        .iter()
        .filter(|r| r.rule.dst == Match::Exact(dst))
        .map(|r| r.frames)
        .sum()
}

#[test]
fn frames_go_where_the_rules_say_and_nowhere_else() {
    let n = three(21);
    // Unicast over TCP (a→b), over UDP (a→c) and over UDP the other way (c→b).
    for (i, (from, to, dst)) in [
        (&n.vm1, &n.vm2, 2u8),
        (&n.vm1, &n.vm3, 3),
        (&n.vm3, &n.vm2, 2),
        (&n.vm2, &n.vm1, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let payload = format!("unicast {i}");
        from.send(mac(dst), payload.as_bytes());
        assert!(
            to.expect(payload.as_bytes(), WAIT),
            "frame {i} did not arrive"
        );
    }
    // Nothing else arrived anywhere (the sender gets nothing back either).
    for vm in [&n.vm1, &n.vm2, &n.vm3] {
        assert!(vm.recv_all(QUIET).is_empty());
    }
    // Broadcast from vm1 fans out to vm2 and vm3, exactly once each, and not back to vm1.
    n.vm1.send(Mac::BROADCAST, b"bcast");
    assert!(n.vm2.expect(b"bcast", WAIT));
    assert!(n.vm3.expect(b"bcast", WAIT));
    for vm in [&n.vm1, &n.vm2, &n.vm3] {
        assert!(
            vm.recv_all(QUIET).is_empty(),
            "duplicate or reflected broadcast"
        );
    }
    // A frame with no rule is dropped and counted.
    let before = n.a.client().stats().unwrap();
    n.vm1.send(mac(42), b"nowhere");
    std::thread::sleep(Duration::from_millis(200));
    let after = n.a.client().stats().unwrap();
    let no_rule = |s: &vnet_daemon::proto::Stats| s.drops.get("no_rule").copied().unwrap_or(0);
    assert_eq!(no_rule(&after), no_rule(&before) + 1);
    for vm in [&n.vm2, &n.vm3] {
        assert!(vm.recv_all(QUIET).is_empty());
    }
}

#[test]
fn counters_match_the_traffic() {
    let n = three(22);
    let count = 50u64;
    for i in 0..count {
        n.vm1.send(mac(2), format!("tcp {i}").as_bytes());
        n.vm1.send(mac(3), format!("udp {i}").as_bytes());
    }
    let deadline = std::time::Instant::now() + WAIT;
    let (mut got2, mut got3) = (0, 0);
    while (got2 < count || got3 < count) && std::time::Instant::now() < deadline {
        got2 += n.vm2.recv_all(Duration::from_millis(50)).len() as u64;
        got3 += n.vm3.recv_all(Duration::from_millis(50)).len() as u64;
    }
    assert_eq!((got2, got3), (count, count));
    assert_eq!(rule_frames(&n.a, mac(2)), count);
    assert_eq!(rule_frames(&n.a, mac(3)), count);
    assert_eq!(rule_frames(&n.b, mac(2)), count);
    assert_eq!(rule_frames(&n.c, mac(3)), count);
    let la = links_of(&n.a);
    let to_b = la.iter().find(|l| l.peer == "b").unwrap();
    let to_c = la.iter().find(|l| l.peer == "c").unwrap();
    assert_eq!(to_b.counters.tx_frames, count);
    assert_eq!(to_c.counters.tx_frames, count);
    let lb = links_of(&n.b);
    assert_eq!(
        lb.iter()
            .find(|l| l.peer == "a")
            .unwrap()
            .counters
            .rx_frames,
        count
    );
    // The interfaces: vm1's frames in (+1 hello), vm2's out.
    let ia = n.a.client().list_interfaces().unwrap();
    assert_eq!(ia[0].counters.rx_frames, 2 * count + 1);
    let ib = n.b.client().list_interfaces().unwrap();
    assert_eq!(ib[0].counters.tx_frames, count);
    // The traffic matrix at a counts vm1's frames by (src, dst).
    let m = n.a.client().traffic_matrix(true).unwrap();
    let cell = |dst: Mac| {
        m.entries
            .iter()
            .find(|e| e.src == mac(1) && e.dst == dst)
            .map(|e| e.frames)
    };
    assert_eq!(cell(mac(2)), Some(count));
    assert_eq!(cell(mac(3)), Some(count));
    let m2 = n.a.client().traffic_matrix(false).unwrap();
    assert!(m2.entries.is_empty(), "reset zeroes the matrix");
}

#[test]
fn large_frames_cross_udp_links_in_fragments() {
    let n = three(23);
    let payload: Vec<u8> = (0..9000u32).map(|i| (i * 7) as u8).collect();
    n.vm1.send(mac(3), &payload);
    assert!(n.vm3.expect(&payload, WAIT), "jumbo frame over UDP link");
    n.vm1.send(mac(2), &payload);
    assert!(n.vm2.expect(&payload, WAIT), "jumbo frame over TCP link");
}

#[test]
fn hop_limit_stops_a_forwarding_loop() {
    let n = three(24);
    // A loop for MAC 9 around b → c → a → b (the checker would reject it; the daemon survives
    // it). Split horizon alone cannot stop a three-daemon cycle; the hop limit does.
    n.b.client()
        .add_rule(edge(&n.b, Match::Any, Match::Exact(mac(9)), &n.c))
        .unwrap();
    n.c.client()
        .add_rule(edge(&n.c, Match::Any, Match::Exact(mac(9)), &n.a))
        .unwrap();
    n.a.client()
        .add_rule(edge(&n.a, Match::Any, Match::Exact(mac(9)), &n.b))
        .unwrap();
    n.vm2.send(mac(9), b"loop");
    std::thread::sleep(Duration::from_millis(500));
    let fired = rule_frames(&n.a, mac(9)) + rule_frames(&n.b, mac(9)) + rule_frames(&n.c, mac(9));
    // Sent over 16 links, then the 17th decision has no hop left.
    assert_eq!(fired, 17);
    let hop_drops: u64 = [&n.a, &n.b, &n.c]
        .iter()
        .flat_map(|d| links_of(d))
        .map(|l| l.counters.drops.get("hop_limit").copied().unwrap_or(0))
        .sum();
    assert_eq!(hop_drops, 1);
}

#[test]
fn control_is_authenticated_conditional_and_persistent() {
    let dir = TempDir::new("ctl");
    let mut d = Vnetd::start(
        dir.path(),
        "solo",
        "127.25.0.1:7000",
        &["vm=dgram:127.25.0.1:6000"],
    );
    let r = changes_are_authenticated_idempotent_and_conditional(&d);
    let mut c = d.client();
    c.set_config_bound(1500).unwrap();
    let before = c.status().unwrap();
    drop(c);
    // Restart: the tables and generation come back; the instance changes.
    d.terminate().expect("clean exit");
    d.spawn(&[]);
    let mut c = d.client();
    let after = c.status().unwrap();
    assert_eq!(after.generation, before.generation);
    assert_eq!(after.config_bound_ms, Some(1500));
    assert_ne!(after.instance, before.instance);
    assert_eq!(c.list_rules().unwrap().len(), 2);
    // A plan made against the old instance is refused even at the same generation.
    let old = Expect {
        instance: before.instance.clone(),
        generation: before.generation,
    };
    let e = c
        .change(vec![Change::DeleteRule { rule: r.clone() }], Some(old))
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict));
    drop(c);
    // --fresh starts empty.
    d.terminate();
    d.spawn(&["--fresh"]);
    assert!(d.client().list_rules().unwrap().is_empty());
    // Shutdown over the protocol.
    d.client().shutdown().unwrap();
    assert!(d
        .wait_exit(Duration::from_secs(10))
        .is_some_and(|s| s.success()));
}

/// A wrong key is refused; a change applies once; a stale expectation or an invalid change
/// in a batch is refused whole. Returns one of the two rules it leaves.
fn changes_are_authenticated_idempotent_and_conditional(d: &Vnetd) -> RuleDef {
    // A wrong key is refused and changes nothing.
    let wrong = Key::from_bytes(b"not-the-key-0123456789").unwrap();
    let e = Client::connect(d.addr, &wrong)
        .err()
        .expect("wrong key refused");
    assert_eq!(e.code(), Some(ErrorCode::Auth), "{e}");
    let mut c = d.client();
    let s0 = c.status().unwrap();
    let r = to_iface(d, Match::Any, Match::Exact(mac(1)), "vm");
    let ch = c.add_rule(r.clone()).unwrap();
    assert_eq!(ch.generation, s0.generation + 1);
    assert_eq!(ch.effective, [true]);
    // Adding it again changes nothing and keeps the generation.
    assert_eq!(c.add_rule(r.clone()).unwrap().generation, ch.generation);
    // A stale expectation is refused; the right one is accepted.
    let stale = Expect {
        instance: s0.instance.clone(),
        generation: s0.generation,
    };
    let r2 = to_iface(d, Match::Any, Match::Exact(mac(2)), "vm");
    let e = c
        .change(vec![Change::AddRule { rule: r2.clone() }], Some(stale))
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict));
    let fresh = Expect {
        instance: s0.instance.clone(),
        generation: ch.generation,
    };
    c.change(vec![Change::AddRule { rule: r2.clone() }], Some(fresh))
        .unwrap();
    // An invalid change in a batch rejects the whole batch.
    let foreign = vnet_grammar::model::RuleDef {
        daemon: "other".into(),
        ..r.clone()
    };
    let e = c
        .change(
            vec![
                Change::DeleteRule { rule: r.clone() },
                Change::AddRule { rule: foreign },
            ],
            None,
        )
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Invalid));
    assert_eq!(c.list_rules().unwrap().len(), 2);
    r
}

#[test]
fn vnetd_refuses_to_start_without_a_key() {
    let dir = TempDir::new("nokey");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vnetd"))
        .args(["--name", "x", "--listen", "127.26.0.1:7000", "--key-file"])
        .arg(dir.path().join("missing.key"))
        .arg("--state-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("key"));
}

#[test]
fn interfaces_are_listed_with_their_kind_and_address() {
    let dir = TempDir::new("ifl");
    let d = Vnetd::start(
        dir.path(),
        "solo",
        "127.27.0.1:7000",
        &["vm=dgram:127.27.0.1:6000,127.27.0.1:6001"],
    );
    let ifs = d.client().list_interfaces().unwrap();
    assert_eq!(ifs.len(), 1);
    let text = serde_json::to_string(&ifs[0]).unwrap();
    assert!(
        text.contains("\"kind\":\"dgram\"") && text.contains("127.27.0.1:6000"),
        "{text}"
    );
}

/// Sealed links make new keys while frames flow (here every second, `--rekey-seconds 1`):
/// both ends move to new epochs, and a UDP link loses no frame to it.
#[test]
fn sealed_links_rekey_under_traffic() {
    rekey_under_traffic([(25, Transport::Udp), (26, Transport::Tcp)], true);
}

/// Only the listener's keys are due (it alone runs with `--rekey-seconds 1`): it asks its
/// dialer, which starts the handshakes, and both ends move to new epochs.
#[test]
fn a_listener_whose_keys_are_due_has_its_dialer_rekey() {
    rekey_under_traffic([(28, Transport::Udp), (29, Transport::Tcp)], false);
}

/// Frames a (dialer) → b (listener) while keys are renewed every second, on both ends
/// (`both`) or on the listener only.
fn rekey_under_traffic(nets: [(u8, Transport); 2], both: bool) {
    for (net, transport) in nets {
        let dir = TempDir::new(&format!("rekey{net}"));
        let start = |h: u8, name: &str, due: bool| {
            let ip = format!("127.{net}.0.{h}");
            let extra: &[&str] = if due { &["--rekey-seconds", "1"] } else { &[] };
            Vnetd::start_with(
                dir.path(),
                name,
                &format!("{ip}:7000"),
                &[&format!("vm=dgram:{ip}:6000")],
                extra,
            )
        };
        let (a, b) = (start(1, "a", both), start(2, "b", true));
        connect(transport, &a, &b);
        a.client()
            .add_rule(edge(&a, Match::Any, Match::Exact(mac(2)), &b))
            .unwrap();
        b.client()
            .add_rule(to_iface(&b, Match::Any, Match::Exact(mac(2)), "vm"))
            .unwrap();
        wait_links_up(&[&a, &b], Duration::from_secs(10));
        let (vm1, vm2) = (loopback_vm(net, 1, mac(1)), loopback_vm(net, 2, mac(2)));
        announce(&[&vm2]);
        let count = 70u32;
        let received = std::thread::scope(|s| {
            let rx = s.spawn(|| vm2.recv_all(Duration::from_millis(50 * count as u64 + 1000)));
            for i in 0..count {
                vm1.send(mac(2), format!("frame {i}").as_bytes());
                std::thread::sleep(Duration::from_millis(50));
            }
            rx.join().unwrap()
        });
        for d in [&a, &b] {
            let link = links_of(d).remove(0);
            let sec = link.security.expect("up");
            assert_eq!(sec.mode, "sealed");
            assert!(sec.handshakes >= 3, "{transport:?} {}: {sec:?}", d.name);
        }
        let lost = count as usize - received.len();
        eprintln!("{transport:?}: {lost} of {count} frames lost across rekeys");
        // A TCP rekey is a new connection: frames in flight on the old one may be lost.
        let allowed = if transport == Transport::Udp { 0 } else { 3 };
        assert!(
            lost <= allowed,
            "{transport:?}: {lost} frames lost\n{}",
            b.log_text()
        );
    }
}

/// `--forward-cpu N` keeps the forwarding thread, and only it, on CPU N; `status` says so.
#[test]
fn the_forwarding_thread_keeps_to_the_cpu_it_was_given() {
    let mine = my_cpus();
    let cpu = last_cpu(&mine);
    let dir = TempDir::new("fwdcpu");
    let cpu_arg = cpu.to_string();
    let d = Vnetd::start_with(
        dir.path(),
        "pinned",
        "127.79.0.1:7000",
        &[],
        &["--forward-cpu", &cpu_arg],
    );
    assert_eq!(d.client().status().unwrap().forward_cpu, Some(cpu));
    let (forward, others): (Vec<_>, Vec<_>) = d
        .thread_cpus()
        .into_iter()
        .partition(|(name, _)| name == "vnetd-forward");
    let forward: Vec<String> = forward.into_iter().map(|(_, cpus)| cpus).collect();
    assert_eq!(forward, vec![cpu_arg.clone()], "forwarding threads' CPUs");
    assert!(
        others.iter().all(|(_, a)| *a == mine),
        "{others:?} vs {mine}"
    );
}

#[test]
fn vnetd_refuses_a_forward_cpu_it_may_not_run_on() {
    let dir = TempDir::new("badcpu");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vnetd"))
        .args(["--name", "x", "--listen", "127.79.0.2:7000", "--key-file"])
        .arg(common::write_key(dir.path()))
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--forward-cpu", "100000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--forward-cpu 100000: not a CPU vnetd may run on"),
        "{err}"
    );
}
