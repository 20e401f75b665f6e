//! Sealed links in the daemon (issue 14): the Noise IK handshake of `vnet-seal` carried in
//! the link handshake's HELLO and CHALLENGE, each link's record keys, and the sealing and
//! opening of link messages on both transports.
//!
//! A sealed link message is a `vnet-seal` record whose plaintext is the clear message (link
//! header and body): a UDP datagram is one record; a TCP message is its 4-byte length and one
//! record. The first byte tells records (4) from clear messages ([`crate::wire::MAGIC`]), so
//! handshakes, keepalives and resets stay clear and everything after the handshake is sealed.
//! The dialer starts every handshake, the first and each rekey (by time or volume, checked by
//! its keepalive or connection loop); the epoch of the first is 0, so a listener replaces the
//! keys of a restarted dialer and takes a rekey's keys in beside the old ones.

use super::handshake::Refused;
use super::{Link, UdpPort};
use crate::auth::{hex, unhex};
use crate::proto::LinkSecurity;
use crate::stats::{Counter, DropReason};
use crate::wire::{self, Frame};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};
use vnet_seal::{
    Established, Initiator, KeyPair, Known, Mode, Offer, PublicKey, Reject, RekeyPolicy, Responder,
    Session, OVERHEAD,
};

/// Nanoseconds of wall-clock time: hellos must be newer than the last one accepted from a key
/// even across restarts, which a monotonic clock does not give.
pub(crate) fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The daemon's side of every link's cryptography: its key pair, whether links must be
/// sealed, the rekey policy and the handshake rate limit.
pub(crate) struct Crypto {
    pub keys: KeyPair,
    /// `--insecure-links`: offer (and accept) clear records.
    pub insecure: bool,
    pub policy: RekeyPolicy,
    responder: Responder,
    limit: Mutex<Limiter>,
}

impl Crypto {
    pub fn new(keys: KeyPair, insecure: bool, policy: RekeyPolicy) -> Crypto {
        Crypto {
            responder: Responder::new(&keys, !insecure),
            keys,
            insecure,
            policy,
            limit: Mutex::new(Limiter::default()),
        }
    }

    fn mode(&self) -> Mode {
        if self.insecure {
            Mode::Clear
        } else {
            Mode::Sealed
        }
    }

    /// Starts the dialer's Noise handshake for `link`: the state and the message for HELLO.
    /// `None` (no Noise) only under `--insecure-links` for a link without a pinned key.
    pub fn offer(&self, link: &Link) -> Result<Option<(Initiator, String)>, Refused> {
        let Some(peer) = link.peer_key else {
            return if self.insecure {
                Ok(None)
            } else {
                Err(Refused::NoPeerKey)
            };
        };
        let offer = Offer {
            mode: self.mode(),
            epoch: link.next_epoch(),
        };
        let (init, msg) =
            Initiator::new(&self.keys, &peer, offer, wall_ns()).map_err(Refused::Seal)?;
        Ok(Some((init, hex(&msg))))
    }

    /// The dialer's end: the listener's Noise reply from its CHALLENGE.
    pub fn finish(
        &self,
        init: Option<Initiator>,
        reply: Option<&str>,
    ) -> Result<Option<Established>, Refused> {
        match (init, reply) {
            (None, None) if self.insecure => Ok(None),
            (Some(init), Some(reply)) => {
                let bytes = unhex(reply).ok_or(Refused::Seal(vnet_seal::Refused::Malformed(
                    "reply is not hex",
                )))?;
                init.on_reply(&bytes).map(Some).map_err(Refused::Seal)
            }
            _ => Err(Refused::Seal(vnet_seal::Refused::Downgrade)),
        }
    }

