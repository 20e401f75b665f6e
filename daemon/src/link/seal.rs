//! Sealed links in the daemon (issue 14): the Noise IK handshake of `vnet-seal` carried in
//! the link handshake's HELLO and CHALLENGE, each link's record keys, and the sealing and
//! opening of link messages on both transports.
//!
//! A sealed link message is a `vnet-seal` record whose plaintext is the clear message (link
//! header and body): a UDP datagram is one record; a TCP message is its 4-byte length and one
//! record. The first byte tells records (4) from clear messages ([`crate::wire::MAGIC`]), so
//! handshakes (and cookie replies) stay clear and everything after the handshake is sealed,
//! keepalives and rekey requests included; a listener's RESET, sent without session keys,
//! carries the tag of the two static keys instead ([`vnet_seal::PairKey`]).
//! The dialer starts every handshake, the first and each rekey (by time or volume, checked by
//! its keepalive or connection loop, or asked for by the listener's sealed REKEY when the
//! listener's keys are due); the epoch of the first is 0, so a listener replaces the keys of a
//! restarted dialer and takes a rekey's keys in beside the old ones.

use super::handshake::Refused;
use super::msg::{LinkHello, LinkReset};
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
use vnet_grammar::ast::Transport;
use vnet_seal::{
    CookieJar, Established, Header, Initiator, KeyPair, Known, Mode, Offer, PairKey, PublicKey,
    Reject, RekeyPolicy, Responder, Session, HEADER_LEN, OVERHEAD, TAG_LEN,
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
    cookies: CookieJar,
}

/// A UDP source address as the cookie MACs it (IP and port: the port is part of what the
/// sender proves it receives at).
fn source_bytes(from: SocketAddr) -> Vec<u8> {
    let mut b = match from.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    b.extend_from_slice(&from.port().to_be_bytes());
    b
}

impl Crypto {
    pub fn new(keys: KeyPair, insecure: bool, policy: RekeyPolicy) -> Crypto {
        Crypto {
            responder: Responder::new(&keys, !insecure),
            keys,
            insecure,
            policy,
            limit: Mutex::new(Limiter::default()),
            cookies: CookieJar::new(crate::auth::random_bytes::<32>()),
        }
    }

    /// Whether a hello from `from` may cost a handshake now. `proven`: the sender showed it
    /// receives at its address (a TCP connection, or a UDP hello with a valid cookie); an
    /// unproven UDP hello while the budget is in use gets [`Refused::Busy`] with its cookie.
    fn admit(
        &self,
        from: SocketAddr,
        over: Transport,
        cookie: Option<&str>,
    ) -> Result<(), Refused> {
        let now = wall_ns();
        let source = source_bytes(from);
        let proven = over == Transport::Tcp
            || cookie
                .and_then(unhex)
                .is_some_and(|c| self.cookies.check(now, &source, &c));
        match lock(&self.limit).gate(from.ip(), proven, std::time::Instant::now()) {
            Gate::Allow => Ok(()),
            Gate::Deny => Err(Refused::RateLimited),
            Gate::Cookie => Err(Refused::Busy(self.cookies.make(now, &source))),
        }
    }

    /// The static-pair key of `link` (made once per link; `None` without a pinned key).
    fn pair_key<R>(&self, link: &Link, f: impl FnOnce(&PairKey) -> R) -> Option<R> {
        let mut st = lock(&link.seal);
        if st.pair.is_none() {
            st.pair = link.peer_key.and_then(|k| PairKey::new(&self.keys, &k));
        }
        st.pair.as_ref().map(f)
    }

    /// The RESET this side sends over `link` for a record of the peer it has no keys for:
    /// authenticated by the static keys when the link is sealed, clear otherwise.
    pub fn reset(&self, link: &Link, me: &str, answered: Option<Header>) -> LinkReset {
        let mut r = LinkReset {
            from: me.to_string(),
            reason: "no session".into(),
            epoch: None,
            counter: None,
            tag: None,
        };
        if let Some(h) = answered.filter(|_| !self.insecure) {
            r.tag = self.pair_key(link, |k| hex(&k.reset(h)));
            (r.epoch, r.counter) = (Some(h.epoch), Some(h.counter));
        }
        r
    }

