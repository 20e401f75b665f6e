//! The record decoder of sealed links: any bytes given to `Session::open` are rejected with a
//! typed reason (never a panic), and an altered sealed record is never delivered.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Mutex, OnceLock};
use vnet_seal::{Initiator, KeyPair, Known, Mode, Offer, Responder, Session, OVERHEAD};

fn link() -> &'static Mutex<(Session, Session)> {
    static LINK: OnceLock<Mutex<(Session, Session)>> = OnceLock::new();
    LINK.get_or_init(|| {
        let (ka, kb) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let offer = Offer { mode: Mode::Sealed, epoch: 0 };
        let (init, first) = Initiator::new(&ka, &kb.public, offer, 1).unwrap();
        let ok = Responder::new(&kb, true).on_message(&first, 1, |_| Some(Known { last_hello_ns: None })).unwrap();
        Mutex::new((init.on_reply(&ok.reply).unwrap().session, ok.established.session))
    })
}

fuzz_target!(|data: &[u8]| {
    let mut guard = link().lock().unwrap_or_else(|e| e.into_inner());
    let (a, b) = &mut *guard;
    // Arbitrary bytes as a record.
    let mut raw = data.to_vec();
    assert!(b.open(0, &mut raw).is_err(), "forged record delivered");
    // A real record with the input's first two bytes as an alteration (position, xor mask).
    if let [pos, mask, plain @ ..] = data {
        let mut rec = vec![0u8; plain.len() + OVERHEAD];
        let n = a.seal(plain, &mut rec).unwrap();
        let at = *pos as usize % n;
        rec[at] ^= mask;
        let opened = b.open(0, &mut rec).map(|p| p.to_vec());
        if *mask == 0 {
            assert_eq!(opened.as_deref(), Ok(plain));
        } else {
            assert!(opened.is_err(), "altered byte {at} delivered");
        }
    }
});
