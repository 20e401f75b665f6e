//! The Proxy's view, owned by one thread: reports, queries and ticks reach it as messages over
//! a bounded queue, so the view needs no lock and a flood of reports costs a bounded queue,
//! never memory without end (the view caps its own tables).

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};
use vnet_vttif::{Answer, Limits, Millis, PairRate, Report, View, BUCKET_MS};

/// Messages waiting for the view at most; beyond, reports are refused as busy.
const QUEUE: usize = 1024;
/// The query the Proxy tracks from its start, so that a first `vnetc infer` with the defaults
/// (SPEC 5.1: 2 s, 0.1) finds it settled when the traffic is.
const DEFAULT_WINDOW_MS: Millis = 2000;
const DEFAULT_THRESHOLD: f64 = 0.1;
/// How long a caller waits for the view's answer.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

type Reply<T> = SyncSender<T>;

enum Msg {
    Ingest(Report, Reply<Result<(), String>>),
    Query {
        window_ms: Millis,
        threshold: f64,
        bound_ms: Millis,
        reply: Reply<Result<Answer, String>>,
    },
    Top(Millis, usize, Reply<Vec<PairRate>>),
    Sizes(Reply<(u64, u64)>),
}

pub(crate) enum IngestError {
    Refused(String),
    Busy,
}

/// A way to the view's thread; the thread ends when the last handle is dropped.
#[derive(Clone)]
pub(crate) struct Handle {
    tx: SyncSender<Msg>,
}

impl Handle {
    /// Starts the view's thread on the room's clock (`started`).
    pub(crate) fn start(started: Instant) -> Option<Handle> {
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let spawned = std::thread::Builder::new()
            .name("vttif-proxy".into())
            .spawn(move || run(rx, started));
        match spawned {
            Ok(_) => Some(Handle { tx }),
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

    pub(crate) fn ingest(&self, report: Report) -> Result<(), IngestError> {
        let (reply, answer) = mpsc::sync_channel(1);
        match self.tx.try_send(Msg::Ingest(report, reply)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                return Err(IngestError::Busy)
            }
        }
        match answer.recv_timeout(REPLY_TIMEOUT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(IngestError::Refused(why)),
            Err(_) => Err(IngestError::Busy),
        }
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

fn run(rx: Receiver<Msg>, started: Instant) {
    let now = || started.elapsed().as_millis() as Millis;
    let mut view = View::new(Limits::default());
    view.keep_tracking(now(), DEFAULT_WINDOW_MS, DEFAULT_THRESHOLD);
    let mut next_tick = now() + BUCKET_MS;
    loop {
        let wait = next_tick.saturating_sub(now());
        match rx.recv_timeout(Duration::from_millis(wait)) {
            Ok(msg) => handle(&mut view, now(), msg),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let t = now();
        if t >= next_tick {
            view.tick(t);
            next_tick = t + BUCKET_MS;
        }
    }
}

/// Replies are best effort: a caller that gave up waiting has dropped its receiver.
fn handle(view: &mut View, now: Millis, msg: Msg) {
    match msg {
        Msg::Ingest(report, reply) => {
            let _ = reply.send(view.ingest(now, &report).map_err(|r| r.to_string()));
        }
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
