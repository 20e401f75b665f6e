//! VNET's link cryptography, without IO and without a clock (times are nanosecond
//! arguments): static Curve25519 keys and their text form (`keys`), the Noise IK handshake as
//! a state machine (`handshake`), and sealed records with explicit counters, a replay window
//! and rekeying (`session`, `record`, `replay`), WireGuard's cookie reply against spoofed
//! handshake floods (`cookie`), and resets authenticated by the two static keys (`notice`). The daemon sends what these return and feeds
//! them what it receives, as boringtun's `noise` module is driven by its sockets.

pub mod cookie;
pub mod handshake;
pub mod keys;
pub mod notice;
pub mod record;
pub mod replay;
pub mod session;

pub use cookie::{Cookie, CookieJar, COOKIE_LEN};
pub use handshake::{Accepted, Established, Initiator, Known, Mode, Offer, Refused, Responder};
pub use keys::{KeyError, KeyPair, PrivateKey, PublicKey};
pub use notice::PairKey;
pub use record::{Header, Kind, Reject, Rejects, HEADER_LEN, OVERHEAD, TAG_LEN};
pub use replay::ReplayWindow;
pub use session::{RekeyPolicy, SealError, Session};
