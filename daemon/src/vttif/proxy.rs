//! The Proxy's view, owned by one thread, so the view needs no lock.
//!
//! Reports do not wait for the view: a session checks a report, puts it on a [`Queue`]
//! bounded in pairs and reports, and answers at once; the view takes the whole queue once per
//! bucket (50 ms), or before a query so that an answer includes every report already
//! answered. At 64 reporters that is 20 wake-ups of the view a second instead of 1,280, and
//! no session ever waits on another thread. Queries, ticks and the rest reach the thread as
//! messages over a bounded channel. A flood of reports costs the queue's bound, never memory
//! without end (the view caps its own tables).

use crate::stats::Counter;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vnet_vttif::{Answer, Limits, Millis, PairRate, Report, View, BUCKET_MS};

/// Questions waiting for the view at most; beyond, they are answered busy.
const QUESTIONS: usize = 64;
/// Pairs waiting for the view at most: 16 periods of 64 daemons × 256 pairs, about 8 MiB.
pub(crate) const QUEUE_PAIRS: usize = 1 << 18;
/// Reports waiting for the view at most (bounds a flood of empty reports).
pub(crate) const QUEUE_REPORTS: usize = 4096;
/// The query the Proxy tracks from its start, so that a first `vnetc infer` with the defaults
/// (SPEC 5.1: 2 s, 0.1) finds it settled when the traffic is.
const DEFAULT_WINDOW_MS: Millis = 2000;
const DEFAULT_THRESHOLD: f64 = 0.1;
/// How long a caller waits for the view's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

type Reply<T> = SyncSender<T>;

enum Msg {
    Query {
        window_ms: Millis,
        threshold: f64,
        bound_ms: Millis,
        reply: Reply<Result<Answer, String>>,
    },
    Top(Millis, usize, Reply<Vec<PairRate>>),
    Sizes(Reply<(u64, u64)>),
}

/// The queue is full: the report is refused (and counted by the caller).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Full;

/// Reports checked and waiting for the view, bounded in pairs and in reports.
#[derive(Default)]
pub(crate) struct Queue {
    reports: Vec<Report>,
    pairs: usize,
}

impl Queue {
    /// Takes a report unless it would go over either bound.
    pub(crate) fn push(&mut self, report: Report) -> Result<(), Full> {
        let pairs = self.pairs + report.pairs.len();
        if pairs > QUEUE_PAIRS || self.reports.len() >= QUEUE_REPORTS {
            return Err(Full);
        }
        self.pairs = pairs;
        self.reports.push(report);
        Ok(())
    }

    /// Everything waiting, oldest first; `spare` (emptied) becomes the queue's storage.
    fn take(&mut self, mut spare: Vec<Report>) -> Vec<Report> {
        spare.clear();
        self.pairs = 0;
        std::mem::replace(&mut self.reports, spare)
    }
}

/// What the view's thread counts for the room: reports it took, and reports it refused
/// (its daemon cap) after a session had queued them.
#[derive(Default)]
pub(crate) struct Counts {
    pub(crate) taken: Counter,
    pub(crate) refused: Counter,
}

/// A way to the view's thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct Handle {
    tx: SyncSender<Msg>,
    queue: Arc<Mutex<Queue>>,
}

impl Handle {
    /// Starts the view's thread on the room's clock (`started`), counting into `counts`.
    pub(crate) fn start(started: Instant, counts: Arc<Counts>) -> Option<Handle> {
        let (tx, rx) = mpsc::sync_channel(QUESTIONS);
        let queue = Arc::new(Mutex::new(Queue::default()));
        let theirs = queue.clone();
        let spawned = std::thread::Builder::new()
            .name("vttif-proxy".into())
            .spawn(move || run(rx, &theirs, started, &counts));
        match spawned {
            Ok(_) => Some(Handle { tx, queue }),
            Err(e) => {
                tracing::error!("VTTIF: cannot start the Proxy's view: {e}");
                None
            }
        }
    }

    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Msg) -> Option<T> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx.try_send(make(reply)).ok()?;
        answer.recv_timeout(REPLY_TIMEOUT).ok()
    }

    /// Queues a checked report for the view, which takes it within a bucket.
    pub(crate) fn ingest(&self, report: Report) -> Result<(), Full> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(report)
    }

    pub(crate) fn query(
        &self,
        window_ms: Millis,
        threshold: f64,
        bound_ms: Millis,
    ) -> Result<Answer, String> {
        self.ask(|reply| Msg::Query {
            window_ms,
            threshold,
            bound_ms,
            reply,
        })
        .unwrap_or_else(|| Err("the Proxy's view is busy; try again".into()))
    }

    pub(crate) fn top(&self, window_ms: Millis, n: usize) -> Vec<PairRate> {
        self.ask(|reply| Msg::Top(window_ms, n, reply))
            .unwrap_or_default()
    }

    /// Pairs with a history and pair updates dropped by the caps.
    pub(crate) fn sizes(&self) -> (u64, u64) {
        self.ask(Msg::Sizes).unwrap_or_default()
    }
}

