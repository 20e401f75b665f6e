//! Property tests: the replay window against a set-based model, arrivals in any order through
//! a real session, and tampering with any byte of a record or handshake message.

mod common;

use common::{link, seal, T0};
use proptest::prelude::*;
use std::collections::HashSet;
use vnet_seal::replay::{ReplayWindow, WINDOW};
use vnet_seal::{Initiator, KeyPair, Known, Mode, Offer, Reject, Responder};

/// What the window must do, stated plainly: a counter is delivered once, and only while it is
/// no more than WINDOW behind the newest delivered one.
#[derive(Default)]
struct Model {
    seen: HashSet<u64>,
    newest: u64,
}

impl Model {
    fn accept(&mut self, c: u64) -> Result<(), Reject> {
        if c < self.newest && self.newest - c > WINDOW {
            return Err(Reject::TooOld);
        }
        if !self.seen.insert(c) {
            return Err(Reject::Replay);
        }
        self.newest = self.newest.max(c);
        Ok(())
    }
}

/// Counters as a sender makes them (0, 1, 2, ...), then reordered, duplicated and dropped.
fn arrivals() -> impl Strategy<Value = Vec<u64>> {
    (1usize..3000).prop_flat_map(|n| {
        let jitter = prop::collection::vec((0u64..2500, 0u8..10), n);
        jitter.prop_map(move |j| {
            let mut out = Vec::new();
            for (i, (delay, fate)) in j.into_iter().enumerate() {
                let key = i as u64 + delay;
                match fate {
                    0 => {}
                    1 => {
                        out.push((key, i as u64));
                        out.push((key + 40, i as u64));
                    }
                    _ => out.push((key, i as u64)),
                }
            }
            out.sort();
            out.into_iter().map(|(_, c)| c).collect()
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn window_agrees_with_the_model(order in arrivals()) {
        let (mut w, mut m) = (ReplayWindow::new(), Model::default());
        for c in order {
            prop_assert_eq!(w.check_and_mark(c), m.accept(c), "counter {}", c);
        }
    }

    #[test]
    fn window_agrees_with_the_model_on_wide_jumps(
        order in prop::collection::vec(prop_oneof![0u64..5000, 0u64..100_000], 1..500)
    ) {
        let (mut w, mut m) = (ReplayWindow::new(), Model::default());
        for c in order {
            prop_assert_eq!(w.check_and_mark(c), m.accept(c), "counter {}", c);
        }
    }

    #[test]
    fn a_session_delivers_each_record_at_most_once(order in arrivals()) {
        let (mut a, mut b) = link();
        let n = order.iter().max().map_or(0, |m| m + 1);
        let records: Vec<Vec<u8>> = (0..n).map(|i| seal(&mut a.session, &i.to_le_bytes())).collect();
        let mut m = Model::default();
        for c in order {
            let got = b.session.open(T0, &mut records[c as usize].clone()).map(|p| p.to_vec());
            prop_assert_eq!(got, m.accept(c).map(|()| c.to_le_bytes().to_vec()));
        }
    }

    #[test]
    fn tampering_any_record_byte_is_rejected(
        plain in prop::collection::vec(any::<u8>(), 0..200), at in any::<prop::sample::Index>(), flip in 1u8..=255
    ) {
        let (mut a, mut b) = link();
        let mut rec = seal(&mut a.session, &plain);
        let at = at.index(rec.len());
        rec[at] ^= flip;
        prop_assert!(b.session.open(T0, &mut rec).is_err(), "byte {} altered and delivered", at);
    }

    #[test]
    fn tampering_any_handshake_byte_is_refused(at in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let (ka, kb) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
        let allow = |k: &vnet_seal::PublicKey| (*k == ka.public).then_some(Known { last_hello_ns: None });
        let offer = Offer { mode: Mode::Sealed, epoch: 0 };
        let (init, mut first) = Initiator::new(&ka, &kb.public, offer, T0).unwrap();
        let responder = Responder::new(&kb, true);
        let accepted = responder.on_message(&first, T0, allow).unwrap();
        let i = at.index(first.len());
        first[i] ^= flip;
        prop_assert!(responder.on_message(&first, T0, allow).is_err(), "first message byte {} altered", i);
        let mut reply = accepted.reply;
        let i = at.index(reply.len());
        reply[i] ^= flip;
        prop_assert!(init.on_reply(&reply).is_err(), "reply byte {} altered", i);
    }
}
