//! One module per subcommand.

pub mod adapt;
pub mod apply;
pub mod check;
pub mod demo;
pub mod diff;
pub mod down;
pub mod fmt;
pub mod graph;
pub mod infer;
pub mod live;
pub mod measure;
pub mod plan;
pub mod route;
pub mod show;
pub mod state;
pub mod up;

use crate::render::{self, FileDiagnostics};
use crate::source::Source;
use crate::{Failure, Outcome};
use vnet_grammar::Analysis;

/// Reads and analyses one file; I/O problems are usage errors (exit 2).
pub fn load(path: &str) -> Result<(Source, Analysis), Failure> {
    let source = Source::read(path).map_err(Failure::Usage)?;
    let analysis = analyze(&source, &Default::default());
    Ok((source, analysis))
}

/// Analyses a source folded onto `base` (empty for a whole program), with V003 for a byte
/// that was not UTF-8 even where the lexer did not see it (inside a comment).
pub fn analyze(source: &Source, base: &vnet_grammar::model::State) -> Analysis {
    let mut analysis = vnet_grammar::analyze_onto(&source.text, base);
    if let Some(offset) = source.invalid_utf8 {
        analysis.report_invalid_utf8(offset);
    }
    analysis
}

/// For commands whose output needs a sound file (`state`, `graph`, `route`): print the file's
/// diagnostics to stderr and fail when any is an error.
pub fn require_clean(source: &Source, analysis: &Analysis, color: bool) -> Outcome {
    if analysis.diagnostics.is_empty() {
        return Ok(());
    }
    let files = [FileDiagnostics {
        source,
        diagnostics: &analysis.diagnostics,
    }];
    render::write_human(&mut std::io::stderr().lock(), &files, color)?;
    if analysis.has_errors() {
        return Err(Failure::Subject);
    }
    Ok(())
}

/// Writes `text` to `-o PATH`, or to stdout.
pub fn write_output(output: Option<&str>, text: &[u8]) -> Outcome {
    use std::io::Write;
    match output {
        Some(path) if path != "-" => {
            std::fs::write(path, text).map_err(|e| Failure::Usage(format!("{path}: {e}")))
        }
        _ => {
            let mut out = std::io::stdout().lock();
            out.write_all(text)?;
            out.flush()?;
            Ok(())
        }
    }
}
