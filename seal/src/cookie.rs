//! WireGuard's cookie reply (its paper, section 5.3), for handshakes over UDP, where a source
//! address costs an attacker nothing to forge.
//!
//! A responder whose handshake budget is in use does not do the Diffie-Hellman work for a first
//! message that came without a cookie: it answers with a cookie, a MAC of the sender's address
//! (IP and port) under a secret that changes every [`SECRET_LIFETIME_NS`], and keeps no state.
//! Only a sender that receives datagrams at that address learns the cookie; its retried first
//! message carries it, and the responder checks it with one MAC (cookies of the current and the
//! previous secret are taken). A flood from spoofed addresses therefore gets cookies it never
//! sees, and the budget is left to senders that proved their address.
//!
//! The secret is derived from a random seed and the period number, so rotation needs no clock
//! or randomness here: the caller passes the time.

use ring::hmac;

/// Bytes of a cookie (WireGuard's: 16).
pub const COOKIE_LEN: usize = 16;
/// How long one secret makes cookies (WireGuard's: two minutes).
pub const SECRET_LIFETIME_NS: u64 = 120_000_000_000;

/// A cookie, bound to one source address and one secret period.
pub type Cookie = [u8; COOKIE_LEN];

/// The responder's cookie maker and checker.
pub struct CookieJar {
    seed: hmac::Key,
}

impl std::fmt::Debug for CookieJar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieJar")
    }
}

impl CookieJar {
    /// `seed`: 32 random bytes, made once per process (cookies need not survive restarts).
    pub fn new(seed: [u8; 32]) -> CookieJar {
        CookieJar {
            seed: hmac::Key::new(hmac::HMAC_SHA256, &seed),
        }
    }

    fn secret(&self, period: u64) -> hmac::Key {
        let mut ctx = hmac::Context::with_key(&self.seed);
        ctx.update(b"vnet-seal cookie secret");
        ctx.update(&period.to_le_bytes());
        hmac::Key::new(hmac::HMAC_SHA256, ctx.sign().as_ref())
    }

    fn mac(&self, period: u64, source: &[u8]) -> Cookie {
        let tag = hmac::sign(&self.secret(period), source);
        let mut c = [0u8; COOKIE_LEN];
        c.copy_from_slice(&tag.as_ref()[..COOKIE_LEN]);
        c
    }

    /// The cookie for `source` (the sender's address in any fixed encoding) at `now_ns`.
    pub fn make(&self, now_ns: u64, source: &[u8]) -> Cookie {
        self.mac(now_ns / SECRET_LIFETIME_NS, source)
    }

    /// Whether `cookie` was made for `source` under this period's secret or the previous one.
    pub fn check(&self, now_ns: u64, source: &[u8], cookie: &[u8]) -> bool {
        let period = now_ns / SECRET_LIFETIME_NS;
        [Some(period), period.checked_sub(1)]
            .into_iter()
            .flatten()
            .any(|p| equal(&self.mac(p, source), cookie))
    }
}

/// Compares without an early exit, so that the time taken says nothing of where a forged
/// MAC first differs.
pub(crate) fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 5 * SECRET_LIFETIME_NS + 7;

    #[test]
    fn a_cookie_holds_for_its_source_and_two_periods_only() {
        let jar = CookieJar::new([7; 32]);
        let c = jar.make(T, b"10.0.0.1:7000");
        assert!(jar.check(T, b"10.0.0.1:7000", &c));
        assert!(jar.check(T + SECRET_LIFETIME_NS, b"10.0.0.1:7000", &c));
        assert!(!jar.check(T + 2 * SECRET_LIFETIME_NS, b"10.0.0.1:7000", &c));
        assert!(!jar.check(T, b"10.0.0.1:7001", &c), "another port");
        assert!(!jar.check(T, b"10.0.0.1:7000", &c[..15]), "truncated");
        let mut flipped = c;
        flipped[3] ^= 1;
        assert!(!jar.check(T, b"10.0.0.1:7000", &flipped));
    }

    #[test]
    fn another_seed_makes_other_cookies() {
        let (a, b) = (CookieJar::new([1; 32]), CookieJar::new([2; 32]));
        let c = a.make(T, b"192.0.2.1:1");
        assert!(!b.check(T, b"192.0.2.1:1", &c));
        // At time 0 there is no previous period to fall back on.
        assert!(a.check(0, b"x", &a.make(0, b"x")));
    }
}
