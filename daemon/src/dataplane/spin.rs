//! Adaptive busy-poll of the forwarding thread: after it has forwarded something, it keeps
//! polling its sockets (without blocking) for a short window before it blocks in `epoll_wait`
//! again, so that the answer to a frame it just sent (a ping's reply, a TCP ACK) is picked up
//! by a thread that is still running instead of waking one that has gone to sleep, and the
//! CPU it sleeps on from idle. On a virtual machine that wake-up costs tens of microseconds
//! per thread (the vCPU halts and the hypervisor has to run it again).
//!
//! The spin is bounded four ways, so that an idle daemon stays idle and a busy machine loses
//! no CPU to it: it starts only after frames (a timeout, a keepalive or an empty poll is no
//! work), it ends `window` after the last frame, it ends when a yield between polls let another
//! task run (the CPU is wanted: [`CONTENDED`]), and the time spent spinning is capped at a
//! share of one core per accounting period. A pure state machine: the caller passes the clock.

use std::time::{Duration, Instant};

/// How the forwarding thread spins before it blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpinPolicy {
    /// How long after the last work it keeps polling (zero: never spins).
    pub window: Duration,
    /// The most spinning per [`PERIOD`], in thousandths of one core.
    pub budget_permille: u32,
}

impl SpinPolicy {
    /// No busy-poll: block as soon as there is nothing to do.
    pub const OFF: SpinPolicy = SpinPolicy {
        window: Duration::ZERO,
        budget_permille: 0,
    };

    /// What `--busy-poll-us N` spins with by default: long enough to catch a reply through a
    /// peer daemon that has to wake up on a busy machine, and the next request of a
    /// conversation with a millisecond between messages; at most half a core.
    pub const ON: SpinPolicy = SpinPolicy {
        window: Duration::from_micros(2000),
        budget_permille: 500,
    };

    /// Off by default: measured on this project's 2-vCPU machine under load it cost sealed
    /// throughput 9–15% and gave no steady RTT gain (ARCHITECTURE.md, "Latency: busy-poll").
    pub const DEFAULT: SpinPolicy = SpinPolicy::OFF;

    fn budget(&self) -> Duration {
        PERIOD * self.budget_permille.min(1000) / 1000
    }
}

impl Default for SpinPolicy {
    fn default() -> Self {
        SpinPolicy::DEFAULT
    }
}

/// An empty poll (and its yield) that took this long gave the CPU to another task.
pub const CONTENDED: Duration = Duration::from_micros(50);

/// The accounting period of the spin budget: short, so that a burst of spinning is cut off
/// quickly, long against the window.
pub const PERIOD: Duration = Duration::from_millis(100);

/// The spin state of one forwarding thread.
#[derive(Debug)]
pub struct Spin {
    policy: SpinPolicy,
    /// When the thread last finished work (the window runs from here).
    idle_since: Option<Instant>,
    /// The last wait returned events: the next `next_wait` marks the end of that work.
    worked: bool,
    /// When the current poll was decided (`Some` while a poll is under way).
    polling_since: Option<Instant>,
    period_start: Instant,
    /// Spinning in the current period.
    spent: Duration,
    /// Spinning since the start, for the counters.
    total: Duration,
}

impl Spin {
    pub fn new(policy: SpinPolicy, now: Instant) -> Spin {
        Spin {
            policy,
            idle_since: None,
            worked: false,
            polling_since: None,
            period_start: now,
            spent: Duration::ZERO,
            total: Duration::ZERO,
        }
    }

    /// Before a wait: true to poll (wait with a zero timeout), false to block.
    pub fn poll_next(&mut self, now: Instant) -> bool {
        if self.worked {
            self.worked = false;
            self.idle_since = Some(now);
        }
        if now.saturating_duration_since(self.period_start) >= PERIOD {
            self.period_start = now;
            self.spent = Duration::ZERO;
        }
        let recent = self
            .idle_since
            .is_some_and(|t| now.saturating_duration_since(t) < self.policy.window);
        let poll = recent && self.spent < self.policy.budget();
        self.polling_since = poll.then_some(now);
        poll
    }

