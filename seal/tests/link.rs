//! Handshakes and records between two real endpoints: round trips, every refusal and
//! rejection, and rekeying.

mod common;

use common::{handshake, link, seal, T0};
use vnet_seal::{
    Initiator, KeyPair, Known, Mode, Offer, Refused, Reject, Rejects, RekeyPolicy, Responder,
    SealError, HEADER_LEN, OVERHEAD,
};

const SEALED: Offer = Offer {
    mode: Mode::Sealed,
    epoch: 0,
};

fn allow(key: vnet_seal::PublicKey) -> impl Fn(&vnet_seal::PublicKey) -> Option<Known> {
    move |k| {
        (*k == key).then_some(Known {
            last_hello_ns: None,
        })
    }
}

#[test]
fn handshake_learns_both_keys() {
    let (a, b) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let (ia, rb) = handshake(&a, &b, 7, T0);
    assert_eq!((ia.peer, rb.peer), (b.public, a.public));
    assert_eq!((ia.mode, rb.mode), (Mode::Sealed, Mode::Sealed));
    assert_eq!((ia.session.epoch(), rb.session.epoch()), (7, 7));
}

#[test]
fn records_round_trip_both_ways_for_every_size() {
    let (mut a, mut b) = link();
    for size in [0, 1, 64, 1500, 9000, 65536] {
        let plain: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
        let mut rec = seal(&mut a.session, &plain);
        if size >= 16 {
            assert_ne!(
                &rec[HEADER_LEN..HEADER_LEN + size],
                &plain[..],
                "size {size} left in clear"
            );
        }
        assert_eq!(b.session.open(T0, &mut rec).unwrap(), &plain[..]);
        let back = seal(&mut b.session, &plain);
        let mut out = Vec::new();
        assert_eq!(a.session.open_into(T0, &back, &mut out), Ok(size));
        assert_eq!(out, plain);
    }
}

#[test]
fn seal_in_place_matches_seal_and_short_buffers_are_refused() {
    let (mut a, mut b) = link();
    let mut buf = vec![0u8; 100 + OVERHEAD];
    buf[HEADER_LEN..HEADER_LEN + 100].fill(0xab);
    let n = a.session.seal_in_place(&mut buf, 100).unwrap();
    assert_eq!(b.session.open(T0, &mut buf[..n]).unwrap(), &[0xab; 100][..]);
    let mut short = vec![0u8; 100 + OVERHEAD - 1];
    assert_eq!(
        a.session.seal(&[1; 100], &mut short),
        Err(SealError::BufferTooSmall { needed: 132 })
    );
}

#[test]
fn every_record_rejection_is_typed_and_counted() {
    let (mut a, mut b) = link();
    let mut counts = Rejects::default();
    let mut check = |r: Result<&[u8], Reject>, want: Reject| {
        assert_eq!(r.map(|p| p.to_vec()), Err(want));
        counts.count(want);
    };
    let good = seal(&mut a.session, b"frame");
    check(
        b.session.open(T0, &mut good[..OVERHEAD - 1].to_vec()),
        Reject::Truncated,
    );
    let mut wrong_type = good.clone();
    wrong_type[0] = 1;
    check(b.session.open(T0, &mut wrong_type), Reject::Malformed);
    let mut reserved = good.clone();
    reserved[2] = 1;
    check(b.session.open(T0, &mut reserved), Reject::Malformed);
    let mut epoch = good.clone();
    epoch[4] = 9;
    check(b.session.open(T0, &mut epoch), Reject::UnknownEpoch);
    let mut flipped = good.clone();
    flipped[HEADER_LEN] ^= 1;
    check(b.session.open(T0, &mut flipped), Reject::BadTag);
    // A forged record does not consume its counter: the real one still opens.
    assert_eq!(b.session.open(T0, &mut good.clone()).unwrap(), b"frame");
    check(b.session.open(T0, &mut good.clone()), Reject::Replay);
    // Keys of another link (its counter 1, not yet seen here).
    let (mut c, _) = link();
    seal(&mut c.session, b"frame");
    check(
        b.session.open(T0, &mut seal(&mut c.session, b"frame")),
        Reject::BadTag,
    );
    for _ in 0..3000 {
        let mut r = seal(&mut a.session, b"x");
        b.session.open(T0, &mut r).unwrap();
    }
    check(b.session.open(T0, &mut good.clone()), Reject::TooOld);
    for reason in Reject::ALL {
        assert!(counts.get(reason) >= 1, "{reason} never seen");
    }
    assert_eq!(counts.total(), 8);
}

