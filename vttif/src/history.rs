//! The traffic of every pair over the last minute, as columns: for each time bucket, one
//! array indexed by the pair's slot. Two rings of buckets: fine ones (one report period,
//! 50 ms) for the last 4 s, where short windows need the resolution, and coarse ones (1 s)
//! for the last 64 s, where long windows do not.
//!
//! Why columns: the Proxy writes every active pair once per report period and reads every
//! pair's window 20 times a second. With a column per bucket, the writes of one period land
//! in one array and a window's sums are a few array additions, instead of a cache miss per
//! pair per access. A pair costs [`PAIR_BYTES`] whatever its traffic, and only slots in use
//! are touched, so the memory is the pair cap times that at most.

use crate::{Millis, BUCKET_MS};

/// Fine buckets kept: 4 s of 50 ms.
pub const FINE: u64 = 80;
/// Fine buckets per coarse bucket (1 s).
pub const PER_COARSE: u64 = 20;
/// Coarse buckets kept: 64 s, so that a 60 s window ending at the last complete bucket fits.
pub const COARSE: u64 = 64;
/// The memory one pair slot takes: bytes (u64) and frames (u32) in every bucket, and when
/// it last had traffic.
pub const PAIR_BYTES: usize = ((FINE + COARSE) * 12 + 8) as usize;

/// The bucket a time falls in.
pub fn bucket_of(now: Millis) -> u64 {
    now / BUCKET_MS
}

/// The history of up to `capacity` pairs, each in a slot.
#[derive(Debug)]
pub struct History {
    capacity: usize,
    /// Slots `0..used` have been handed out at some time; the rest were never touched.
    used: usize,
    free: Vec<usize>,
    fine_bytes: Vec<u64>,
    fine_frames: Vec<u32>,
    coarse_bytes: Vec<u64>,
    coarse_frames: Vec<u32>,
    /// The newest bucket started; every column of an older, overwritten bucket is zero.
    newest: u64,
    /// Per slot, the newest bucket it had traffic in.
    last_active: Vec<u64>,
}

/// Bytes and frames per slot over a range of buckets.
#[derive(Debug, Default)]
pub struct Sums {
    pub bytes: Vec<f64>,
    pub frames: Vec<f64>,
}

impl History {
    /// Room for `capacity` pairs; memory is taken as slots are used (zeroed pages are not
    /// resident until written).
    pub fn new(capacity: usize) -> History {
        let (fine, coarse) = (FINE as usize * capacity, COARSE as usize * capacity);
        History {
            capacity,
            used: 0,
            free: Vec::new(),
            fine_bytes: vec![0; fine],
            fine_frames: vec![0; fine],
            coarse_bytes: vec![0; coarse],
            coarse_frames: vec![0; coarse],
            newest: 0,
            last_active: vec![0; capacity],
        }
    }

