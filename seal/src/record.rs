//! The wire form of sealed links: one type byte first, so that a link socket can tell the
//! messages apart, then three zero bytes.
//!
//! - handshake initiation `[1, 0, 0, 0, noise message 1]`
//! - handshake reply `[2, 0, 0, 0, noise message 2]`
//! - data record `[4, 0, 0, 0, epoch (u32 LE), counter (u64 LE), ciphertext, tag (16)]`
//!
//! The 16-byte record header is the AEAD's associated data: no byte of a record can change
//! without the tag failing. The counter is the nonce, carried explicitly because UDP loses and
//! reorders datagrams (as in WireGuard).

use std::fmt;

/// Bytes before a record's ciphertext.
pub const HEADER_LEN: usize = 16;
/// Bytes of the Poly1305 tag after it.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a plaintext.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Bytes before the Noise message in a handshake message.
pub const HANDSHAKE_PREFIX: usize = 4;

/// The first byte of every message of a sealed link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Init = 1,
    Reply = 2,
    Data = 4,
}

impl Kind {
    /// The kind of a message, when its first byte and reserved bytes say it is one of ours.
    pub fn of(message: &[u8]) -> Option<Kind> {
        let kind = match message.first()? {
            1 => Kind::Init,
            2 => Kind::Reply,
            4 => Kind::Data,
            _ => return None,
        };
        (message.len() >= 4 && message[1..4] == [0, 0, 0]).then_some(kind)
    }
}

/// Why a record was not delivered. Each is a counter in the daemon's statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    /// Shorter than a header and a tag.
    Truncated,
    /// Not a data record (wrong type byte or non-zero reserved bytes).
    Malformed,
    /// An epoch this session has no keys for (never had, or its overlap has ended).
    UnknownEpoch,
    /// Older than the replay window, or a counter past the limit.
    TooOld,
    /// A counter already delivered.
    Replay,
    /// Authentication failed: forged, altered, or sealed with other keys.
    BadTag,
}

impl Reject {
    pub const ALL: [Reject; 6] = [
        Reject::Truncated,
        Reject::Malformed,
        Reject::UnknownEpoch,
        Reject::TooOld,
        Reject::Replay,
        Reject::BadTag,
    ];

    /// The counter's name in statistics.
    pub fn name(self) -> &'static str {
        match self {
            Reject::Truncated => "truncated",
            Reject::Malformed => "malformed",
            Reject::UnknownEpoch => "unknown_epoch",
            Reject::TooOld => "too_old",
            Reject::Replay => "replay",
            Reject::BadTag => "bad_tag",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Reject {}

/// Rejections counted by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rejects([u64; Reject::ALL.len()]);

impl Rejects {
    pub fn count(&mut self, reason: Reject) {
        self.0[reason as usize] += 1;
    }

    pub fn get(&self, reason: Reject) -> u64 {
        self.0[reason as usize]
    }

    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// A data record's header, read from or written to the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub epoch: u32,
    pub counter: u64,
}

impl Header {
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[..4].copy_from_slice(&[Kind::Data as u8, 0, 0, 0]);
        out[4..8].copy_from_slice(&self.epoch.to_le_bytes());
        out[8..].copy_from_slice(&self.counter.to_le_bytes());
    }

    /// The header of a record, checked for length and kind only (the tag checks the rest).
    pub fn read(record: &[u8]) -> Result<Header, Reject> {
        if record.len() < OVERHEAD {
            return Err(Reject::Truncated);
        }
        if Kind::of(record) != Some(Kind::Data) {
            return Err(Reject::Malformed);
        }
        let epoch = u32::from_le_bytes([record[4], record[5], record[6], record[7]]);
        let mut counter = [0u8; 8];
        counter.copy_from_slice(&record[8..16]);
        Ok(Header {
            epoch,
            counter: u64::from_le_bytes(counter),
        })
    }
}
