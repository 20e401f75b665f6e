//! The link handshake, Noise IK (`Noise_IK_25519_ChaChaPoly_BLAKE2s`) through `snow`, as a
//! state machine without IO: the caller sends the bytes it is given and passes in what came
//! back and the time.
//!
//! The dialer of a link initiates; it knows the listener's static key (pinned by `vnetc
//! up`/`apply`). The first message carries, encrypted and bound to both static keys, the
//! initiator's `Hello`: protocol version, the record mode it offers, the epoch of the new keys
//! and its clock (a responder refuses a hello not newer than the last one it accepted from the
//! same key: a replayed first message cannot start a session). The reply carries the mode the
//! responder chose. A peer offering clear records when this side requires sealed ones is a
//! `Refused::Downgrade`; since the offer is inside the Noise messages, a network attacker
//! cannot turn a sealed offer into a clear one.

use crate::keys::{KeyPair, PublicKey, KEY_LEN};
use crate::record::{Kind, HANDSHAKE_PREFIX};
use crate::session::Session;
use std::fmt;

const PATTERN: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Binds both sides to this protocol and version before any key is mixed in.
const PROLOGUE: &[u8] = b"vnet-seal 1";
const VERSION: u8 = 1;
const HELLO_LEN: usize = 14;
const ANSWER_LEN: usize = 2;
/// The largest handshake message either side sends (IK's first: e, s and tags, plus hello).
pub const MAX_HANDSHAKE: usize = HANDSHAKE_PREFIX + 32 + 48 + HELLO_LEN + 16;

/// How a link's frames travel once the handshake is done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// In records of this crate.
    Sealed,
    /// In clear, after an authenticated handshake (`--insecure-links`, for measurements).
    Clear,
}

impl Mode {
    fn byte(self) -> u8 {
        match self {
            Mode::Sealed => 1,
            Mode::Clear => 2,
        }
    }

    fn from_byte(b: u8) -> Option<Mode> {
        match b {
            1 => Some(Mode::Sealed),
            2 => Some(Mode::Clear),
            _ => None,
        }
    }
}

/// Why a handshake did not complete. Each is a counter in the daemon's statistics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The peer's static key is not the one configured for any link.
    UnknownKey(PublicKey),
    /// Not a handshake message of the expected kind and length, or a bad payload.
    Malformed(&'static str),
    /// Authentication failed: the message was sealed for another key, or altered.
    Decrypt,
    /// The peer offered clear records where sealed ones are required.
    Downgrade,
    /// A first message not newer than one already accepted from this key (a replay).
    Replayed,
    /// Another protocol version.
    Version(u8),
    /// The Noise library failed on its own (not the peer's fault).
    Internal(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::UnknownKey(k) => write!(f, "unknown peer key {} ({})", k.fingerprint(), k),
            Refused::Malformed(what) => write!(f, "malformed handshake: {what}"),
            Refused::Decrypt => write!(f, "handshake failed authentication"),
            Refused::Downgrade => write!(f, "peer offered clear records where sealed are required"),
            Refused::Replayed => write!(f, "replayed handshake"),
            Refused::Version(v) => write!(f, "handshake version {v}, this side speaks {VERSION}"),
            Refused::Internal(e) => write!(f, "noise: {e}"),
        }
    }
}

impl std::error::Error for Refused {}

impl Refused {
    /// The counter's name in statistics.
    pub fn name(&self) -> &'static str {
        match self {
            Refused::UnknownKey(_) => "unknown_key",
            Refused::Malformed(_) => "malformed",
            Refused::Decrypt => "decrypt",
            Refused::Downgrade => "downgrade",
            Refused::Replayed => "replayed",
            Refused::Version(_) => "version",
            Refused::Internal(_) => "internal",
        }
    }
}

/// What the initiator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    pub mode: Mode,
    /// The new keys' epoch: 0 for a link's first handshake, one more at each rekey.
    pub epoch: u32,
}

