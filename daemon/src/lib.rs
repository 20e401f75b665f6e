//! vnetd: the VNET forwarding daemon.
//!
//! - [`proto`], [`Client`], [`Key`]: the control protocol, re-exported from the `vnet-proto`
//!   crate (which clients such as `vnetc` use alone).
//! - [`engine`]: forwarding on the grammar crate's [`vnet_grammar::model::Table`], with a
//!   lookup cache; [`wire`]: the overlay link format; [`daemon`]: the daemon itself.

pub(crate) mod control;
pub mod daemon;
pub(crate) mod dataplane;
pub mod engine;
pub mod fastpath;
pub mod iface;
pub mod lease;
pub mod link;
pub(crate) mod port;
pub mod stats;
pub mod store;
pub mod sys;
pub mod wire;

pub use daemon::Config;
pub use vnet_proto::control as proto;
pub use vnet_proto::{auth, client, framing};
pub use vnet_proto::{Change, Client, ClientError, Expect, Key, LinkSpec, Request, Response};
