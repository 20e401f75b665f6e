//! The topology over time for one (window, threshold), as the Proxy reports it.
//!
//! Smoothing does most of the work: when topologies alternate faster than the window, every
//! one of them has traffic inside the window, so the thresholded set is their union and stays
//! put instead of oscillating. The tracker adds what smoothing cannot: how long the answer has
//! held (SPEC 5.1: *settled* once unchanged for one window), how many changes it reported, and
//! the configuration-time bound of thesis section 3.2 — a change is not reported sooner than
//! the overlay could be reconfigured after the previous one; it waits, and if the raw answer
//! goes back meanwhile, it never shows.

use crate::Millis;
use vnet_grammar::Mac;

/// A topology: its (source, destination) pairs, sorted.
pub type Topology = Vec<(Mac, Mac)>;

/// A topology change or settling, for `vnetc infer --watch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Changed,
    Settled,
}

#[derive(Debug)]
pub struct Tracker {
    pub window_ms: Millis,
    /// The threshold in millionths, so that trackers can be looked up by equality.
    pub threshold_ppm: u32,
    reported: Topology,
    since: Millis,
    settled: bool,
    changes: u64,
    /// When this tracker was last asked for; unasked trackers are dropped.
    pub last_asked: Millis,
    /// When it last evaluated the raw topology.
    pub last_tick: Millis,
    /// Kept even when nobody asks (the Proxy's default query, so that a first `vnetc infer`
    /// finds it already settled).
    pub pinned: bool,
}

impl Tracker {
    pub fn new(now: Millis, window_ms: Millis, threshold_ppm: u32, first: Topology) -> Tracker {
        Tracker {
            window_ms,
            threshold_ppm,
            reported: first,
            since: now,
            settled: false,
            changes: 0,
            last_asked: now,
            last_tick: now,
            pinned: false,
        }
    }

    /// Takes the topology the matrix shows now, and whether the traffic kept that one pattern
    /// through the whole window (`steady`, see [`crate::view`]); `min_change_ms` is the
    /// configuration-time bound. Returns what happened to the reported answer.
    ///
    /// Settled (SPEC 5.1: the topology has not changed for one window) is read two ways, and
    /// either suffices: the answer has held for a window, or the traffic itself shows the
    /// answer's pattern in every part of the window. The second comes about half a window to
    /// a window sooner after a switch: the old pairs must fade from the window before the
    /// answer changes (that is the union rule), and then the traffic has already been the
    /// new pattern for a window.
    pub fn observe(
        &mut self,
        now: Millis,
        raw: Topology,
        steady: bool,
        min_change_ms: Millis,
    ) -> Option<Event> {
        self.last_tick = now;
        if raw != self.reported {
            if now.saturating_sub(self.since) < min_change_ms {
                return None;
            }
            self.reported = raw;
            self.since = now;
            self.settled = false;
            self.changes += 1;
            return Some(Event::Changed);
        }
        if !self.settled && (steady || self.held_for(now) >= self.window_ms) {
            self.settled = true;
            return Some(Event::Settled);
        }
        None
    }

    pub fn topology(&self) -> &Topology {
        &self.reported
    }

    /// How long the reported topology has held.
    pub fn held_for(&self, now: Millis) -> Millis {
        now.saturating_sub(self.since)
    }

    pub fn settled(&self) -> bool {
        self.settled
    }

    /// Changes reported since the tracker started.
    pub fn changes(&self) -> u64 {
        self.changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(pairs: &[(u8, u8)]) -> Topology {
        pairs
            .iter()
            .map(|&(s, d)| (Mac([2, 0, 0, 0, 0, s]), Mac([2, 0, 0, 0, 0, d])))
            .collect()
    }

    #[test]
    fn settles_after_one_window_unchanged() {
        let mut t = Tracker::new(0, 1000, 100_000, topo(&[(1, 2)]));
        assert_eq!(t.observe(500, topo(&[(1, 2)]), false, 0), None);
        assert_eq!(
            t.observe(1000, topo(&[(1, 2)]), false, 0),
            Some(Event::Settled)
        );
        assert!(t.settled());
        assert_eq!(
            t.observe(1100, topo(&[(2, 3)]), false, 0),
            Some(Event::Changed)
        );
        assert!(!t.settled());
        assert_eq!(t.observe(2099, topo(&[(2, 3)]), false, 0), None);
        assert_eq!(
            t.observe(2100, topo(&[(2, 3)]), false, 0),
            Some(Event::Settled)
        );
        assert_eq!(t.changes(), 1);
    }

    #[test]
    fn steady_traffic_settles_at_once_but_never_hides_a_change() {
        let mut t = Tracker::new(0, 1000, 100_000, topo(&[(1, 2)]));
        assert_eq!(
            t.observe(50, topo(&[(1, 2)]), true, 0),
            Some(Event::Settled)
        );
        // A change is reported as a change even when the new pattern is already steady;
        // it settles at the next look.
        assert_eq!(
            t.observe(100, topo(&[(2, 3)]), true, 0),
            Some(Event::Changed)
        );
        assert!(!t.settled());
        assert_eq!(t.observe(150, topo(&[(2, 3)]), false, 0), None);
        assert_eq!(
            t.observe(200, topo(&[(2, 3)]), true, 0),
            Some(Event::Settled)
        );
    }

    #[test]
    fn the_configuration_time_bound_holds_changes_back() {
        let mut t = Tracker::new(0, 1000, 100_000, topo(&[(1, 2)]));
        assert_eq!(t.observe(100, topo(&[(1, 2)]), false, 300), None);
        assert_eq!(
            t.observe(200, topo(&[(2, 3)]), false, 300),
            None,
            "too soon"
        );
        assert_eq!(t.topology(), &topo(&[(1, 2)]));
        assert_eq!(
            t.observe(300, topo(&[(2, 3)]), false, 300),
            Some(Event::Changed)
        );
        assert_eq!(
            t.observe(400, topo(&[(1, 2)]), false, 300),
            None,
            "too soon again"
        );
        assert_eq!(
            t.observe(500, topo(&[(2, 3)]), false, 300),
            None,
            "and back: never shown"
        );
        assert_eq!(t.changes(), 1);
    }
}
