//! VTTIF end to end (SPEC 5.1): a live resilient star of real `vnetd` processes started by
//! `vnetc up` and `vnetc apply`, Patterns ranks running as user-space VMs on the daemons'
//! `dgram` interfaces (real Ethernet frames, real TCP inside), and `vnetc infer` asking the
//! Proxy what it saw.

mod live_common;

use live_common::*;
use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A star of `ranks + 1` daemons on 127.NET.0.x: the Proxy, and one host per rank whose
/// interface `vmI` is a `dgram` interface at 127.NET.0.(I+1):6000 serving VM I (MAC `mac(I)`).
struct Star {
    world: World,
    file: String,
    ranks: usize,
}

impl Star {
    fn up(tag: &str, net: u8, ranks: usize) -> Star {
        let mut world = World::new(tag, net);
        let file = world.write("star.vnet", &topology(net, ranks + 1, 7000, Shape::Star));
        let mut args = vec!["up".to_string(), file.clone()];
        args.extend(DGRAM.iter().map(|s| s.to_string()));
        for i in 1..=ranks {
            let ip = world.addr(i);
            args.push("--iface".into());
            args.push(format!("{ip}/vm{i}=dgram:{ip}:6000,{ip}:6001"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        expect_code(&world.vnetc(&args), 0);
        let out = world.vnetc(&["apply", "--wait", &file]);
        expect_code(&out, 0);
        assert!(
            stdout(&out).contains(&format!("VTTIF: {} daemons now report", ranks + 1)),
            "{}",
            stdout(&out)
        );
        Star { world, file, ranks }
    }

    /// The ranks of one Patterns program as user-space VMs, one per host, for `seconds`.
    fn run(&self, topology: &str, message_size: usize, seconds: f64) -> Vec<Child> {
        let peers: Vec<String> = (0..self.ranks)
            .map(|r| format!("10.{}.0.{}:7000", self.world.net, r + 1))
            .collect();
        (0..self.ranks)
            .map(|r| {
                let ip = self.world.addr(r + 1);
                Command::new(patterns_path())
                    .args(["vm", "--rank", &r.to_string(), "--peers", &peers.join(",")])
                    .args(["--udp-local", &format!("{ip}:6001")])
                    .args(["--udp-remote", &format!("{ip}:6000")])
                    .args(["--mac", &mac(r + 1), "--topology", topology])
                    .args(["--operation", "exchange"])
                    .args(["--message-size", &message_size.to_string()])
                    .args(["--duration", &seconds.to_string(), "--format", "json"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("start a vnet-patterns VM")
            })
            .collect()
    }

    /// The directed MAC pairs of a Patterns topology on this star's ranks.
    fn told(&self, topology: &str) -> BTreeSet<(String, String)> {
        let out = Command::new(patterns_path())
            .args(["plan", "-n", &self.ranks.to_string(), "-t", topology])
            .args(["--format", "json"])
            .output()
            .expect("vnet-patterns plan");
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
        let mut pairs = BTreeSet::new();
        for (r, ns) in plan["neighbours"]
            .as_array()
            .expect("neighbours")
            .iter()
            .enumerate()
        {
            for n in ns.as_array().expect("neighbour list") {
                let n = n.as_u64().expect("rank") as usize;
                pairs.insert((mac(r + 1), mac(n + 1)));
            }
        }
        pairs
    }

    fn infer(&self, extra: &[&str]) -> serde_json::Value {
        let args = [&["infer", &self.file, "--format", "json"][..], extra].concat();
        let out = self.world.vnetc(&args);
        expect_code(&out, 0);
        serde_json::from_slice(&out.stdout).expect("infer JSON")
    }

    /// Asks until the answer is settled on `want` (or the time is up); the last answer.
    fn settle_on(
        &self,
        want: &BTreeSet<(String, String)>,
        extra: &[&str],
        within: Duration,
    ) -> (serde_json::Value, Option<Duration>) {
        let started = Instant::now();
        loop {
            let answer = self.infer(extra);
            if answer["settled"] == true && topology_of(&answer) == *want {
                return (answer, Some(started.elapsed()));
            }
            if started.elapsed() > within {
                return (answer, None);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn topology_of(answer: &serde_json::Value) -> BTreeSet<(String, String)> {
    answer["topology"]
        .as_array()
        .expect("topology")
        .iter()
        .map(|p| {
            (
                p["src"].as_str().expect("src").to_string(),
                p["dst"].as_str().expect("dst").to_string(),
            )
        })
        .collect()
}

/// Waits for the VMs; what each said, and whether all succeeded.
fn finish(vms: Vec<Child>) -> String {
    let mut said = String::new();
    for vm in vms {
        let out = vm.wait_with_output().expect("wait for a VM");
        if !out.status.success() {
            said += &format!(
                "a Patterns VM failed: {}\n",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    said
}

#[test]
fn every_patterns_topology_is_inferred_exactly_through_a_live_star() {
    let star = Star::up("infer-topologies", 161, 8);
    // A Proxy with no traffic yet answers an empty topology, with SPEC 5.1's fields.
    let empty = star.infer(&[]);
    assert_eq!(empty["proxy"], star.world.addr(0));
    assert_eq!(empty["window_ms"], 2000);
    assert_eq!(empty["threshold"], 0.1);
    assert!(topology_of(&empty).is_empty(), "{empty}");
    for key in ["settled", "settled_for_ms", "pairs"] {
        assert!(empty.get(key).is_some(), "no `{key}` in {empty}");
    }
    let topologies = [
        "bus",
        "ring",
        "mesh",
        "torus",
        "hypercube",
        "tree",
        "all-to-all",
    ];
    let window = ["--window", "1s"];
    for t in topologies {
        let want = star.told(t);
        let vms = star.run(t, 4000, 10.0);
        let (answer, took) = star.settle_on(&want, &window, Duration::from_secs(9));
        if took.is_none() {
            let outputs = finish(vms);
            panic!(
                "{t}: not settled on the told topology\nwant {want:?}\ngot  {:?}\n{answer:#}\n{outputs}",
                topology_of(&answer)
            );
        }
        // Each pair names where it entered and where its destination lives.
        for p in answer["topology"].as_array().unwrap() {
            assert_ne!(p["src_daemon"], p["dst_daemon"], "{p}");
            assert!(p["bytes_per_s"].as_f64().unwrap() > 0.0, "{p}");
        }
        let failed = finish(vms);
        assert!(failed.is_empty(), "{t}: {failed}");
    }
}

/// The statement lines of a program (links and rules), trimmed.
fn statements(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("LINK") || l.starts_with("FORWARD"))
        .map(str::to_string)
        .collect()
}

#[test]
fn applying_the_inferred_program_gives_one_hop_paths_and_diff_is_exactly_them() {
    let star = Star::up("infer-apply", 163, 3);
    let want = star.told("ring");
    let vms = star.run("ring", 4000, 8.0);
    let (answer, took) = star.settle_on(&want, &["--window", "1s"], Duration::from_secs(7));
    let out = star.world.vnetc(&["infer", &star.file, "--window", "1s"]);
    let failed = finish(vms);
    assert!(took.is_some(), "not settled: {answer:#}\n{failed}");
    expect_code(&out, 0);
    let program = stdout(&out);
    assert!(
        program.contains("# Inferred by VTTIF at the Proxy"),
        "{program}"
    );
    let inferred = star.world.path("inferred.vnet");
    std::fs::write(&inferred, &program).unwrap();
    let inferred = inferred.to_string_lossy().into_owned();
    expect_code(&star.world.vnetc(&["check", &inferred]), 0);

    // What diff adds is exactly the inferred links and rules, and nothing is deleted.
    let added: BTreeSet<String> = statements(&program)
        .difference(&statements(&stdout(
            &star.world.vnetc(&["state", &star.file]),
        )))
        .cloned()
        .collect();
    assert_eq!(
        added.iter().filter(|l| l.starts_with("LINK UDP")).count(),
        3
    );
    assert_eq!(
        added
            .iter()
            .filter(|l| l.starts_with("FORWARD EDGE"))
            .count(),
        6
    );
    let diff = star
        .world
        .vnetc(&["diff", "--detailed-exitcode", &inferred]);
    expect_code(&diff, 2);
    let patch = stdout(&diff);
    let (deleted, added_by_diff) = match patch.split_once("\nADD\n") {
        Some((before, after)) => (statements(before), statements(after)),
        None => panic!("no ADD block: {patch}"),
    };
    assert!(deleted.is_empty(), "{patch}");
    assert_eq!(added_by_diff, added, "{patch}");

    // Applied, every inferred pair has a one-hop path.
    expect_code(&star.world.vnetc(&["apply", "--wait", &inferred]), 0);
    expect_code(
        &star
            .world
            .vnetc(&["diff", "--detailed-exitcode", &inferred]),
        0,
    );
    for (src, dst) in &want {
        let from = |m: &str| {
            star.world
                .addr(usize::from_str_radix(&m[15..], 16).unwrap())
        };
        let route = star.world.vnetc(&[
            "route",
            &inferred,
            "--live",
            "--from",
            &from(src),
            "--src",
            src,
            "--dst",
            dst,
        ]);
        expect_code(&route, 0);
        let hop = format!("{} --[UDP]--> {}", from(src), from(dst));
        assert!(stdout(&route).contains(&hop), "{}", stdout(&route));
    }
}

#[test]
fn an_unreachable_proxy_is_exit_1_naming_it_and_bad_flags_are_exit_2() {
    let mut w = World::new("infer-unreachable", 164);
    // Daemons that were never started: nothing listens at 127.164.0.1.
    let file = w.write("star.vnet", &topology(164, 3, 7000, Shape::Star));
    std::fs::write(w.key_file(), "a-key-that-is-long-enough-0123456789").unwrap();
    let out = w.vnetc(&["infer", &file, "--format", "json"]);
    expect_code(&out, 1);
    assert!(
        stderr(&out).contains("daemon 127.164.0.1: not running"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
    for bad in [
        &["--window", "10ms"][..],
        &["--window", "2m"],
        &["--threshold", "1.5"],
        &["--window", "soon"],
    ] {
        let out = w.vnetc(&[&["infer", &file][..], bad].concat());
        expect_code(&out, 2);
    }
}

#[test]
fn watch_prints_a_line_per_change_or_settle() {
    let star = Star::up("infer-watch", 165, 2);
    let mut watch = star
        .world
        .command(
            &[
                "infer", &star.file, "--format", "json", "--window", "500ms", "--watch",
            ],
            &[],
        )
        .spawn()
        .expect("vnetc infer --watch");
    let vms = star.run("ring", 4000, 4.0);
    let failed = finish(vms);
    std::thread::sleep(Duration::from_millis(1500)); // the traffic fades: another change
    let _ = watch.kill();
    let out = watch.wait_with_output().expect("watch output");
    assert!(failed.is_empty(), "{failed}");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let want = star.told("ring");
    // Empty first, then the ring (changed, then settled), then empty again as traffic stops.
    assert!(lines.len() >= 3, "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|a| a["settled"] == true && topology_of(a) == want),
        "{lines:#?}"
    );
    assert!(topology_of(lines.last().unwrap()).is_empty(), "{lines:#?}");
    // No two consecutive lines say the same thing.
    for pair in lines.windows(2) {
        let same = topology_of(&pair[0]) == topology_of(&pair[1])
            && pair[0]["settled"] == pair[1]["settled"];
        assert!(!same, "{pair:#?}");
    }
}
