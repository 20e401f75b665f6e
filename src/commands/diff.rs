//! `vnetc diff FILE`: the difference from the live daemons to FILE, printed as a patch (SPEC
//! 3): HOST lines, a DELETE block and an ADD block that, folded onto the live state
//! (`vnetc apply --patch`), give FILE's state. `--detailed-exitcode`: 0 equal, 2 different,
//! 1 any error, as Terraform.

use super::live::{daemons_failed, load_clean, usage};
use super::write_output;
use crate::live::config::ControlArgs;
use crate::live::fetch;
use crate::live::plan::diff::{patch_text, state_diff};
use crate::{Failure, Outcome};

#[derive(clap::Args)]
pub struct Args {
    /// The desired state.
    pub file: String,
    /// Exit 0 when the live daemons match FILE, 2 when they differ, 1 on any error.
    #[arg(long)]
    pub detailed_exitcode: bool,
    #[command(flatten)]
    pub control: ControlArgs,
}

pub fn run(args: Args, color: bool) -> Outcome {
    let detailed = args.detailed_exitcode;
    match diff(args, color) {
        Ok(differs) if detailed && differs => Err(Failure::Code(2)),
        Ok(_) => Ok(()),
        // With --detailed-exitcode, 2 means "different", so every error is 1.
        Err(Failure::Usage(message)) if detailed => {
            eprintln!("error: {message}");
            Err(Failure::Subject)
        }
        Err(e) => Err(e),
    }
}

/// Prints the patch; returns whether the live daemons differ from FILE.
fn diff(args: Args, color: bool) -> Result<bool, Failure> {
    let (_, analysis) = load_clean(&args.file, color)?;
    let desired = analysis.state;
    let key = args.control.load_key().map_err(usage)?;
    let (_, live) = fetch::fetch(&desired.hosts, &key, args.control.connect_timeout)
        .map_err(|e| daemons_failed(&e, "error: cannot compare with the live state"))?;
    let diff = state_diff(&live.state, &desired, &live.half_links);
    let mut notes = vec![format!(
        "vnetc diff: from the live daemons to {}; `vnetc apply --patch` folds it onto them",
        args.file
    )];
    notes.extend(live.drift.iter().map(|d| format!("drift: {d}")));
    let foreign = live
        .foreign
        .values()
        .map(|f| f.links.len() + f.rules.len())
        .sum::<usize>();
    if foreign > 0 {
        notes.push(format!(
            "{foreign} link(s) or rule(s) name daemons {} does not declare: `vnetc apply {}` removes them; this patch cannot name them",
            args.file, args.file
        ));
    }
    // A half link the patch lists under ADD or DELETE is a difference even when the model
    // states are equal; so is anything foreign.
    let differs = !diff.is_empty() || !live.half_links.is_empty() || foreign > 0;
    let text = patch_text(&desired.hosts, &diff, &notes);
    write_output(None, text.as_bytes())?;
    Ok(differs)
}
