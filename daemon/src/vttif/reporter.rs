//! The reporter: a thread of its own that, every period, reads this daemon's cumulative
//! traffic matrix (kernel fast-path counts credited first), lets `vnet_vttif::Reporter` pick
//! what changed, and sends it to the Proxy over the authenticated control protocol. It never
//! touches the forwarding thread: it reads the matrix's counters as any control request does.
//!
//! A new connection starts a new reporting instance, whose first report is a full baseline:
//! traffic counted while the Proxy was unreachable is not replayed as one burst.

use super::Vttif;
use crate::proto::ProxySpec;
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnet_proto::{Client, ClientError, Key};
use vnet_vttif::{PairCount, Report, Reporter};

/// Reads the daemon's matrix: (source, destination, frames, bytes) since the daemon started.
pub(crate) type Snapshot = Box<dyn Fn() -> Vec<PairCount> + Send>;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// How long one connection attempt or report may take (a hung Proxy costs this per try).
const TIMEOUT: Duration = Duration::from_secs(1);

/// Where reports go: the Proxy's control port, or this daemon's own view.
enum Sink {
    Local,
    Remote(Client),
}

/// Starts the reporter thread (reporting every `1 / room.report_hz` s until the room stops).
pub(crate) fn start(room: Arc<Vttif>, key: Key, snapshot: Snapshot) -> std::io::Result<()> {
    if room.report_hz == 0 {
        return Ok(());
    }
    std::thread::Builder::new()
        .name("vttif-reporter".into())
        .spawn(move || Sender::new(room, key).run(snapshot))
        .map(|_| ())
}

struct Sender {
    room: Arc<Vttif>,
    key: Key,
    link: Option<(ProxySpec, Sink)>,
    reporter: Option<Reporter>,
    backoff: Duration,
    retry_at: Instant,
    /// Whether the current streak of failures has been logged.
    warned: bool,
}

impl Sender {
    fn new(room: Arc<Vttif>, key: Key) -> Sender {
        Sender {
            room,
            key,
            link: None,
            reporter: None,
            backoff: BACKOFF_MIN,
            retry_at: Instant::now(),
            warned: false,
        }
    }

    fn run(mut self, snapshot: Snapshot) {
        let period = Duration::from_secs_f64(1.0 / self.room.report_hz as f64);
        let mut next = Instant::now();
        while !self.room.stopping() {
            next += period;
            let now = Instant::now();
            match next.checked_duration_since(now) {
                Some(wait) => std::thread::sleep(wait),
                // Fell behind (a slow Proxy): start counting periods again from now.
                None => next = now,
            }
            self.period(&snapshot);
        }
    }

    fn period(&mut self, snapshot: &Snapshot) {
        let Some(spec) = self.room.proxy() else {
            self.link = None;
            return;
        };
        if self.link.as_ref().is_some_and(|(s, _)| *s != spec) {
            self.disconnect();
        }
        if self.link.is_none() && !self.connect(spec) {
            return;
        }
        let full_every = self.room.report_hz.max(1) as u64;
        let name = self.room.name().to_string();
        let reporter = self.reporter.get_or_insert_with(|| {
            let instance = u64::from_be_bytes(vnet_proto::auth::random_bytes::<8>());
            Reporter::new(&name, instance, full_every)
        });
        let Some(report) = reporter.next(snapshot()) else {
            return;
        };
        match self.send(report) {
            Ok(()) => {
                self.room.sent.inc();
                self.warned = false;
            }
            Err((why, broken)) => {
                self.room.failed.inc();
                self.warn(&why);
                if broken {
                    self.disconnect();
                    self.retry_later();
                }
            }
        }
    }

    /// Opens the way to the Proxy, unless still backing off; whether it is open.
    fn connect(&mut self, spec: ProxySpec) -> bool {
        if Instant::now() < self.retry_at {
            return false;
        }
        if spec.name == self.room.name() {
            self.link = Some((spec, Sink::Local));
            return true;
        }
        let opened = Client::connect_timeout(spec.addr.as_str(), &self.key, TIMEOUT)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                if c.daemon() == spec.name {
                    Ok(c)
                } else {
                    Err(format!(
                        "{} is served by daemon `{}`",
                        spec.addr,
                        c.daemon()
                    ))
                }
            });
        match opened {
            Ok(client) => {
                tracing::info!(proxy = %spec.name, "VTTIF: connected to the Proxy");
                self.link = Some((spec, Sink::Remote(client)));
                self.backoff = BACKOFF_MIN;
                true
            }
            Err(why) => {
                self.room.failed.inc();
                self.warn(&format!(
                    "cannot reach the Proxy {} at {}: {why}",
                    spec.name, spec.addr
                ));
                self.retry_later();
                false
            }
        }
    }

    /// Sends one report; on failure, why and whether the connection is broken.
    fn send(&mut self, report: Report) -> Result<(), (String, bool)> {
        match &mut self.link {
            Some((_, Sink::Local)) => self.room.ingest(report).map_err(|e| (e.message, false)),
            Some((_, Sink::Remote(client))) => match client.report(&report) {
                Ok(()) => Ok(()),
                Err(ClientError::Daemon(body)) => Err((body.message, false)),
                Err(e) => Err((e.to_string(), true)),
            },
            None => Err(("no Proxy".into(), true)),
        }
    }

    fn disconnect(&mut self) {
        self.link = None;
        // The next connection is a new reporting instance: its first report is a baseline.
        self.reporter = None;
    }

    fn retry_later(&mut self) {
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }

    fn warn(&mut self, why: &str) {
        if !self.warned {
            tracing::warn!("VTTIF: {why}");
            self.warned = true;
        } else {
            tracing::debug!("VTTIF: {why}");
        }
    }
}