    /// The listener's answer to a HELLO's Noise message from `from` for `link`: the reply for
    /// CHALLENGE and the keys to install once the proof holds. Rate-limited per source address
    /// and overall, before any public-key work.
    pub fn answer(
        &self,
        link: &Link,
        noise: Option<&str>,
        from: IpAddr,
    ) -> Result<Option<(Established, String)>, Refused> {
        let Some(noise) = noise else {
            return if self.insecure {
                Ok(None)
            } else {
                Err(Refused::Seal(vnet_seal::Refused::Downgrade))
            };
        };
        if !lock(&self.limit).allow(from, std::time::Instant::now()) {
            return Err(Refused::RateLimited);
        }
        let bytes = unhex(noise).ok_or(Refused::Seal(vnet_seal::Refused::Malformed(
            "hello is not hex",
        )))?;
        let last = lock(&link.seal).last_hello_ns;
        let pinned = link.peer_key;
        let accepted = self
            .responder
            .on_message(&bytes, wall_ns(), |k| {
                (Some(*k) == pinned).then_some(Known {
                    last_hello_ns: last,
                })
            })
            .map_err(Refused::Seal)?;
        lock(&link.seal).last_hello_ns = Some(accepted.hello_ns);
        Ok(Some((accepted.established, hex(&accepted.reply))))
    }
}

/// Handshakes answered per second from one address, and from all together: a flood costs
/// the listener at most this many Diffie-Hellman computations, and leaves the forwarding
/// thread (which never handshakes) alone.
const PER_SOURCE: f64 = 20.0;
const OVERALL: f64 = 200.0;

/// Token buckets of handshakes, per source address and overall.
#[derive(Default)]
struct Limiter {
    sources: HashMap<IpAddr, (f64, std::time::Instant)>,
    all: Option<(f64, std::time::Instant)>,
}

fn take(bucket: &mut (f64, std::time::Instant), rate: f64, now: std::time::Instant) -> bool {
    let refill = now.saturating_duration_since(bucket.1).as_secs_f64() * rate;
    bucket.0 = (bucket.0 + refill).min(rate);
    bucket.1 = now;
    if bucket.0 >= 1.0 {
        bucket.0 -= 1.0;
        true
    } else {
        false
    }
}

impl Limiter {
    fn allow(&mut self, from: IpAddr, now: std::time::Instant) -> bool {
        if self.sources.len() > 4096 {
            // Forget sources that have refilled (bounded memory under a spoofed flood).
            self.sources
                .retain(|_, b| now.saturating_duration_since(b.1).as_secs_f64() < 1.0);
        }
        let source = self.sources.entry(from).or_insert((PER_SOURCE, now));
        if !take(source, PER_SOURCE, now) {
            return false;
        }
        take(self.all.get_or_insert((OVERALL, now)), OVERALL, now)
    }
}

/// One link's record state.
#[derive(Default)]
pub(crate) struct SealState {
    session: Option<Session>,
    peer: Option<PublicKey>,
    mode: Option<Mode>,
    /// The clock of the last hello accepted from the peer (a replayed one is refused).
    last_hello_ns: Option<u64>,
    /// Sealed TCP messages are built here (under the link's send lock).
    out: Vec<u8>,
}

/// What a link keeps for sealing: the state, whether it is sealed (read per frame without
/// the lock), and how many handshakes completed.
#[derive(Default)]
pub(crate) struct LinkSeal {
    state: Mutex<SealState>,
    sealed: AtomicBool,
    pub handshakes: Counter,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::ops::Deref for LinkSeal {
    type Target = Mutex<SealState>;
    fn deref(&self) -> &Mutex<SealState> {
        &self.state
    }
}

fn seal_error(e: vnet_seal::SealError) -> io::Error {
    io::Error::other(e.to_string())
}

/// The drop counter of a refused record.
pub(crate) fn reject_reason(r: Reject) -> DropReason {
    match r {
        Reject::Truncated => DropReason::Truncated,
        Reject::Replay | Reject::TooOld => DropReason::Replay,
        Reject::Malformed | Reject::UnknownEpoch | Reject::BadTag => DropReason::BadRecord,
    }
}

/// Whether a link message is a sealed record rather than a clear message.
pub(crate) fn is_record(msg: &[u8]) -> bool {
    msg.first() == Some(&(vnet_seal::Kind::Data as u8))
}

impl Link {
    /// Whether this link's frames travel in records (read per frame, without a lock).
    pub fn is_sealed(&self) -> bool {
        self.seal.sealed.load(Ordering::Acquire)
    }

