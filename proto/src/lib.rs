//! The control protocol of `vnetd`, shared by the daemon and its clients (`vnetc`, tests):
//!
//! - [`control`]: the messages, the one definition of the protocol's JSON (pinned by the
//!   golden file `tests/snapshots/golden__protocol.snap`);
//! - [`framing`]: the one implementation of the `u32 length ‖ payload` framing that control
//!   connections and TCP overlay links use;
//! - [`report`]: the binary frame that carries a VTTIF report (the one message not in JSON);
//! - [`Client`]: a blocking client of the protocol;
//! - [`Key`] ([`auth`]): the pre-shared key and the HMAC-SHA256 challenge-response on it.
//!
//! No sockets of the daemon, no async runtime: a client needs only this crate.

pub mod auth;
pub mod client;
pub mod control;
pub mod framing;
pub mod report;

pub use auth::Key;
pub use client::{Client, ClientError};
pub use control::{Change, Expect, LinkSpec, Request, Response};