/// The view's thread: takes the queue and ticks once per bucket, answers questions between.
fn run(rx: Receiver<Msg>, queue: &Mutex<Queue>, started: Instant, counts: &Counts) {
    let now = || started.elapsed().as_millis() as Millis;
    let mut view = View::new(Limits::default());
    view.keep_tracking(now(), DEFAULT_WINDOW_MS, DEFAULT_THRESHOLD);
    let mut next_tick = now() + BUCKET_MS;
    let mut spare = Vec::new();
    loop {
        let wait = next_tick.saturating_sub(now());
        let msg = match rx.recv_timeout(Duration::from_millis(wait)) {
            Ok(msg) => Some(msg),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let t = now();
        if msg.is_some() || t >= next_tick {
            spare = apply(&mut view, t, queue, spare, counts);
        }
        if let Some(msg) = msg {
            handle(&mut view, t, msg);
        }
        if t >= next_tick {
            view.tick(t);
            next_tick = t + BUCKET_MS;
        }
    }
}

/// Ingests everything queued, as received now (within the bucket it waited in); returns the
/// emptied storage for the next turn.
fn apply(
    view: &mut View,
    now: Millis,
    queue: &Mutex<Queue>,
    spare: Vec<Report>,
    counts: &Counts,
) -> Vec<Report> {
    let mut reports = queue.lock().unwrap_or_else(|e| e.into_inner()).take(spare);
    for report in reports.drain(..) {
        match view.ingest(now, &report) {
            Ok(()) => counts.taken.inc(),
            Err(why) => {
                tracing::debug!(daemon = %report.daemon, "VTTIF: report refused: {why}");
                counts.refused.inc();
            }
        }
    }
    reports
}

/// Replies are best effort: a caller that gave up waiting has dropped its receiver.
fn handle(view: &mut View, now: Millis, msg: Msg) {
    match msg {
        Msg::Query {
            window_ms,
            threshold,
            bound_ms,
            reply,
        } => {
            view.set_min_change(bound_ms);
            let _ = reply.send(view.query(now, window_ms, threshold));
        }
        Msg::Top(window_ms, n, reply) => {
            let mut pairs = view.pairs_now(now, window_ms);
            pairs.truncate(n);
            let _ = reply.send(pairs);
        }
        Msg::Sizes(reply) => {
            let _ = reply.send((view.pair_count() as u64, view.dropped()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnet_grammar::Mac;
    use vnet_vttif::{PairCount, Reporter};

    /// `pairs` pairs at `frames` frames each, as a daemon's counters.
    fn cells(pairs: usize, frames: u64) -> impl Iterator<Item = PairCount> {
        (0..pairs).map(move |i| {
            let [.., hi, lo] = (i as u32).to_be_bytes();
            PairCount {
                src: Mac([2, 0, 0, 0, hi, lo]),
                dst: Mac([2, 0, 0, 0, 0, 1]),
                frames,
                bytes: frames * 60,
            }
        })
    }

    /// A full report of `pairs` pairs.
    fn report(pairs: usize) -> Report {
        let mut r = Reporter::new("a", 1, 1);
        r.next(cells(pairs, 1)).expect("every report is full")
    }

    #[test]
    fn a_full_queue_refuses_reports_and_holds_no_more_than_its_bound() {
        let mut q = Queue::default();
        let big = QUEUE_PAIRS / 4;
        for _ in 0..4 {
            assert_eq!(q.push(report(big)), Ok(()));
        }
        assert_eq!(q.push(report(1)), Err(Full));
        assert_eq!(q.pairs, QUEUE_PAIRS);
        assert_eq!(q.reports.len(), 4);
        // Taken by the view, it has room again.
        assert_eq!(q.take(Vec::new()).len(), 4);
        assert_eq!(q.pairs, 0);
        assert_eq!(q.push(report(1)), Ok(()));
    }

    #[test]
    fn a_flood_of_empty_reports_is_bounded_in_count() {
        let mut q = Queue::default();
        let taken = (0..QUEUE_REPORTS + 100)
            .filter(|_| q.push(report(0)).is_ok())
            .count();
        assert_eq!(taken, QUEUE_REPORTS);
        assert_eq!(q.reports.len(), QUEUE_REPORTS);
    }

    #[test]
    fn queued_reports_reach_the_view_before_a_query_is_answered() {
        let counts = Arc::new(Counts::default());
        let h = Handle::start(Instant::now(), counts.clone()).expect("view thread");
        // The first full report is the baseline; the second one's growth is traffic.
        let mut r = Reporter::new("a", 1, 1);
        for frames in [1, 11] {
            h.ingest(r.next(cells(3, frames)).expect("full"))
                .expect("queued");
        }
        // Asked at once: the question takes the queue first, whatever the tick.
        let answer = h.query(1000, 0.0, 0).expect("answer");
        assert_eq!(answer.pairs.len(), 3, "{answer:?}");
        assert_eq!(counts.taken.get(), 2);
        assert_eq!(counts.refused.get(), 0);
        assert_eq!(h.sizes().0, 3);
    }
}
