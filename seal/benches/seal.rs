//! Seal+open throughput by record size on one core, against a plain copy of the same bytes
//! (what a clear link does with a frame), and the handshake rate.
//! `cargo bench -p vnet-seal --bench seal`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use vnet_seal::{Initiator, KeyPair, Known, Mode, Offer, Responder, Session, HEADER_LEN, OVERHEAD};

const SIZES: [usize; 4] = [64, 1500, 9000, 65536];

const SEALED: Offer = Offer {
    mode: Mode::Sealed,
    epoch: 0,
};

fn known(_: &vnet_seal::PublicKey) -> Option<Known> {
    Some(Known {
        last_hello_ns: None,
    })
}

/// A complete handshake: both ends' sessions.
fn handshake(ka: &KeyPair, kb: &KeyPair, responder: &Responder) -> (Session, Session) {
    let (init, first) = Initiator::new(ka, &kb.public, SEALED, 1).unwrap();
    let accepted = responder.on_message(&first, 1, known).unwrap();
    let a = init.on_reply(&accepted.reply).unwrap();
    (a.session, accepted.established.session)
}

fn records(c: &mut Criterion) {
    let (ka, kb) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let (mut a, mut b) = handshake(&ka, &kb, &Responder::new(&kb, true));
    let mut group = c.benchmark_group("record");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for size in SIZES {
        group.throughput(Throughput::Bytes(size as u64));
        let plain = vec![0x5au8; size];
        let mut buf = vec![0u8; size + OVERHEAD];
        group.bench_with_input(BenchmarkId::new("seal_open", size), &size, |bench, _| {
            bench.iter(|| {
                let n = a.seal(black_box(&plain), &mut buf).unwrap();
                black_box(b.open(0, &mut buf[..n]).unwrap().len())
            })
        });
        group.bench_with_input(BenchmarkId::new("seal", size), &size, |bench, &size| {
            bench.iter(|| black_box(a.seal_in_place(black_box(&mut buf), size).unwrap()))
        });
        group.bench_with_input(BenchmarkId::new("memcpy", size), &size, |bench, _| {
            bench.iter(|| {
                buf[HEADER_LEN..HEADER_LEN + size].copy_from_slice(black_box(&plain));
                black_box(&buf);
            })
        });
    }
    group.finish();
}

fn handshakes(c: &mut Criterion) {
    let (ka, kb) = (KeyPair::generate().unwrap(), KeyPair::generate().unwrap());
    let responder = Responder::new(&kb, true);
    let mut group = c.benchmark_group("handshake");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    group.bench_function("both_sides", |bench| {
        bench.iter(|| black_box(handshake(&ka, &kb, &responder)))
    });
    let (_, first) = Initiator::new(&ka, &kb.public, SEALED, 1).unwrap();
    group.bench_function("responder", |bench| {
        bench.iter(|| black_box(responder.on_message(&first, 1, known).unwrap()))
    });
    group.finish();
}

criterion_group!(benches, records, handshakes);
criterion_main!(benches);
