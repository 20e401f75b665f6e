//! Every topology and operation with real TCP ranks on loopback: each rank exchanges data
//! with exactly its neighbours (computed here independently of the library), and every
//! message and reduction arrives intact.

mod common;

use common::{program, quick};
use std::collections::BTreeSet;
use vnet_patterns::{run_local, Operation, Report};

const STEPS: u64 = 20;

/// The neighbours of `i` in each test topology, written out independently of the library.
fn expected(t: &str, n: usize, i: usize) -> BTreeSet<usize> {
    let s: Vec<usize> = match t {
        "bus" => [i.checked_sub(1), Some(i + 1).filter(|&j| j < n)]
            .into_iter()
            .flatten()
            .collect(),
        "ring" => vec![(i + n - 1) % n, (i + 1) % n],
        // 4x2, first dimension fastest: x = i % 4, y = i / 4.
        "mesh:4x2" => {
            let (x, y) = (i % 4, i / 4);
            let mut v = vec![4 * (1 - y) + x];
            if x > 0 {
                v.push(i - 1);
            }
            if x < 3 {
                v.push(i + 1);
            }
            v
        }
        "torus:3x3" => {
            let (x, y) = (i % 3, i / 3);
            vec![
                (x + 1) % 3 + 3 * y,
                (x + 2) % 3 + 3 * y,
                x + 3 * ((y + 1) % 3),
                x + 3 * ((y + 2) % 3),
            ]
        }
        "hypercube" => (0..n.trailing_zeros()).map(|k| i ^ (1 << k)).collect(),
        "tree" => [
            (i > 0).then(|| (i - 1) / 2),
            Some(2 * i + 1),
            Some(2 * i + 2),
        ]
        .into_iter()
        .flatten()
        .filter(|&j| j < n)
        .collect(),
        "all-to-all" => (0..n).filter(|&j| j != i).collect(),
        _ => unreachable!("{t}"),
    };
    s.into_iter().collect()
}

const TOPOLOGIES: [(&str, usize); 7] = [
    ("bus", 5),
    ("ring", 6),
    ("mesh:4x2", 8),
    ("torus:3x3", 9),
    ("hypercube", 8),
    ("tree", 7),
    ("all-to-all", 5),
];

fn run(t: &str, n: usize, op: Operation) -> Vec<Report> {
    let reports =
        run_local(&program(t, op, n, STEPS), &quick()).unwrap_or_else(|e| panic!("{t} {op}: {e}"));
    assert_eq!(reports.len(), n);
    for r in &reports {
        assert_eq!(r.supersteps, STEPS, "{t} {op} rank {}", r.rank);
        assert!(r.supersteps_per_second > 0.0);
        let sampled: u64 = r.samples.iter().map(|s| s.supersteps).sum();
        assert_eq!(sampled, STEPS, "{t} {op}: every superstep is in a sample");
    }
    reports
}

fn partners(r: &Report) -> BTreeSet<usize> {
    r.peers
        .iter()
        .filter(|p| p.frames_received > 0)
        .map(|p| p.rank)
        .collect()
}

#[test]
fn neighbour_exchange_on_every_topology_talks_to_exactly_the_neighbours() {
    for (t, n) in TOPOLOGIES {
        for r in run(t, n, Operation::Exchange) {
            let want = expected(t, n, r.rank);
            assert_eq!(partners(&r), want, "{t} rank {}", r.rank);
            for p in &r.peers {
                assert_eq!(p.frames_received, STEPS, "{t} {} from {}", r.rank, p.rank);
                assert_eq!(p.bytes_received, STEPS * 300);
                assert_eq!(p.bytes_sent, STEPS * 300);
            }
            assert_eq!(r.messages_verified, STEPS * want.len() as u64, "{t}");
        }
    }
}

#[test]
fn reduction_on_every_topology_gives_every_rank_the_sum() {
    for (t, n) in TOPOLOGIES {
        let reports = run(t, n, Operation::Reduce);
        let mut edges = 0;
        for r in &reports {
            // Every rank checked every superstep's sum against the closed form.
            assert_eq!(r.reductions_verified, STEPS, "{t} rank {}", r.rank);
            assert!(
                partners(r).is_subset(&expected(t, n, r.rank)),
                "{t}: only topology edges"
            );
            edges += partners(r).len();
        }
        assert_eq!(
            edges,
            2 * (n - 1),
            "{t}: the reduction uses a spanning tree"
        );
    }
}

#[test]
fn all_to_all_on_every_topology_delivers_every_message() {
    for (t, n) in TOPOLOGIES {
        for r in run(t, n, Operation::AllToAll) {
            assert_eq!(
                r.messages_verified,
                STEPS * (n as u64 - 1),
                "{t} rank {}",
                r.rank
            );
            // Forwarded hop by hop: only neighbours carry it, and all of them do.
            assert_eq!(partners(&r), expected(t, n, r.rank), "{t} rank {}", r.rank);
        }
    }
}

#[test]
fn a_duration_run_stops_every_rank_at_the_same_superstep() {
    let mut p = program("ring", Operation::Exchange, 4, 0);
    p.length = vnet_patterns::Length::Duration(std::time::Duration::from_millis(300));
    let unix = || {
        let now = std::time::SystemTime::now();
        now.duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64()
    };
    let before = unix();
    let reports = run_local(&p, &quick()).expect("run");
    let started = reports[0].started_unix;
    assert!(started >= before && started <= unix(), "{before} {started}");
    let steps: BTreeSet<u64> = reports.iter().map(|r| r.supersteps).collect();
    assert_eq!(steps.len(), 1, "{steps:?}");
    assert!(
        reports[0].seconds >= 0.3 && reports[0].seconds < 5.0,
        "{}",
        reports[0].seconds
    );
    assert!(reports[0].samples.len() >= 3, "100 ms samples over 300 ms");
}

#[test]
fn a_single_rank_runs_alone() {
    let r = run("ring", 1, Operation::Reduce);
    assert_eq!(r[0].reductions_verified, STEPS);
    assert!(r[0].peers.is_empty());
}