/// A completed handshake.
#[derive(Debug)]
pub struct Established {
    pub session: Session,
    pub peer: PublicKey,
    pub mode: Mode,
}

/// What the responder's lookup says about a peer's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Known {
    /// The clock of the last hello accepted from this key, if any.
    pub last_hello_ns: Option<u64>,
}

/// A first message accepted: send `reply`, keep `established`, and remember `hello_ns` as the
/// peer's `Known::last_hello_ns`.
#[derive(Debug)]
pub struct Accepted {
    pub reply: Vec<u8>,
    pub established: Established,
    pub hello_ns: u64,
}

fn params() -> Result<snow::params::NoiseParams, Refused> {
    PATTERN
        .parse()
        .map_err(|e: snow::Error| Refused::Internal(e.to_string()))
}

fn internal(e: snow::Error) -> Refused {
    Refused::Internal(e.to_string())
}

fn noise_body(message: &[u8], kind: Kind) -> Result<&[u8], Refused> {
    if Kind::of(message) != Some(kind) {
        return Err(Refused::Malformed("wrong message type"));
    }
    if message.len() > MAX_HANDSHAKE {
        return Err(Refused::Malformed("too long"));
    }
    Ok(&message[HANDSHAKE_PREFIX..])
}

fn read_noise(state: &mut snow::HandshakeState, body: &[u8]) -> Result<Vec<u8>, Refused> {
    let mut payload = vec![0u8; body.len()];
    let n = state
        .read_message(body, &mut payload)
        .map_err(|e| match e {
            snow::Error::Decrypt => Refused::Decrypt,
            _ => Refused::Malformed("bad noise message"),
        })?;
    payload.truncate(n);
    Ok(payload)
}

fn write_noise(
    state: &mut snow::HandshakeState,
    kind: Kind,
    payload: &[u8],
) -> Result<Vec<u8>, Refused> {
    let mut out = vec![0u8; MAX_HANDSHAKE];
    out[..HANDSHAKE_PREFIX].copy_from_slice(&[kind as u8, 0, 0, 0]);
    let n = state
        .write_message(payload, &mut out[HANDSHAKE_PREFIX..])
        .map_err(internal)?;
    out.truncate(HANDSHAKE_PREFIX + n);
    Ok(out)
}

/// The dialer's side, between its first message and the reply.
pub struct Initiator {
    state: snow::HandshakeState,
    peer: PublicKey,
    offer: Offer,
    now_ns: u64,
}

impl fmt::Debug for Initiator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initiator")
            .field("peer", &self.peer)
            .field("offer", &self.offer)
            .finish()
    }
}

impl Initiator {
    /// Starts a handshake with `peer`; returns the state and the first message to send.
    /// `now_ns` must grow from one handshake to the next (wall-clock time survives restarts).
    pub fn new(
        local: &KeyPair,
        peer: &PublicKey,
        offer: Offer,
        now_ns: u64,
    ) -> Result<(Initiator, Vec<u8>), Refused> {
        let mut state = snow::Builder::new(params()?)
            .prologue(PROLOGUE)
            .and_then(|b| b.local_private_key(local.private.as_bytes()))
            .and_then(|b| b.remote_public_key(peer.as_bytes()))
            .and_then(|b| b.build_initiator())
            .map_err(internal)?;
        let mut hello = [0u8; HELLO_LEN];
        hello[0] = VERSION;
        hello[1] = offer.mode.byte();
        hello[2..6].copy_from_slice(&offer.epoch.to_le_bytes());
        hello[6..14].copy_from_slice(&now_ns.to_le_bytes());
        let message = write_noise(&mut state, Kind::Init, &hello)?;
        Ok((
            Initiator {
                state,
                peer: *peer,
                offer,
                now_ns,
            },
            message,
        ))
    }

