//! VTTIF in the daemon (SPEC 5.1): who the Proxy is, the reporter that sends this daemon's
//! traffic matrix to it, and — on the Proxy — the one owner of the global view.
//!
//! - [`Vttif`]: the room. It holds the Proxy setting (persisted in the state directory, so a
//!   restarted daemon reports as before), the counters, and the Proxy's thread when this daemon
//!   is the Proxy. Sessions ask it to take reports and answer queries.
//! - [`reporter`]: a thread of its own (never the forwarding thread) that snapshots the matrix
//!   every period, lets `vnet_vttif::Reporter` decide what to send, and sends it over the
//!   authenticated control protocol, reconnecting with backoff.
//! - [`proxy`]: a thread that owns the `vnet_vttif::View`: it ingests, ticks and answers, so
//!   nothing else ever holds the view or a lock on it.
//!
//! The rates, intensities and topologies are computed by `vnet_vttif` only.

pub(crate) mod proxy;
pub(crate) mod reporter;

use crate::proto::{ErrorBody, ErrorCode, ProxySpec, VttifState};
use crate::stats::Counter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use vnet_proto::report::DecodeError;
use vnet_vttif::{Answer, Report};

/// The file in the state directory that remembers the Proxy.
const PROXY_FILE: &str = "proxy.json";

/// Why the Proxy refused a report; each has a counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// This daemon is not the Proxy (or was never told who is).
    NotProxy,
    /// The reporter is not one of the daemons the Proxy was told about.
    UnknownDaemon,
    /// Not a report, or a report that fails its checks.
    Malformed,
    /// Over `vnet_proto::report::MAX_FRAME` bytes, too many pairs, or too long a name.
    Oversized,
    /// The view's daemon cap, or the Proxy's queue, is full.
    TooMany,
}

const REFUSALS: [Refused; 5] = [
    Refused::NotProxy,
    Refused::UnknownDaemon,
    Refused::Malformed,
    Refused::Oversized,
    Refused::TooMany,
];

impl Refused {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Refused::NotProxy => "not_proxy",
            Refused::UnknownDaemon => "unknown_daemon",
            Refused::Malformed => "malformed",
            Refused::Oversized => "oversized",
            Refused::TooMany => "too_many_daemons",
        }
    }
}

/// The VTTIF room of one daemon.
pub(crate) struct Vttif {
    name: String,
    state_dir: PathBuf,
    pub(crate) report_hz: u32,
    started: Instant,
    proxy: Mutex<Option<ProxySpec>>,
    /// The view's owner, while this daemon is the Proxy.
    view: Mutex<Option<proxy::Handle>>,
    pub(crate) sent: Counter,
    pub(crate) failed: Counter,
    /// Reports the view took, and those it refused after they were queued.
    view_counts: Arc<proxy::Counts>,
    refused: [Counter; REFUSALS.len()],
    stopping: AtomicBool,
}

impl Vttif {
    /// The room of daemon `name`, with the Proxy remembered in `state_dir` unless `fresh`.
    pub(crate) fn new(name: &str, state_dir: &Path, report_hz: u32, fresh: bool) -> Arc<Vttif> {
        let saved = if fresh { None } else { load(state_dir) };
        let v = Arc::new(Vttif {
            name: name.to_string(),
            state_dir: state_dir.to_path_buf(),
            report_hz,
            started: Instant::now(),
            proxy: Mutex::new(None),
            view: Mutex::new(None),
            sent: Counter::default(),
            failed: Counter::default(),
            view_counts: Arc::default(),
            refused: Default::default(),
            stopping: AtomicBool::new(false),
        });
        if let Some(spec) = saved {
            v.install(spec);
        }
        v
    }