#[test]
fn out_of_order_records_within_the_window_are_delivered_once() {
    let (mut a, mut b) = link();
    let mut recs: Vec<Vec<u8>> = (0..100u8).map(|i| seal(&mut a.session, &[i])).collect();
    recs.reverse();
    for (i, r) in recs.iter_mut().enumerate() {
        assert_eq!(b.session.open(T0, r).unwrap(), &[99 - i as u8]);
    }
}

#[test]
fn wrong_keys_are_refused() {
    let (a, b, stranger) = (
        KeyPair::generate().unwrap(),
        KeyPair::generate().unwrap(),
        KeyPair::generate().unwrap(),
    );
    // The responder was told about `a` only: `stranger` is authenticated but unknown.
    let (_, first) = Initiator::new(&stranger, &b.public, SEALED, T0).unwrap();
    let err = Responder::new(&b, true)
        .on_message(&first, T0, allow(a.public))
        .unwrap_err();
    assert_eq!(err, Refused::UnknownKey(stranger.public));
    // The initiator pinned `stranger`'s key for this listener: `b` cannot read the message.
    let (_, first) = Initiator::new(&a, &stranger.public, SEALED, T0).unwrap();
    let err = Responder::new(&b, true)
        .on_message(&first, T0, allow(a.public))
        .unwrap_err();
    assert_eq!(err, Refused::Decrypt);
    // An impostor answering for `b`: a well-formed reply, from another key.
    let (init, _) = Initiator::new(&a, &b.public, SEALED, T0).unwrap();
    let (_, to_stranger) = Initiator::new(&a, &stranger.public, SEALED, T0).unwrap();
    let impostor = Responder::new(&stranger, true)
        .on_message(&to_stranger, T0, allow(a.public))
        .unwrap();
    assert_eq!(
        init.on_reply(&impostor.reply).unwrap_err(),
        Refused::Decrypt
    );
}

#[test]
fn downgrades_are_refused_on_both_sides() {
    let (a, b) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let clear = Offer {
        mode: Mode::Clear,
        epoch: 0,
    };
    let (_, first) = Initiator::new(&a, &b.public, clear, T0).unwrap();
    let err = Responder::new(&b, true)
        .on_message(&first, T0, allow(a.public))
        .unwrap_err();
    assert_eq!(err, Refused::Downgrade);
    // Both sides insecure: a clear link after an authenticated handshake.
    let ok = Responder::new(&b, false)
        .on_message(&first, T0, allow(a.public))
        .unwrap();
    assert_eq!(ok.established.mode, Mode::Clear);
    // An insecure responder still seals when the initiator offers it.
    let (init, first) = Initiator::new(&a, &b.public, SEALED, T0 + 1).unwrap();
    let ok = Responder::new(&b, false)
        .on_message(&first, T0, allow(a.public))
        .unwrap();
    assert_eq!(init.on_reply(&ok.reply).unwrap().mode, Mode::Sealed);
}

