//! `vnetc infer FILE`: the application topology VTTIF measured, asked of FILE's Proxy (SPEC
//! 5.1), as a complete `.vnet` desired state with fast-path links, or as JSON; `--watch`
//! prints a new answer whenever the topology changes or settles.

use super::live::{daemons_failed, load_clean, usage};
use super::write_output;
use crate::live::config::{parse_duration, ControlArgs};
use crate::live::infer::{self, Inferred};
use crate::{Failure, Outcome};
use std::collections::BTreeSet;
use std::time::Duration;
use vnet_grammar::model::State;
use vnet_grammar::Mac;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InferFormat {
    Vnet,
    Json,
}

#[derive(clap::Args)]
pub struct Args {
    /// The program whose first HOST line is the Proxy.
    pub file: String,
    /// The smoothing window (50ms to 60s).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub window: Duration,
    /// The detection threshold: pairs at or above this intensity form the topology (0 to 1).
    #[arg(long, value_name = "F", default_value_t = 0.1)]
    pub threshold: f64,
    #[arg(long, value_enum, default_value_t = InferFormat::Vnet)]
    pub format: InferFormat,
    /// Print a new answer each time the topology changes or settles, until interrupted.
    #[arg(long)]
    pub watch: bool,
    #[command(flatten)]
    pub control: ControlArgs,
}

/// How often `--watch` asks: the view moves by a bucket (50 ms) at most.
const WATCH_EVERY: Duration = Duration::from_millis(100);

pub fn run(args: Args, color: bool) -> Outcome {
    let (_, analysis) = load_clean(&args.file, color)?;
    infer::check_query(args.window, args.threshold).map_err(usage)?;
    let key = args.control.load_key().map_err(usage)?;
    let failed = |e| daemons_failed(&[e], "error: cannot ask the Proxy");
    let timeout = args.control.connect_timeout;
    if !args.watch {
        let hosts = &analysis.state.hosts;
        let inferred =
            infer::query(hosts, &key, timeout, args.window, args.threshold).map_err(failed)?;
        return print(&args, &analysis.state, &inferred);
    }
    let (proxy, mut client) =
        infer::connect_proxy(&analysis.state.hosts, &key, timeout).map_err(failed)?;
    let mut last: Option<(BTreeSet<(Mac, Mac)>, bool)> = None;
    loop {
        let inferred =
            infer::ask(&mut client, &proxy, args.window, args.threshold).map_err(failed)?;
        let seen = (topology_of(&inferred), inferred.answer.settled);
        if last.as_ref() != Some(&seen) {
            print(&args, &analysis.state, &inferred)?;
            last = Some(seen);
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

/// The topology as a set: the answer lists it heaviest first, and an order change alone is
/// not a change.
fn topology_of(inferred: &Inferred) -> BTreeSet<(Mac, Mac)> {
    let pairs = inferred.answer.topology.iter();
    pairs.map(|p| (p.src, p.dst)).collect()
}

fn print(args: &Args, desired: &State, inferred: &Inferred) -> Outcome {
    let text = match args.format {
        InferFormat::Vnet => infer::program(desired, inferred),
        InferFormat::Json => {
            let json = if args.watch {
                serde_json::to_string(inferred)
            } else {
                serde_json::to_string_pretty(inferred)
            };
            json.map_err(|e| Failure::Usage(e.to_string()))? + "\n"
        }
    };
    write_output(None, text.as_bytes())
}
