//! `vnetc demo` end to end (SPEC 5.4): real daemons, real user-space VMs running Patterns,
//! and with `--vms` real QEMU guests migrated live, as an unprivileged user when the tests
//! run as root. Each test gives the demo a temporary directory of its own as TMPDIR and
//! checks afterwards that no process mentions it and nothing is left in it.

mod live_common;

use live_common::{patterns_path, vnetc_path, vnetd_path, TempDir};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A small wide area: a fast site of two hosts, a slow host, the Proxy's site; three VMs.
const SMALL: &str = r#"
description = "three VMs in a ring over two sites"
proxy = "home"

[workload]
topology = "ring"
operation = "exchange"
message_size = 4096
compute_ratio = 0.0
seconds = SECONDS

[[site]]
name = "fast"
hosts = ["a1", "a2"]
delay_ms = 0.1
bandwidth = 1000

[[site]]
name = "slow"
hosts = ["b1"]
delay_ms = 0.1
bandwidth = 1000

[[site]]
name = "home"
hosts = ["home"]
delay_ms = 0.1
bandwidth = 1000

[[link]]
sites = ["fast", "slow"]
delay_ms = 5
bandwidth = 20

[[link]]
sites = ["fast", "home"]
delay_ms = 5
bandwidth = 20

[[link]]
sites = ["slow", "home"]
delay_ms = 5
bandwidth = 20

[[vm]]
name = "vm1"
host = "a1"

[[vm]]
name = "vm2"
host = "a2"

[[vm]]
name = "vm3"
host = "b1"
"#;

/// A demo's world: its TMPDIR, its output directory and its scenario.
struct World {
    dir: TempDir,
}

impl World {
    fn new(tag: &str, seconds: f64) -> World {
        World::with(tag, SMALL, seconds)
    }