    /// Whether a RESET on a sealed `link` is the peer's, for a record this side sealed with
    /// its current keys.
    pub fn check_reset(&self, link: &Link, r: &LinkReset) -> bool {
        let (Some(epoch), Some(counter), Some(tag)) = (r.epoch, r.counter, r.tag.as_deref()) else {
            return false;
        };
        let answered = Header { epoch, counter };
        let sent = lock(&link.seal)
            .session
            .as_ref()
            .is_some_and(|s| s.has_sealed(answered));
        sent && unhex(tag).is_some_and(|t| {
            self.pair_key(link, |k| k.check_reset(answered, &t))
                .unwrap_or(false)
        })
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

    /// The listener's answer to a HELLO that came `over` a transport from `from` for `link`:
    /// the reply for CHALLENGE and the keys to install once the proof holds. Rate-limited per
    /// source address and overall, with cookies on UDP (see `admit`), before any public-key
    /// work.
    pub fn answer(
        &self,
        link: &Link,
        hello: &LinkHello,
        from: SocketAddr,
        over: Transport,
    ) -> Result<Option<(Established, String)>, Refused> {
        let Some(noise) = hello.noise.as_deref() else {
            return if self.insecure {
                Ok(None)
            } else {
                Err(Refused::Seal(vnet_seal::Refused::Downgrade))
            };
        };
        self.admit(from, over, hello.cookie.as_deref())?;
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
/// Below this much of the overall budget, hellos from unproven sources get cookies: the rest
/// is kept for senders that proved their address.
const UNDER_LOAD: f64 = OVERALL / 2.0;

/// What the limiter says of one hello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Gate {
    Allow,
    /// Over the source's own rate: dropped unanswered.
    Deny,
    /// Budget in use and the source not proven: answered with a cookie.
    Cookie,
}

/// Token buckets of handshakes, per source address and overall.
#[derive(Default)]
struct Limiter {
    sources: HashMap<IpAddr, (f64, std::time::Instant)>,
    all: Option<(f64, std::time::Instant)>,
}

fn refill(bucket: &mut (f64, std::time::Instant), rate: f64, now: std::time::Instant) {
    let more = now.saturating_duration_since(bucket.1).as_secs_f64() * rate;
    bucket.0 = (bucket.0 + more).min(rate);
    bucket.1 = now;
}

fn take(bucket: &mut (f64, std::time::Instant), rate: f64, now: std::time::Instant) -> bool {
    refill(bucket, rate, now);
    if bucket.0 >= 1.0 {
        bucket.0 -= 1.0;
        true
    } else {
        false
    }
}

impl Limiter {
    /// A hello from `from`; `proven`: its sender showed it receives at that address.
    fn gate(&mut self, from: IpAddr, proven: bool, now: std::time::Instant) -> Gate {
        if self.sources.len() > 4096 {
            // Forget sources that have refilled (bounded memory under a spoofed flood).
            self.sources
                .retain(|_, b| now.saturating_duration_since(b.1).as_secs_f64() < 1.0);
        }
        let source = self.sources.entry(from).or_insert((PER_SOURCE, now));
        if !take(source, PER_SOURCE, now) {
            return Gate::Deny;
        }
        let all = self.all.get_or_insert((OVERALL, now));
        refill(all, OVERALL, now);
        if !proven && all.0 < UNDER_LOAD {
            return Gate::Cookie;
        }
        if take(all, OVERALL, now) {
            Gate::Allow
        } else if proven {
            Gate::Deny
        } else {
            Gate::Cookie
        }
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
    /// The key of this side's and the peer's static keys, for resets.
    pair: Option<PairKey>,
    /// Sealed TCP messages are built here (under the link's send lock).
    out: Vec<u8>,
}

/// What a link keeps for sealing: the state, whether it is sealed (read per frame without
/// the lock), and how many handshakes completed.
#[derive(Default)]
pub(crate) struct LinkSeal {
    state: Mutex<SealState>,
    sealed: AtomicBool,
    /// The peer asked for new keys (its REKEY, or an authenticated RESET): the dialer starts
    /// a handshake; cleared when new keys are installed.
    rekey_asked: AtomicBool,
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
                pair: st.pair.take(),
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
        self.seal.rekey_asked.store(false, Ordering::Release);
        let fp = est.peer.fingerprint();
        tracing::info!(link = %self.peer, peer_key = %fp, mode = ?est.mode, "link keys installed");
    }

    /// Whether this side's keys are due (time or volume), or (at the dialer) the peer asked
    /// for new ones.
    pub(crate) fn needs_rekey(&self, policy: &RekeyPolicy) -> bool {
        if self.dials && self.seal.rekey_asked.load(Ordering::Acquire) {
            return true;
        }
        let st = lock(&self.seal);
        st.session
            .as_ref()
            .is_some_and(|s| s.needs_rekey(wall_ns(), policy))
    }

    /// The peer asked for new keys; whether this is news (no request pending yet). Only a
    /// dialer starts handshakes, so only its links take requests.
    pub(crate) fn ask_rekey(&self) -> bool {
        self.dials && self.is_sealed() && !self.seal.rekey_asked.swap(true, Ordering::AcqRel)
    }

    /// A link control message as it goes on this link: a record on a sealed link (or `None`
    /// when its keys are gone), the message itself on a clear one.
    pub(crate) fn seal_message(&self, msg: &[u8]) -> Option<Vec<u8>> {
        if !self.is_sealed() {
            return Some(msg.to_vec());
        }
        let mut out = vec![0u8; msg.len() + OVERHEAD];
        let n = self.seal_with(|s| s.seal(msg, &mut out)).ok()?;
        out.truncate(n);
        Some(out)
    }

    /// Sends a link control message on a TCP link's connection (sealed when the link is);
    /// whether it went out whole.
    pub(crate) fn send_tcp_control(&self, msg: &[u8]) -> bool {
        let mut framed = crate::framing::header(msg.len()).to_vec();
        framed.extend_from_slice(msg);
        let mut guard = lock(&self.tcp_tx);
        let Some((_, w)) = guard.as_mut() else {
            return false;
        };
        let sent = if self.is_sealed() {
            self.seal_tcp(&framed, |m| super::send_whole(w, m))
                .and_then(|r| r)
        } else {
            super::send_whole(w, &framed)
        };
        matches!(sent, Ok(true))
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

    /// Opens a sealed record (a UDP datagram where it was received, a TCP message body) in
    /// place; the length of the clear message now at `record[HEADER_LEN..]`. `now_ns`:
    /// [`wall_ns`], read once per receive batch.
    pub(crate) fn open_in_place(
        &self,
        record: &mut [u8],
        now_ns: u64,
    ) -> Result<usize, DropReason> {
        let mut st = lock(&self.seal);
        let Some(s) = st.session.as_mut() else {
            return Err(DropReason::Downgrade);
        };
        s.open(now_ns, record)
            .map(|p| p.len())
            .map_err(reject_reason)
    }

    /// Runs `f` with the link's sending keys (under the link's seal lock).
    pub(crate) fn seal_with(
        &self,
        f: impl FnOnce(&mut Session) -> Result<usize, vnet_seal::SealError>,
    ) -> io::Result<usize> {
        let mut st = lock(&self.seal);
        let s = st
            .session
            .as_mut()
            .ok_or_else(|| io::Error::other("no keys"))?;
        f(s).map_err(seal_error)
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

/// Scratch space of the forwarding thread for sealing UDP datagrams: sealed datagrams, at a
/// stride of the datagram size.
#[derive(Default)]
pub(crate) struct SealScratch(Vec<u8>);

impl UdpPort {
    /// [`UdpPort::send_frame`] for a sealed link: each datagram (whole frame or fragment,
    /// cut `OVERHEAD` bytes smaller) becomes one record, and runs of them go out in UDP GSO
    /// sends as clear fragments do. Fragments are packed with room for the record's header
    /// and tag around each and sealed where they lie (no copy between packing and sending).
    pub(crate) fn send_sealed(
        &self,
        link: &Link,
        f: &mut Frame<'_>,
        hop: u8,
        to: SocketAddr,
        sc: &mut SealScratch,
    ) -> io::Result<()> {
        let inner = self.max - OVERHEAD;
        let out = &mut sc.0;
        if wire::LINK_HDR + wire::VNET_HDR_LEN + f.len <= inner {
            let msg = f.udp_message(hop);
            out.resize(msg.len() + OVERHEAD, 0);
            let n = link.seal_with(|s| s.seal(msg, out))?;
            return self.transmit(&out[..n], None, to);
        }
        let id = self.frag_id.fetch_add(1, Ordering::Relaxed);
        let room = (HEADER_LEN, TAG_LEN);
        let count = wire::pack_fragments_spaced(out, f.vnet_and_frame(), id, hop, inner, room)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        link.seal_with(|s| {
            for slot in out.chunks_mut(self.max) {
                let len = slot.len() - OVERHEAD;
                s.seal_in_place(slot, len)?;
            }
            Ok(0)
        })?;
        self.send_datagrams(out, count, self.max, to)
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
        let granted = (0..100).filter(|_| l.gate(a, false, t0) == Gate::Allow);
        assert_eq!(granted.count(), PER_SOURCE as usize, "one source's burst");
        assert_eq!(l.gate(a, true, t0), Gate::Deny, "a proven source too");
        // A second later the source has its rate back.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.gate(a, false, t1), Gate::Allow);
        // Many sources (a spoofed flood) use half the overall budget, then get cookies.
        let gates: Vec<Gate> = (0..2000u32)
            .map(|i| l.gate(IpAddr::from(i.to_be_bytes()), false, t1))
            .collect();
        let allowed = gates.iter().filter(|g| **g == Gate::Allow).count();
        assert!(
            allowed <= (OVERALL - UNDER_LOAD) as usize + 1,
            "{allowed} granted"
        );
        assert!(gates[1000..].iter().all(|g| *g == Gate::Cookie));
        // A source that proved its address (a cookie) still gets the other half.
        let proven = (0..50u32)
            .filter(|i| l.gate(IpAddr::from((i + 5000).to_be_bytes()), true, t1) == Gate::Allow);
        assert_eq!(proven.count(), 50);
    }

    #[test]
    fn cookies_are_bound_to_the_source_address_and_port() {
        let a: SocketAddr = "10.0.0.1:7000".parse().unwrap();
        let b: SocketAddr = "10.0.0.1:7001".parse().unwrap();
        let c: SocketAddr = "[::1]:7000".parse().unwrap();
        assert_ne!(source_bytes(a), source_bytes(b));
        assert_eq!(source_bytes(c).len(), 18);
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
