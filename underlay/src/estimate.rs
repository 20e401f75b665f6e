//! From what probes saw to the numbers VADAPT reads (SPEC 5.2): one-way latency from echo
//! round trips, loss from echoes that never came back, and achievable bandwidth from the
//! dispersion of a packet train (a bottleneck spaces back-to-back packets by its
//! transmission time, so the train arrives at the bottleneck's rate).

use crate::Nanos;
use serde::{Deserialize, Serialize};

/// One measured direction, the shape of an adaptation problem's `links` (SPEC 5.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub from: String,
    pub to: String,
    /// Achievable bandwidth, Mbit/s.
    pub bw: f64,
    /// One-way latency, ms.
    pub lat: f64,
    /// The fraction of probes lost, 0 to 1.
    pub loss: f64,
}

/// `vnetc measure --format json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub links: Vec<Link>,
}

/// Echo probes: how many were sent and the round trips of those that came back.
#[derive(Clone, Debug, Default)]
pub struct Echoes {
    pub sent: u32,
    pub rtts: Vec<Nanos>,
}

impl Echoes {
    /// One-way latency in ms: half the shortest round trip. Noise on a path only adds time
    /// (a queue, a late scheduling of either daemon), so the least a probe took is the path's
    /// own latency; a median would carry the noise of a busy machine. `None` when nothing
    /// came back.
    pub fn latency_ms(&self) -> Option<f64> {
        let min = self.rtts.iter().min()?;
        Some(*min as f64 / 2.0 / 1e6)
    }

    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        1.0 - (self.rtts.len() as f64 / self.sent as f64).min(1.0)
    }
}

/// A packet train: `sent` datagrams of `size` bytes sent back to back; the receiver's arrival
/// times of those that arrived.
#[derive(Clone, Debug, Default)]
pub struct Train {
    pub size: usize,
    pub sent: u32,
    pub arrivals: Vec<Nanos>,
}

impl Train {
    /// Mbit/s: the rate at which the train's datagrams arrived (one every `size` bytes).
    ///
    /// Delay on a path only adds time: a queue, or the late wake-up of whoever sends or
    /// stamps, holds a datagram back and then lets it go with the ones behind it, in a bunch.
    /// So the datagrams that were not held back lie on one line below all the others, and the
    /// rate is that line's slope: the edge of the lower convex hull of (index, arrival) that
    /// spans the middle of the train. A least-squares line would follow a bunch (on a busy
    /// machine a 30 ms train bunched at its start read 25 times too fast); this answer
    /// moves only when more than half the train was held back. `None` with fewer than two
    /// arrivals or no measurable spread.
    pub fn bandwidth_mbps(&self) -> Option<f64> {
        if self.arrivals.len() < 2 {
            return None;
        }
        let mut t = self.arrivals.clone();
        t.sort_unstable();
        let hull = lower_hull(&t);
        let mid = (t.len() - 1) as f64 / 2.0;
        let edge = hull.windows(2).find(|w| w[1] as f64 >= mid)?;
        let (i, j) = (edge[0], edge[1]);
        // Nanoseconds per datagram.
        let per = (t[j] - t[i]) as f64 / (j - i) as f64;
        if per <= 0.0 {
            return None;
        }
        Some(self.size as f64 * 8.0 / per * 1e3)
    }
}

