//! vnetd: the VNET forwarding daemon, and the client library of its control protocol.
//!
//! - [`proto`]: the control protocol's messages (the one definition of the wire format).
//! - [`Client`]: a blocking client of that protocol (used by `vnetc` and the tests).
//! - [`Key`]: the pre-shared control key and its challenge-response.
//! - [`engine`]: forwarding on the grammar crate's [`vnet_grammar::model::Table`], with a
//!   lookup cache; [`wire`]: the overlay link format; [`daemon`]: the daemon itself.

pub mod auth;
pub mod client;
pub mod daemon;
pub mod engine;
pub mod fastpath;
pub mod iface;
pub mod lease;
pub mod link;
pub mod proto;
pub mod stats;
pub mod store;
pub mod sys;
pub mod wire;

pub use auth::Key;
pub use client::{Client, ClientError};
pub use daemon::Config;
pub use proto::{Change, Expect, LinkSpec, Request, Response};
