//! The link handshake as a state machine without IO (quinn-proto's way: no sockets, no
//! clock, no randomness; the caller passes nonces in and sends what comes out). Both
//! transports drive it: the TCP dialer and acceptor in order on one connection, the UDP
//! control task from datagrams that may arrive late, twice, or from anyone.
//!
//! ```text
//! dialer                                   listener
//!   Dialer::new ── HELLO {from, to, nonce_d} ──► Listener::on_hello → Challenged
//!   on_challenge ◄── CHALLENGE {nonce_l, proof_l} ──┘
//!        └──────── PROOF {proof_d} ──────────► Challenged::on_proof
//!   on_ready ◄──────── READY ──────────────────┘   (the link is up at both ends)
//! ```
//!
//! `proof_l = HMAC(key, "vnet-link-listener" ‖ dialer ‖ listener ‖ nonce_d ‖ nonce_l)` and
//! `proof_d` the same with `"vnet-link-dialer"`: each side proves it holds the key for this
//! pair and these nonces, so a recorded handshake cannot be replayed.

use super::msg::{LinkChallenge, LinkHello, LinkNote, LinkProof};
use crate::auth::{self, hex, unhex, Key};
use std::net::SocketAddr;
use vnet_grammar::ast::Transport;

/// Why a handshake step is refused (the daemon counts each as an `unauthenticated` drop).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No such link is configured here for this transport and direction, or the message
    /// is from or for another daemon.
    UnknownPeer(String),
    /// The sender could not prove it holds the key.
    WrongKey,
    /// A step of a handshake this side is not in: an answer to a hello it did not send or
    /// sent from elsewhere, a proof for a challenge sent to another address.
    Stale,
    /// A nonce that is not 32 bytes of hex.
    BadNonce,
    /// This side must seal the link but was given no key for its peer (`vnetc apply` pins it).
    NoPeerKey,
    /// Over the handshake rate limit (see `link::seal`).
    RateLimited,
    /// The handshake budget is in use and the hello had no valid cookie: the UDP listener
    /// answers with this cookie instead of doing the handshake's work.
    Busy(vnet_seal::Cookie),
    /// The Noise handshake refused (unknown key, downgrade, replay, ...).
    Seal(vnet_seal::Refused),
}

impl Refused {
    /// The drop counter a refusal goes to.
    pub fn drop_reason(&self) -> crate::stats::DropReason {
        use crate::stats::DropReason;
        match self {
            Refused::RateLimited => DropReason::HandshakeLimit,
            Refused::Busy(_) => DropReason::HandshakeCookie,
            Refused::Seal(vnet_seal::Refused::UnknownKey(_)) => DropReason::UnknownKey,
            Refused::Seal(vnet_seal::Refused::Downgrade) => DropReason::Downgrade,
            _ => DropReason::Unauthenticated,
        }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::UnknownPeer(why) => write!(f, "{why}"),
            Refused::WrongKey => write!(f, "the peer could not prove it holds the key"),
            Refused::Stale => write!(f, "a step of no handshake in progress"),
            Refused::BadNonce => write!(f, "a malformed nonce"),
            Refused::NoPeerKey => write!(
                f,
                "no public key pinned for the peer (run `vnetc apply`, or --insecure-links)"
            ),
            Refused::RateLimited => write!(f, "over the handshake rate limit"),
            Refused::Busy(_) => write!(f, "handshake budget in use: answered with a cookie"),
            Refused::Seal(why) => write!(f, "{why}"),
        }
    }
}

/// The link a hello names, as configured at the listener.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Configured {
    pub transport: Transport,
    /// This daemon dials it (so it does not accept it).
    pub dials: bool,
}

/// The listening end: who it is and the key.
pub(crate) struct Listener<'a> {
    pub me: &'a str,
    pub key: &'a Key,
}

/// A listener that sent its challenge and waits for the proof.
#[derive(Clone, Debug)]
pub(crate) struct Challenged {
    peer: String,
    at: SocketAddr,
    dialer: [u8; 32],
    listener: [u8; 32],
}