#[test]
fn replayed_and_malformed_first_messages_are_refused() {
    let (a, b) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let responder = Responder::new(&b, true);
    let (_, first) = Initiator::new(&a, &b.public, SEALED, T0).unwrap();
    let accepted = responder.on_message(&first, T0, allow(a.public)).unwrap();
    assert_eq!(accepted.hello_ns, T0);
    let seen = |_: &vnet_seal::PublicKey| {
        Some(Known {
            last_hello_ns: Some(T0),
        })
    };
    assert_eq!(
        responder.on_message(&first, T0, seen).unwrap_err(),
        Refused::Replayed
    );
    let mut tampered = first.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x80;
    assert_eq!(
        responder
            .on_message(&tampered, T0, allow(a.public))
            .unwrap_err(),
        Refused::Decrypt
    );
    assert!(matches!(
        responder.on_message(&first[..20], T0, allow(a.public)),
        Err(Refused::Malformed(_))
    ));
    assert!(matches!(
        responder.on_message(&[], T0, allow(a.public)),
        Err(Refused::Malformed(_))
    ));
    let mut as_reply = first.clone();
    as_reply[0] = 2;
    assert_eq!(
        responder
            .on_message(&as_reply, T0, allow(a.public))
            .unwrap_err(),
        Refused::Malformed("wrong message type")
    );
}

#[test]
fn rekey_by_time_and_volume() {
    let policy = RekeyPolicy {
        after_ns: 100,
        after_bytes: 1000,
        after_records: 10,
        overlap_ns: 50,
    };
    let (mut a, _) = link();
    assert!(!a.session.needs_rekey(T0, &policy));
    assert!(a.session.needs_rekey(T0 + 100, &policy));
    seal(&mut a.session, &[0; 999]);
    assert!(!a.session.needs_rekey(T0, &policy));
    seal(&mut a.session, &[0; 1]);
    assert!(a.session.needs_rekey(T0, &policy));
    let (mut c, _) = link();
    for _ in 0..10 {
        seal(&mut c.session, &[]);
    }
    assert!(c.session.needs_rekey(T0, &policy));
}

#[test]
fn rekey_hands_over_with_an_overlap() {
    let policy = RekeyPolicy {
        overlap_ns: 1000,
        ..RekeyPolicy::default()
    };
    let (ka, kb) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let (mut a, mut b) = handshake(&ka, &kb, 0, T0);
    let old_from_a = seal(&mut a.session, b"old");
    let old_from_b = seal(&mut b.session, b"old");
    let (na, nb) = handshake(&ka, &kb, 1, T0 + 10);
    a.session.install(na.session, T0 + 10, &policy);
    b.session.install(nb.session, T0 + 10, &policy);
    // The initiator moved at once; the responder waits for proof the initiator has the keys.
    assert_eq!((a.session.epoch(), b.session.epoch()), (1, 0));
    let mut from_b = seal(&mut b.session, b"b0");
    assert_eq!(a.session.open(T0 + 11, &mut from_b).unwrap(), b"b0");
    let mut from_a = seal(&mut a.session, b"a1");
    assert_eq!(b.session.open(T0 + 12, &mut from_a).unwrap(), b"a1");
    assert_eq!(b.session.epoch(), 1);
    // Records of epoch 0 still in flight open during the overlap, not after.
    assert_eq!(
        b.session.open(T0 + 13, &mut old_from_a.clone()).unwrap(),
        b"old"
    );
    assert_eq!(
        a.session.open(T0 + 1009, &mut old_from_b.clone()).unwrap(),
        b"old"
    );
    assert_eq!(
        a.session.open(T0 + 1010, &mut old_from_b.clone()),
        Err(Reject::UnknownEpoch)
    );
    let mut new = seal(&mut b.session, b"b1");
    assert_eq!(a.session.open(T0 + 2000, &mut new).unwrap(), b"b1");
}

#[test]
fn a_responder_session_is_confirmed_by_the_first_record_it_opens() {
    let (mut a, mut b) = link();
    assert!(a.session.is_confirmed());
    assert!(!b.session.is_confirmed());
    let mut forged = seal(&mut a.session, b"x");
    forged[HEADER_LEN] ^= 1;
    assert_eq!(b.session.open(T0, &mut forged), Err(Reject::BadTag));
    assert!(
        !b.session.is_confirmed(),
        "a forged record confirmed the keys"
    );
    let mut rec = seal(&mut a.session, b"y");
    b.session.open(T0, &mut rec).unwrap();
    assert!(b.session.is_confirmed());
}
