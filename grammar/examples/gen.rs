//! Writes a realistic, clean `.vnet` program to stdout (and optionally the same statements as
//! JSON), for benchmarks and scale tests:
//!
//! `cargo run --release -p vnet-grammar --example gen -- --daemons 2000 --rules 100000 [--vms 1] [--shape NAME] [--json OUT.json] > big.vnet`
use std::io::Write;
use std::process::ExitCode;
use vnet_grammar::gen::{generate, Params, Shape};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("gen: {message}");
            eprintln!(
                "usage: gen [--daemons N] [--rules N] [--vms N] [--shape NAME] [--json OUT.json] > OUT.vnet"
            );
            ExitCode::from(2)
        }
    }
}

fn run() -> Result<(), String> {
    let mut params = Params::default();
    let mut json = None;
    let mut shape = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--daemons" => params.daemons = number(&value()?)?,
            "--rules" => params.rules = number(&value()?)?,
            "--vms" => params.vms_per_host = number(&value()?)?,
            "--json" => json = Some(value()?),
            "--shape" => {
                let name = value()?;
                let names: Vec<&str> = Shape::ALL.iter().map(|s| s.name()).collect();
                shape = Some(Shape::from_name(&name).ok_or_else(|| {
                    format!("unknown shape `{name}` (one of {})", names.join(", "))
                })?);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if params.daemons < 2 || params.vms_per_host == 0 {
        return Err("at least 2 daemons and 1 VM per host".into());
    }
    let program = match shape {
        Some(shape) => shape.generate(params.rules),
        None => generate(params),
    };
    std::io::stdout()
        .lock()
        .write_all(program.to_vnet().as_bytes())
        .map_err(|e| format!("stdout: {e}"))?;
    if let Some(path) = json {
        std::fs::write(&path, program.to_json()).map_err(|e| format!("{path}: {e}"))?;
    }
    eprintln!(
        "gen: {} daemons, {} rules",
        program.hosts.len(),
        program.rule_count()
    );
    Ok(())
}

fn number(text: &str) -> Result<usize, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a number"))
}
