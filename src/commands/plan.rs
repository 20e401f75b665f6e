//! `vnetc plan FILE [-o PLAN]`: the ordered primitive operations that take the live daemons
//! to FILE, grouped by daemon like a Terraform plan; `-o` saves it (JSON, with the
//! fingerprint of the live state it was made against) for `vnetc apply PLAN`.

use super::live::{daemons_failed, load_clean, usage};
use super::{load, write_output};
use crate::live::config::ControlArgs;
use crate::live::fetch::{self, Live};
use crate::live::plan::Plan;
use crate::render::{self, FileDiagnostics};
use crate::source::Source;
use crate::{DataFormat, Failure, Outcome};
use vnet_grammar::model::{HostDef, State};

#[derive(clap::Args)]
pub struct Args {
    /// The desired state (or, with --patch, a patch).
    pub file: String,
    /// Fold FILE's blocks onto the live state instead of taking FILE as the whole state.
    #[arg(long)]
    pub patch: bool,
    /// Save the plan here (JSON) for `vnetc apply PLAN`.
    #[arg(short, long, value_name = "PLAN")]
    pub output: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DataFormat::Human)]
    pub format: DataFormat,
    #[command(flatten)]
    pub control: ControlArgs,
}

/// The desired state of a file (whole) or of a patch folded onto the live state, once the
/// live state is known. A patch with errors against the live state is rendered and refused.
pub enum Desired {
    Whole(State),
    Patch(Source),
}

impl Desired {
    /// Reads FILE; for a patch only its HOST lines are needed before the daemons are read.
    pub fn load(path: &str, patch: bool, color: bool) -> Result<(Desired, Vec<HostDef>), Failure> {
        if patch {
            let (source, analysis) = load(path)?;
            let hosts = analysis.state.hosts;
            Ok((Desired::Patch(source), hosts))
        } else {
            let (_, analysis) = load_clean(path, color)?;
            let hosts = analysis.state.hosts.clone();
            Ok((Desired::Whole(analysis.state), hosts))
        }
    }

    /// The desired state given the live one (checking a patch against it first).
    pub fn resolve(self, live: &Live, color: bool) -> Result<State, Failure> {
        match self {
            Desired::Whole(state) => Ok(state),
            Desired::Patch(source) => {
                let analysis = vnet_grammar::analyze_onto(&source.text, &live.state);
                if !analysis.diagnostics.is_empty() {
                    let files = [FileDiagnostics {
                        source: &source,
                        diagnostics: &analysis.diagnostics,
                    }];
                    render::write_human(&mut std::io::stderr().lock(), &files, color)?;
                }
                if analysis.has_errors() {
                    eprintln!(
                        "error: {} does not fold cleanly onto the live state; nothing was changed",
                        source.name
                    );
                    return Err(Failure::Subject);
                }
                Ok(analysis.state)
            }
        }
    }
}

pub fn run(args: Args, color: bool) -> Outcome {
    let (desired, hosts) = Desired::load(&args.file, args.patch, color)?;
    let key = args.control.load_key().map_err(usage)?;
    let (_, live) = fetch::fetch(&hosts, &key, args.control.connect_timeout)
        .map_err(|e| daemons_failed(&e, "error: cannot plan without the live state"))?;
    super::live::warn_drift(&live.drift);
    let desired = desired.resolve(&live, color)?;
    let plan = Plan::make(&args.file, args.patch, &desired, &live);
    let json = || -> Result<String, Failure> {
        let mut j =
            serde_json::to_string_pretty(&plan).map_err(|e| Failure::Usage(e.to_string()))?;
        j.push('\n');
        Ok(j)
    };
    if let Some(path) = &args.output {
        write_output(Some(path), json()?.as_bytes())?;
    }
    match args.format {
        DataFormat::Json => write_output(None, json()?.as_bytes())?,
        DataFormat::Human => {
            let color = color && std::io::IsTerminal::is_terminal(&std::io::stdout());
            let mut text = plan.render(color);
            if let Some(path) = &args.output {
                text.push_str(&format!(
                    "\nSaved the plan to {path}; `vnetc apply {path}` runs exactly it.\n"
                ));
            }
            write_output(None, text.as_bytes())?;
        }
    }
    Ok(())
}
