//! The Proxy's view driven by real reporters over simulated time: each daemon keeps
//! cumulative counters as vnetd does, a `Reporter` turns them into reports at 20 Hz, and the
//! `View` answers. Every assertion is about what SPEC 5.1 promises.

use vnet_grammar::Mac;
use vnet_vttif::{Limits, PairCount, Report, Reporter, View};

const TICK: u64 = 50;

fn mac(n: u16) -> Mac {
    Mac([2, 0, 0, 0, (n >> 8) as u8, n as u8])
}

/// A daemon with its counters and reporter.
struct Daemon {
    cells: Vec<PairCount>,
    reporter: Reporter,
}

impl Daemon {
    fn new(name: &str) -> Daemon {
        Daemon {
            cells: Vec::new(),
            reporter: Reporter::new(name, 1, 20),
        }
    }

    /// Counts `bytes` (in 1,000-byte frames) from `src` to `dst`.
    fn send(&mut self, src: u16, dst: u16, bytes: u64) {
        let (src, dst) = (mac(src), mac(dst));
        let frames = bytes.div_ceil(1000);
        match self.cells.iter_mut().find(|c| c.src == src && c.dst == dst) {
            Some(c) => {
                c.bytes += bytes;
                c.frames += frames;
            }
            None => self.cells.push(PairCount {
                src,
                dst,
                frames,
                bytes,
            }),
        }
    }

    fn report(&mut self) -> Option<Report> {
        self.reporter.next(self.cells.clone())
    }
}

/// Runs `ticks` report periods from `*now`: `traffic` says what each daemon sends in a
/// period, `lose` which reports are lost; the view ticks every period.
fn run(
    view: &mut View,
    daemons: &mut [Daemon],
    now: &mut u64,
    ticks: u64,
    traffic: impl Fn(u64, &mut [Daemon]),
    lose: impl Fn(u64, usize) -> bool,
) {
    for _ in 0..ticks {
        *now += TICK;
        traffic(*now, daemons);
        for (i, d) in daemons.iter_mut().enumerate() {
            if let Some(r) = d.report() {
                if !lose(*now, i) {
                    view.ingest(*now, &r).expect("a well-formed report");
                }
            }
        }
        view.tick(*now);
    }
}

/// `ticks` periods of 10,000 bytes from VM 0 to VM 1 at the first daemon, nothing lost.
fn steady(view: &mut View, daemons: &mut [Daemon], now: &mut u64, ticks: u64) {
    run(
        view,
        daemons,
        now,
        ticks,
        |_, d| d[0].send(0, 1, 10_000),
        |_, _| false,
    );
}

fn topology(view: &mut View, now: u64, window: u64, threshold: f64) -> Vec<(Mac, Mac)> {
    let answer = view.query(now, window, threshold).expect("a valid query");
    let mut t: Vec<_> = answer.topology.iter().map(|p| (p.src, p.dst)).collect();
    t.sort();
    t
}

fn pairs(list: &[(u16, u16)]) -> Vec<(Mac, Mac)> {
    let mut t: Vec<_> = list.iter().map(|&(s, d)| (mac(s), mac(d))).collect();
    t.sort();
    t.dedup();
    t
}

/// VM n lives on daemon n % 2 ("a" or "b"); a ring of four VMs.
fn ring(_: u64, d: &mut [Daemon]) {
    for (s, t) in [(0, 1), (1, 2), (2, 3), (3, 0)] {
        d[s as usize % 2].send(s, t, 50_000);
    }
}

/// The same VMs talking all to one (a star centred on VM 0).
fn star(_: u64, d: &mut [Daemon]) {
    for s in 1..4u16 {
        d[s as usize % 2].send(s, 0, 50_000);
        d[0].send(0, s, 50_000);
    }
}

/// Ring and star in turn, each for `phase` ms.
fn alternate(phase: u64) -> impl Fn(u64, &mut [Daemon]) {
    move |now, d| {
        if (now / phase).is_multiple_of(2) {
            ring(now, d)
        } else {
            star(now, d)
        }
    }
}

/// The pairs of the ring and the star together.
fn ring_and_star() -> Vec<(Mac, Mac)> {
    pairs(&[
        (0, 1),
        (1, 2),
        (2, 3),
        (3, 0),
        (1, 0),
        (2, 0),
        (0, 2),
        (0, 3),
    ])
}

