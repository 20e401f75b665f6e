//! VTTIF (thesis section 4, SPEC 5.1) as logic without IO, in the manner of quinn-proto: the
//! callers own the clock, the sockets and the threads, and hand this crate values.
//!
//! - [`report`]: what a daemon sends the Proxy (cumulative counters of the pairs that changed,
//!   and periodically all of them), and the [`Reporter`] that decides what to send.
//! - [`history`]: one pair's traffic as time buckets, enough for any window up to 60 s.
//! - [`view`]: the Proxy's global matrix built from reports: who talks to whom, at what rate,
//!   where each MAC was last seen, with every table capped.
//! - [`tracker`]: the topology over time for one (window, threshold): changes, settling, and
//!   the configuration-time bound.
//! - [`infer`]: the `.vnet` that gives every inferred pair a one-hop path.
//!
//! Time is [`Millis`] on a monotonic clock of the caller's choosing.

pub mod history;
pub mod infer;
pub mod report;
pub mod tracker;
pub mod view;

pub use report::{PairCount, Report, Reporter};
pub use tracker::{Event, Tracker};
pub use view::{Answer, Limits, PairRate, Refusal, View};

/// Milliseconds on the caller's monotonic clock.
pub type Millis = u64;

/// The width of one history bucket: one report period at the thesis's fastest rate (20 Hz).
pub const BUCKET_MS: Millis = 50;

/// The longest smoothing window a query may ask for (SPEC 5.1: at least 60 s).
pub const MAX_WINDOW_MS: Millis = 60_000;