impl Listener<'_> {
    /// Answers a HELLO that arrived `over` a transport `at` an address. `link`: the link
    /// configured with the sender, if any; `nonce`: fresh random bytes.
    pub fn on_hello(
        &self,
        hello: &LinkHello,
        over: Transport,
        at: SocketAddr,
        link: Option<Configured>,
        nonce: [u8; 32],
    ) -> Result<(LinkChallenge, Challenged), Refused> {
        let ok = link.is_some_and(|l| !l.dials && l.transport == over);
        if !ok || hello.to != self.me || hello.transport != over {
            return Err(Refused::UnknownPeer(format!(
                "no {over:?} link from {} to {} is configured here",
                hello.from, hello.to
            )));
        }
        let dialer = nonce_of(&hello.nonce)?;
        let parts = pair_parts(&hello.from, self.me, &dialer, &nonce);
        let proof = self.key.sign(auth::LINK_LISTENER, &parts);
        let challenge = LinkChallenge {
            from: self.me.to_string(),
            nonce: hex(&nonce),
            proof: hex(&proof),
            noise: None,
        };
        let state = Challenged {
            peer: hello.from.clone(),
            at,
            dialer,
            listener: nonce,
        };
        Ok((challenge, state))
    }
}

impl Challenged {
    /// Checks the dialer's PROOF, which arrived from `from`; READY to send back when it holds.
    pub fn on_proof(
        &self,
        l: &Listener<'_>,
        proof: &LinkProof,
        from: SocketAddr,
    ) -> Result<LinkNote, Refused> {
        if proof.from != self.peer {
            return Err(Refused::UnknownPeer(format!(
                "a proof from {} to a challenge sent to {}",
                proof.from, self.peer
            )));
        }
        if from != self.at {
            return Err(Refused::Stale);
        }
        let parts = pair_parts(&self.peer, l.me, &self.dialer, &self.listener);
        if !l.key.verify(auth::LINK_DIALER, &parts, &proof.proof) {
            return Err(Refused::WrongKey);
        }
        Ok(LinkNote::new(l.me, ""))
    }
}

/// The dialing end of one handshake.
#[derive(Clone, Debug)]
pub(crate) struct Dialer {
    me: String,
    peer: String,
    transport: Transport,
    nonce: [u8; 32],
    /// Where the listener answered from, once its challenge checked out.
    proven_to: Option<SocketAddr>,
}

impl Dialer {
    /// A handshake from `me` to `peer` with a fresh `nonce`; send [`Dialer::hello`].
    pub fn new(me: &str, peer: &str, transport: Transport, nonce: [u8; 32]) -> Dialer {
        Dialer {
            me: me.to_string(),
            peer: peer.to_string(),
            transport,
            nonce,
            proven_to: None,
        }
    }

    pub fn hello(&self) -> LinkHello {
        LinkHello {
            from: self.me.clone(),
            to: self.peer.clone(),
            transport: self.transport,
            nonce: hex(&self.nonce),
            noise: None,
            cookie: None,
        }
    }

    /// Whether a cookie reply echoing `nonce` answers this dialer's hello.
    pub fn sent_nonce(&self, nonce: &str) -> bool {
        unhex(nonce).is_some_and(|n| n == self.nonce)
    }

    /// Checks the listener's CHALLENGE, which arrived from `from`; the PROOF to send back.
    pub fn on_challenge(
        &mut self,
        key: &Key,
        c: &LinkChallenge,
        from: SocketAddr,
    ) -> Result<LinkProof, Refused> {
        if c.from != self.peer {
            return Err(Refused::UnknownPeer(format!(
                "a challenge from {} to a hello sent to {}",
                c.from, self.peer
            )));
        }
        let theirs = nonce_of(&c.nonce)?;
        let parts = pair_parts(&self.me, &self.peer, &self.nonce, &theirs);
        if !key.verify(auth::LINK_LISTENER, &parts, &c.proof) {
            return Err(Refused::WrongKey);
        }
        self.proven_to = Some(from);
        let proof = key.sign(auth::LINK_DIALER, &parts);
        Ok(LinkProof {
            from: self.me.clone(),
            proof: hex(&proof),
        })
    }

