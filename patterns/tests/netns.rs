//! Ranks in network namespaces, each with its own address on a bridge the test builds: the
//! way Patterns runs between VMs. Needs root (skips, saying why, otherwise).

mod common;

use common::{stderr, Proc};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), stderr(&out)))
    }
}

fn can_run() -> Result<(), String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|e| e.to_string())?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Err("not root".into());
    }
    ip(&["netns", "list"]).map_err(|e| format!("no usable ip netns: {e}"))
}

/// A bridge namespace and `n` rank namespaces on it, 10.77.0.(i+1)/24; all deleted on drop
/// (deleting a namespace deletes its veth ends and the bridge).
struct Lan {
    prefix: String,
    ranks: usize,
}

impl Lan {
    fn new(n: usize) -> Result<Lan, String> {
        let prefix = format!(
            "vp{}x{}",
            std::process::id() % 100_000,
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let lan = Lan { prefix, ranks: n };
        let br = lan.bridge_ns();
        ip(&["netns", "add", &br])?;
        ip(&["-n", &br, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &br, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = lan.ns(i);
            let port = format!("p{i}");
            ip(&["netns", "add", &ns])?;
            ip(&[
                "-n", &br, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ])?;
            ip(&["-n", &br, "link", "set", &port, "master", "br0", "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("10.77.0.{}/24", i + 1),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(lan)
    }

    fn bridge_ns(&self) -> String {
        format!("{}b", self.prefix)
    }

    fn ns(&self, i: usize) -> String {
        format!("{}r{i}", self.prefix)
    }

    /// Every rank of the program `args` started in its namespace.
    fn run(&self, args: &[&str]) -> Vec<Proc> {
        (0..self.ranks)
            .map(|i| {
                let mut c = Command::new("ip");
                c.args([
                    "netns",
                    "exec",
                    &self.ns(i),
                    env!("CARGO_BIN_EXE_vnet-patterns"),
                ]);
                c.args(["run", "--rank", &i.to_string(), "--peers", &self.peers()]);
                c.args(args);
                Proc::spawn(c)
            })
            .collect()
    }

    fn peers(&self) -> String {
        let a: Vec<String> = (0..self.ranks)
            .map(|i| format!("10.77.0.{}:7000", i + 1))
            .collect();
        a.join(",")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for i in 0..self.ranks {
            let _ = ip(&["netns", "del", &self.ns(i)]);
        }
        let _ = ip(&["netns", "del", &self.bridge_ns()]);
    }
}

#[test]
fn a_torus_of_ranks_in_namespaces_exchanges_with_exactly_its_neighbours() {
    if let Err(why) = can_run() {
        println!("skipped: {why}");
        return;
    }
    let lan = Lan::new(4).expect("namespaces");
    let procs = lan.run(&[
        "-t",
        "torus:2x2",
        "-o",
        "all-to-all",
        "--supersteps",
        "30",
        "--format",
        "json",
        "--timeout",
        "10",
        "--connect-timeout",
        "10",
    ]);
    for (i, p) in procs.into_iter().enumerate() {
        let out = p.wait(Duration::from_secs(30));
        assert!(out.status.success(), "rank {i}: {}", stderr(&out));
        let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(r["supersteps"], 30);
        assert_eq!(
            r["messages_verified"],
            30 * 3,
            "one message from each other rank"
        );
        // torus:2x2 is a square: rank i's neighbours are i^1 and i^2, never i^3.
        let mut partners: Vec<u64> = r["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p["rank"].as_u64().expect("rank"))
            .collect();
        partners.sort_unstable();
        let mut want = vec![(i ^ 1) as u64, (i ^ 2) as u64];
        want.sort_unstable();
        assert_eq!(partners, want, "rank {i}");
    }
}

#[test]
fn a_rank_cut_off_mid_run_is_named_by_the_others_within_the_timeout() {
    if let Err(why) = can_run() {
        println!("skipped: {why}");
        return;
    }
    let lan = Lan::new(3).expect("namespaces");
    let procs = lan.run(&["-t", "ring", "--supersteps", "100000000", "--timeout", "2"]);
    std::thread::sleep(Duration::from_millis(700));
    // No FIN, no reset: rank 2's cable is pulled, only the timeout can tell.
    ip(&["-n", &lan.ns(2), "link", "set", "eth0", "down"]).expect("cut");
    let errs: Vec<String> = procs
        .into_iter()
        .map(|p| {
            let out = p.wait(Duration::from_secs(15));
            assert_eq!(out.status.code(), Some(1));
            stderr(&out)
        })
        .collect();
    for e in &errs[..2] {
        assert!(e.contains("rank 2 (10.77.0.3:7000)"), "{errs:#?}");
    }
}
