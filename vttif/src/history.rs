//! One pair's traffic over the last minute, in two rings: fine buckets (one report period,
//! 50 ms) for the last 4 s, where short windows need the resolution, and coarse buckets (1 s)
//! for the last 64 s, where long windows do not. A pair costs a fixed 1.7 KiB whatever its
//! traffic, so the Proxy's memory is its pair cap times that (stated in [`PAIR_BYTES`]).
//!
//! Buckets are addressed by their absolute index (time / 50 ms); a slot is cleared lazily
//! when the ring comes round to it, so an idle pair costs nothing per tick.

use crate::{Millis, BUCKET_MS};

/// Fine buckets kept: 4 s of 50 ms.
pub const FINE: u64 = 80;
/// Fine buckets per coarse bucket (1 s).
pub const PER_COARSE: u64 = 20;
/// Coarse buckets kept: 64 s, so that a 60 s window ending at the last complete bucket fits.
pub const COARSE: u64 = 64;
/// The memory one pair's history takes.
pub const PAIR_BYTES: usize = std::mem::size_of::<History>();
const _: () = assert!(
    PAIR_BYTES < 2048,
    "a pair's history grew past the memory stated"
);

/// Traffic (bytes, frames) of one pair, bucketed.
#[derive(Clone, Debug)]
pub struct History {
    fine_bytes: [u64; FINE as usize],
    fine_frames: [u32; FINE as usize],
    coarse_bytes: [u64; COARSE as usize],
    coarse_frames: [u32; COARSE as usize],
    /// The newest fine bucket written; slots after it (round the ring) are stale.
    newest: u64,
}

impl Default for History {
    fn default() -> Self {
        History {
            fine_bytes: [0; FINE as usize],
            fine_frames: [0; FINE as usize],
            coarse_bytes: [0; COARSE as usize],
            coarse_frames: [0; COARSE as usize],
            newest: 0,
        }
    }
}

/// The bucket a time falls in.
pub fn bucket_of(now: Millis) -> u64 {
    now / BUCKET_MS
}

impl History {
    /// Adds traffic to the bucket of `now`. Traffic is only ever added at the present, so the
    /// buckets between the last write and now are cleared first.
    pub fn add(&mut self, now: Millis, bytes: u64, frames: u64) {
        let at = bucket_of(now);
        self.advance_to(at);
        let f = (at % FINE) as usize;
        let c = ((at / PER_COARSE) % COARSE) as usize;
        self.fine_bytes[f] = self.fine_bytes[f].saturating_add(bytes);
        self.fine_frames[f] = self.fine_frames[f].saturating_add(clamp_u32(frames));
        self.coarse_bytes[c] = self.coarse_bytes[c].saturating_add(bytes);
        self.coarse_frames[c] = self.coarse_frames[c].saturating_add(clamp_u32(frames));
    }

    fn advance_to(&mut self, at: u64) {
        if at <= self.newest {
            return;
        }
        let first_fine = (self.newest + 1).max(at.saturating_sub(FINE - 1));
        for b in first_fine..=at {
            self.fine_bytes[(b % FINE) as usize] = 0;
            self.fine_frames[(b % FINE) as usize] = 0;
        }
        let (old_c, new_c) = (self.newest / PER_COARSE, at / PER_COARSE);
        let first_coarse = (old_c + 1).max(new_c.saturating_sub(COARSE - 1));
        for c in first_coarse..=new_c {
            self.coarse_bytes[(c % COARSE) as usize] = 0;
            self.coarse_frames[(c % COARSE) as usize] = 0;
        }
        self.newest = at;
    }

    /// The newest bucket that holds traffic (or was cleared to hold it).
    pub fn newest(&self) -> u64 {
        self.newest
    }

    /// Bytes and frames in the buckets `[first, last]` (inclusive, absolute indices). The
    /// newest 4 s come from the fine ring; anything older from the coarse ring, a partly
    /// covered second counted in proportion.
    pub fn sum(&self, first: u64, last: u64) -> (f64, f64) {
        self.sum_of(first, last, true)
    }

    /// Bytes alone, as [`History::sum`]: what the topology needs, read 20 times a second.
    pub fn bytes(&self, first: u64, last: u64) -> f64 {
        self.sum_of(first, last, false).0
    }

