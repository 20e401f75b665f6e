//! Notices between two static keys, outside any session: the RESET a listener sends when a
//! record arrives that it has no keys for (it restarted). It cannot seal that notice with
//! session keys, since it has none; it authenticates it with a key both ends derive from their
//! static keys alone (`X25519(own private, peer public)`, the same value at both ends), so a
//! network attacker can no longer forge one.
//!
//! A reset names the record it answers (epoch and counter, from the record's clear header); the
//! receiver takes it only for a record it sealed in its current epoch. A recorded reset can
//! therefore only be replayed into a later session that reached the same epoch and counter,
//! and the receiver answers a reset with a new handshake, not by dropping the link: the worst a
//! replay costs is one handshake.

use crate::keys::{KeyPair, PublicKey};
use crate::record::Header;
use ring::hmac;
use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};

/// Bytes of a notice's tag.
pub const NOTICE_TAG_LEN: usize = 16;

/// The MAC key of one pair of static keys.
pub struct PairKey {
    key: hmac::Key,
    local: PublicKey,
    peer: PublicKey,
}

impl std::fmt::Debug for PairKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PairKey")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish()
    }
}

impl PairKey {
    /// `None` when the peer's key is a low-order point (the shared value would be public).
    pub fn new(local: &KeyPair, peer: &PublicKey) -> Option<PairKey> {
        let secret = StaticSecret::from(*local.private.as_bytes());
        let shared = secret.diffie_hellman(&DalekPublic::from(*peer.as_bytes()));
        if !shared.was_contributory() {
            return None;
        }
        let mut ctx = hmac::Context::with_key(&hmac::Key::new(
            hmac::HMAC_SHA256,
            b"vnet-seal static notice key",
        ));
        ctx.update(shared.as_bytes());
        Some(PairKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, ctx.sign().as_ref()),
            local: local.public,
            peer: *peer,
        })
    }

    fn tag(&self, sender: &PublicKey, answered: Header) -> [u8; NOTICE_TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(b"reset");
        ctx.update(sender.as_bytes());
        ctx.update(&answered.epoch.to_le_bytes());
        ctx.update(&answered.counter.to_le_bytes());
        let mut t = [0u8; NOTICE_TAG_LEN];
        t.copy_from_slice(&ctx.sign().as_ref()[..NOTICE_TAG_LEN]);
        t
    }

    /// The tag of this side's reset answering the peer's record `answered`.
    pub fn reset(&self, answered: Header) -> [u8; NOTICE_TAG_LEN] {
        self.tag(&self.local, answered)
    }

    /// Whether `tag` is the peer's reset for this side's record `answered` (the caller also
    /// checks that it sealed that record: [`crate::Session::has_sealed`]).
    pub fn check_reset(&self, answered: Header, tag: &[u8]) -> bool {
        let want = self.tag(&self.peer, answered);
        crate::cookie::equal(&want, tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ends_agree_and_nobody_else_does() {
        let (a, b, c) = (
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
            KeyPair::generate().unwrap(),
        );
        let (ab, ba) = (
            PairKey::new(&a, &b.public).unwrap(),
            PairKey::new(&b, &a.public).unwrap(),
        );
        let h = Header {
            epoch: 3,
            counter: 99,
        };
        let t = ba.reset(h);
        assert!(ab.check_reset(h, &t));
        // Another record, a reflected tag, a third key, a truncated tag.
        assert!(!ab.check_reset(Header { counter: 98, ..h }, &t));
        assert!(!ba.check_reset(h, &t), "a's own direction");
        assert!(!PairKey::new(&a, &c.public).unwrap().check_reset(h, &t));
        assert!(!ab.check_reset(h, &t[..8]));
    }

    #[test]
    fn a_low_order_peer_key_gives_no_pair_key() {
        let a = KeyPair::generate().unwrap();
        assert!(PairKey::new(&a, &PublicKey::from_bytes([0; 32])).is_none());
    }
}
