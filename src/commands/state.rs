//! `vnetc state FILE`: the desired state as one canonical program (or JSON).

use super::{load, require_clean, write_output};
use crate::{Failure, Outcome};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StateFormat {
    Vnet,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The program (`-` for standard input).
    file: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StateFormat::Vnet)]
    format: StateFormat,
}

pub fn run(args: Args, color: bool) -> Outcome {
    let (source, analysis) = load(&args.file)?;
    require_clean(&source, &analysis, color)?;
    let text = match args.format {
        StateFormat::Vnet => analysis.state.to_program(),
        StateFormat::Json => {
            let mut json = serde_json::to_string_pretty(&analysis.state)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            json.push('\n');
            json
        }
    };
    write_output(None, text.as_bytes())
}