    fn sum_of(&self, first: u64, last: u64, with_frames: bool) -> (f64, f64) {
        if last < first || first > self.newest {
            return (0.0, 0.0);
        }
        let last = last.min(self.newest);
        // Fine slots hold the buckets (newest - FINE, newest].
        let fine_floor = self.newest.saturating_sub(FINE - 1);
        let fine_first = first.max(fine_floor);
        let mut bytes = ring_sum(&self.fine_bytes, fine_first, last) as f64;
        let mut frames = if with_frames {
            ring_sum(&self.fine_frames.map(u64::from), fine_first, last) as f64
        } else {
            0.0
        };
        if first < fine_floor {
            let (b, f) = self.coarse_sum(first, fine_floor - 1);
            bytes += b;
            frames += f;
        }
        (bytes, frames)
    }

    /// The coarse part of [`History::sum`]: fine buckets `[first, last]` read at 1 s
    /// resolution, seconds the range only partly covers counted in proportion.
    fn coarse_sum(&self, first: u64, last: u64) -> (f64, f64) {
        let coarse_floor = (self.newest / PER_COARSE).saturating_sub(COARSE - 1);
        let mut bytes = 0.0;
        let mut frames = 0.0;
        for c in (first / PER_COARSE).max(coarse_floor)..=last / PER_COARSE {
            let lo = first.max(c * PER_COARSE);
            let hi = last.min(c * PER_COARSE + PER_COARSE - 1);
            let share = (hi + 1 - lo) as f64 / PER_COARSE as f64;
            bytes += self.coarse_bytes[(c % COARSE) as usize] as f64 * share;
            frames += self.coarse_frames[(c % COARSE) as usize] as f64 * share;
        }
        (bytes, frames)
    }
}

/// The sum of ring slots for absolute indices `[first, last]` (fewer than the ring's
/// length): at most two contiguous slices, which the compiler vectorises.
fn ring_sum<const N: usize>(ring: &[u64; N], first: u64, last: u64) -> u64 {
    let (a, b) = ((first % N as u64) as usize, (last % N as u64) as usize);
    let sum = |s: &[u64]| s.iter().fold(0u64, |acc, v| acc.wrapping_add(*v));
    if a <= b {
        sum(&ring[a..=b])
    } else {
        sum(&ring[a..]).wrapping_add(sum(&ring[..=b]))
    }
}

fn clamp_u32(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000 bytes and 1 frame in every bucket from `from` to `to` (inclusive).
    fn steady(from: u64, to: u64) -> History {
        let mut h = History::default();
        for b in from..=to {
            h.add(b * BUCKET_MS, 1000, 1);
        }
        h
    }

    #[test]
    fn short_windows_are_exact() {
        let h = steady(0, 200);
        assert_eq!(h.sum(191, 200), (10_000.0, 10.0));
        assert_eq!(h.sum(200, 200), (1000.0, 1.0));
        assert_eq!(
            h.sum(201, 300),
            (0.0, 0.0),
            "nothing after the newest bucket"
        );
    }

    #[test]
    fn long_windows_read_the_coarse_ring() {
        let h = steady(0, 1300); // 65 s of traffic
                                 // A 60 s window: 1,200 buckets.
        let (bytes, frames) = h.sum(101, 1300);
        assert!((bytes - 1_200_000.0).abs() < 1e-6, "{bytes}");
        assert!((frames - 1200.0).abs() < 1e-6);
        // A window that starts mid-second is counted in proportion.
        let (bytes, _) = h.sum(1011, 1300);
        assert!((bytes - 290_000.0).abs() < 1e-6, "{bytes}");
    }

    #[test]
    fn idle_time_clears_old_buckets() {
        let mut h = steady(0, 100);
        h.add(10_000 * BUCKET_MS, 5, 1); // 8 minutes later
        assert_eq!(h.sum(0, 10_000), (5.0, 1.0), "everything older was cleared");
        let mut h = steady(0, 100);
        h.add(150 * BUCKET_MS, 7, 1); // 2.5 s later: the fine ring wrapped partly
        assert_eq!(h.sum(101, 150), (7.0, 1.0));
        assert_eq!(
            h.sum(71, 100).0,
            30_000.0,
            "fine buckets still in the ring survive"
        );
    }
}
