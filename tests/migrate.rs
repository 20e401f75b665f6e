//! A real live migration through the overlay, without root: three vnetd daemons (started by
//! `vnetc up`, tables set by `vnetc apply`) with `dgram` interfaces, two QEMU guests (TCG)
//! started by the VM manager; VM 1 pings VM 2 at a known interval while the manager migrates
//! it over QMP from daemon A to daemon C, and the rules follow it in the make-before-break
//! order of `src/vm/mod.rs`. The ping must lose no more than the migration's downtime, and
//! the overlay must carry VM 1's frames at C afterwards and none at A.

mod live_common;
#[allow(dead_code, unused_imports)]
#[path = "../src/vm/mod.rs"]
mod vm;

use live_common::*;
use std::time::{Duration, Instant};
use vm::{Attachment, ImageSpec, MigrateOptions, Vm, VmSpec};
use vnet_grammar::Mac;
use vnet_proto::control::PortCounters;
use vnet_proto::{Client, Key};

const NET: u8 = 213;
const M1: &str = "52:54:00:d5:00:01";
const M2: &str = "52:54:00:d5:00:02";
const BCAST: &str = "ff:ff:ff:ff:ff:ff";
/// The guest's ping: COUNT echoes every INTERVAL_MS.
const COUNT: u32 = 400;
const INTERVAL_MS: u64 = 100;

fn host(i: u8) -> String {
    format!("127.{NET}.0.{i}")
}

/// A VM's rules on daemon `d` (Figure 2's shape): its MAC to the interface, the other VM's
/// over the link to `peer`, broadcasts both ways.
fn vm_rules(d: &str, me: &str, other: &str, peer: &str) -> Vec<String> {
    vec![
        format!("FORWARD INTERFACE {d} ANY {me} vm"),
        format!("FORWARD EDGE {d} ANY {other} {d} {peer}"),
        format!("FORWARD INTERFACE {d} NOT {me} {BCAST} vm"),
        format!("FORWARD EDGE {d} {me} {BCAST} {d} {peer}"),
    ]
}

/// Three daemons, a UDP link between every two, and `rules`.
fn program(rules: &[Vec<String>]) -> String {
    let (a, b, c) = (host(1), host(2), host(3));
    let mut s = String::from("BEGIN\n");
    for h in [&a, &b, &c] {
        s.push_str(&format!("HOST vnet AT {h} 7000 vm\n"));
    }
    s.push_str("ADD\n");
    for (x, y) in [(&a, &b), (&b, &c), (&a, &c)] {
        s.push_str(&format!("    LINK UDP {x} {x} {y}\n"));
    }
    for r in rules.iter().flatten() {
        s.push_str(&format!("    {r}\n"));
    }
    s.push_str("END\n");
    s
}

fn client(w: &World, i: u8) -> Client {
    let key = Key::load(&w.key_file()).expect("key");
    Client::connect(format!("{}:7000", host(i)), &key).expect("connect")
}

fn iface(w: &World, i: u8) -> PortCounters {
    let st = client(w, i).stats().expect("stats");
    st.interfaces
        .into_iter()
        .find(|(n, _)| n == "vm")
        .map(|(_, c)| c)
        .expect("interface vm")
}

fn apply(w: &World, file: &str) {
    let t = Instant::now();
    let out = w.vnetc(&["apply", "--wait", file]);
    expect_code(&out, 0);
    eprintln!("applied {file} in {:?}", t.elapsed());
}

