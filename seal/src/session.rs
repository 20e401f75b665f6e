//! An established link's record keys: sealing into the caller's buffer, opening in place,
//! the replay window, and the hand-over between epochs when the link rekeys.
//!
//! Each handshake makes one epoch (its number chosen by the initiator). A rekey is a new
//! handshake; `Session::install` takes its keys in:
//! - the initiator seals with the new epoch at once (the reply proved the responder has it);
//! - the responder keeps sealing with the old epoch until a record of the new one arrives
//!   (its reply may have been lost), as WireGuard does;
//! - the old epoch is still opened for `RekeyPolicy::overlap_ns`, for records in flight.

use crate::record::{Header, Reject, HEADER_LEN, OVERHEAD, TAG_LEN};
use crate::replay::{ReplayWindow, COUNTER_LIMIT};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use std::fmt;

/// When a session should make new keys, and how long old keys stay valid after.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RekeyPolicy {
    pub after_ns: u64,
    pub after_bytes: u64,
    pub after_records: u64,
    /// How long records of the previous epoch are still opened after a rekey.
    pub overlap_ns: u64,
}

impl Default for RekeyPolicy {
    /// WireGuard's times (rekey after 120 s and 2^60 records), a volume limit of 2^40 bytes
    /// (15 minutes at 10 Gbit/s), and 10 s of overlap.
    fn default() -> RekeyPolicy {
        RekeyPolicy {
            after_ns: 120_000_000_000,
            after_bytes: 1 << 40,
            after_records: 1 << 60,
            overlap_ns: 10_000_000_000,
        }
    }
}

impl RekeyPolicy {
    /// Whether keys of this age that sealed this much should be replaced.
    pub fn needs_rekey(&self, age_ns: u64, bytes: u64, records: u64) -> bool {
        age_ns >= self.after_ns || bytes >= self.after_bytes || records >= self.after_records
    }
}

/// Why a record could not be sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// The output buffer is shorter than the plaintext plus `OVERHEAD`.
    BufferTooSmall { needed: usize },
    /// The epoch's counters are used up: the link must rekey first.
    Exhausted,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealError::BufferTooSmall { needed } => {
                write!(f, "record buffer too small: {needed} bytes needed")
            }
            SealError::Exhausted => write!(f, "record counter exhausted: rekey first"),
        }
    }
}

impl std::error::Error for SealError {}

/// The keys of one handshake.
struct Epoch {
    id: u32,
    send: LessSafeKey,
    recv: LessSafeKey,
    next_counter: u64,
    window: ReplayWindow,
    started_ns: u64,
    sealed_bytes: u64,
}

impl Epoch {
    fn new(id: u32, send: &[u8; 32], recv: &[u8; 32], now_ns: u64) -> Epoch {
        Epoch {
            id,
            send: cipher(send),
            recv: cipher(recv),
            next_counter: 0,
            window: ReplayWindow::new(),
            started_ns: now_ns,
            sealed_bytes: 0,
        }
    }
}

/// The record state of one link: what the daemon keeps per peer once a handshake is done.
pub struct Session {
    current: Epoch,
    /// The responder's new keys, opened but not yet used to seal, and the overlap to give the
    /// old keys once the initiator uses them.
    pending: Option<(Epoch, u64)>,
    /// The replaced keys, opened until the deadline.
    previous: Option<(Epoch, u64)>,
    /// Whether this side initiated the handshake that made `current`.
    initiator: bool,
    /// Whether the peer is known to hold `current`'s keys (see `is_confirmed`).
    confirmed: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("epoch", &self.current.id)
            .field("pending", &self.pending.as_ref().map(|(e, _)| e.id))
            .field("previous", &self.previous.as_ref().map(|(e, _)| e.id))
            .finish()
    }
}

fn cipher(key: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is always the right length for ChaCha20-Poly1305.
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, key).expect("32-byte key"))
}

/// WireGuard's nonce: four zero bytes and the record counter. Each counter is sealed once per
/// epoch (the counter only grows), which is what `assume_unique_for_key` asks.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

impl Session {
    pub(crate) fn new(
        epoch: u32,
        send: &[u8; 32],
        recv: &[u8; 32],
        initiator: bool,
        now_ns: u64,
    ) -> Session {
        Session {
            current: Epoch::new(epoch, send, recv, now_ns),
            pending: None,
            previous: None,
            initiator,
            confirmed: initiator,
        }
    }

    /// The epoch records are sealed with.
    pub fn epoch(&self) -> u32 {
        self.current.id
    }

    /// Whether the peer is known to hold the sealing keys: always for an initiator (the reply
    /// proved it); for a responder's first session, once a record from the peer opened. A
    /// responder's records sealed before that are lost if its reply was: the daemon should
    /// keep them back (or send only keepalives) until then, as WireGuard does.
    pub fn is_confirmed(&self) -> bool {
        self.confirmed
    }

    /// Whether this side sealed the record with this header under its current sending keys
    /// (a reset naming it answers something this session really sent).
    pub fn has_sealed(&self, answered: Header) -> bool {
        answered.epoch == self.current.id && answered.counter < self.current.next_counter
    }

