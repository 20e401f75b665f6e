//! `vnetc adapt FILE --apply` on a running overlay, without root: three vnetd daemons with
//! `dgram` interfaces (started by `vnetc up`, tables by `vnetc apply`), two user-space VMs of
//! `vnet-patterns vm` running a BSP exchange through them, registered in vnetc's VM registry.
//! The link between the VMs' daemons is measured slow; adapt moves VM 1 live to the third
//! daemon through its driver (`attach` on its control socket) in the make-before-break order,
//! then applies the new state. The workload must go on without failing, keep making progress
//! after the move, and its frames must enter the overlay at the new place and no longer at the
//! old one. The move is decided on VTTIF's live answer (the Proxy's); the measurement is a
//! saved file (SPEC 5.2's JSON), since the daemons do not answer `measure` in this build. The
//! other tests use a saved VTTIF answer too (SPEC 5.1's JSON), to decide the same move on the
//! same numbers.
//!
//! The second test does the same with a QEMU guest (TCG) pinging another through the
//! overlay: adapt migrates it over QMP to a new QEMU process on the third daemon's interface;
//! the ping loses no more than the migration's downtime. The two tests share the network
//! 127.NET.0.x and take turns.

mod live_common;
#[allow(dead_code, unused_imports)]
#[path = "../src/vm/mod.rs"]
mod vm;

use live_common::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vm::registry::{Driver, Registry, VmRecord};
use vm::{Attachment, ImageSpec, Vm, VmSpec};
use vnet_grammar::Mac;
use vnet_proto::control::PortCounters;
use vnet_proto::{Client, Key};

const NET: u8 = 214;
const M1: &str = "52:54:00:d6:00:01";
const M2: &str = "52:54:00:d6:00:02";
const BCAST: &str = "ff:ff:ff:ff:ff:ff";
/// The workload's length and sample interval (seconds).
const RUN_S: f64 = 16.0;
const SAMPLE_S: f64 = 0.5;

/// The QEMU and libvirt guests' ping: COUNT echoes every INTERVAL_MS.
const COUNT: u64 = 250;
const INTERVAL_MS: u64 = 100;

/// The pinging guest's ping, `text` its console, went on across its move: no more lost than
/// the downtime, `replies_after` of the replies after the move, which entered at C, and
/// nothing more at A.
fn ping_went_on(
    w: &World,
    text: &str,
    replies_after: usize,
    downtime: f64,
    c_before: &PortCounters,
    a_at_move: &PortCounters,
) {
    let (tx, rx, seqs) = ping_result(text).unwrap_or_else(|| panic!("no ping summary\n{text}"));
    let lost: Vec<u32> = (0..tx).filter(|s| !seqs.contains(s)).collect();
    eprintln!("ping: {tx} sent, {rx} received, lost {lost:?}; downtime {downtime:.3} ms");
    assert!(
        replies_after >= 50,
        "only {replies_after} replies after the move\n{text}"
    );
    assert_eq!(u64::from(tx), COUNT, "{text}");
    let allowed = (downtime / INTERVAL_MS as f64) as u64 + 1;
    assert!(
        u64::from(tx - rx) <= allowed,
        "lost {lost:?} with a downtime of {downtime} ms\n{text}"
    );
    let c_now = iface(w, 3);
    assert!(
        c_now.rx_frames >= c_before.rx_frames + replies_after as u64,
        "C: {c_before:?} -> {c_now:?}"
    );
    assert_eq!(
        iface(w, 1).rx_frames,
        a_at_move.rx_frames,
        "frames still enter at A"
    );
}

