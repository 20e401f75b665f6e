//! A real handshake between two fresh key pairs, shared by the integration tests.
#![allow(dead_code)]

use vnet_seal::{Established, Initiator, KeyPair, Known, Mode, Offer, Responder};

pub const T0: u64 = 1_000_000_000;

/// Both ends of a link after a sealed handshake at `now`, with `epoch`.
pub fn handshake(a: &KeyPair, b: &KeyPair, epoch: u32, now: u64) -> (Established, Established) {
    let (init, first) = Initiator::new(
        a,
        &b.public,
        Offer {
            mode: Mode::Sealed,
            epoch,
        },
        now,
    )
    .unwrap();
    let responder = Responder::new(b, true);
    let accepted = responder
        .on_message(&first, now, |k| {
            (*k == a.public).then_some(Known {
                last_hello_ns: None,
            })
        })
        .unwrap();
    (
        init.on_reply(&accepted.reply).unwrap(),
        accepted.established,
    )
}

pub fn link() -> (Established, Established) {
    handshake(
        &KeyPair::generate().unwrap(),
        &KeyPair::generate().unwrap(),
        0,
        T0,
    )
}

pub fn seal(session: &mut vnet_seal::Session, plaintext: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; plaintext.len() + vnet_seal::OVERHEAD];
    let n = session.seal(plaintext, &mut out).unwrap();
    assert_eq!(n, out.len());
    out
}