fn wait_console(v: &mut Vm, what: &str, timeout: Duration, others: &[&Vm]) {
    let deadline = Instant::now() + timeout;
    while !v.console().contains(what) {
        let gone = v.status().err();
        if gone.is_some() || Instant::now() > deadline {
            let rest: String = others
                .iter()
                .map(|o| format!("\n--- other VM\n{}", o.console()))
                .collect();
            panic!(
                "no {what} from VM {} ({gone:?})\n--- console\n{}{rest}",
                v.spec().name,
                v.console()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_vm_migrates_live_and_its_ping_continues_through_the_overlay() {
    let (kernel, version) = match vm::image::prerequisites() {
        Ok(k) => k,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let mut w = World::new("migrate", NET);
    let (a, b, c) = (host(1), host(2), host(3));
    let before = program(&[vm_rules(&a, M1, M2, &b), vm_rules(&b, M2, M1, &a)]);
    // 1. VM 1's rules at C, and A relays VM 1's frames to C beside its own interface.
    let relay = vec![format!("FORWARD EDGE {a} ANY {M1} {a} {c}")];
    let prepare = program(&[
        vm_rules(&a, M1, M2, &b),
        relay.clone(),
        vm_rules(&c, M1, M2, &b),
        vm_rules(&b, M2, M1, &a),
    ]);
    // 3. B points at C (one atomic batch on B); 4. A lets go.
    let switched = program(&[
        vm_rules(&a, M1, M2, &b),
        relay,
        vm_rules(&c, M1, M2, &b),
        vm_rules(&b, M2, M1, &c),
    ]);
    let after = program(&[vm_rules(&c, M1, M2, &b), vm_rules(&b, M2, M1, &c)]);
    let files: Vec<String> = [
        ("before.vnet", &before),
        ("prepare.vnet", &prepare),
        ("switched.vnet", &switched),
        ("after.vnet", &after),
    ]
    .iter()
    .map(|(n, t)| w.write(n, t))
    .collect();
    for f in &files {
        expect_code(&w.vnetc(&["check", f]), 0);
    }
    let mut up = vec!["up".to_string(), files[0].clone()];
    for h in [&a, &b, &c] {
        up.push("--iface".into());
        up.push(format!("{h}/vm=dgram:{h}:6000"));
    }
    expect_code(
        &w.vnetc(&up.iter().map(String::as_str).collect::<Vec<_>>()),
        0,
    );
    apply(&w, &files[0]);

    let dir = w.path("vms");
    std::fs::create_dir_all(&dir).expect("vm dir");
    let image = vm::image::build(
        &dir,
        &kernel,
        &version,
        &ImageSpec {
            run: PINGER.into(),
            files: Vec::new(),
        },
    )
    .expect("guest image");
    let at =
        |h: &str| Attachment::beside(format!("{h}:6000").parse().expect("addr")).expect("port");
    let mac = |m: &str| Mac::parse(m).expect("mac");
    let vm2 = Vm::start(
        &dir,
        VmSpec::new("vm2", mac(M2), image.clone()).arg("ip", "10.77.0.2/24"),
        at(&b),
    )
    .expect("start VM 2");
    let interval = format!("{}", INTERVAL_MS as f64 / 1000.0);
    let spec1 = VmSpec::new("vm1", mac(M1), image)
        .arg("ip", "10.77.0.1/24")
        .arg("role", "pinger")
        .arg("peer", "10.77.0.2")
        .arg("count", &COUNT.to_string())
        .arg("interval", &interval);
    let mut vm1 = Vm::start(&dir, spec1, at(&a)).expect("start VM 1");
    wait_console(
        &mut vm1,
        "VNET-PING-START",
        Duration::from_secs(300),
        &[&vm2],
    );
    let t_ping = Instant::now();

    apply(&w, &files[1]);
    std::thread::sleep(Duration::from_secs(3).saturating_sub(t_ping.elapsed()));
    let c_before = iface(&w, 3);
    let m = vm1
        .migrate(at(&c), &MigrateOptions::default())
        .unwrap_or_else(|e| panic!("{e}\n--- vm1\n{}", vm1.console()));
    let a_at_move = iface(&w, 1);
    assert!(m.announced, "announce-self refused");
    apply(&w, &files[2]);
    apply(&w, &files[3]);
    eprintln!(
        "migrated {} {} -> {} after {:?} of ping: downtime {:.3} ms (QEMU's {:?} ms), total {} ms, wall {} ms, {} bytes of RAM",
        m.vm, m.from.iface, m.to.iface, t_ping.elapsed(), m.downtime_ms, m.qemu_downtime_ms, m.total_ms, m.wall_ms, m.ram_transferred
    );
    // The pause is measured from QEMU's event stamps: never zero, and inside the move.
    assert!(
        m.downtime_ms > 0.0 && m.downtime_ms < m.wall_ms as f64,
        "downtime {} ms of a {} ms move",
        m.downtime_ms,
        m.wall_ms
    );
    let after_move = vm1.console().len();
    wait_console(
        &mut vm1,
        "VNET-PING-END",
        Duration::from_millis(COUNT as u64 * INTERVAL_MS) + Duration::from_secs(120),
        &[&vm2],
    );
    let console = vm1.console();
    let (tx, rx, seqs) =
        ping_result(&console).unwrap_or_else(|| panic!("no ping summary\n{console}"));
    let lost: Vec<u32> = (0..tx).filter(|s| !seqs.contains(s)).collect();
    eprintln!("ping: {tx} sent, {rx} received, lost seq {lost:?}");

    // The ping went on after the move: many of its replies came at the new place.
    let replies_after = console[after_move..].matches("bytes from").count();
    assert!(
        replies_after >= 50,
        "only {replies_after} replies after the migration\n{console}"
    );
    assert_eq!(tx, COUNT, "{console}");
    // Loss no greater than the downtime (plus the one echo in flight when the guest paused).
    let allowed = (m.downtime_ms / INTERVAL_MS as f64) as u64 + 1;
    assert!(
        u64::from(tx - rx) <= allowed,
        "lost {} pings ({lost:?}) with a downtime of {} ms\n{console}",
        tx - rx,
        m.downtime_ms
    );
    // The overlay forwards to the new place: C's interface carries VM 1's frames both ways,
    // its traffic matrix shows VM 1 → VM 2, and nothing more enters at A.
    let c_now = iface(&w, 3);
    assert!(
        c_now.rx_frames - c_before.rx_frames >= replies_after as u64
            && c_now.tx_frames - c_before.tx_frames >= replies_after as u64,
        "C's interface: {c_before:?} -> {c_now:?}"
    );
    let matrix = client(&w, 3).traffic_matrix(false).expect("matrix");
    assert!(
        matrix
            .entries
            .iter()
            .any(|e| e.src == mac(M1) && e.dst == mac(M2) && e.frames >= replies_after as u64),
        "{matrix:?}"
    );
    assert_eq!(
        iface(&w, 1).rx_frames,
        a_at_move.rx_frames,
        "frames still enter at A"
    );
    drop(vm1);
    drop(vm2);
}
