//! The grammar side of the editor benchmark (`lsp/benches/latency.rs`) without the server:
//! `Incremental::update` after a keystroke in a keyword (`INTERFACE` → `xINTERFACE` and back)
//! of the editor program, median and p95 per update, for profiling (perf, callgrind).
//!
//! `cargo run --release -p vnet-grammar --example edit_cost -- [LINES...]` (default 3000 10000
//! 30000; `EDITS=N` keystrokes typed and deleted, 30 by default; `EDIT=link` types into a
//! LINK's machine name instead, as the benchmark's third keystroke does: `node51` → `node951`)
use std::time::Instant;
use vnet_grammar::gen::{editor_program, EDITOR_LINK_LINE, EDITOR_RULE_LINE};
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
    let link = std::env::var("EDIT").is_ok_and(|e| e == "link");
    let (line, column) = match link {
        true => (EDITOR_LINK_LINE, 17),
        false => (EDITOR_RULE_LINE, 12),
    };
    let at = text.lines().take(line).map(|l| l.len() + 1).sum::<usize>() + column;
    let typed_char = if link { "9" } else { "x" };
    let typed = format!("{}{typed_char}{}", &text[..at], &text[at..]);
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
    let what = if link { "LINK edit" } else { "keyword edit" };
    println!("{lines:>7} lines: {what} {median:.2} ms median, {p95:.2} ms p95");
}

fn update(engine: &mut Incremental, text: &str) {
    match engine.update(text, &|| false) {
        Outcome::Done(analysis) => {
            std::hint::black_box(analysis.diagnostics.len());
        }
        Outcome::Cancelled => unreachable!("never cancelled"),
    }
}
