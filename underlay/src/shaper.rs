//! An emulated wide-area link to one peer: a rate limit with a FIFO queue, then a one-way
//! delay. It is a model of a real bottleneck link (a router's queue drains at the link rate,
//! then the signal takes the propagation delay), so what `vnetc measure` probes through it is
//! what the same rate and delay would show on a real network: latency = delay, bandwidth =
//! rate, loss when the queue overflows.
//!
//! For demos and experiments only: off unless configured.

use crate::Nanos;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// What a link to one peer emulates.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Shape {
    /// One-way delay added to every frame, in milliseconds.
    pub delay_ms: f64,
    /// The link's rate in Mbit/s; `None` is unlimited.
    pub rate_mbps: Option<f64>,
}

impl Shape {
    /// Checks the numbers a peer or a file gave: finite, not negative, within reason.
    pub fn check(&self) -> Result<(), String> {
        if !(self.delay_ms.is_finite() && (0.0..=10_000.0).contains(&self.delay_ms)) {
            return Err(format!(
                "delay {} ms: it must be between 0 and 10,000",
                self.delay_ms
            ));
        }
        if let Some(rate) = self.rate_mbps {
            if !(rate.is_finite() && (0.01..=1_000_000.0).contains(&rate)) {
                return Err(format!(
                    "rate {rate} Mbit/s: it must be between 0.01 and 1,000,000"
                ));
            }
        }
        Ok(())
    }
}

/// The longest a frame may wait in the rate limiter's queue before it is dropped: a router
/// buffer of 50 ms, so a sender faster than the rate sees loss rather than unbounded delay
/// and memory.
pub const MAX_QUEUE: Nanos = 50_000_000;

/// The timing of one emulated link.
#[derive(Clone, Debug)]
pub struct Shaper {
    delay: Nanos,
    /// Nanoseconds per byte at the rate (0 when unlimited).
    per_byte: f64,
    /// When the link finishes sending what it has accepted so far.
    busy_until: Nanos,
}

impl Shaper {
    pub fn new(shape: Shape) -> Shaper {
        Shaper {
            delay: (shape.delay_ms * 1e6) as Nanos,
            per_byte: shape.rate_mbps.map_or(0.0, |r| 8_000.0 / r),
            busy_until: 0,
        }
    }

    /// When a frame of `bytes` offered at `now` arrives at the peer, or `None` when the queue
    /// is full and it is dropped.
    pub fn admit(&mut self, now: Nanos, bytes: usize) -> Option<Nanos> {
        let start = self.busy_until.max(now);
        if start - now > MAX_QUEUE {
            return None;
        }
        let done = start + (bytes as f64 * self.per_byte) as Nanos;
        self.busy_until = done;
        Some(done + self.delay)
    }
}

/// Frames waiting for their time. Release times from one [`Shaper`] never decrease, so a
/// FIFO is enough.
#[derive(Debug)]
pub struct DelayLine<T> {
    queue: VecDeque<(Nanos, T)>,
}

impl<T> Default for DelayLine<T> {
    fn default() -> Self {
        DelayLine {
            queue: VecDeque::new(),
        }
    }
}

impl<T> DelayLine<T> {
    pub fn push(&mut self, due: Nanos, item: T) {
        self.queue.push_back((due, item));
    }

    /// The next item due at or before `now`, with the time it was due (so the caller can
    /// tell how late it lets it go).
    pub fn pop_due(&mut self, now: Nanos) -> Option<(Nanos, T)> {
        match self.queue.front() {
            Some(&(due, _)) if due <= now => self.queue.pop_front(),
            _ => None,
        }
    }

    /// When the next item is due, for the caller's timer.
    pub fn next_due(&self) -> Option<Nanos> {
        self.queue.front().map(|&(due, _)| due)
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Nanos = 1_000_000;

    #[test]
    fn delay_alone_delays() {
        let mut s = Shaper::new(Shape {
            delay_ms: 20.0,
            rate_mbps: None,
        });
        assert_eq!(s.admit(5 * MS, 1500), Some(25 * MS));
        assert_eq!(s.admit(5 * MS, 1500), Some(25 * MS), "no rate: no queue");
    }

    #[test]
    fn the_rate_paces_frames_and_a_full_queue_drops() {
        // 12 Mbit/s: a 1,500-byte frame takes 1 ms.
        let mut s = Shaper::new(Shape {
            delay_ms: 10.0,
            rate_mbps: Some(12.0),
        });
        assert_eq!(s.admit(0, 1500), Some(11 * MS));
        assert_eq!(s.admit(0, 1500), Some(12 * MS), "queued behind the first");
        // A burst: 50 ms of queue holds about 50 more frames, then drops.
        let admitted = (0..200).filter(|_| s.admit(0, 1500).is_some()).count();
        assert!((49..=51).contains(&admitted), "{admitted}");
        // Later, the queue has drained.
        assert_eq!(s.admit(1000 * MS, 1500), Some(1011 * MS));
    }

    #[test]
    fn throughput_over_a_second_is_the_rate() {
        let mut s = Shaper::new(Shape {
            delay_ms: 0.0,
            rate_mbps: Some(100.0),
        });
        let mut now = 0;
        let mut delivered = 0usize;
        // Offer 200 Mbit/s for a second: a 1,250-byte frame every 50 us.
        while now < 1000 * MS {
            if s.admit(now, 1250).is_some_and(|t| t <= 1000 * MS) {
                delivered += 1250;
            }
            now += 50_000;
        }
        let mbps = delivered as f64 * 8.0 / 1e6;
        assert!((mbps - 100.0).abs() < 1.0, "{mbps}");
    }

    #[test]
    fn shapes_are_checked() {
        assert!(Shape {
            delay_ms: -1.0,
            rate_mbps: None
        }
        .check()
        .is_err());
        assert!(Shape {
            delay_ms: f64::NAN,
            rate_mbps: None
        }
        .check()
        .is_err());
        assert!(Shape {
            delay_ms: 1.0,
            rate_mbps: Some(0.0)
        }
        .check()
        .is_err());
        assert!(Shape {
            delay_ms: 1.0,
            rate_mbps: Some(100.0)
        }
        .check()
        .is_ok());
    }

    #[test]
    fn the_delay_line_releases_in_order() {
        let mut line = DelayLine::default();
        line.push(10, 'a');
        line.push(20, 'b');
        assert_eq!(line.pop_due(5), None);
        assert_eq!(line.next_due(), Some(10));
        assert_eq!(line.pop_due(15), Some((10, 'a')));
        assert_eq!(line.pop_due(15), None);
        assert_eq!(line.pop_due(25), Some((20, 'b')));
        assert!(line.is_empty());
    }
}
