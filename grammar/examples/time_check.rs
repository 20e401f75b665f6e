//! Times parse-only and parse+check of one file, best of N runs, and prints throughput.
//! `scripts/bench-language` runs it beside CPython's json module on the same data.
//! `PHASES=1`: also the check's two phases apart, the fold (tree → state, with its
//! diagnostics) and the flow analysis (V111, V205, V206 over the state), to see which one a
//! file's time grows in.
use std::time::Instant;
use vnet_grammar::check;
use vnet_grammar::model::State;

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
    let best = |f: &dyn Fn() -> usize| -> f64 {
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
    if std::env::var_os("PHASES").is_some() {
        let parsed = vnet_grammar::parse(&text);
        let base = State::default();
        let folded = check::fold_onto(&parsed.file, &base);
        let fold = best(&|| check::fold_onto(&parsed.file, &base).state.rules.len());
        let flow = best(&|| check::check_flow(&folded.state, &folded.origins).len());
        println!("fold only    {fold:>7.4} s\nflow only    {flow:>7.4} s");
    }
    println!("parse+check seconds: {check:.4}");
}