    /// A world whose `small.toml` is `scenario` (SECONDS replaced).
    fn with(tag: &str, scenario: &str, seconds: f64) -> World {
        let dir = TempDir::new(tag);
        for sub in ["tmp", "out"] {
            std::fs::create_dir_all(dir.0.join(sub)).expect("dir");
        }
        let scenario = scenario.replace("SECONDS", &seconds.to_string());
        std::fs::write(dir.0.join("small.toml"), scenario).expect("scenario");
        let world = World { dir };
        world.give_to_nobody();
        world
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.0.join(sub)
    }

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    /// Run as root, the demo runs as `nobody`: its directories must be its own.
    fn give_to_nobody(&self) {
        if !World::root() {
            return;
        }
        for p in [self.path(""), self.path("tmp"), self.path("out")] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        }
    }

    /// The demo command (as `nobody` under root), with TMPDIR in the world.
    fn demo(&self, extra: &[&str]) -> Command {
        let mut cmd = if World::root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
            c.arg(vnetc_path());
            c
        } else {
            Command::new(vnetc_path())
        };
        cmd.arg("demo")
            .arg("--scenario")
            .arg(self.path("small.toml"))
            .arg("-o")
            .arg(self.path("out"))
            .arg("--vnetd")
            .arg(vnetd_path())
            .arg("--patterns")
            .arg(patterns_path())
            .args(extra)
            .env("TMPDIR", self.path("tmp"))
            .env("HOME", self.path("tmp"))
            .stdin(Stdio::null());
        cmd
    }

    /// Processes whose command line mentions this world.
    fn processes(&self) -> Vec<String> {
        let needle = self.dir.0.display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name.parse::<u32>().is_err() {
                continue;
            }
            let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // The demo itself names only the scenario and the output directory.
            if cmd.contains(&needle) && !cmd.contains(" demo ") {
                found.push(format!("{name}: {cmd}"));
            }
        }
        found
    }

    /// What is left in the demo's TMPDIR.
    fn leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.path("tmp"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().display().to_string())
            .collect()
    }

    fn assert_clean(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.processes().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            self.processes().is_empty(),
            "processes left: {:?}",
            self.processes()
        );
        assert!(
            self.leftovers().is_empty(),
            "files left: {:?}",
            self.leftovers()
        );
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_demo_runs_and_its_json_has_the_spec_fields() {
    let w = World::new("demo-json", 2.0);
    let out = w
        .demo(&["--format", "json"])
        .output()
        .expect("run vnetc demo");
    let all = text(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect(&all);
    for field in vnet_demo::story::SPEC_FIELDS {
        assert!(v.get(field).is_some(), "no `{field}`: {all}");
    }
    assert!(
        v["workload"]
            .as_str()
            .is_some_and(|s| s.contains("ring exchange of 3 ranks")),
        "{all}"
    );
    // The VMs were asked to end once the "after" window was over, before their length (31 s).
    let ran: f64 = v["workload"]
        .as_str()
        .and_then(|s| s.rsplit_once(", "))
        .and_then(|(_, length)| length.strip_suffix(" s")?.parse().ok())
        .expect(&all);
    assert!(ran < 25.0, "the run took its whole length: {all}");
    let before = v["before"].as_f64().expect(&all);
    assert!(before > 0.0, "{all}");
    let throughput = v["throughput_picture"].as_str().expect(&all);
    let svg = std::fs::read_to_string(throughput).expect(throughput);
    assert!(
        svg.starts_with("<svg") && svg.contains("supersteps/s"),
        "{svg}"
    );
    assert!(Path::new(throughput).starts_with(w.path("out")));
    // VTTIF saw the ring of three: every VM talks to both others, named as the scenario names them.
    let mut pairs: Vec<(String, String)> = v["topology"]
        .as_array()
        .expect(&all)
        .iter()
        .map(|p| {
            (
                p["src"].as_str().unwrap_or("?").into(),
                p["dst"].as_str().unwrap_or("?").into(),
            )
        })
        .collect();
    pairs.sort();
    let want: Vec<(String, String)> = [
        ("vm1", "vm2"),
        ("vm1", "vm3"),
        ("vm2", "vm1"),
        ("vm2", "vm3"),
        ("vm3", "vm1"),
        ("vm3", "vm2"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(pairs, want, "{all}");
    let picture = v["picture"].as_str().expect(&all);
    assert!(std::fs::read_to_string(picture)
        .expect(picture)
        .contains("vm3 @ "));
    assert!(v["error"].is_null(), "{all}");
    assert_eq!(out.status.code(), Some(0), "{all}");
    let after = v["after"].as_f64().expect(&all);
    let speedup = v["speedup"].as_f64().expect(&all);
    assert!(
        after > 0.0 && (speedup - after / before).abs() < 1e-9,
        "{all}"
    );
    assert!(v["migrations"].is_array(), "{all}");
    w.assert_clean();
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Kills the demo if the test fails before it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_interrupted_demo_stops_everything_it_started() {
    interrupt(&World::new("demo-sigint", 60.0), &[], "vnet-patterns");
}

/// With `--vms`, interrupted while the guests run: their QEMU processes go too.
#[test]
fn an_interrupted_vms_demo_stops_its_guests() {
    if let Some(why) = qemu_missing() {
        eprintln!("skipping: {why}");
        return;
    }
    interrupt(
        &World::new("demo-vms-sigint", 60.0),
        &["--vms"],
        "qemu-system",
    );
}

/// Starts the demo, sends SIGINT once its three VMs (processes whose command line holds
/// `vm`) and the daemons run, and checks that it ends with 130 and leaves nothing.
fn interrupt(w: &World, extra: &[&str], vm: &str) {
    let mut demo = Running(
        w.demo(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vnetc demo"),
    );
    wait_until("the VMs", Duration::from_secs(90), || {
        w.processes().iter().filter(|p| p.contains(vm)).count() == 3
    });
    assert!(
        w.processes().iter().any(|p| p.contains("vnetd")),
        "{:?}",
        w.processes()
    );
    let pid = nix::unistd::Pid::from_raw(demo.0.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
    let started = Instant::now();
    let mut status = None;
    while status.is_none() && started.elapsed() < Duration::from_secs(30) {
        status = demo.0.try_wait().expect("wait");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = status.expect("the demo ends within 30 s of SIGINT");
    assert_eq!(status.code(), Some(130));
    w.assert_clean();
}

#[test]
fn a_malformed_scenario_is_named_with_its_place() {
    let w = World::new("demo-bad", 2.0);
    let bad = w.path("bad.toml");
    std::fs::write(&bad, "proxy = \"home\"\n[workload]\ntopology = 3\n").expect("write");
    let out = Command::new(vnetc_path())
        .args(["demo", "--scenario"])
        .arg(&bad)
        .output()
        .expect("run");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("bad.toml") && all.contains("line 3"), "{all}");
    let scenario = std::fs::read_to_string(w.path("small.toml")).expect("small");
    std::fs::write(&bad, scenario.replace("host = \"b1\"", "host = \"mars\"")).expect("write");
    let out = Command::new(vnetc_path())
        .args(["demo", "--scenario"])
        .arg(&bad)
        .output()
        .expect("run");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("vm[2] `vm3`: host `mars`"), "{all}");
    assert!(w.processes().is_empty());
}

/// Why QEMU guests cannot run here, if they cannot (the packages CI's scripts/setup installs).
fn qemu_missing() -> Option<String> {
    let on_path = |cmd: &str| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
    };
    if !on_path("qemu-system-x86_64") {
        return Some("no qemu-system-x86_64 (package qemu-system-x86)".into());
    }
    if !Path::new("/bin/busybox").is_file() {
        return Some("no /bin/busybox (package busybox-static)".into());
    }
    let kernel = std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with("vmlinuz-"));
    (!kernel).then(|| "no /boot/vmlinuz-* (package linux-image-cloud-amd64)".into())
}

/// `--vms`: the ring in three QEMU guests; the one on the slow site is migrated live to the
/// fast site's free host (a3), reports its downtime, and the ring goes on through it there.
#[test]
fn the_demo_with_qemu_vms_migrates_a_guest_live() {
    if let Some(why) = qemu_missing() {
        eprintln!("skipping: {why}");
        return;
    }
    let scenario = SMALL.replace(r#"hosts = ["a1", "a2"]"#, r#"hosts = ["a1", "a2", "a3"]"#);
    let w = World::with("demo-vms", &scenario, 3.0);
    let out = w
        .demo(&["--vms", "--format", "json"])
        .output()
        .expect("run vnetc demo --vms");
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect(&all);
    for field in vnet_demo::story::SPEC_FIELDS {
        assert!(v.get(field).is_some(), "no `{field}`: {all}");
    }
    assert!(v["error"].is_null(), "{all}");
    let migrations = v["migrations"].as_array().expect(&all);
    assert!(
        migrations.iter().any(|m| m["vm"] == "vm3"),
        "vm3 stays on the slow site: {all}"
    );
    for m in migrations {
        assert_ne!(m["from"], m["to"], "{all}");
        let downtime = m["downtime_ms"].as_f64().expect(&all);
        assert!(downtime > 0.0, "{all}");
    }
    // The ring needs every rank each superstep: throughput after the move means the
    // migrated guest answers at its new daemon.
    let (before, after) = (v["before"].as_f64(), v["after"].as_f64());
    assert!(before > Some(0.0) && after > Some(0.0), "{all}");
    let stages: Vec<&str> = v["stages"]
        .as_array()
        .expect(&all)
        .iter()
        .filter_map(|s| s[0].as_str())
        .collect();
    assert_eq!(
        stages,
        ["start", "measure", "boot", "infer", "adapt"],
        "{all}"
    );
    w.assert_clean();
}