/// The guests' directory and image (PINGER), and VM 2 running at B, answering pings.
fn pinged_guest(w: &World) -> (PathBuf, vm::GuestImage, Vm) {
    let (kernel, version) = vm::image::prerequisites().expect("checked by the test");
    let dir = w.path("vms");
    std::fs::create_dir_all(&dir).expect("vm dir");
    let spec = ImageSpec {
        run: PINGER.into(),
        files: Vec::new(),
    };
    let image = vm::image::build(&dir, &kernel, &version, &spec).expect("guest image");
    let iface = format!("{}:6000", host(2)).parse().expect("addr");
    let at = Attachment::beside(iface).expect("port");
    let mac = Mac::parse(M2).expect("mac");
    let spec2 = VmSpec::new("vm2", mac, image.clone()).arg("ip", "10.77.0.2/24");
    let vm2 = Vm::start(&dir, spec2, at).expect("start VM 2");
    (dir, image, vm2)
}

/// VM 1 with `driver` at A; VM 2 pinned at B with none.
fn register_pair(registry: &Registry, driver: Driver) {
    for (name, m, h, driver) in [
        ("vm1", M1, host(1), driver),
        ("vm2", M2, host(2), Driver::None),
    ] {
        let record = VmRecord {
            name: name.into(),
            mac: Mac::parse(m).expect("mac"),
            host: h,
            driver,
            compute: 1.0,
            pinned: name == "vm2",
        };
        registry.register(&record).expect("register");
    }
}

/// The tests take turns on the network (held until the test's world is gone).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn host(i: u8) -> String {
    format!("127.{NET}.0.{i}")
}

fn vm_rules(d: &str, me: &str, other: &str, peer: &str) -> String {
    format!(
        "    FORWARD INTERFACE {d} ANY {me} vm\n    FORWARD EDGE {d} ANY {other} {d} {peer}\n    FORWARD INTERFACE {d} NOT {me} {BCAST} vm\n    FORWARD EDGE {d} {me} {BCAST} {d} {peer}\n"
    )
}

fn program() -> String {
    let (a, b, c) = (host(1), host(2), host(3));
    let mut s = String::from("BEGIN\n");
    for h in [&a, &b, &c] {
        s += &format!("HOST vnet AT {h} 7000 vm\n");
    }
    s += "ADD\n";
    for (x, y) in [(&a, &b), (&b, &c), (&a, &c)] {
        s += &format!("    LINK UDP {x} {x} {y}\n");
    }
    s += &vm_rules(&a, M1, M2, &b);
    s += &vm_rules(&b, M2, M1, &a);
    s + "END\n"
}

/// SPEC 5.1's answer: the two VMs exchange 2 MB/s each way between A and B.
fn infer_json() -> String {
    let (a, b) = (host(1), host(2));
    let pair = |s: &str, d: &str, sd: &str, dd: &str| {
        format!(
            r#"{{"src":"{s}","dst":"{d}","src_daemon":"{sd}","dst_daemon":"{dd}","bytes_per_s":2000000,"frames_per_s":1500,"intensity":1.0}}"#
        )
    };
    let pairs = format!("[{},{}]", pair(M1, M2, &a, &b), pair(M2, M1, &b, &a));
    format!(
        r#"{{"proxy":"{a}","window_ms":2000,"threshold":0.1,"settled":true,"settled_for_ms":2000,"pairs":{pairs},"topology":{pairs}}}"#
    )
}

