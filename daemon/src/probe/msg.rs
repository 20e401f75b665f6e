//! Probe datagrams (SPEC 5.2): fixed binary messages, each authenticated with the probe's
//! token, so a probe socket answers only the daemon `vnetc` asked it to serve and is no open
//! reflector. No IO here.
//!
//! `"VP" ‖ kind ‖ 0 ‖ seq u32 ‖ sent u64 ‖ received u64 ‖ padding ‖ tag[16]`, big endian;
//! `tag` is the first 16 bytes of `HMAC-SHA256(token, "vnet-probe" ‖ everything before it)`.

use crate::auth::Key;

pub(crate) const HEADER: usize = 24;
pub(crate) const TAG: usize = 16;
/// The smallest message: header and tag.
pub(crate) const MIN: usize = HEADER + TAG;
/// The largest message accepted (a train datagram).
pub(crate) const MAX: usize = 1500;
const LABEL: &str = "vnet-probe";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Latency: answered at once with an [`Kind::EchoReply`].
    Echo = 1,
    EchoReply = 2,
    /// Bandwidth: one datagram of a packet train, answered with a small [`Kind::TrainAck`]
    /// carrying its arrival time.
    Train = 3,
    TrainAck = 4,
}

impl Kind {
    fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Echo,
            2 => Kind::EchoReply,
            3 => Kind::Train,
            4 => Kind::TrainAck,
            _ => return None,
        })
    }
}

/// One probe message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Probe {
    pub kind: Kind,
    pub seq: u32,
    /// The prober's clock when it sent the message (echoed back), ns.
    pub sent: u64,
    /// The responder's clock when the message it answers arrived, ns (0 in requests).
    pub received: u64,
}

/// The probe token as a key: the hex text itself (at least 32 digits, at most 128).
pub(crate) fn token_key(token: &str) -> Result<Key, String> {
    let ok = (32..=128).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_hexdigit());
    if !ok {
        return Err("the probe token must be 32 to 128 hex digits".into());
    }
    Key::from_bytes(token.as_bytes()).map_err(|e| format!("probe token: {e}"))
}

fn tag(key: &Key, body: &[u8]) -> [u8; TAG] {
    let full = key.sign(LABEL, &[body]);
    let mut t = [0u8; TAG];
    t.copy_from_slice(&full[..TAG]);
    t
}

impl Probe {
    /// The message, `size` bytes long (at least [`MIN`], at most [`MAX`]).
    pub fn encode(&self, key: &Key, size: usize) -> Vec<u8> {
        let size = size.clamp(MIN, MAX);
        let mut m = vec![0u8; size];
        m[0..2].copy_from_slice(b"VP");
        m[2] = self.kind as u8;
        m[4..8].copy_from_slice(&self.seq.to_be_bytes());
        m[8..16].copy_from_slice(&self.sent.to_be_bytes());
        m[16..24].copy_from_slice(&self.received.to_be_bytes());
        let t = tag(key, &m[..size - TAG]);
        m[size - TAG..].copy_from_slice(&t);
        m
    }

    /// Reads and authenticates a message; `None` for anything else (garbage).
    pub fn decode(key: &Key, m: &[u8]) -> Option<Probe> {
        if m.len() < MIN || m.len() > MAX || &m[0..2] != b"VP" || m[3] != 0 {
            return None;
        }
        let (body, got) = m.split_at(m.len() - TAG);
        let want = tag(key, body);
        // Constant time: the difference of every byte is folded before the comparison.
        if got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) != 0 {
            return None;
        }
        let u32_at = |i: usize| u32::from_be_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
        let u64_at = |i: usize| (u64::from(u32_at(i)) << 32) | u64::from(u32_at(i + 4));
        Some(Probe {
            kind: Kind::from_byte(m[2])?,
            seq: u32_at(4),
            sent: u64_at(8),
            received: u64_at(16),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(c: char) -> Key {
        token_key(&c.to_string().repeat(64)).expect("a token")
    }

    #[test]
    fn messages_round_trip_at_any_size() {
        let p = Probe {
            kind: Kind::TrainAck,
            seq: 70_001,
            sent: u64::MAX - 5,
            received: 1 << 40,
        };
        for size in [0, MIN, 1200, 9000] {
            let m = p.encode(&key('a'), size);
            assert_eq!(m.len(), size.clamp(MIN, MAX));
            assert_eq!(Probe::decode(&key('a'), &m), Some(p));
        }
    }

    #[test]
    fn anything_not_signed_with_the_token_is_garbage() {
        let p = Probe {
            kind: Kind::Echo,
            seq: 1,
            sent: 2,
            received: 0,
        };
        let m = p.encode(&key('a'), 100);
        assert_eq!(Probe::decode(&key('b'), &m), None, "another token");
        for i in 0..m.len() {
            let mut bad = m.clone();
            bad[i] ^= 1;
            assert_eq!(Probe::decode(&key('a'), &bad), None, "byte {i} changed");
        }
        assert_eq!(Probe::decode(&key('a'), &m[..MIN - 1]), None);
        assert_eq!(Probe::decode(&key('a'), b""), None);
    }

    #[test]
    fn tokens_are_checked() {
        assert!(token_key("abc").is_err());
        assert!(token_key(&"g".repeat(32)).is_err());
        assert!(token_key(&"0".repeat(129)).is_err());
        assert!(token_key(&"0f".repeat(16)).is_ok());
    }
}