    /// Checks the listener's READY, which arrived from `from`: the handshake is complete.
    pub fn on_ready(&self, ready: &LinkNote, from: SocketAddr) -> Result<(), Refused> {
        if ready.from != self.peer {
            return Err(Refused::UnknownPeer(format!(
                "ready from {}, not {}",
                ready.from, self.peer
            )));
        }
        if self.proven_to != Some(from) {
            return Err(Refused::Stale);
        }
        Ok(())
    }
}

/// The parts both proofs sign: dialer, listener, dialer's nonce, listener's nonce.
fn pair_parts<'a>(
    dialer: &'a str,
    listener: &'a str,
    nonce_d: &'a [u8; 32],
    nonce_l: &'a [u8; 32],
) -> [&'a [u8]; 4] {
    [dialer.as_bytes(), listener.as_bytes(), nonce_d, nonce_l]
}

/// A nonce as sent: 32 bytes in hex.
fn nonce_of(text: &str) -> Result<[u8; 32], Refused> {
    unhex(text)
        .and_then(|n| n.try_into().ok())
        .ok_or(Refused::BadNonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "a";
    const B: &str = "b";

    fn key(k: &[u8]) -> Key {
        Key::from_bytes(k).expect("key")
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn listening(transport: Transport) -> Option<Configured> {
        Some(Configured {
            transport,
            dials: false,
        })
    }

    /// A (dialer a) → B (listener b) handshake up to the challenge.
    fn challenged(lk: &Key) -> (Dialer, LinkChallenge, Challenged) {
        let d = Dialer::new(A, B, Transport::Udp, [1; 32]);
        let l = Listener { me: B, key: lk };
        let (c, state) = l
            .on_hello(
                &d.hello(),
                Transport::Udp,
                addr(1),
                listening(Transport::Udp),
                [2; 32],
            )
            .expect("hello accepted");
        (d, c, state)
    }

    #[test]
    fn a_handshake_completes_with_the_same_key() {
        for transport in [Transport::Tcp, Transport::Udp] {
            let k = key(b"0123456789abcdef0123");
            let mut d = Dialer::new(A, B, transport, [1; 32]);
            let l = Listener { me: B, key: &k };
            let (c, state) = l
                .on_hello(
                    &d.hello(),
                    transport,
                    addr(1),
                    listening(transport),
                    [2; 32],
                )
                .unwrap();
            assert_eq!(state.peer, A);
            let p = d.on_challenge(&k, &c, addr(2)).unwrap();
            let ready = state.on_proof(&l, &p, addr(1)).unwrap();
            assert_eq!(ready.from, B);
            assert_eq!(d.on_ready(&ready, addr(2)), Ok(()));
        }
    }

    #[test]
    fn a_wrong_key_is_refused_at_both_ends() {
        let (k1, k2) = (key(b"0123456789abcdef0123"), key(b"0123456789abcdef0124"));
        // The listener holds another key: the dialer refuses its challenge.
        let (mut d, c, _) = challenged(&k2);
        assert_eq!(d.on_challenge(&k1, &c, addr(2)), Err(Refused::WrongKey));
        // The dialer holds another key: the listener refuses its proof.
        let (mut d, c, state) = challenged(&k2);
        let p = d.on_challenge(&k2, &c, addr(2)).unwrap();
        let l1 = Listener { me: B, key: &k1 };
        assert_eq!(state.on_proof(&l1, &p, addr(1)), Err(Refused::WrongKey));
        // A forged proof.
        let forged = LinkProof {
            from: A.into(),
            proof: hex(&[0; 32]),
        };
        let l2 = Listener { me: B, key: &k2 };
        assert_eq!(
            state.on_proof(&l2, &forged, addr(1)),
            Err(Refused::WrongKey)
        );
    }

    #[test]
    fn unknown_peers_are_refused() {
        let k = key(b"0123456789abcdef0123");
        let l = Listener { me: B, key: &k };
        let hello = Dialer::new(A, B, Transport::Tcp, [1; 32]).hello();
        let refuse = |hello: &LinkHello, over, link| {
            l.on_hello(hello, over, addr(1), link, [2; 32]).map(|_| ())
        };
        let unknown = |r: Result<(), Refused>| matches!(r, Err(Refused::UnknownPeer(_)));
        // No link with `a` configured here.
        assert!(unknown(refuse(&hello, Transport::Tcp, None)));
        // We dial that link ourselves.
        let ours = Some(Configured {
            transport: Transport::Tcp,
            dials: true,
        });
        assert!(unknown(refuse(&hello, Transport::Tcp, ours)));
        // The link is UDP, the hello came over TCP.
        assert!(unknown(refuse(
            &hello,
            Transport::Tcp,
            listening(Transport::Udp)
        )));
        // The hello says UDP but came over TCP.
        let mut udp = hello.clone();
        udp.transport = Transport::Udp;
        assert!(unknown(refuse(
            &udp,
            Transport::Tcp,
            listening(Transport::Tcp)
        )));
        // Addressed to another daemon.
        let mut other = hello.clone();
        other.to = "c".into();
        assert!(unknown(refuse(
            &other,
            Transport::Tcp,
            listening(Transport::Tcp)
        )));
        // A challenge, proof or ready from a daemon the handshake is not with.
        let (mut d, mut c, state) = challenged(&k);
        c.from = "c".into();
        assert!(matches!(
            d.on_challenge(&k, &c, addr(2)),
            Err(Refused::UnknownPeer(_))
        ));
        let p = LinkProof {
            from: "c".into(),
            proof: hex(&[0; 32]),
        };
        assert!(matches!(
            state.on_proof(&l, &p, addr(1)),
            Err(Refused::UnknownPeer(_))
        ));
        assert!(matches!(
            d.on_ready(&LinkNote::new("c", ""), addr(2)),
            Err(Refused::UnknownPeer(_))
        ));
    }

    #[test]
    fn stale_steps_are_refused() {
        let k = key(b"0123456789abcdef0123");
        let l = Listener { me: B, key: &k };
        // READY before any challenge was answered.
        let (mut d, c, state) = challenged(&k);
        assert_eq!(
            d.on_ready(&LinkNote::new(B, ""), addr(2)),
            Err(Refused::Stale)
        );
        let p = d.on_challenge(&k, &c, addr(2)).unwrap();
        // READY from another address than the challenge came from.
        assert_eq!(
            d.on_ready(&LinkNote::new(B, ""), addr(3)),
            Err(Refused::Stale)
        );
        // The proof from another address than the challenge went to.
        assert_eq!(state.on_proof(&l, &p, addr(9)), Err(Refused::Stale));
        // A proof for an older challenge: the listener challenged again (a resent hello)
        // with a new nonce, so the proof of the first one no longer holds.
        let (_, again) = l
            .on_hello(
                &d.hello(),
                Transport::Udp,
                addr(1),
                listening(Transport::Udp),
                [3; 32],
            )
            .unwrap();
        assert_eq!(again.on_proof(&l, &p, addr(1)), Err(Refused::WrongKey));
        // A challenge for an older hello (another dialer nonce) does not verify either.
        let mut newer = Dialer::new(A, B, Transport::Udp, [4; 32]);
        assert_eq!(newer.on_challenge(&k, &c, addr(2)), Err(Refused::WrongKey));
    }

    #[test]
    fn malformed_nonces_are_refused() {
        let k = key(b"0123456789abcdef0123");
        let l = Listener { me: B, key: &k };
        for nonce in ["zz", "0011", ""] {
            let mut h = Dialer::new(A, B, Transport::Udp, [1; 32]).hello();
            h.nonce = nonce.into();
            let r = l.on_hello(
                &h,
                Transport::Udp,
                addr(1),
                listening(Transport::Udp),
                [2; 32],
            );
            assert_eq!(r.map(|_| ()), Err(Refused::BadNonce), "{nonce:?}");
        }
        let (mut d, mut c, _) = challenged(&k);
        c.nonce = "not hex".into();
        assert_eq!(d.on_challenge(&k, &c, addr(2)), Err(Refused::BadNonce));
    }
}
