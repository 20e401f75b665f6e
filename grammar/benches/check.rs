//! Parse and parse+check throughput on generated realistic programs (`gen` module): the thesis
//! star with Figure 2 rules and fast-path links. The 2,000-daemon / 100,000-rule case is the
//! target of SPEC-scale files (parse+check well under half a second).
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;
use vnet_grammar::gen::{generate, Params, Shape};

const SIZES: [(usize, usize); 3] = [(100, 5_000), (500, 25_000), (2_000, 100_000)];

fn programs() -> Vec<(String, String)> {
    SIZES
        .iter()
        .map(|&(daemons, rules)| {
            let text = generate(Params {
                daemons,
                rules,
                vms_per_host: 1,
            })
            .to_vnet();
            (format!("{daemons}d-{rules}r"), text)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let programs = programs();
    let mut group = c.benchmark_group("grammar");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for (name, text) in &programs {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse", name), text, |b, text| {
            b.iter(|| vnet_grammar::parse(black_box(text)))
        });
        group.bench_with_input(BenchmarkId::new("analyze", name), text, |b, text| {
            b.iter(|| vnet_grammar::analyze(black_box(text)))
        });
    }
    group.finish();
    // Every topology shape at 10,000 rules (scripts/bench-language adds 30k and 100k).
    let mut shapes = c.benchmark_group("shapes");
    shapes.sample_size(10);
    for shape in Shape::ALL {
        let text = shape.generate(10_000).to_vnet();
        shapes.throughput(Throughput::Bytes(text.len() as u64));
        shapes.bench_with_input(
            BenchmarkId::new("analyze", shape.name()),
            &text,
            |b, text| b.iter(|| vnet_grammar::analyze(black_box(text))),
        );
    }
    shapes.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
