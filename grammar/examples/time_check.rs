//! Times parse-only and parse+check of one file, best of N runs, and prints throughput.
//! `scripts/bench-language` runs it beside CPython's json module on the same data.
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), runs) = (
        args.next(),
        args.next().and_then(|n| n.parse().ok()).unwrap_or(5usize),
    ) else {
        eprintln!("usage: time_check FILE [RUNS]");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("{path}: {error}");
            std::process::exit(2);
        }
    };
    let lines = text.lines().count();
    let mb = text.len() as f64 / 1e6;
    let best = |f: &dyn Fn() -> usize| {
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let parse = best(&|| vnet_grammar::parse(&text).file.blocks.len());
    let check = best(&|| vnet_grammar::analyze(&text).diagnostics.len());
    let diagnostics = vnet_grammar::analyze(&text).diagnostics.len();
    println!("file: {path}: {mb:.1} MB, {lines} lines, {diagnostics} diagnostics");
    for (what, secs) in [("parse only", parse), ("parse+check", check)] {
        println!(
            "{what:<12} {:>7.3} s  {:>6.1} MB/s  {:>9.0} lines/s",
            secs,
            mb / secs,
            lines as f64 / secs
        );
    }
    println!("parse+check seconds: {check:.4}");
}