/// The indices of the lower convex hull of the points (i, t[i]), left to right (Andrew's
/// monotone chain; `t` is sorted, so the points are in order of i already).
fn lower_hull(t: &[Nanos]) -> Vec<usize> {
    let mut hull: Vec<usize> = Vec::with_capacity(t.len());
    for k in 0..t.len() {
        while let [.., a, b] = hull[..] {
            // Keep b only if it lies strictly below the segment a → k.
            let cross = (b - a) as i128 * (t[k] as i128 - t[a] as i128)
                - (k - a) as i128 * (t[b] as i128 - t[a] as i128);
            if cross > 0 {
                break;
            }
            hull.pop();
        }
        hull.push(k);
    }
    hull
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shaper::{Shape, Shaper};

    const MS: Nanos = 1_000_000;

    #[test]
    fn latency_is_half_the_shortest_round_trip() {
        let e = Echoes {
            sent: 5,
            rtts: vec![20 * MS, 21 * MS, 200 * MS, 19 * MS],
        };
        assert_eq!(e.latency_ms(), Some(9.5));
        assert!((e.loss() - 0.2).abs() < 1e-12);
        assert_eq!(
            Echoes {
                sent: 3,
                rtts: vec![]
            }
            .latency_ms(),
            None
        );
        assert_eq!(Echoes::default().loss(), 0.0);
    }

    #[test]
    fn a_train_through_a_shaped_link_measures_its_rate_and_delay() {
        for (rate, delay) in [(10.0, 5.0), (100.0, 30.0), (800.0, 0.5)] {
            let mut there = Shaper::new(Shape {
                delay_ms: delay,
                rate_mbps: Some(rate),
            });
            let mut back = Shaper::new(Shape {
                delay_ms: delay,
                rate_mbps: Some(rate),
            });
            // Echoes of 64 bytes, 100 ms apart: round trip = 2 delays + 2 tiny transmissions.
            let mut echoes = Echoes::default();
            for i in 0..10u64 {
                let t0 = i * 100 * MS;
                echoes.sent += 1;
                let there_at = there.admit(t0, 64).expect("an idle link");
                let back_at = back.admit(there_at, 64).expect("an idle link");
                echoes.rtts.push(back_at - t0);
            }
            let lat = echoes.latency_ms().expect("echoes");
            assert!(
                (lat - delay).abs() / delay < 0.05,
                "rate {rate}: latency {lat} ms, want {delay}"
            );
            // A train of 30 datagrams of 1,200 bytes, sent at once (within the queue).
            let start = 2000 * MS;
            let train = Train {
                size: 1200,
                sent: 30,
                arrivals: (0..30).filter_map(|_| there.admit(start, 1200)).collect(),
            };
            let bw = train.bandwidth_mbps().expect("a spread");
            assert!(
                (bw - rate).abs() / rate < 0.01,
                "bandwidth {bw}, want {rate}"
            );
        }
    }

    #[test]
    fn one_late_arrival_moves_the_bandwidth_little() {
        // 1,250 bytes every 100 us: 100 Mbit/s; the first arrival is 300 us late.
        let mut arrivals: Vec<Nanos> = (0..40).map(|i| i * 100_000).collect();
        arrivals[0] += 300_000;
        let bw = Train {
            size: 1250,
            sent: 40,
            arrivals,
        }
        .bandwidth_mbps()
        .expect("a spread");
        assert!((bw - 100.0).abs() < 5.0, "{bw}");
    }

    /// 1,250 bytes every 100 us (100 Mbit/s), with the datagrams from `from` to `to` held
    /// back and let go together at `to`'s time plus a few microseconds each.
    fn stalled(from: usize, to: usize) -> Train {
        let mut arrivals: Vec<Nanos> = (0..60).map(|i| i * 100_000).collect();
        for (k, a) in arrivals[from..to].iter_mut().enumerate() {
            *a = to as Nanos * 100_000 + k as Nanos * 2_000;
        }
        Train {
            size: 1250,
            sent: 60,
            arrivals,
        }
    }

    #[test]
    fn a_bunch_from_a_late_wake_up_is_not_read_as_speed() {
        for (from, to) in [(0, 25), (20, 45), (40, 60), (10, 12)] {
            let bw = stalled(from, to).bandwidth_mbps().expect("a spread");
            assert!(
                (bw - 100.0).abs() < 1.0,
                "held back {from}..{to}: {bw} Mbit/s, want 100"
            );
        }
        // More than half the train held back: no estimate from arrivals alone can tell
        // (the prober discards trains its own shaper released late, `vnetd`'s probe.rs).
        assert!(stalled(0, 45).bandwidth_mbps().expect("a spread") > 1000.0);
    }

    #[test]
    fn degenerate_trains_say_so() {
        assert_eq!(
            Train {
                size: 100,
                sent: 3,
                arrivals: vec![5]
            }
            .bandwidth_mbps(),
            None
        );
        assert_eq!(
            Train {
                size: 100,
                sent: 3,
                arrivals: vec![5, 5]
            }
            .bandwidth_mbps(),
            None
        );
    }

    #[test]
    fn the_json_is_the_problem_links_shape() {
        let m = Measurement {
            links: vec![Link {
                from: "a".into(),
                to: "b".into(),
                bw: 100.0,
                lat: 5.0,
                loss: 0.0,
            }],
        };
        let json = serde_json::to_value(&m).expect("serialisable");
        assert_eq!(json["links"][0]["from"], "a");
        assert_eq!(json["links"][0]["bw"], 100.0);
        assert_eq!(json["links"][0]["lat"], 5.0);
    }
}