    /// After a wait (`now`: when it returned, after the yield that follows an empty poll) and
    /// the work it brought: whether that forwarded frames (control messages, timeouts and
    /// keepalives are no reason to spin).
    pub fn woke(&mut self, now: Instant, work: bool) {
        if let Some(t) = self.polling_since.take() {
            let d = now.saturating_duration_since(t);
            self.spent += d;
            self.total += d;
            if !work && d >= CONTENDED {
                // The yield let another task run: the CPU is wanted, so the spin would take
                // time from VMs and the other daemon (throughput) and save no wake-up (a
                // busy CPU does not sleep). Block until the next frame.
                self.idle_since = None;
            }
        }
        self.worked |= work;
    }

    /// Time spent spinning since the thread started.
    pub fn total(&self) -> Duration {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    const POLICY: SpinPolicy = SpinPolicy {
        window: Duration::from_micros(500),
        budget_permille: 200,
    };

    /// Runs empty polls 10 µs apart from `t` while the spin allows; returns when it blocks.
    fn spin_until_block(s: &mut Spin, mut t: Instant) -> Instant {
        while s.poll_next(t) {
            t += us(10);
            s.woke(t, false);
        }
        t
    }

    #[test]
    fn an_idle_thread_never_polls() {
        let t0 = Instant::now();
        let mut s = Spin::new(POLICY, t0);
        for i in 0..1000 {
            let t = t0 + Duration::from_millis(250 * i);
            assert!(!s.poll_next(t), "polled while idle at wait {i}");
            // A timeout: no events.
            s.woke(t + Duration::from_millis(250), false);
        }
        assert_eq!(s.total(), Duration::ZERO);
    }

    #[test]
    fn after_work_it_polls_for_the_window_then_blocks() {
        let t0 = Instant::now();
        let mut s = Spin::new(POLICY, t0);
        assert!(!s.poll_next(t0));
        s.woke(t0 + us(100), true);
        // Work ends at +150 µs: the window runs from there.
        let end = spin_until_block(&mut s, t0 + us(150));
        assert_eq!(end, t0 + us(650));
        assert_eq!(s.total(), us(500));
        // Blocked, and stays blocked while nothing comes.
        assert!(!s.poll_next(end + us(1)));
    }

    #[test]
    fn work_during_the_spin_starts_a_new_window() {
        let t0 = Instant::now();
        let mut s = Spin::new(POLICY, t0);
        s.poll_next(t0);
        s.woke(t0, true);
        assert!(s.poll_next(t0));
        // The reply comes 300 µs later, caught by the poll.
        s.woke(t0 + us(300), true);
        let end = spin_until_block(&mut s, t0 + us(310));
        assert_eq!(end, t0 + us(810));
    }

    #[test]
    fn spinning_stops_at_the_budget_and_resumes_next_period() {
        let t0 = Instant::now();
        let mut s = Spin::new(POLICY, t0);
        s.woke(t0, true);
        // Work every 400 µs keeps the window open; empty polls fill the gaps.
        let mut t = t0;
        let mut blocked_at = None;
        while t < t0 + PERIOD {
            if s.poll_next(t) {
                t += us(10);
                let work = (t - t0).as_micros().is_multiple_of(400);
                s.woke(t, work);
            } else {
                blocked_at.get_or_insert(t);
                // Blocked: the next event wakes it 400 µs later.
                t += us(400);
                s.woke(t, true);
            }
        }
        let budget = POLICY.budget();
        let spent = s.total();
        assert!(
            spent >= budget && spent <= budget + us(10),
            "spent {spent:?} of a {budget:?} budget"
        );
        assert!(blocked_at.is_some_and(|b| b - t0 >= budget));
        // A new period: it polls again after work.
        s.woke(t, true);
        assert!(s.poll_next(t + us(1)));
    }

    #[test]
    fn a_poll_that_gave_the_cpu_away_ends_the_spin() {
        let t0 = Instant::now();
        let mut s = Spin::new(POLICY, t0);
        s.woke(t0, true);
        assert!(s.poll_next(t0));
        s.woke(t0 + us(10), false);
        assert!(s.poll_next(t0 + us(10)));
        // Another task ran during the yield.
        s.woke(t0 + us(10) + CONTENDED, false);
        assert!(!s.poll_next(t0 + us(70)), "spun on a contended CPU");
        // The next frame starts a new window.
        s.woke(t0 + us(500), true);
        assert!(s.poll_next(t0 + us(510)));
    }

    #[test]
    fn a_zero_window_never_polls() {
        let t0 = Instant::now();
        let mut s = Spin::new(SpinPolicy::OFF, t0);
        for i in 0..100 {
            assert!(!s.poll_next(t0 + us(i)));
            s.woke(t0 + us(i), true);
        }
    }
}