#[test]
fn rates_intensities_and_locations() {
    let mut view = View::new(Limits::default());
    let mut d = vec![Daemon::new("a"), Daemon::new("b")];
    let mut now = 0;
    run(
        &mut view,
        &mut d,
        &mut now,
        100,
        |_, d| {
            d[0].send(0, 1, 100_000); // 2 MB/s
            d[1].send(1, 0, 10_000); // 0.2 MB/s
            d[0].send(2, 1, 1_000); // a light background flow
        },
        |_, _| false,
    );
    let answer = view.query(now, 2000, 0.1).unwrap();
    assert_eq!(answer.pairs.len(), 3);
    let heavy = &answer.pairs[0];
    assert_eq!((heavy.src, heavy.dst), (mac(0), mac(1)));
    assert!(
        (heavy.bytes_per_s - 2_000_000.0).abs() < 1.0,
        "{}",
        heavy.bytes_per_s
    );
    assert!((heavy.frames_per_s - 2000.0).abs() < 1e-6);
    assert_eq!(heavy.intensity, 1.0);
    assert_eq!(heavy.src_daemon, "a");
    assert_eq!(
        heavy.dst_daemon.as_deref(),
        Some("b"),
        "VM 1 was seen entering at b"
    );
    assert!((answer.pairs[1].intensity - 0.1).abs() < 1e-9);
    assert_eq!(answer.pairs[2].dst_daemon.as_deref(), Some("b"));
    assert_eq!(
        topology(&mut view, now, 2000, 0.1),
        pairs(&[(0, 1), (1, 0)]),
        "the threshold keeps the pair at exactly 0.1 and drops the 0.01 background"
    );
    assert!(!answer.capped);
}

#[test]
fn a_topology_switch_settles_on_the_new_topology() {
    for window in [500, 1000, 2000] {
        let mut view = View::new(Limits::default());
        let mut d = vec![Daemon::new("a"), Daemon::new("b")];
        let mut now = 0;
        run(&mut view, &mut d, &mut now, 80, ring, |_, _| false);
        view.query(now, window, 0.1).unwrap();
        run(
            &mut view,
            &mut d,
            &mut now,
            3 * window / TICK,
            ring,
            |_, _| false,
        );
        let answer = view.query(now, window, 0.1).unwrap();
        assert!(answer.settled);
        assert_eq!(
            topology(&mut view, now, window, 0.1),
            pairs(&[(0, 1), (1, 2), (2, 3), (3, 0)])
        );
        let switched = now;
        let mut settled_after = None;
        for _ in 0..(4 * window / TICK) {
            run(&mut view, &mut d, &mut now, 1, star, |_, _| false);
            let answer = view.query(now, window, 0.1).unwrap();
            let star_pairs = pairs(&[(1, 0), (2, 0), (3, 0), (0, 1), (0, 2), (0, 3)]);
            if answer.settled && topology(&mut view, now, window, 0.1) == star_pairs {
                settled_after = Some(now - switched);
                break;
            }
        }
        let after =
            settled_after.unwrap_or_else(|| panic!("window {window}: never settled on the star"));
        // The ring fades out of the window; by then the traffic has been the star's for
        // (about) a window, so the answer settles without holding another window: within
        // issue 11's target of window + 0.5 s.
        assert!(
            after <= window + 500,
            "window {window}: settled after {after} ms"
        );
    }
}

#[test]
fn topologies_faster_than_the_window_give_their_union() {
    let mut view = View::new(Limits::default());
    let mut d = vec![Daemon::new("a"), Daemon::new("b")];
    let mut now = 0;
    let alternate = alternate(200);
    run(&mut view, &mut d, &mut now, 40, &alternate, |_, _| false);
    view.query(now, 2000, 0.1).unwrap();
    run(&mut view, &mut d, &mut now, 200, &alternate, |_, _| false);
    let answer = view.query(now, 2000, 0.1).unwrap();
    let union = ring_and_star();
    assert_eq!(topology(&mut view, now, 2000, 0.1), union);
    assert!(answer.settled);
    assert!(
        answer.changes <= 1,
        "{} changes: it oscillated",
        answer.changes
    );
}