    pub(crate) fn proxy(&self) -> Option<ProxySpec> {
        self.proxy.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// `SetProxy`: remembers the Proxy (on disk first) and starts or stops this daemon's view.
    /// Returns whether anything changed.
    pub(crate) fn set_proxy(&self, spec: ProxySpec) -> Result<bool, ErrorBody> {
        let invalid = |message: String| ErrorBody {
            code: ErrorCode::Invalid,
            message,
        };
        if spec.name.is_empty() || spec.addr.is_empty() {
            return Err(invalid("the Proxy needs a name and an address".into()));
        }
        if !spec.members.contains(&spec.name) || !spec.members.contains(&self.name) {
            return Err(invalid(format!(
                "the members of the Proxy must include the Proxy `{}` and this daemon `{}`",
                spec.name, self.name
            )));
        }
        if self.proxy().as_ref() == Some(&spec) {
            return Ok(false);
        }
        save(&self.state_dir, &spec).map_err(|e| ErrorBody {
            code: ErrorCode::Internal,
            message: format!("could not save the Proxy setting (nothing changed): {e}"),
        })?;
        self.install(spec);
        Ok(true)
    }

    fn install(&self, spec: ProxySpec) {
        let me = spec.name == self.name;
        tracing::info!(proxy = %spec.name, addr = %spec.addr, "VTTIF: reporting to the Proxy");
        *self.proxy.lock().unwrap_or_else(|e| e.into_inner()) = Some(spec);
        let mut view = self.view.lock().unwrap_or_else(|e| e.into_inner());
        match (me, view.is_some()) {
            (true, false) => *view = proxy::Handle::start(self.started, self.view_counts.clone()),
            (false, true) => *view = None,
            _ => {}
        }
    }

    fn view(&self) -> Option<proxy::Handle> {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Counts a refused report and says why.
    pub(crate) fn refuse(&self, why: Refused, message: String) -> ErrorBody {
        self.refused[why as usize].inc();
        ErrorBody {
            code: ErrorCode::Invalid,
            message: format!("report refused ({}): {message}", why.name()),
        }
    }

    /// A binary report frame (`vnet_proto::report`), received at this daemon as the Proxy:
    /// decoded, then taken as [`Vttif::ingest`] does. Returns the frame's request id (0 when
    /// the frame is too short to carry one) and the outcome.
    pub(crate) fn ingest_frame(&self, frame: &[u8]) -> (u64, Result<(), ErrorBody>) {
        let id = vnet_proto::report::request_id(frame).unwrap_or(0);
        let (why, kind) = match vnet_proto::report::decode(frame) {
            Ok((id, report)) => return (id, self.ingest(report)),
            Err(DecodeError::Oversized(why)) => (why, Refused::Oversized),
            Err(DecodeError::Malformed(why)) => (why, Refused::Malformed),
        };
        let error = ErrorBody {
            code: ErrorCode::Malformed,
            ..self.refuse(kind, why)
        };
        (id, Err(error))
    }

    /// A report, received at this daemon as the Proxy: checked, then queued for the view
    /// (which refuses, and counts as `too_many_daemons`, a daemon over its cap).
    pub(crate) fn ingest(&self, report: Report) -> Result<(), ErrorBody> {
        let Some(spec) = self.proxy().filter(|p| p.name == self.name) else {
            return Err(self.refuse(Refused::NotProxy, "this daemon is not the Proxy".into()));
        };
        if let Err(why) = report.check() {
            let kind = if report.pairs.len() > vnet_vttif::report::MAX_PAIRS
                || report.daemon.len() > vnet_vttif::report::MAX_NAME
            {
                Refused::Oversized
            } else {
                Refused::Malformed
            };
            return Err(self.refuse(kind, why));
        }
        if !spec.members.contains(&report.daemon) {
            let why = format!("daemon `{}` is not in this Proxy's file", report.daemon);
            return Err(self.refuse(Refused::UnknownDaemon, why));
        }
        let Some(view) = self.view() else {
            return Err(self.refuse(Refused::NotProxy, "the view is not running".into()));
        };
        view.ingest(report).map_err(|proxy::Full| {
            self.refuse(Refused::TooMany, "the Proxy's queue is full".into())
        })
    }

    /// `Infer`: the Proxy's answer; `bound_ms` is the configuration-time bound.
    pub(crate) fn infer(
        &self,
        window_ms: u64,
        threshold_ppm: u32,
        bound_ms: u64,
    ) -> Result<Answer, ErrorBody> {
        let invalid = |message: String| ErrorBody {
            code: ErrorCode::Invalid,
            message,
        };
        let view = match (self.proxy(), self.view()) {
            (_, Some(view)) => view,
            (Some(p), None) => {
                return Err(invalid(format!(
                    "daemon {} is not the Proxy: ask {} at {}",
                    self.name, p.name, p.addr
                )))
            }
            (None, None) => {
                return Err(invalid(format!(
                    "daemon {} was never told who the Proxy is (`vnetc apply FILE` tells it)",
                    self.name
                )))
            }
        };
        let threshold = threshold_ppm as f64 / 1e6;
        view.query(window_ms, threshold, bound_ms).map_err(invalid)
    }

    /// The heaviest pairs over `window_ms` (for the metrics), when this daemon is the Proxy.
    pub(crate) fn top_pairs(&self, window_ms: u64, n: usize) -> Vec<vnet_vttif::PairRate> {
        match self.view() {
            Some(view) => view.top(window_ms, n),
            None => Vec::new(),
        }
    }

    pub(crate) fn state(&self) -> VttifState {
        let (pairs, dropped) = self.view().map_or((0, 0), |v| v.sizes());
        VttifState {
            proxy: self.proxy(),
            report_hz: self.report_hz,
            reports_sent: self.sent.get(),
            reports_failed: self.failed.get(),
            reports_taken: self.view_counts.taken.get(),
            refused: REFUSALS
                .iter()
                .map(|r| (r.name().to_string(), self.refused(*r)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            pairs,
            dropped,
        }
    }

    fn refused(&self, why: Refused) -> u64 {
        let late = match why {
            Refused::TooMany => self.view_counts.refused.get(),
            _ => 0,
        };
        self.refused[why as usize].get() + late
    }

    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

fn load(dir: &Path) -> Option<ProxySpec> {
    let text = std::fs::read(dir.join(PROXY_FILE)).ok()?;
    match serde_json::from_slice(&text) {
        Ok(spec) => Some(spec),
        Err(e) => {
            tracing::warn!("ignoring {}: {e}", dir.join(PROXY_FILE).display());
            None
        }
    }
}

/// Written to a temporary file and renamed over the old one, so a crash leaves either.
fn save(dir: &Path, spec: &ProxySpec) -> std::io::Result<()> {
    let text = serde_json::to_vec(spec).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{PROXY_FILE}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(PROXY_FILE))
}
