//! `vnetc route FILE --from M --src MAC --dst MAC`: the hop-by-hop path(s) of a frame, from the
//! same simulation (and the same matching code) the daemons forward with.

use super::{load, require_clean, write_output};
use crate::{DataFormat, Failure, Outcome};
use vnet_grammar::model::State;
use vnet_grammar::Mac;

#[derive(clap::Args)]
pub struct Args {
    /// The program (`-` for standard input).
    pub file: String,
    /// The daemon whose local interface the frame enters at.
    #[arg(long, value_name = "MACHINE")]
    pub from: String,
    /// The frame's source MAC address.
    #[arg(long, value_name = "MAC")]
    pub src: Mac,
    /// The frame's destination MAC address.
    #[arg(long, value_name = "MAC")]
    pub dst: Mac,
    /// Output format.
    #[arg(long, value_enum, default_value_t = DataFormat::Human)]
    pub format: DataFormat,
    /// Use the live daemons' tables (of FILE's HOST lines) instead of FILE's rules.
    #[arg(long)]
    pub live: bool,
    #[command(flatten)]
    pub control: crate::live::config::ControlArgs,
}

pub fn run(args: Args, color: bool) -> Outcome {
    let (source, analysis) = load(&args.file)?;
    require_clean(&source, &analysis, color)?;
    if args.live {
        let live = super::live::fetch_live(&analysis.state.hosts, &args.control)?;
        return print_route(&live.state, &args);
    }
    print_route(&analysis.state, &args)
}

/// Simulates and prints; shared with `route --live`, which passes the daemons' state.
pub fn print_route(state: &State, args: &Args) -> Outcome {
    if state.host(&args.from).is_none() {
        eprintln!("error: no HOST line declares `{}`", args.from);
        return Err(Failure::Subject);
    }
    let route = vnet_grammar::route::route(state, &args.from, args.src, args.dst);
    let text = match args.format {
        DataFormat::Human => route.render(),
        DataFormat::Json => {
            let mut json =
                serde_json::to_string_pretty(&route).map_err(|e| Failure::Usage(e.to_string()))?;
            json.push('\n');
            json
        }
    };
    write_output(None, text.as_bytes())
}