#[test]
fn alternations_slower_than_half_a_window_still_give_the_union() {
    // Ring and star alternate every 1.2 s under a 2 s window: a half of the window may hold
    // one of them only, so the traffic is not always steady, but the answer is the union
    // throughout, without oscillation, and settles by holding (SPEC's one window unchanged).
    let mut view = View::new(Limits::default());
    let mut d = vec![Daemon::new("a"), Daemon::new("b")];
    let mut now = 0;
    let alternate = alternate(1200);
    run(&mut view, &mut d, &mut now, 60, &alternate, |_, _| false);
    view.query(now, 2000, 0.1).unwrap();
    let union = ring_and_star();
    let mut changes = None;
    for _ in 0..100 {
        run(&mut view, &mut d, &mut now, 1, &alternate, |_, _| false);
        let answer = view.query(now, 2000, 0.1).unwrap();
        assert_eq!(topology(&mut view, now, 2000, 0.1), union, "at {now} ms");
        assert_eq!(
            *changes.get_or_insert(answer.changes),
            answer.changes,
            "oscillated"
        );
    }
    assert!(view.query(now, 2000, 0.1).unwrap().settled);
}

#[test]
fn a_daemon_that_stops_reporting_ages_out_within_one_window() {
    let mut view = View::new(Limits::default());
    let mut d = vec![Daemon::new("a"), Daemon::new("b")];
    let mut now = 0;
    let both = |_: u64, d: &mut [Daemon]| {
        d[0].send(0, 1, 10_000);
        d[1].send(1, 0, 10_000);
    };
    run(&mut view, &mut d, &mut now, 60, both, |_, _| false);
    assert_eq!(
        topology(&mut view, now, 1000, 0.1),
        pairs(&[(0, 1), (1, 0)])
    );
    // b goes silent: its reports stop arriving.
    run(
        &mut view,
        &mut d,
        &mut now,
        1000 / TICK + 1,
        both,
        |_, i| i == 1,
    );
    assert_eq!(topology(&mut view, now, 1000, 0.1), pairs(&[(0, 1)]));
}

#[test]
fn lost_reports_cost_one_period_not_the_traffic() {
    let mut view = View::new(Limits::default());
    let mut d = vec![Daemon::new("a")];
    let mut now = 0;
    let steady = |_: u64, d: &mut [Daemon]| d[0].send(0, 1, 10_000);
    // Three reports in four lost (a full one every 20 gets through or repairs later).
    run(&mut view, &mut d, &mut now, 60, steady, |_, _| false);
    run(&mut view, &mut d, &mut now, 200, steady, |now, _| {
        !(now / TICK).is_multiple_of(4)
    });
    let rate = view.query(now, 2000, 0.1).unwrap().pairs[0].bytes_per_s;
    assert!(
        (rate - 200_000.0).abs() / 200_000.0 < 0.05,
        "{rate} B/s, want 200,000"
    );
}

#[test]
fn a_restarted_daemon_is_a_baseline_not_a_burst() {
    let mut view = View::new(Limits::default());
    let mut now = 0;
    let mut d = vec![Daemon::new("a")];
    steady(&mut view, &mut d, &mut now, 60);
    // The same daemon comes back as a new instance with large counters (say, a Proxy restart
    // missed them): the first full report is a baseline.
    d[0].reporter = Reporter::new("a", 2, 20);
    d[0].send(0, 1, 1_000_000_000);
    steady(&mut view, &mut d, &mut now, 60);
    let rate = view.query(now, 1000, 0.1).unwrap().pairs[0].bytes_per_s;
    assert!(rate < 300_000.0, "{rate}: the restart counted as traffic");
}

#[test]
fn a_flood_of_pairs_is_capped_and_said() {
    let limits = Limits {
        max_pairs: 1000,
        max_daemons: 4,
        max_known: 4000,
    };
    let mut view = View::new(limits);
    let mut d = vec![Daemon::new("a")];
    let mut now = 0;
    // 20,000 new pairs over 2 s.
    run(
        &mut view,
        &mut d,
        &mut now,
        40,
        |now, d| {
            let base = (now / TICK * 500) as u16;
            for i in 0..500u16 {
                let n = base.wrapping_add(i);
                d[0].send(n, n.wrapping_mul(7), 100);
            }
        },
        |_, _| false,
    );
    let answer = view.query(now, 2000, 0.1).unwrap();
    assert!(view.pair_count() <= 1000);
    assert!(answer.pairs.len() <= 1000);
    assert!(answer.capped, "the answer says it is capped");
    assert!(answer.dropped > 0);
    // Other daemons beyond the cap are refused.
    for i in 0..10 {
        let r = Reporter::new(&format!("x{i}"), 1, 1).next([]).unwrap();
        let _ = view.ingest(now, &r);
    }
    assert!(view.refused() >= 7);
}

