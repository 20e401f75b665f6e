//! `vnetc down FILE`: stop the daemons of the HOST lines and wait until they are gone.

use super::live::{load_clean, usage};
use super::up::StartArgs;
use crate::live::config::ControlArgs;
use crate::live::parallel;
use crate::live::up::{self, Stopped};
use crate::{Failure, Outcome};
use vnet_grammar::model::HostDef;

#[derive(clap::Args)]
pub struct Args {
    /// The program whose HOST lines name the daemons.
    pub file: String,
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub start: StartArgs,
}

pub fn run(args: Args, color: bool) -> Outcome {
    let (_, analysis) = load_clean(&args.file, color)?;
    let key = args.control.load_key().map_err(usage)?;
    let state_dir = args.control.state_dir();
    let options = args.start.options();
    let mut items: Vec<&HostDef> = analysis.state.hosts.iter().collect();
    let results = parallel(&mut items, |h| up::down_one(h, &key, &state_dir, &options));
    let mut failed = Vec::new();
    for (host, result) in analysis.state.hosts.iter().zip(results) {
        match result {
            Ok(Stopped::Stopped) => println!("{}: stopped", host.machine),
            Ok(Stopped::NotRunning) => println!("{}: not running", host.machine),
            Err(e) => {
                println!("{}: FAILED: {e}", host.machine);
                failed.push(host.machine.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        eprintln!("error: could not stop {}", failed.join(", "));
        Err(Failure::Subject)
    }
}