/// SPEC 5.2's measurement: A–B slow, everything else fast.
fn measure_json() -> String {
    let mut links = Vec::new();
    for (x, y) in [(1, 2), (2, 3), (1, 3)] {
        let bw = if (x, y) == (1, 2) { 20 } else { 900 };
        for (f, t) in [(x, y), (y, x)] {
            links.push(format!(
                r#"{{"from":"{}","to":"{}","bw":{bw},"lat":0.2,"loss":0}}"#,
                host(f),
                host(t)
            ));
        }
    }
    format!(r#"{{"links":[{}]}}"#, links.join(","))
}

/// Three daemons running FILE's state with a `dgram` interface `vm` each (its peer given by
/// `peers[i]`, `,HOST:PORT` or empty), and the saved VTTIF answer and measurement.
fn running(tag: &str, peers: &[String; 3]) -> (World, [String; 3]) {
    let mut w = World::new(tag, NET);
    let file = w.write("system.vnet", &program());
    let infer = w.write("infer.json", &infer_json());
    let measure = w.write("measure.json", &measure_json());
    let mut up = vec!["up".to_string(), file.clone()];
    for (i, peer) in peers.iter().enumerate() {
        let h = host(i as u8 + 1);
        up.push("--iface".into());
        up.push(format!("{h}/vm=dgram:{h}:6000{peer}"));
    }
    expect_code(
        &w.vnetc(&up.iter().map(String::as_str).collect::<Vec<_>>()),
        0,
    );
    expect_code(&w.vnetc(&["apply", "--wait", &file]), 0);
    (w, [file, infer, measure])
}

/// `vnetc adapt FILE` on the saved answers, one hop, JSON.
fn adapt_args(file: &str, infer: &str, measure: &str, state: &str) -> Vec<String> {
    let args = [
        "adapt",
        file,
        "--infer",
        infer,
        "--measure",
        measure,
        "--max-hops",
        "1",
    ];
    let more = ["--state-dir", state, "--format", "json"];
    args.iter().chain(&more).map(|s| s.to_string()).collect()
}

/// A `vnet-patterns vm` process, killed on drop unless finished.
struct PatternsVm(Option<Child>);

impl Drop for PatternsVm {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_vm(rank: usize, mac: &str, at: &str, control: &Path) -> PatternsVm {
    let peers = format!("10.{NET}.0.1:7000,10.{NET}.0.2:7000");
    let child = Command::new(patterns_path())
        .args(["vm", "--rank", &rank.to_string(), "--peers", &peers])
        .args(["--udp-local", &format!("{at}:{}", 6001 + rank)])
        .args(["--udp-remote", &format!("{at}:6000"), "--mac", mac])
        .arg("--control")
        .arg(control)
        .args([
            "--topology",
            "ring",
            "--operation",
            "exchange",
            "--message-size",
            "20000",
        ])
        .args([
            "--duration",
            &RUN_S.to_string(),
            "--sample-interval",
            &SAMPLE_S.to_string(),
        ])
        .args(["--timeout", "10", "--format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vnet-patterns");
    PatternsVm(Some(child))
}

fn finish(mut vm: PatternsVm) -> serde_json::Value {
    let child = vm.0.take().expect("running");
    let out = child.wait_with_output().expect("wait vnet-patterns");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "vnet-patterns failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn iface(w: &World, i: u8) -> PortCounters {
    let key = Key::load(&w.key_file()).expect("key");
    let mut c = Client::connect(format!("{}:7000", host(i)), &key).expect("connect");
    let st = c.stats().expect("stats");
    st.interfaces
        .into_iter()
        .find(|(n, _)| n == "vm")
        .map(|(_, c)| c)
        .expect("interface vm")
}

fn where_is(control: &Path) -> String {
    let s = UnixStream::connect(control).expect("control socket");
    writeln!(&s, "where").expect("write");
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("read");
    line.trim().to_string()
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[test]
fn adapt_apply_moves_a_running_vm_and_its_traffic_follows() {
    let _serial = serial();
    let (a, b, c) = (host(1), host(2), host(3));
    // A and B know their VM's address (the user-space VMs send nothing until spoken to); C
    // learns VM 1's from the gratuitous ARP it sends on `attach`.
    let peers = [format!(",{a}:6001"), format!(",{b}:6002"), String::new()];
    let (mut w, [file, infer, measure]) = running("adapt", &peers);

    let state = w.state_dir();
    let state_s = state.to_string_lossy().into_owned();
    let reg = Registry::open(&state);
    let controls = [w.path("vm1.sock"), w.path("vm2.sock")];
    for (i, (name, mac, at)) in [("vm1", M1, &a), ("vm2", M2, &b)].into_iter().enumerate() {
        reg.register(&VmRecord {
            name: name.into(),
            mac: Mac::parse(mac).expect("mac"),
            host: at.to_string(),
            driver: Driver::Patterns {
                control: controls[i].clone(),
            },
            compute: 1.0,
            // VM 2 stays, so the move is VM 1's (either would gain as much).
            pinned: name == "vm2",
        })
        .expect("register");
    }
    // Without --apply: the proposal, and nothing moves.
    let adapt = |extra: &[&str]| {
        let mut args = adapt_args(&file, &infer, &measure, &state_s);
        args.extend(extra.iter().map(|s| s.to_string()));
        w.vnetc(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let dry = adapt(&[]);
    expect_code(&dry, 0);
    let proposal: serde_json::Value = serde_json::from_str(&stdout(&dry)).expect("json");
    assert_eq!(proposal["mapping"]["vm1"], c.as_str(), "{proposal}");
    assert_eq!(reg.get("vm1").unwrap().unwrap().host, a);
    // Without a saved measurement, adapt probes the running daemons itself: every ordered
    // pair of the three gets a link with a bandwidth and a latency.
    let saved = w.path("live-problem.json").to_string_lossy().into_owned();
    let probed = w.vnetc(&[
        "adapt",
        &file,
        "--infer",
        &infer,
        "--probe-duration",
        "200ms",
        "--save-problem",
        &saved,
        "--state-dir",
        &state_s,
        "--format",
        "json",
    ]);
    expect_code(&probed, 0);
    let problem: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).expect("saved problem"))
            .expect("problem json");
    let links = problem["links"].as_array().expect("links");
    assert_eq!(links.len(), 6, "{problem}");
    assert!(
        links
            .iter()
            .all(|l| l["bw"].as_f64().is_some_and(|b| b > 0.0)
                && l["lat"].as_f64().is_some_and(|x| x >= 0.0)),
        "{problem}"
    );

    let vm2 = start_vm(1, M2, &b, &controls[1]);
    let vm1 = start_vm(0, M1, &a, &controls[0]);
    assert!(wait_until(Duration::from_secs(10), || controls
        .iter()
        .all(|p| p.exists())));
    std::thread::sleep(Duration::from_secs(4));
    let a_before = iface(&w, 1);
    let c_before = iface(&w, 3);
    let t0 = Instant::now();
    // The move is decided on VTTIF's live answer: the Proxy (A) has the daemons' counts.
    let mut args = adapt_args(&file, &infer, &measure, &state_s);
    args.retain(|a| *a != infer && a != "--infer");
    args.extend(["--window".into(), "2s".into(), "--apply".into()]);
    let applied = w.vnetc(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let moved_at = now_unix();
    eprintln!(
        "adapt --apply took {:?}\n{}",
        t0.elapsed(),
        stderr(&applied)
    );
    expect_code(&applied, 0);
    let answer: serde_json::Value = serde_json::from_str(&stdout(&applied)).expect("json");
    assert_eq!(answer["migrations"][0]["vm"], "vm1", "{answer}");
    assert_eq!(answer["moved"][0]["to"], c.as_str(), "{answer}");
    assert_eq!(where_is(&controls[0]), format!("ok attached {c}:6000"));
    assert_eq!(reg.get("vm1").unwrap().unwrap().host, c);
    let a_at_move = iface(&w, 1);

    let r1 = finish(vm1);
    let r2 = finish(vm2);
    // The workload went on: every superstep's messages were checked, and every sample that
    // ended a second after the move made progress.
    for r in [&r1, &r2] {
        let steps = r["supersteps"].as_u64().unwrap();
        assert!(
            steps > 0 && r["messages_verified"].as_u64() == Some(steps),
            "{r}"
        );
        let start = r["started_unix"].as_f64().unwrap();
        let after: Vec<u64> = r["samples"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| start + s["t"].as_f64().unwrap() > moved_at + 1.0)
            .map(|s| s["supersteps"].as_u64().unwrap())
            .collect();
        assert!(
            after.len() >= 4 && after.iter().all(|&n| n > 0),
            "after the move: {after:?}\n{r}"
        );
    }
    // VM 1's frames now enter at C, and nothing more at A.
    let c_now = iface(&w, 3);
    assert!(
        c_now.rx_frames > c_before.rx_frames + 100 && c_now.tx_frames > c_before.tx_frames + 100,
        "C's interface: {c_before:?} -> {c_now:?}"
    );
    assert!(a_before.rx_frames > 0);
    assert_eq!(
        iface(&w, 1).rx_frames,
        a_at_move.rx_frames,
        "frames still enter at A"
    );
    // The daemons hold the proposal: the file printed by adapt reads back as the live state.
    let adapted = w.write("adapted.vnet", answer["vnet"].as_str().unwrap());
    let diff = w.vnetc(&["diff", "--detailed-exitcode", &adapted]);
    expect_code(&diff, 0);
}

/// QEMU guests the test no longer owns (detached, or started by `vnetc adapt`), killed by pid
/// at the end, also when the test fails.
struct Reap {
    registry: Registry,
    pids: Vec<u32>,
}

impl Drop for Reap {
    fn drop(&mut self) {
        let mut pids = self.pids.clone();
        if let Ok(Some(r)) = self.registry.get("vm1") {
            if let Driver::Qemu { vm } = r.driver {
                pids.push(vm.pid);
            }
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

#[test]
fn adapt_apply_migrates_a_qemu_vm_live_and_its_ping_continues() {
    let _serial = serial();
    if let Err(why) = vm::image::prerequisites() {
        eprintln!("skipping: {why}");
        return;
    }
    let (a, c) = (host(1), host(3));
    // The guests speak first (they boot and ping), so the interfaces learn their addresses.
    let (w, [file, infer, measure]) =
        running("adapt-qemu", &[String::new(), String::new(), String::new()]);

    let (dir, image, vm2) = pinged_guest(&w);
    let at =
        |h: &str| Attachment::beside(format!("{h}:6000").parse().expect("addr")).expect("port");
    let mac = |m: &str| Mac::parse(m).expect("mac");
    let spec1 = VmSpec::new("vm1", mac(M1), image)
        .arg("ip", "10.77.0.1/24")
        .arg("role", "pinger")
        .arg("peer", "10.77.0.2")
        .arg("count", &COUNT.to_string())
        .arg("interval", &format!("{}", INTERVAL_MS as f64 / 1000.0));
    let mut vm1 = Vm::start(&dir, spec1, at(&a)).expect("start VM 1");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !vm1.console().contains("VNET-PING-START") {
        assert!(
            vm1.status().is_ok() && Instant::now() < deadline,
            "no ping start\n{}\n--- vm2\n{}",
            vm1.console(),
            vm2.console()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let t_ping = Instant::now();
    let state = w.state_dir();
    let state_s = state.to_string_lossy().into_owned();
    let registry = Registry::open(&state);
    let detached = vm1.detach();
    let _reap = Reap {
        registry: registry.clone(),
        pids: vec![detached.pid],
    };
    register_pair(
        &registry,
        Driver::Qemu {
            vm: detached.clone(),
        },
    );
    std::thread::sleep(Duration::from_secs(3).saturating_sub(t_ping.elapsed()));
    let c_before = iface(&w, 3);
    let mut args = adapt_args(&file, &infer, &measure, &state_s);
    args.push("--apply".into());
    let out = w.vnetc(&args.iter().map(String::as_str).collect::<Vec<_>>());
    eprintln!("{}", stderr(&out));
    expect_code(&out, 0);
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let downtime = answer["moved"][0]["downtime_ms"]
        .as_f64()
        .expect("downtime");
    let a_at_move = iface(&w, 1);
    let now = match registry.get("vm1").expect("registry").expect("vm1").driver {
        Driver::Qemu { vm } => vm,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (now.incarnation, now.iface),
        (1, format!("{c}:6000").parse().unwrap())
    );
    let console = || read(&now.console(0)) + &read(&now.console(1));
    let deadline =
        Instant::now() + Duration::from_millis(COUNT * INTERVAL_MS) + Duration::from_secs(120);
    while !console().contains("VNET-PING-END") {
        assert!(Instant::now() < deadline, "no ping end\n{}", console());
        std::thread::sleep(Duration::from_millis(250));
    }
    // The new incarnation's console holds only replies that came after the move.
    let replies_after = read(&now.console(1)).matches("bytes from").count();
    ping_went_on(
        &w,
        &console(),
        replies_after,
        downtime,
        &c_before,
        &a_at_move,
    );
    drop(vm2);
}

/// Without daemons: the proposal printed as text is a `.vnet` that checks clean, and bad
/// inputs are named.
#[test]
fn the_proposal_checks_and_bad_inputs_are_named() {
    let mut w = World::new("adapt-offline", NET);
    let file = w.write("system.vnet", &program());
    let infer = w.write("infer.json", &infer_json());
    let measure = w.write("measure.json", &measure_json());
    let state = w.state_dir();
    let state_s = state.to_string_lossy().into_owned();
    let record = |name: &str, m: &str, h: String| VmRecord {
        name: name.into(),
        mac: Mac::parse(m).expect("mac"),
        host: h,
        driver: Driver::None,
        compute: 1.0,
        pinned: false,
    };
    let registry = Registry::open(&state);
    registry
        .register(&record("vm1", M1, host(1)))
        .expect("register");
    registry
        .register(&record("vm2", M2, host(2)))
        .expect("register");
    let base = ["adapt", &file, "--state-dir", &state_s, "--max-hops", "1"];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        w.vnetc(&args)
    };
    let saved = w.path("problem.json").to_string_lossy().into_owned();
    let out = run(&[
        "--infer",
        &infer,
        "--measure",
        &measure,
        "--save-problem",
        &saved,
    ]);
    expect_code(&out, 0);
    let text = stdout(&out);
    // Neither VM has a driver: the move that would help is reported, nothing moves.
    assert!(text.contains("cannot be driven from here"), "{text}");
    assert!(!text.contains("# migrate"), "{text}");
    let proposal = w.path("proposal.vnet");
    std::fs::write(&proposal, &text).expect("write");
    expect_code(&w.vnetc(&["check", &proposal.to_string_lossy()]), 0);
    // The saved problem solves offline to the same value.
    let offline = w.vnetc(&["adapt", "--problem", &saved, "--format", "json"]);
    expect_code(&offline, 0);
    let value: serde_json::Value = serde_json::from_str(&stdout(&offline)).expect("json");
    assert_eq!(value["before"], value["value"], "{value}");
    // Inputs missing or malformed are usage errors naming the flag and the field.
    // Without --infer, VTTIF's Proxy (the first HOST line) is asked; it is not running.
    Key::generate_file(&w.key_file()).expect("key");
    let out = run(&["--measure", &measure]);
    expect_code(&out, 1);
    assert!(
        stderr(&out).contains("without VTTIF's answer"),
        "{}",
        stderr(&out)
    );
    // Without --measure, the daemons are probed now; they are not running.
    let out = run(&["--infer", &infer]);
    expect_code(&out, 1);
    assert!(
        stderr(&out).contains("without the underlay measurement"),
        "{}",
        stderr(&out)
    );
    let bad = w.path("bad.json");
    let bad_text = infer_json().replace("\"bytes_per_s\":2000000", "\"bytes_per_s\":\"x\"");
    std::fs::write(&bad, bad_text).expect("write");
    let bad = bad.to_string_lossy().into_owned();
    let out = run(&["--infer", &bad, "--measure", &measure]);
    expect_code(&out, 2);
    assert!(
        stderr(&out).contains("pairs[0].bytes_per_s"),
        "{}",
        stderr(&out)
    );
    let out = w.vnetc(&["adapt", "--infer", &infer]);
    expect_code(&out, 2);
}

/// A libvirt daemon of its own, in session mode as the unprivileged user `nobody` (two of them
/// are two "hosts" to libvirt: each has its own state and host UUID, so libvirt migrates
/// between them on one machine). Its domains are destroyed and it is stopped on drop.
struct Libvirtd {
    child: Child,
    uri: String,
}

const NOBODY: u32 = 65534;

impl Libvirtd {
    fn start(dir: &Path, uuid: &str) -> Libvirtd {
        for sub in ["cfg/libvirt", "run", "data", "cache", "home"] {
            std::fs::create_dir_all(dir.join(sub)).expect("libvirt dirs");
        }
        std::fs::write(
            dir.join("cfg/libvirt/libvirtd.conf"),
            format!("host_uuid = \"{uuid}\"\n"),
        )
        .expect("libvirtd.conf");
        chown_all(dir);
        let env = |sub: &str| dir.join(sub);
        let child = Command::new("setpriv")
            .args([
                "--reuid",
                &NOBODY.to_string(),
                "--regid",
                &NOBODY.to_string(),
                "--clear-groups",
            ])
            .args(["libvirtd", "--timeout", "600"])
            .env("HOME", env("home"))
            .env("XDG_RUNTIME_DIR", env("run"))
            .env("XDG_CONFIG_HOME", env("cfg"))
            .env("XDG_DATA_HOME", env("data"))
            .env("XDG_CACHE_HOME", env("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("libvirtd.log")).expect("log"))
            .spawn()
            .expect("start libvirtd");
        let socket = dir.join("run/libvirt/libvirt-sock");
        let d = Libvirtd {
            child,
            uri: format!("qemu+unix:///session?socket={}", socket.display()),
        };
        assert!(
            wait_until(Duration::from_secs(30), || socket.exists()),
            "no libvirtd socket"
        );
        d
    }

    fn virsh(&self, args: &[&str]) -> std::process::Output {
        Command::new("virsh")
            .arg("-c")
            .arg(&self.uri)
            .args(args)
            .output()
            .expect("virsh")
    }
}

impl Drop for Libvirtd {
    fn drop(&mut self) {
        let _ = self.virsh(&["destroy", "vm1"]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chown_all(dir: &Path) {
    let _ = std::os::unix::fs::chown(dir, Some(NOBODY), Some(NOBODY));
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            chown_all(&e.path());
        } else {
            let _ = std::os::unix::fs::chown(e.path(), Some(NOBODY), Some(NOBODY));
        }
    }
}

/// Why libvirt cannot run here, if it cannot.
fn libvirt_missing() -> Option<String> {
    for tool in ["libvirtd", "virsh", "setpriv"] {
        let found = std::env::var_os("PATH").is_some_and(|p| {
            std::env::split_paths(&p).any(|d| d.join(tool).is_file())
                || Path::new("/usr/sbin").join(tool).is_file()
        });
        if !found {
            return Some(format!(
                "no {tool} (packages libvirt-daemon-system, libvirt-clients, util-linux)"
            ));
        }
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Some("the test runs libvirtd as the user nobody, which needs root".into());
    }
    None
}

#[test]
fn adapt_apply_migrates_a_libvirt_domain_live_and_its_ping_continues() {
    let _serial = serial();
    if let Err(why) = vm::image::prerequisites() {
        eprintln!("skipping: {why}");
        return;
    }
    if let Some(why) = libvirt_missing() {
        eprintln!("skipping: {why}");
        return;
    }
    let (a, c) = (host(1), host(3));
    let none = || String::new();
    let (w, [file, infer, measure]) = running("adapt-libvirt", &[none(), none(), none()]);
    let (dir, image, vm2) = pinged_guest(&w);
    let kernel_copy = dir.join("vmlinuz");
    std::fs::copy(&image.kernel, &kernel_copy).expect("kernel readable by nobody");
    let console = dir.join("vm1.console");
    std::fs::write(&console, "").expect("console");
    chown_all(&dir);
    let lv_a = Libvirtd::start(&w.path("lvA"), "5a1d0000-0000-4000-8000-000000000001");
    let lv_c = Libvirtd::start(&w.path("lvC"), "5a1d0000-0000-4000-8000-000000000003");
    let a_iface = format!("{a}:6000").parse().expect("addr");
    let local = Attachment::beside(a_iface).expect("port").local;
    let cmdline = format!(
        "console=ttyS0 quiet panic=-1 vnet.ip=10.77.0.1/24 vnet.role=pinger vnet.peer=10.77.0.2 vnet.count={COUNT} vnet.interval={}",
        INTERVAL_MS as f64 / 1000.0
    );
    let xml = format!(
        "<domain type='qemu'><name>vm1</name><memory unit='MiB'>128</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{}</kernel><initrd>{}</initrd><cmdline>{cmdline}</cmdline></os>\
         <devices><emulator>/usr/bin/qemu-system-x86_64</emulator>\
         <interface type='udp'><mac address='{M1}'/><source address='{a}' port='6000'><local address='{}' port='{}'/></source><model type='virtio'/></interface>\
         <serial type='file'><source path='{}' append='on'/></serial><memballoon model='none'/></devices></domain>",
        kernel_copy.display(),
        image.initrd.display(),
        local.ip(),
        local.port(),
        console.display()
    );
    let xml_file = dir.join("vm1.xml");
    std::fs::write(&xml_file, xml).expect("xml");
    let created = lv_a.virsh(&["create", &xml_file.to_string_lossy()]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let deadline = Instant::now() + Duration::from_secs(300);
    while !read(&console).contains("VNET-PING-START") {
        assert!(
            Instant::now() < deadline,
            "no ping start\n{}\n--- vm2\n{}",
            read(&console),
            vm2.console()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let state_s = w.state_dir().to_string_lossy().into_owned();
    let registry = Registry::open(&w.state_dir());
    let hosts = [(a.clone(), lv_a.uri.clone()), (c.clone(), lv_c.uri.clone())].into();
    let driver = Driver::Libvirt {
        domain: "vm1".into(),
        uri: lv_a.uri.clone(),
        hosts,
    };
    register_pair(&registry, driver);
    std::thread::sleep(Duration::from_secs(2));
    let c_before = iface(&w, 3);
    let mut args = adapt_args(&file, &infer, &measure, &state_s);
    args.push("--apply".into());
    let out = w.vnetc(&args.iter().map(String::as_str).collect::<Vec<_>>());
    eprintln!("{}", stderr(&out));
    expect_code(&out, 0);
    let at_move = read(&console).len();
    let answer: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    let downtime = answer["moved"][0]["downtime_ms"]
        .as_f64()
        .expect("downtime");
    let a_at_move = iface(&w, 1);
    let listed = String::from_utf8_lossy(&lv_c.virsh(&["list", "--name"]).stdout).into_owned();
    assert!(listed.contains("vm1"), "not at C's libvirt: {listed}");
    match registry.get("vm1").expect("registry").expect("vm1").driver {
        Driver::Libvirt { uri, .. } => assert_eq!(uri, lv_c.uri),
        other => panic!("{other:?}"),
    }
    let deadline =
        Instant::now() + Duration::from_millis(COUNT * INTERVAL_MS) + Duration::from_secs(120);
    while !read(&console).contains("VNET-PING-END") {
        assert!(Instant::now() < deadline, "no ping end\n{}", read(&console));
        std::thread::sleep(Duration::from_millis(250));
    }
    let text = read(&console);
    let replies_after = text[at_move..].matches("bytes from").count();
    ping_went_on(&w, &text, replies_after, downtime, &c_before, &a_at_move);
    drop(vm2);
}
