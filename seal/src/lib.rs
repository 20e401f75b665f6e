//! VNET's link cryptography, without IO and without a clock (times are nanosecond
//! arguments): static Curve25519 keys and their text form (`keys`), the Noise IK handshake as
//! a state machine (`handshake`), and sealed records with explicit counters, a replay window
//! and rekeying (`session`, `record`, `replay`). The daemon sends what these return and feeds
//! them what it receives, as boringtun's `noise` module is driven by its sockets.

pub mod handshake;
pub mod keys;
pub mod record;
pub mod replay;
pub mod session;

pub use handshake::{Accepted, Established, Initiator, Known, Mode, Offer, Refused, Responder};
pub use keys::{KeyError, KeyPair, PrivateKey, PublicKey};
pub use record::{Kind, Reject, Rejects, HEADER_LEN, OVERHEAD, TAG_LEN};
pub use replay::ReplayWindow;
pub use session::{RekeyPolicy, SealError, Session};
