//! The handshake messages of sealed links: any bytes as a first message or as a reply are
//! refused with a typed reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use vnet_seal::{Initiator, KeyPair, Known, Mode, Offer, Responder};

fn keys() -> &'static (KeyPair, KeyPair) {
    static KEYS: OnceLock<(KeyPair, KeyPair)> = OnceLock::new();
    KEYS.get_or_init(|| (KeyPair::generate().unwrap(), KeyPair::generate().unwrap()))
}

fuzz_target!(|data: &[u8]| {
    let (ka, kb) = keys();
    let responder = Responder::new(kb, true);
    let refused = responder.on_message(data, 1, |_| Some(Known { last_hello_ns: None }));
    assert!(refused.is_err(), "forged first message accepted");
    let (init, _) = Initiator::new(ka, &kb.public, Offer { mode: Mode::Sealed, epoch: 0 }, 1).unwrap();
    assert!(init.on_reply(data).is_err(), "forged reply accepted");
});
