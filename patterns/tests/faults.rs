//! Bad input and failing peers: a clear error naming the problem, exit 1, never a hang.
//! Ranks run as separate processes of the real binary so they can be killed and stopped.

mod common;

use common::{bin, free_addrs, join, stderr, Proc};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

fn rank(r: usize, peers: &[SocketAddr], extra: &[&str]) -> Proc {
    let mut c = bin();
    c.args(["run", "--rank", &r.to_string(), "--peers", &join(peers)]);
    c.args(extra);
    Proc::spawn(c)
}

#[test]
fn a_topology_that_does_not_fit_the_ranks_is_refused() {
    let out = Proc::spawn({
        let mut c = bin();
        c.args(["launch", "-n", "6", "-t", "hypercube"]);
        c
    })
    .wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(e.contains("power of two") && e.contains('6'), "{e}");

    let peers = free_addrs(5);
    let out = rank(0, &peers, &["-t", "mesh:2x2"]).wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("`mesh:2x2` has 4 ranks, not 5"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn nonsense_arguments_are_usage_errors_or_named() {
    let peers = free_addrs(2);
    let out = rank(7, &peers, &[]).wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("rank 7 is not among the 2 ranks"),
        "{}",
        stderr(&out)
    );
    let out = rank(0, &peers, &["--message-size", "999999999999"]).wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("message size"), "{}", stderr(&out));
    let out = Proc::spawn({
        let mut c = bin();
        c.args(["run", "--rank", "0", "--peers", "nowhere:7000"]);
        c
    })
    .wait(Duration::from_secs(10));
    assert_eq!(
        out.status.code(),
        Some(2),
        "clap refuses an address that is not one"
    );
    let out = rank(0, &peers, &["--timeout", "0"]).wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--timeout"), "{}", stderr(&out));
}

#[test]
fn an_unreachable_peer_is_named_within_the_connect_timeout() {
    // Rank 0's address has nobody listening: rank 1 must say so and stop.
    let peers = free_addrs(2);
    let out =
        rank(1, &peers, &["-t", "ring", "--connect-timeout", "1"]).wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let e = stderr(&out);
    assert!(
        e.contains(&format!("cannot reach rank 0 ({})", peers[0])),
        "{e}"
    );
    // And rank 0, whose partner never dials, names the missing partner.
    let out =
        rank(0, &peers, &["-t", "ring", "--connect-timeout", "1"]).wait(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("rank 1") && stderr(&out).contains("did not connect"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ranks_running_different_programs_refuse_each_other() {
    let peers = free_addrs(2);
    let a = rank(0, &peers, &["-t", "ring", "--connect-timeout", "5"]);
    let b = rank(1, &peers, &["-t", "bus", "--connect-timeout", "5"]);
    for out in [
        a.wait(Duration::from_secs(15)),
        b.wait(Duration::from_secs(15)),
    ] {
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains("programs differ"), "{}", stderr(&out));
    }
}

/// Three ranks in a ring that would run for a long time; `hurt` does something to rank 2
/// once they are running, and ranks 0 and 1 must fail naming rank 2 well before the bound.
fn hurt_rank_two(hurt: &str) -> Vec<String> {
    let peers = free_addrs(3);
    let args = ["-t", "ring", "--supersteps", "100000000", "--timeout", "2"];
    let mut procs: Vec<Proc> = (0..3).map(|r| rank(r, &peers, &args)).collect();
    std::thread::sleep(Duration::from_millis(700));
    let victim = procs.pop().expect("rank 2");
    let status = Command::new("kill")
        .args([hurt, &victim.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let errs: Vec<String> = procs
        .into_iter()
        .map(|p| {
            let out = p.wait(Duration::from_secs(15));
            assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
            stderr(&out)
        })
        .collect();
    drop(victim);
    errs
}

#[test]
fn a_peer_dying_mid_run_is_named() {
    let errs = hurt_rank_two("-KILL");
    // Rank 2 is a neighbour of both others on a ring of three.
    for e in errs {
        assert!(e.contains("rank 2 (127.0.0.1:"), "{e}");
        assert!(
            e.contains("closed the connection") || e.contains("broke") || e.contains("sending"),
            "{e}"
        );
    }
}

#[test]
fn a_peer_that_stops_answering_times_out_naming_it() {
    let errs = hurt_rank_two("-STOP");
    // At least one of its neighbours waits for its data; the other may fail waiting for a
    // rank that gave up, but every error names a rank and none hangs.
    assert!(
        errs.iter()
            .any(|e| e.contains("no data from rank 2") || e.contains("rank 2 (127.0.0.1:")),
        "{errs:?}"
    );
}

/// A partner silent for longer than the handshake's read timeouts (here paused 7 s; an
/// accepted connection's hello patience is at most 5 s) but within `--timeout` is waited
/// for: the run ends normally. (QEMU guests on a busy host and migrating VMs pause so.)
#[test]
fn a_peer_paused_within_the_timeout_is_waited_for() {
    let peers = free_addrs(3);
    let args = ["-t", "ring", "--duration", "10", "--timeout", "30"];
    let mut procs: Vec<Proc> = (0..3).map(|r| rank(r, &peers, &args)).collect();
    std::thread::sleep(Duration::from_millis(1500));
    let paused = procs.pop().expect("rank 2");
    let signal = |s: &str| {
        let status = Command::new("kill")
            .args([s, &paused.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    signal("-STOP");
    std::thread::sleep(Duration::from_secs(7));
    signal("-CONT");
    procs.push(paused);
    for p in procs {
        let out = p.wait(Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}
