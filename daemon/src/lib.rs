//! vnetd: the VNET forwarding daemon.
//!
//! - [`proto`], [`Client`], [`Key`]: the control protocol, re-exported from the `vnet-proto`
//!   crate (which clients such as `vnetc` use alone).
//! - [`engine`]: forwarding on the grammar crate's [`vnet_grammar::model::Table`], with a
//!   lookup cache; [`wire`]: the overlay link format; [`run`]: the daemon itself.
//!
//! Everything else is `pub(crate)`: the module map and its rules are in ARCHITECTURE.md.

pub(crate) mod control;
pub(crate) mod daemon;
pub(crate) mod dataplane;
pub mod engine;
pub(crate) mod fastpath;
pub(crate) mod identity;
pub(crate) mod iface;
pub(crate) mod lease;
pub(crate) mod link;
pub(crate) mod port;
pub(crate) mod probe;
pub(crate) mod route;
pub(crate) mod stats;
pub(crate) mod store;
pub(crate) mod sys;
pub(crate) mod underlay;
pub(crate) mod vttif;
pub mod wire;

pub use daemon::{run, Config};
pub use dataplane::SpinPolicy;
pub use fastpath::{preflight as fast_path_preflight, ORIGIN as FAST_PATH_OBJECT};
pub use iface::IfaceArg;
pub use vnet_proto::control as proto;
pub use vnet_proto::{auth, client, framing};
pub use vnet_proto::{Change, Client, ClientError, Expect, Key, LinkSpec, Request, Response};
