//! Times the phases of `analyze` on one file apart, best of N runs each: parse, fold (parse
//! tree → state, with the fold's diagnostics) and flow (V111, V205, V206 over the state).
//! `time_check` gives their sum; this says which phase a file's time grows in.
//!
//! `cargo run --release -p vnet-grammar --example time_phases -- FILE [RUNS]`
use std::time::Instant;
use vnet_grammar::check;
use vnet_grammar::model::State;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), runs) = (
        args.next(),
        args.next().and_then(|n| n.parse().ok()).unwrap_or(5usize),
    ) else {
        eprintln!("usage: time_phases FILE [RUNS]");
        std::process::exit(2);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("{path}: {error}");
            std::process::exit(2);
        }
    };
    let best = |f: &mut dyn FnMut() -> usize| {
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(f());
                start.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let parsed = vnet_grammar::parse(&text);
    let base = State::default();
    let folded = check::fold_onto(&parsed.file, &base);
    let parse = best(&mut || vnet_grammar::parse(&text).file.blocks.len());
    let fold = best(&mut || check::fold_onto(&parsed.file, &base).state.rules.len());
    let flow = best(&mut || check::check_flow(&folded.state, &folded.origins).len());
    let whole = best(&mut || vnet_grammar::analyze(&text).diagnostics.len());
    println!("file: {path}: {} rules", folded.state.rules.len());
    for (what, secs) in [
        ("parse", parse),
        ("fold", fold),
        ("flow", flow),
        ("analyze", whole),
    ] {
        println!("{what:<8} {secs:>8.4} s");
    }
}