    /// The epoch the dialer's next handshake asks for: 0 for a link that is down (the
    /// listener replaces its keys), one more than the keys in use for a rekey.
    fn next_epoch(&self) -> u32 {
        let st = lock(&self.seal);
        match &st.session {
            Some(s) if self.is_up() => s.epoch().wrapping_add(1),
            _ => 0,
        }
    }

    /// Takes in the keys of a completed handshake (`None`: a clear link without Noise).
    pub(crate) fn install(&self, est: Option<Established>, policy: &RekeyPolicy) {
        let mut st = lock(&self.seal);
        self.seal.handshakes.inc();
        let Some(est) = est else {
            *st = SealState {
                last_hello_ns: st.last_hello_ns,
                ..SealState::default()
            };
            self.seal.sealed.store(false, Ordering::Release);
            return;
        };
        let now = wall_ns();
        let sealed = est.mode == Mode::Sealed;
        st.peer = Some(est.peer);
        st.mode = Some(est.mode);
        match st.session.as_mut() {
            Some(s) if sealed && est.session.epoch() != 0 && self.is_up() => {
                s.install(est.session, now, policy)
            }
            _ => st.session = sealed.then_some(est.session),
        }
        self.seal.sealed.store(sealed, Ordering::Release);
        let fp = est.peer.fingerprint();
        tracing::info!(link = %self.peer, peer_key = %fp, mode = ?est.mode, "link keys installed");
    }

    /// Whether the dialer should start a new handshake now (time or volume of the keys).
    pub(crate) fn needs_rekey(&self, policy: &RekeyPolicy) -> bool {
        let st = lock(&self.seal);
        st.session
            .as_ref()
            .is_some_and(|s| s.needs_rekey(wall_ns(), policy))
    }

    /// The security state for `show`/`list-links`, when the link is up.
    pub(crate) fn security(&self) -> Option<LinkSecurity> {
        if !self.is_up() {
            return None;
        }
        let st = lock(&self.seal);
        let mode = match st.mode {
            Some(Mode::Sealed) => "sealed",
            Some(Mode::Clear) => "clear",
            // Up without Noise: `--insecure-links` and no pinned key.
            None => "clear-unauthenticated-key",
        };
        Some(LinkSecurity {
            mode: mode.into(),
            peer_key: st.peer.map(|k| k.fingerprint()).unwrap_or_default(),
            epoch: st.session.as_ref().map_or(0, |s| s.epoch()),
            handshakes: self.seal.handshakes.get(),
        })
    }

    /// Opens a sealed UDP datagram into `out`; the clear link message it held.
    pub(crate) fn open_datagram<'a>(
        &self,
        record: &[u8],
        out: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], DropReason> {
        let mut st = lock(&self.seal);
        let Some(s) = st.session.as_mut() else {
            return Err(DropReason::Downgrade);
        };
        let n = s.open_into(wall_ns(), record, out).map_err(reject_reason)?;
        Ok(&out[..n])
    }

    /// Opens a sealed TCP message body in place; the length of the clear message now at
    /// `record[HEADER_LEN..]`.
    pub(crate) fn open_in_place(&self, record: &mut [u8]) -> Result<usize, DropReason> {
        let mut st = lock(&self.seal);
        let Some(s) = st.session.as_mut() else {
            return Err(DropReason::Downgrade);
        };
        s.open(wall_ns(), record)
            .map(|p| p.len())
            .map_err(reject_reason)
    }