    /// A slot for a new pair, or `None` when all are taken.
    pub fn open(&mut self) -> Option<usize> {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None if self.used < self.capacity => {
                self.used += 1;
                self.used - 1
            }
            None => return None,
        };
        self.clear(slot);
        Some(slot)
    }

    /// Gives a slot back (its pair was forgotten).
    pub fn close(&mut self, slot: usize) {
        self.free.push(slot);
    }

    fn clear(&mut self, slot: usize) {
        let cap = self.capacity;
        for b in 0..FINE as usize {
            self.fine_bytes[b * cap + slot] = 0;
            self.fine_frames[b * cap + slot] = 0;
        }
        for c in 0..COARSE as usize {
            self.coarse_bytes[c * cap + slot] = 0;
            self.coarse_frames[c * cap + slot] = 0;
        }
        self.last_active[slot] = self.newest;
    }

    /// Starts the buckets up to the one `now` falls in, zeroing the columns they reuse.
    pub fn advance(&mut self, now: Millis) {
        let at = bucket_of(now);
        if at <= self.newest {
            return;
        }
        let (cap, used) = (self.capacity, self.used);
        for b in (self.newest + 1).max(at.saturating_sub(FINE - 1))..=at {
            let col = (b % FINE) as usize * cap;
            self.fine_bytes[col..col + used].fill(0);
            self.fine_frames[col..col + used].fill(0);
        }
        let (old_c, new_c) = (self.newest / PER_COARSE, at / PER_COARSE);
        for c in (old_c + 1).max(new_c.saturating_sub(COARSE - 1))..=new_c {
            let col = (c % COARSE) as usize * cap;
            self.coarse_bytes[col..col + used].fill(0);
            self.coarse_frames[col..col + used].fill(0);
        }
        self.newest = at;
    }

    /// Adds traffic to a slot in the bucket of `now` (traffic is only ever added at the
    /// present).
    pub fn add(&mut self, slot: usize, now: Millis, bytes: u64, frames: u64) {
        self.advance(now);
        let at = self.newest;
        let f = (at % FINE) as usize * self.capacity + slot;
        let c = ((at / PER_COARSE) % COARSE) as usize * self.capacity + slot;
        let frames = u32::try_from(frames).unwrap_or(u32::MAX);
        self.fine_bytes[f] = self.fine_bytes[f].saturating_add(bytes);
        self.fine_frames[f] = self.fine_frames[f].saturating_add(frames);
        self.coarse_bytes[c] = self.coarse_bytes[c].saturating_add(bytes);
        self.coarse_frames[c] = self.coarse_frames[c].saturating_add(frames);
        self.last_active[slot] = at;
    }

    /// The newest bucket a slot had traffic in.
    pub fn last_active(&self, slot: usize) -> u64 {
        self.last_active[slot]
    }

    /// Every slot's bytes (and, with `frames`, frames) in the buckets `[first, last]`
    /// (inclusive, absolute indices). The newest 4 s come from the fine ring; anything older
    /// from the coarse ring, a partly covered second counted in proportion.
    pub fn sums(&self, first: u64, last: u64, frames: bool) -> Sums {
        let mut out = Sums {
            bytes: vec![0.0; self.used],
            frames: if frames {
                vec![0.0; self.used]
            } else {
                Vec::new()
            },
        };
        if last < first || first > self.newest {
            return out;
        }
        let last = last.min(self.newest);
        let fine_floor = self.newest.saturating_sub(FINE - 1);
        for b in first.max(fine_floor)..=last {
            let col = (b % FINE) as usize * self.capacity;
            self.add_column(&mut out, col, 1.0, false);
        }
        if first < fine_floor {
            let end = fine_floor - 1;
            let coarse_floor = (self.newest / PER_COARSE).saturating_sub(COARSE - 1);
            for c in (first / PER_COARSE).max(coarse_floor)..=end / PER_COARSE {
                let lo = first.max(c * PER_COARSE);
                let hi = end.min(c * PER_COARSE + PER_COARSE - 1);
                let share = (hi + 1 - lo) as f64 / PER_COARSE as f64;
                let col = (c % COARSE) as usize * self.capacity;
                self.add_column(&mut out, col, share, true);
            }
        }
        out
    }

    fn add_column(&self, out: &mut Sums, col: usize, share: f64, coarse: bool) {
        let (bytes, frames) = if coarse {
            (&self.coarse_bytes, &self.coarse_frames)
        } else {
            (&self.fine_bytes, &self.fine_frames)
        };
        for (acc, v) in out.bytes.iter_mut().zip(&bytes[col..col + self.used]) {
            *acc += *v as f64 * share;
        }
        for (acc, v) in out.frames.iter_mut().zip(&frames[col..col + self.used]) {
            *acc += *v as f64 * share;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1,000 bytes and 1 frame in every bucket from `from` to `to` (inclusive), in slot 0;
    /// slot 1 stays idle.
    fn steady(from: u64, to: u64) -> History {
        let mut h = History::new(4);
        assert_eq!((h.open(), h.open()), (Some(0), Some(1)));
        for b in from..=to {
            h.add(0, b * BUCKET_MS, 1000, 1);
        }
        h
    }

    fn slot0(h: &History, first: u64, last: u64) -> (f64, f64) {
        let s = h.sums(first, last, true);
        assert_eq!(s.bytes[1], 0.0, "the idle slot stays idle");
        (s.bytes[0], s.frames[0])
    }

    #[test]
    fn short_windows_are_exact() {
        let h = steady(0, 200);
        assert_eq!(slot0(&h, 191, 200), (10_000.0, 10.0));
        assert_eq!(slot0(&h, 200, 200), (1000.0, 1.0));
        assert_eq!(
            slot0(&h, 201, 300),
            (0.0, 0.0),
            "nothing after the newest bucket"
        );
    }

    #[test]
    fn long_windows_read_the_coarse_ring() {
        let h = steady(0, 1300); // 65 s of traffic
        let (bytes, frames) = slot0(&h, 101, 1300); // a 60 s window: 1,200 buckets
        assert!((bytes - 1_200_000.0).abs() < 1e-6, "{bytes}");
        assert!((frames - 1200.0).abs() < 1e-6);
        let (bytes, _) = slot0(&h, 1011, 1300); // starts mid-second: counted in proportion
        assert!((bytes - 290_000.0).abs() < 1e-6, "{bytes}");
    }

    #[test]
    fn idle_time_clears_old_buckets() {
        let mut h = steady(0, 100);
        h.add(0, 10_000 * BUCKET_MS, 5, 1); // 8 minutes later
        assert_eq!(
            slot0(&h, 0, 10_000),
            (5.0, 1.0),
            "everything older was cleared"
        );
        let mut h = steady(0, 100);
        h.add(0, 150 * BUCKET_MS, 7, 1); // 2.5 s later: the fine ring wrapped partly
        assert_eq!(slot0(&h, 101, 150), (7.0, 1.0));
        assert_eq!(
            slot0(&h, 71, 100).0,
            30_000.0,
            "fine buckets still in the ring survive"
        );
    }

    #[test]
    fn slots_are_reused_clean_and_capped() {
        let mut h = steady(0, 10);
        assert_eq!((h.open(), h.open(), h.open()), (Some(2), Some(3), None));
        h.close(0);
        assert_eq!(h.open(), Some(0));
        assert_eq!(
            h.sums(0, 10, false).bytes[0],
            0.0,
            "a reused slot starts empty"
        );
    }
}
