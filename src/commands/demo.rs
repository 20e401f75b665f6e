//! `vnetc demo`: the whole adaptive loop on this computer, without root (SPEC 5.4). Flags
//! here; the run is `crate::demo`.

use crate::demo::{self, procs::Stop};
use crate::{DataFormat, Failure, Outcome};
use std::path::PathBuf;

/// The default scenario: the thesis's Figure 13 situation.
const DEFAULT_SCENARIO: &str = include_str!("../../examples/wide-area.toml");

#[derive(clap::Args)]
pub struct Args {
    /// A scenario file (TOML; see examples/wide-area.toml) [default: the thesis's Figure 13
    /// wide-area situation, examples/wide-area.toml].
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Where the pictures go (created).
    #[arg(long, short = 'o', value_name = "DIR", default_value = "vnet-demo")]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = DataFormat::Human)]
    pub format: DataFormat,
    /// Real QEMU VMs (TCG, no root: the Debian kernel from /boot and a busybox initramfs
    /// carrying vnet-patterns) migrated live over QMP, instead of user-space VMs; each
    /// migration reports its downtime.
    #[arg(long)]
    pub vms: bool,
    /// The vnetd binary [default: next to vnetc, else on PATH].
    #[arg(long, value_name = "PATH")]
    pub vnetd: Option<PathBuf>,
    /// The vnet-patterns binary [default: next to vnetc, else on PATH].
    #[arg(long, value_name = "PATH")]
    pub patterns: Option<PathBuf>,
    /// Keep the run's directory (daemons' logs, state and last counters, the VMs' reports) and
    /// say where.
    #[arg(long)]
    pub keep: bool,
}

pub fn run(args: Args, _color: bool) -> Outcome {
    let (scenario, scenario_name) = match &args.scenario {
        Some(path) => (
            std::fs::read_to_string(path)
                .map_err(|e| Failure::Usage(format!("{}: {e}", path.display())))?,
            path.display().to_string(),
        ),
        None => (
            DEFAULT_SCENARIO.to_string(),
            "examples/wide-area.toml".into(),
        ),
    };
    if let Err(e) = vnet_demo::Scenario::parse(&scenario) {
        return Err(Failure::Usage(format!("{scenario_name}: {e}")));
    }
    let options = demo::Options {
        scenario,
        scenario_name,
        out: args.out,
        vnetd: args.vnetd,
        patterns: args
            .patterns
            .unwrap_or_else(|| demo::procs::sibling("vnet-patterns")),
        qemu: args.vms,
        keep: args.keep,
        progress: true,
    };
    match demo::run(&options) {
        Ok(summary) => {
            match args.format {
                DataFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&summary)
                        .map_err(|e| Failure::Usage(e.to_string()))?
                ),
                DataFormat::Human => print!("{}", summary.story()),
            }
            match &summary.error {
                Some(e) => {
                    eprintln!("error: {e}");
                    Err(Failure::Subject)
                }
                None => Ok(()),
            }
        }
        Err(Stop::Interrupted) => {
            eprintln!("interrupted: stopped every daemon and VM the demo started");
            Err(Failure::Code(130))
        }
        Err(Stop::Failed(e)) => {
            eprintln!("error: {e}");
            Err(Failure::Subject)
        }
    }
}