    /// Whether the sending keys are due for a new handshake under `policy` (not while a
    /// responder waits for the initiator to use the keys of one already done).
    pub fn needs_rekey(&self, now_ns: u64, policy: &RekeyPolicy) -> bool {
        if self.pending.is_some() {
            return false;
        }
        let e = &self.current;
        policy.needs_rekey(
            now_ns.saturating_sub(e.started_ns),
            e.sealed_bytes,
            e.next_counter,
        )
    }

    /// Takes in the keys of a rekeying handshake with the same peer (see the module comment).
    pub fn install(&mut self, new: Session, now_ns: u64, policy: &RekeyPolicy) {
        let deadline = now_ns.saturating_add(policy.overlap_ns);
        if new.initiator {
            let old = std::mem::replace(&mut self.current, new.current);
            self.previous = Some((old, deadline));
            self.pending = None;
            self.initiator = true;
            self.confirmed = true;
        } else {
            self.pending = Some((new.current, policy.overlap_ns));
        }
    }

    /// Seals `plaintext` into `out` and returns the record's length (`plaintext.len() +
    /// OVERHEAD`). No allocation.
    pub fn seal(&mut self, plaintext: &[u8], out: &mut [u8]) -> Result<usize, SealError> {
        let needed = plaintext.len() + OVERHEAD;
        if out.len() < needed {
            return Err(SealError::BufferTooSmall { needed });
        }
        out[HEADER_LEN..HEADER_LEN + plaintext.len()].copy_from_slice(plaintext);
        self.seal_in_place(&mut out[..needed], plaintext.len())
    }

    /// Seals a plaintext already at `buf[HEADER_LEN..HEADER_LEN + len]` (a frame read with
    /// room in front for the header and behind for the tag), without copying it.
    pub fn seal_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SealError> {
        let needed = len + OVERHEAD;
        if buf.len() < needed {
            return Err(SealError::BufferTooSmall { needed });
        }
        let e = &mut self.current;
        if e.next_counter >= COUNTER_LIMIT {
            return Err(SealError::Exhausted);
        }
        let header = Header {
            epoch: e.id,
            counter: e.next_counter,
        };
        let (head, rest) = buf.split_at_mut(HEADER_LEN);
        let head: &mut [u8; HEADER_LEN] = head
            .try_into()
            .map_err(|_| SealError::BufferTooSmall { needed })?;
        header.write(head);
        let (body, tail) = rest.split_at_mut(len);
        let tag = e
            .send
            .seal_in_place_separate_tag(nonce(header.counter), Aad::from(&*head), body)
            .map_err(|_| SealError::BufferTooSmall { needed })?;
        tail[..TAG_LEN].copy_from_slice(tag.as_ref());
        e.next_counter += 1;
        e.sealed_bytes += len as u64;
        Ok(needed)
    }

    /// Authenticates and decrypts a record in place; returns the plaintext within it.
    /// `now_ns` ends the previous epoch's overlap.
    pub fn open<'a>(&mut self, now_ns: u64, record: &'a mut [u8]) -> Result<&'a [u8], Reject> {
        let header = Header::read(record)?;
        let slot = self.find(header.epoch, now_ns)?;
        let epoch = self.epoch_mut(slot).ok_or(Reject::UnknownEpoch)?;
        epoch.window.check(header.counter)?;
        let (head, rest) = record.split_at_mut(HEADER_LEN);
        let body = epoch
            .recv
            .open_in_place(nonce(header.counter), Aad::from(&*head), rest)
            .map_err(|_| Reject::BadTag)?;
        epoch.window.mark(header.counter);
        match slot {
            Slot::Pending => self.confirm(now_ns),
            Slot::Current => self.confirmed = true,
            Slot::Previous => {}
        }
        Ok(body)
    }

    /// `open` into a separate buffer, for callers that keep the record; returns the length.
    pub fn open_into(
        &mut self,
        now_ns: u64,
        record: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, Reject> {
        out.clear();
        out.extend_from_slice(record);
        let len = self.open(now_ns, out)?.len();
        out.copy_within(HEADER_LEN..HEADER_LEN + len, 0);
        out.truncate(len);
        Ok(len)
    }

    fn find(&mut self, id: u32, now_ns: u64) -> Result<Slot, Reject> {
        if self
            .previous
            .as_ref()
            .is_some_and(|(_, deadline)| now_ns >= *deadline)
        {
            self.previous = None;
        }
        if self.current.id == id {
            Ok(Slot::Current)
        } else if self.pending.as_ref().is_some_and(|(e, _)| e.id == id) {
            Ok(Slot::Pending)
        } else if self.previous.as_ref().is_some_and(|(e, _)| e.id == id) {
            Ok(Slot::Previous)
        } else {
            Err(Reject::UnknownEpoch)
        }
    }

    fn epoch_mut(&mut self, slot: Slot) -> Option<&mut Epoch> {
        match slot {
            Slot::Current => Some(&mut self.current),
            Slot::Pending => self.pending.as_mut().map(|(e, _)| e),
            Slot::Previous => self.previous.as_mut().map(|(e, _)| e),
        }
    }

    /// The initiator used the responder's new keys: they replace the current ones, which stay
    /// open for the overlap, for records already in flight.
    fn confirm(&mut self, now_ns: u64) {
        if let Some((new, overlap_ns)) = self.pending.take() {
            let old = std::mem::replace(&mut self.current, new);
            self.previous = Some((old, now_ns.saturating_add(overlap_ns)));
            self.initiator = false;
            self.confirmed = true;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    Current,
    Pending,
    Previous,
}
