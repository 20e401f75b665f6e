//! The grammar side of the editor benchmark (`lsp/benches/latency.rs`) without the server:
//! `Incremental::update` after a keystroke in a keyword (`INTERFACE` → `xINTERFACE` and back)
//! of the editor program, median and p95 per update, for profiling (perf, callgrind).
//!
//! `cargo run --release -p vnet-grammar --example edit_cost -- [LINES...]` (default 3000 10000
//! 30000; `EDITS=N` keystrokes typed and deleted, 30 by default)
use std::time::Instant;
use vnet_grammar::gen::{editor_program, EDITOR_RULE_LINE};
use vnet_grammar::incremental::{Incremental, Outcome};

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![3000, 10000, 30000]
    } else {
        sizes
    };
    for lines in sizes {
        run(lines);
    }
}

fn run(lines: usize) {
    let text = editor_program(lines);
    let at = text
        .lines()
        .take(EDITOR_RULE_LINE)
        .map(|l| l.len() + 1)
        .sum::<usize>()
        + 12;
    let typed = format!("{}x{}", &text[..at], &text[at..]);
    let mut engine = Incremental::new();
    update(&mut engine, &text);
    let edits = std::env::var("EDITS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(30usize);
    let mut times = Vec::new();
    for _ in 0..edits {
        for version in [&typed, &text] {
            let start = Instant::now();
            update(&mut engine, version);
            times.push(start.elapsed().as_secs_f64() * 1e3);
            engine.tidy();
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let p95 = times[times.len() * 95 / 100];
    println!("{lines:>7} lines: keyword edit {median:.2} ms median, {p95:.2} ms p95");
}

fn update(engine: &mut Incremental, text: &str) {
    match engine.update(text, &|| false) {
        Outcome::Done(analysis) => {
            std::hint::black_box(analysis.diagnostics.len());
        }
        Outcome::Cancelled => unreachable!("never cancelled"),
    }
}