#[test]
fn malformed_reports_are_refused_and_change_nothing() {
    let mut view = View::new(Limits::default());
    let mut d = vec![Daemon::new("a")];
    let mut now = 0;
    steady(&mut view, &mut d, &mut now, 60);
    let before = view.query(now, 1000, 0.1).unwrap();
    let mut bad = d[0]
        .report()
        .unwrap_or_else(|| Reporter::new("a", 1, 1).next([]).unwrap());
    bad.daemon = String::new();
    assert!(view.ingest(now, &bad).is_err());
    let huge = Report {
        daemon: "a".into(),
        instance: 1,
        seq: 99,
        full: false,
        pairs: vec![
            PairCount {
                src: mac(0),
                dst: mac(1),
                frames: u64::MAX,
                bytes: u64::MAX
            };
            70_000
        ],
    };
    assert!(view.ingest(now, &huge).is_err());
    assert_eq!(view.refused(), 2);
    assert_eq!(view.query(now, 1000, 0.1).unwrap().pairs, before.pairs);
    assert!(
        view.query(now, 10, 0.1).is_err(),
        "a window under one bucket"
    );
    assert!(view.query(now, 61_000, 0.1).is_err());
    assert!(view.query(now, 1000, 1.5).is_err());
}

#[test]
fn a_proxy_with_no_traffic_answers_an_empty_topology() {
    let mut view = View::new(Limits::default());
    let answer = view.query(5000, 2000, 0.1).unwrap();
    assert!(answer.pairs.is_empty() && answer.topology.is_empty());
}

#[test]
fn a_pair_back_after_its_history_was_reused_is_counted_as_itself() {
    let mut view = View::new(Limits::default());
    // b reports first each period, so a stale location hint of a would have the last word.
    let mut d = vec![Daemon::new("b"), Daemon::new("a")];
    let mut now = 0;
    let rate = |view: &mut View, now: u64, src: u16, dst: u16| {
        let answer = view.query(now, 1000, 0.0).expect("a valid query");
        answer
            .pairs
            .iter()
            .find(|p| (p.src, p.dst) == (mac(src), mac(dst)))
            .map(|p| (p.bytes_per_s, p.src_daemon.clone(), p.dst_daemon.clone()))
    };
    let first = |_: u64, d: &mut [Daemon]| {
        d[1].send(0, 1, 10_000);
        d[1].send(2, 3, 20_000);
        d[0].send(3, 2, 5_000);
    };
    // a alone for two periods (the first is a baseline): its MACs' locations come before
    // b's, so that forgetting MAC 0 moves them.
    let a_first = |_: u64, d: &mut [Daemon]| {
        d[1].send(0, 1, 10_000);
        d[1].send(2, 3, 20_000);
    };
    run(&mut view, &mut d, &mut now, 2, a_first, |_, _| false);
    run(&mut view, &mut d, &mut now, 60, first, |_, _| false);
    // 0 → 1 falls silent past the view's memory (64 s): its history slot and MAC 0's
    // location are forgotten, and the locations left move up.
    let quiet = |_: u64, d: &mut [Daemon]| {
        d[1].send(2, 3, 20_000);
        d[0].send(3, 2, 5_000);
    };
    run(&mut view, &mut d, &mut now, 70_000 / TICK, quiet, |_, _| {
        false
    });
    assert_eq!(rate(&mut view, now, 0, 1), None);
    // A new pair takes the freed slot; then 0 → 1 comes back.
    let fresh = |_: u64, d: &mut [Daemon]| {
        quiet(0, d);
        d[1].send(4, 5, 40_000);
    };
    run(&mut view, &mut d, &mut now, 10, fresh, |_, _| false);
    let back = |_: u64, d: &mut [Daemon]| {
        fresh(0, d);
        d[1].send(0, 1, 10_000);
    };
    // Past the memory again: locations refreshed only through stale hints would be gone.
    run(&mut view, &mut d, &mut now, 70_000 / TICK, back, |_, _| {
        false
    });
    let a = || Some("a".to_string());
    let b = || Some("b".to_string());
    let near = |got: Option<(f64, String, Option<String>)>, want: f64, dst| {
        let (r, src_daemon, dst_daemon) = got.expect("the pair has traffic");
        assert!((r - want).abs() / want < 0.05, "{r} B/s, want {want}");
        assert_eq!((Some(src_daemon), dst_daemon), (a(), dst));
    };
    near(rate(&mut view, now, 0, 1), 200_000.0, None);
    near(rate(&mut view, now, 2, 3), 400_000.0, b());
    near(rate(&mut view, now, 4, 5), 800_000.0, None);
    let (_, src_daemon, dst_daemon) = rate(&mut view, now, 3, 2).expect("b's pair");
    assert_eq!((src_daemon.as_str(), dst_daemon), ("b", a()));
}
