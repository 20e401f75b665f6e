//! The forwarding thread's home CPU (`--forward-cpu`): while traffic is light the thread keeps
//! to one CPU, so that a lone frame is handed from the VM (or the peer daemon) to the thread
//! and back on a CPU that is already awake; while it is busy it may run anywhere, so that
//! heavy traffic is not held to one core. On a virtual machine whose idle vCPUs halt, waking
//! a thread on another, sleeping CPU costs tens of microseconds per hand-over (a trip through
//! the hypervisor); an RTT is four such hand-overs (BENCHMARKS.md, "Sealed RTT and CPU
//! placement").
//!
//! A pure state machine: the caller passes the clock and the time each wake-up worked, and
//! applies the placement it returns (`placer.rs`).

use std::time::{Duration, Instant};

/// Where the forwarding thread should run from now on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// On its home CPU only.
    Home(u32),
    /// On any CPU the process may use.
    Anywhere,
}

/// The accounting period over which the thread's busy share is judged.
pub const PERIOD: Duration = Duration::from_millis(20);

/// Busy at least this share of a period (per mille): heavy traffic, leave home. Well under
/// half: two daemons' threads at home on one CPU (one machine, one home) each get at most
/// about half of it, so a threshold at half would keep them sharing one core under load.
pub const LEAVE_AT: u32 = 300;

/// Busy less than this share of a period (per mille): light traffic, go home. Lower than
/// [`LEAVE_AT`] so that a load near one threshold does not move the thread every period.
pub const RETURN_BELOW: u32 = 100;

/// The home CPU and how busy the thread has been in the current period.
#[derive(Debug)]
pub struct Home {
    cpu: u32,
    at_home: bool,
    period_start: Instant,
    busy: Duration,
}

impl Home {
    /// Starts at home: the caller pins the thread to [`Placement::Home`] first.
    pub fn new(cpu: u32, now: Instant) -> Home {
        Home {
            cpu,
            at_home: true,
            period_start: now,
            busy: Duration::ZERO,
        }
    }

    /// Where the thread starts.
    pub fn start(&self) -> Placement {
        Placement::Home(self.cpu)
    }

    /// Accounts one wake-up that worked from `woke` to `done`; at the end of a period, says
    /// where the thread should move, if anywhere.
    pub fn worked(&mut self, woke: Instant, done: Instant) -> Option<Placement> {
        self.busy += done.saturating_duration_since(woke);
        let elapsed = done.saturating_duration_since(self.period_start);
        if elapsed < PERIOD {
            return None;
        }
        let permille = (self.busy.as_micros() * 1000 / elapsed.as_micros().max(1)) as u32;
        self.period_start = done;
        self.busy = Duration::ZERO;
        match (self.at_home, permille) {
            (true, p) if p >= LEAVE_AT => {
                self.at_home = false;
                Some(Placement::Anywhere)
            }
            (false, p) if p < RETURN_BELOW => {
                self.at_home = true;
                Some(Placement::Home(self.cpu))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A share of one period.
    fn of_period(permille: u32) -> Duration {
        PERIOD * permille / 1000
    }

    /// Runs one period in which the thread wakes ten times and works `busy` per mille of it;
    /// returns the placement asked for at its end.
    fn period(h: &mut Home, t: &mut Instant, busy: u32) -> Option<Placement> {
        let mut asked = None;
        for i in 0..10u32 {
            let woke = *t + PERIOD * i / 10;
            if let Some(p) = h.worked(woke, woke + of_period(busy) / 10) {
                asked = Some(p);
            }
        }
        *t += PERIOD;
        // The last wake-up ends before the period does: close it with an idle wake-up.
        if let Some(p) = h.worked(*t, *t) {
            asked = Some(p);
        }
        asked
    }

    #[test]
    fn light_traffic_stays_home() {
        let t0 = Instant::now();
        let mut h = Home::new(3, t0);
        assert_eq!(h.start(), Placement::Home(3));
        let mut t = t0;
        for _ in 0..5 {
            assert_eq!(period(&mut h, &mut t, 50), None);
        }
    }

    #[test]
    fn heavy_traffic_leaves_home_and_light_traffic_brings_it_back() {
        let t0 = Instant::now();
        let mut h = Home::new(1, t0);
        let mut t = t0;
        assert_eq!(period(&mut h, &mut t, 700), Some(Placement::Anywhere));
        // Still busy, or between the thresholds: no move.
        assert_eq!(period(&mut h, &mut t, 800), None);
        assert_eq!(period(&mut h, &mut t, 200), None);
        assert_eq!(period(&mut h, &mut t, 50), Some(Placement::Home(1)));
        assert_eq!(period(&mut h, &mut t, 200), None);
    }

    #[test]
    fn one_busy_wake_up_is_judged_over_the_whole_period() {
        let t0 = Instant::now();
        let mut h = Home::new(0, t0);
        // 25% of a period of work ending as the period does: under the threshold to leave.
        assert_eq!(h.worked(t0 + of_period(750), t0 + PERIOD), None);
        // A long busy stretch across periods: 15 of 16 tenths.
        let start = t0 + PERIOD + of_period(100);
        assert_eq!(
            h.worked(start, start + of_period(1500)),
            Some(Placement::Anywhere)
        );
    }

    #[test]
    fn a_clock_that_goes_backwards_moves_nothing() {
        let t0 = Instant::now();
        let mut h = Home::new(0, t0 + PERIOD * 5);
        assert_eq!(h.worked(t0 + PERIOD, t0), None);
        assert_eq!(h.worked(t0, t0 + PERIOD), None);
    }
}
