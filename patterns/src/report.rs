//! What a rank reports: throughput, where time went, what it exchanged with whom.

use serde::Serialize;
use std::time::Duration;

/// Traffic between this rank and one partner.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PeerStats {
    pub rank: usize,
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Message bytes (items' payloads), not counting frame headers.
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// Throughput over one sample interval.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// The end of the interval, in seconds since the first superstep started.
    pub t: f64,
    pub supersteps: u64,
    pub supersteps_per_second: f64,
}

/// One rank's result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub rank: usize,
    pub ranks: usize,
    pub program: String,
    /// The program without its length ([`crate::Program::work`]): with `seconds`, what ran,
    /// when a run was asked to end before its length.
    pub work: String,
    /// When the first superstep started, in seconds since the Unix epoch: what aligns the
    /// samples (offsets from it) with events outside the run, such as an adaptation.
    pub started_unix: f64,
    pub supersteps: u64,
    pub seconds: f64,
    pub supersteps_per_second: f64,
    pub compute_seconds: f64,
    pub communicate_seconds: f64,
    /// Messages addressed to this rank whose bytes it checked.
    pub messages_verified: u64,
    /// Reduction results this rank checked against the closed form.
    pub reductions_verified: u64,
    pub peers: Vec<PeerStats>,
    pub samples: Vec<Sample>,
}

/// Counts completed supersteps per interval; memory grows with the run's length over the
/// interval, not with the number of supersteps.
pub struct Sampler {
    width: f64,
    counts: Vec<u64>,
}

impl Sampler {
    pub fn new(interval: Duration) -> Sampler {
        Sampler {
            width: interval.as_secs_f64().max(1e-3),
            counts: Vec::new(),
        }
    }

    /// A superstep completed `at` after the start.
    pub fn record(&mut self, at: Duration) {
        let i = (at.as_secs_f64() / self.width) as usize;
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
    }

    /// The samples of a run that lasted `total`.
    pub fn finish(self, total: Duration) -> Vec<Sample> {
        let end = total.as_secs_f64();
        let width = self.width;
        let buckets = ((end / width).ceil() as usize)
            .max(self.counts.len())
            .max(1);
        let mut counts = self.counts;
        counts.resize(buckets, 0);
        counts
            .into_iter()
            .enumerate()
            .map(|(i, c)| {
                let t = (width * (i + 1) as f64).min(end);
                let span = (t - width * i as f64).max(1e-9);
                Sample {
                    t,
                    supersteps: c,
                    supersteps_per_second: c as f64 / span,
                }
            })
            .collect()
    }
}

impl Report {
    /// One line for people.
    pub fn line(&self) -> String {
        format!(
            "rank {} of {}: {} supersteps in {:.3} s = {:.1} supersteps/s (compute {:.3} s, communicate {:.3} s)",
            self.rank,
            self.ranks,
            self.supersteps,
            self.seconds,
            self.supersteps_per_second,
            self.compute_seconds,
            self.communicate_seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_count_completions_per_interval() {
        let ms = Duration::from_millis;
        let mut sampler = Sampler::new(Duration::from_secs(1));
        for at in [ms(100), ms(900), ms(1100), ms(2400)] {
            sampler.record(at);
        }
        let s = sampler.finish(ms(2500));
        let counts: Vec<u64> = s.iter().map(|s| s.supersteps).collect();
        assert_eq!(counts, vec![2, 1, 1]);
        assert_eq!(s[0].supersteps_per_second, 2.0);
        // The last interval is half a second long.
        assert!((s[2].supersteps_per_second - 2.0).abs() < 1e-9);
        assert!((s[2].t - 2.5).abs() < 1e-9);
    }
}
