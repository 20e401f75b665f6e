//! Lookup cost with 10,000 rules: a cached lookup (one hash probe in the receiver's cache)
//! and an uncached one (the grammar crate's Table decides, then targets are resolved).
//!
//! `cargo bench -p vnet-daemon --bench lookup`

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use vnet_daemon::engine::{EngineCell, Lookup};
use vnet_grammar::model::{Decision, Match, RuleDef, Target};
use vnet_grammar::Mac;

fn mac(i: u32) -> Mac {
    let b = i.to_be_bytes();
    Mac([0x02, 0, b[0], b[1], b[2], b[3]])
}

/// 10,000 rules: 8,000 exact destinations, 1,000 `NOT` destinations, 990 `ANY` destinations
/// with exact sources, and 10 defaults (`NONE`).
fn table() -> EngineCell<u32> {
    let cell = EngineCell::default();
    cell.update(|e| {
        let mut n = 0;
        let mut add = |src, dst, port: u32| {
            let rule = RuleDef {
                daemon: "h".into(),
                src,
                dst,
                target: Target::Link {
                    peer: format!("p{port}").into(),
                },
            };
            e.add_rule(&rule);
            n += 1;
        };
        for i in 0..8000 {
            add(Match::Any, Match::Exact(mac(i)), i % 16);
        }
        for i in 0..1000 {
            add(Match::Exact(mac(20_000 + i)), Match::Not(mac(i)), i % 16);
        }
        for i in 0..990 {
            add(Match::Exact(mac(30_000 + i)), Match::Any, i % 16);
        }
        for i in 0..10 {
            add(Match::Exact(mac(40_000 + i)), Match::None, i % 16);
        }
        assert_eq!(n, 10_000);
        for p in 0..16 {
            e.set_port(
                Target::Link {
                    peer: format!("p{p}").into(),
                },
                p,
            );
        }
    });
    assert_eq!(cell.read().rule_count(), 10_000);
    cell
}

fn bench(c: &mut Criterion) {
    let cell = table();
    let from = Target::Interface { name: "vm".into() };
    let mut scratch = Decision::default();
    c.bench_function("uncached lookup, 10k rules (exact dst)", |b| {
        let mut i = 0u32;
        b.iter(|| {
            i = (i + 1) % 8000;
            let r = cell.read().route(
                black_box(mac(50_000)),
                black_box(mac(i)),
                &from,
                &mut scratch,
            );
            black_box(r.outs.len())
        })
    });
    c.bench_function("uncached lookup, 10k rules (default rule)", |b| {
        b.iter(|| {
            let r = cell.read().route(
                black_box(mac(40_003)),
                black_box(mac(99_999)),
                &from,
                &mut scratch,
            );
            black_box(r.outs.len())
        })
    });
    let mut lookup: Lookup<u32> = Lookup::new(from.clone(), None);
    let pairs: Vec<(Mac, Mac)> = (0..64).map(|i| (mac(50_000), mac(i * 100))).collect();
    for (s, d) in &pairs {
        lookup.get(&cell, *s, *d);
    }
    c.bench_function("cached lookup, 10k rules", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) & 63;
            let (s, d) = pairs[i];
            black_box(lookup.get(&cell, black_box(s), black_box(d)).outs.len())
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
