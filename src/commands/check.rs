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
        DataFormat::Human => render::write_human(&mut std::io::stdout().lock(), &files, color)?,
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