    /// Seals a TCP link message (`u32 length ‖ clear message`) and passes the sealed one
    /// (`u32 length ‖ record`) to `send`.
    pub(crate) fn seal_tcp<R>(&self, msg: &[u8], send: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
        let mut st = lock(&self.seal);
        let SealState { session, out, .. } = &mut *st;
        let s = session
            .as_mut()
            .ok_or_else(|| io::Error::other("no keys"))?;
        let clear = &msg[4..];
        out.resize(4 + clear.len() + OVERHEAD, 0);
        let n = s.seal(clear, &mut out[4..]).map_err(seal_error)?;
        out[..4].copy_from_slice(&crate::framing::header(n));
        Ok(send(&out[..4 + n]))
    }
}

/// Scratch space of the forwarding thread for sealing and opening UDP datagrams.
#[derive(Default)]
pub(crate) struct SealScratch {
    /// Clear fragments before sealing.
    clear: Vec<u8>,
    /// Sealed datagrams, at a stride of the datagram size.
    sealed: Vec<u8>,
}

impl UdpPort {
    /// [`UdpPort::send_frame`] for a sealed link: each datagram (whole frame or fragment,
    /// cut `OVERHEAD` bytes smaller) becomes one record, and runs of them go out in UDP GSO
    /// sends as clear fragments do.
    pub(crate) fn send_sealed(
        &self,
        link: &Link,
        f: &mut Frame<'_>,
        hop: u8,
        to: SocketAddr,
        sc: &mut SealScratch,
    ) -> io::Result<()> {
        let inner = self.max - OVERHEAD;
        let mut st = lock(&link.seal);
        let s = st
            .session
            .as_mut()
            .ok_or_else(|| io::Error::other("no keys"))?;
        if wire::LINK_HDR + wire::VNET_HDR_LEN + f.len <= inner {
            let msg = f.udp_message(hop);
            sc.sealed.resize(msg.len() + OVERHEAD, 0);
            let n = s.seal(msg, &mut sc.sealed).map_err(seal_error)?;
            drop(st);
            return self.transmit(&sc.sealed[..n], None, to);
        }
        let id = self.frag_id.fetch_add(1, Ordering::Relaxed);
        let count = wire::pack_fragments(&mut sc.clear, f.vnet_and_frame(), id, hop, inner)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        sc.sealed.resize(count * self.max, 0);
        let mut len = 0;
        for (i, piece) in sc.clear.chunks(inner).enumerate() {
            let at = i * self.max;
            len = at + s.seal(piece, &mut sc.sealed[at..]).map_err(seal_error)?;
        }
        drop(st);
        self.send_datagrams(&sc.sealed[..len], count, self.max, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn the_handshake_limit_holds_per_source_and_overall() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let a: IpAddr = [10, 0, 0, 1].into();
        let granted = (0..100).filter(|_| l.allow(a, t0)).count();
        assert_eq!(granted, PER_SOURCE as usize, "one source's burst");
        // A second later the source has its rate back.
        let t1 = t0 + Duration::from_secs(1);
        assert!(l.allow(a, t1));
        // Many sources (a spoofed flood) are held to the overall rate.
        let many = (0..2000u32)
            .filter(|i| l.allow(IpAddr::from(i.to_be_bytes()), t1))
            .count();
        assert!(many < OVERALL as usize, "{many} granted");
    }

    #[test]
    fn rejected_records_count_under_their_reason() {
        assert_eq!(reject_reason(Reject::BadTag), DropReason::BadRecord);
        assert_eq!(reject_reason(Reject::Replay), DropReason::Replay);
        assert_eq!(reject_reason(Reject::TooOld), DropReason::Replay);
        assert_eq!(reject_reason(Reject::Truncated), DropReason::Truncated);
        assert!(is_record(&[4, 0, 0, 0]) && !is_record(&[wire::MAGIC, 1, 0, 0]));
    }
}
