//! What a daemon tells the Proxy, and when.
//!
//! A report carries *cumulative* counters (since the daemon's instance started) of the pairs
//! that changed since the last report, and every `full_every` reports all of them. Cumulative
//! values make a report idempotent: a lost report costs the Proxy one period of resolution,
//! not the traffic, because the next report of the pair carries the total; a pair that never
//! changes again is brought up to date by the next full report.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use vnet_grammar::Mac;

/// The most pairs one report may carry: a daemon's matrix holds at most 65,536 cells.
pub const MAX_PAIRS: usize = 1 << 16;
/// The longest daemon name a report may carry (a machine name).
pub const MAX_NAME: usize = 255;

/// Frames and bytes one daemon has seen enter the overlay from its local interfaces for one
/// (source, destination) pair, since its instance started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairCount {
    pub src: Mac,
    pub dst: Mac,
    pub frames: u64,
    pub bytes: u64,
}

/// One report from a daemon to the Proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting daemon's name (its HOST machine).
    pub daemon: String,
    /// The daemon's instance id: a new one means its counters started again from zero.
    pub instance: u64,
    /// Counts reports of this instance, from 0.
    pub seq: u64,
    /// Whether `pairs` holds every pair the daemon knows (else only those that changed).
    pub full: bool,
    pub pairs: Vec<PairCount>,
}

impl Report {
    /// Checks what a decoder cannot: sizes within bounds. The Proxy refuses anything else.
    pub fn check(&self) -> Result<(), String> {
        if self.daemon.is_empty() || self.daemon.len() > MAX_NAME {
            return Err(format!(
                "daemon name of {} bytes (1 to {MAX_NAME})",
                self.daemon.len()
            ));
        }
        if self.pairs.len() > MAX_PAIRS {
            return Err(format!(
                "{} pairs in one report (at most {MAX_PAIRS})",
                self.pairs.len()
            ));
        }
        Ok(())
    }
}

/// The daemon's side: remembers what it last sent, so each report carries only what changed.
#[derive(Debug)]
pub struct Reporter {
    daemon: String,
    instance: u64,
    seq: u64,
    /// Report periods so far, sent or not: full reports go by time, not by count.
    periods: u64,
    full_every: u64,
    sent: FxHashMap<(Mac, Mac), (u64, u64)>,
}

impl Reporter {
    /// `full_every`: every how many report periods all pairs are sent (at least 1). At
    /// 20 Hz, 20 means a lost report is repaired within a second.
    pub fn new(daemon: &str, instance: u64, full_every: u64) -> Reporter {
        Reporter {
            daemon: daemon.to_string(),
            instance,
            seq: 0,
            periods: 0,
            full_every: full_every.max(1),
            sent: FxHashMap::default(),
        }
    }

    /// The next report, given the daemon's cumulative counters now; `None` when nothing
    /// changed and no full report is due. A full report is sent even when empty: it tells the
    /// Proxy the daemon is alive.
    pub fn next(&mut self, cells: impl IntoIterator<Item = PairCount>) -> Option<Report> {
        let full = self.periods.is_multiple_of(self.full_every);
        self.periods += 1;
        let mut pairs = Vec::new();
        for cell in cells {
            let now = (cell.frames, cell.bytes);
            let before = self.sent.insert((cell.src, cell.dst), now);
            if full || before != Some(now) {
                pairs.push(cell);
            }
        }
        if pairs.len() > MAX_PAIRS {
            pairs.truncate(MAX_PAIRS);
        }
        if pairs.is_empty() && !full {
            return None;
        }
        let report = Report {
            daemon: self.daemon.clone(),
            instance: self.instance,
            seq: self.seq,
            full,
            pairs,
        };
        self.seq += 1;
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(s: u8, d: u8, frames: u64, bytes: u64) -> PairCount {
        PairCount {
            src: Mac([2, 0, 0, 0, 0, s]),
            dst: Mac([2, 0, 0, 0, 0, d]),
            frames,
            bytes,
        }
    }

    #[test]
    fn only_changes_between_full_reports() {
        let mut r = Reporter::new("h1", 7, 3);
        let first = r.next([cell(1, 2, 1, 100), cell(2, 1, 1, 60)]).unwrap();
        assert!(first.full);
        assert_eq!(first.pairs.len(), 2);
        let second = r.next([cell(1, 2, 3, 300), cell(2, 1, 1, 60)]).unwrap();
        assert!(!second.full);
        assert_eq!(second.pairs, vec![cell(1, 2, 3, 300)]);
        assert_eq!(r.next([cell(1, 2, 3, 300), cell(2, 1, 1, 60)]), None);
        let fourth = r.next([cell(1, 2, 3, 300), cell(2, 1, 1, 60)]).unwrap();
        assert!(fourth.full, "every third period is full");
        assert_eq!(fourth.pairs.len(), 2);
        assert_eq!(fourth.seq, 2, "a skipped report takes no number");
    }

    #[test]
    fn an_idle_daemon_still_sends_full_reports() {
        let mut r = Reporter::new("h1", 7, 2);
        assert!(r.next([]).unwrap().full);
        assert_eq!(r.next([]), None);
        assert!(r.next([]).unwrap().full);
    }

    #[test]
    fn reports_are_checked() {
        let mut r = Reporter::new("h1", 1, 1).next([]).unwrap();
        assert!(r.check().is_ok());
        r.daemon = String::new();
        assert!(r.check().unwrap_err().contains("daemon name"));
        r.daemon = "x".repeat(300);
        assert!(r.check().is_err());
    }
}
