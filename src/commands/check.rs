//! `vnetc check FILE… [--base FILE]`: diagnostics, rendered or as JSON.

use crate::render::{self, FileDiagnostics};
use crate::source::Source;
use crate::{DataFormat, Failure, Outcome};
use vnet_grammar::Diagnostic;

#[derive(clap::Args)]
pub struct Args {
    /// The files to check (`-` for standard input).
    #[arg(required = true)]
    files: Vec<String>,
    /// Check each FILE as a patch folded onto this file's state.
    #[arg(long, value_name = "FILE")]
    base: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DataFormat::Human)]
    format: DataFormat,
}

pub fn run(args: Args, color: bool) -> Outcome {
    let mut sources: Vec<(Source, Vec<Diagnostic>)> = Vec::new();
    let mut summaries: Vec<String> = Vec::new();
    let base_state = match &args.base {
        Some(path) => {
            let source = Source::read(path).map_err(Failure::Usage)?;
            let analysis = super::analyze(&source, &Default::default());
            let state = analysis.state;
            // A broken base is reported too: the patch's diagnostics would mislead without it.
            if analysis.diagnostics.iter().any(Diagnostic::is_error) {
                sources.push((source, analysis.diagnostics));
            }
            state
        }
        None => Default::default(),
    };
    for path in &args.files {
        let source = Source::read(path).map_err(Failure::Usage)?;
        let analysis = super::analyze(&source, &base_state);
        if let Some(line) = clean_summary(&source.name, &analysis) {
            summaries.push(line);
        }
        sources.push((source, analysis.diagnostics));
    }
    let files: Vec<FileDiagnostics<'_>> = sources
        .iter()
        .map(|(source, diagnostics)| FileDiagnostics {
            source,
            diagnostics,
        })
        .collect();
    match args.format {
        DataFormat::Json => {
            let json = serde_json::to_string_pretty(&render::json_report(&files))
                .map_err(|e| Failure::Usage(e.to_string()))?;
            println!("{json}");
        }
        DataFormat::Human => {
            render::write_human(&mut std::io::stdout().lock(), &files, color)?;
            // As `terraform validate` does: a clean file is said to be clean, on stderr so that
            // stdout stays the diagnostics alone.
            for line in &summaries {
                eprintln!("{line}");
            }
        }
    }
    let failed = sources
        .iter()
        .any(|(_, ds)| ds.iter().any(Diagnostic::is_error));
    if failed {
        Err(Failure::Subject)
    } else {
        Ok(())
    }
}

/// `PATH: ok (5 daemons, 4 links, 17 rules)` for a file without errors (its warnings
/// counted), `None` when it has errors: those speak for themselves.
fn clean_summary(name: &str, analysis: &vnet_grammar::Analysis) -> Option<String> {
    if analysis.has_errors() {
        return None;
    }
    let state = &analysis.state;
    let warnings = match analysis.diagnostics.len() {
        0 => String::new(),
        n => format!(", {}", counted(n, "warning")),
    };
    Some(format!(
        "{name}: ok{warnings} ({}, {}, {})",
        counted(state.hosts.len(), "daemon"),
        counted(state.links.len(), "link"),
        counted(state.rules.len(), "rule"),
    ))
}

fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