    /// Finishes the handshake with the responder's reply.
    pub fn on_reply(mut self, message: &[u8]) -> Result<Established, Refused> {
        let payload = read_noise(&mut self.state, noise_body(message, Kind::Reply)?)?;
        if payload.len() != ANSWER_LEN {
            return Err(Refused::Malformed("reply payload length"));
        }
        if payload[0] != VERSION {
            return Err(Refused::Version(payload[0]));
        }
        let mode = Mode::from_byte(payload[1]).ok_or(Refused::Malformed("unknown mode"))?;
        if mode == Mode::Clear && self.offer.mode == Mode::Sealed {
            return Err(Refused::Downgrade);
        }
        let (to_responder, to_initiator) = self.state.dangerously_get_raw_split();
        let session = Session::new(
            self.offer.epoch,
            &to_responder,
            &to_initiator,
            true,
            self.now_ns,
        );
        Ok(Established {
            session,
            peer: self.peer,
            mode,
        })
    }
}

/// The listener's side: answers first messages, one at a time, keeping no state between them.
pub struct Responder {
    local: KeyPair,
    require_sealed: bool,
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("public", &self.local.public)
            .finish()
    }
}

impl Responder {
    /// `require_sealed` is false only under `--insecure-links`.
    pub fn new(local: &KeyPair, require_sealed: bool) -> Responder {
        Responder {
            local: local.clone(),
            require_sealed,
        }
    }

    /// Answers a first message. `lookup` says whether the (authenticated) initiator key is one
    /// a link was configured with; it is asked only after the message decrypted.
    pub fn on_message(
        &self,
        message: &[u8],
        now_ns: u64,
        lookup: impl FnOnce(&PublicKey) -> Option<Known>,
    ) -> Result<Accepted, Refused> {
        let body = noise_body(message, Kind::Init)?;
        let mut state = snow::Builder::new(params()?)
            .prologue(PROLOGUE)
            .and_then(|b| b.local_private_key(self.local.private.as_bytes()))
            .and_then(|b| b.build_responder())
            .map_err(internal)?;
        let hello = read_noise(&mut state, body)?;
        let peer = remote_key(&state)?;
        let known = lookup(&peer).ok_or(Refused::UnknownKey(peer))?;
        let (offer, hello_ns) = parse_hello(&hello)?;
        if known.last_hello_ns.is_some_and(|last| hello_ns <= last) {
            return Err(Refused::Replayed);
        }
        if offer.mode == Mode::Clear && self.require_sealed {
            return Err(Refused::Downgrade);
        }
        let reply = write_noise(&mut state, Kind::Reply, &[VERSION, offer.mode.byte()])?;
        let (to_responder, to_initiator) = state.dangerously_get_raw_split();
        let session = Session::new(offer.epoch, &to_initiator, &to_responder, false, now_ns);
        Ok(Accepted {
            reply,
            established: Established {
                session,
                peer,
                mode: offer.mode,
            },
            hello_ns,
        })
    }
}

fn remote_key(state: &snow::HandshakeState) -> Result<PublicKey, Refused> {
    let bytes: [u8; KEY_LEN] = state
        .get_remote_static()
        .and_then(|k| k.try_into().ok())
        .ok_or(Refused::Malformed("no initiator key"))?;
    Ok(PublicKey::from_bytes(bytes))
}

fn parse_hello(hello: &[u8]) -> Result<(Offer, u64), Refused> {
    if hello.len() != HELLO_LEN {
        return Err(Refused::Malformed("hello payload length"));
    }
    if hello[0] != VERSION {
        return Err(Refused::Version(hello[0]));
    }
    let mode = Mode::from_byte(hello[1]).ok_or(Refused::Malformed("unknown mode"))?;
    let mut epoch = [0u8; 4];
    epoch.copy_from_slice(&hello[2..6]);
    let mut time = [0u8; 8];
    time.copy_from_slice(&hello[6..14]);
    Ok((
        Offer {
            mode,
            epoch: u32::from_le_bytes(epoch),
        },
        u64::from_le_bytes(time),
    ))
}
