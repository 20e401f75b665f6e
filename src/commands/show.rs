//! `vnetc show FILE`: the live state of the daemons FILE declares, as the `.vnet` program
//! `vnetc state` prints for the same topology (or its JSON). Drift goes to stderr.

use super::live::{daemons_failed, load_clean, usage, warn_drift};
use super::state::StateFormat;
use super::write_output;
use crate::live::config::ControlArgs;
use crate::live::fetch;
use crate::{Failure, Outcome};
use std::collections::BTreeMap;
use vnet_proto::control::UnderlayState;

#[derive(clap::Args)]
pub struct Args {
    /// The program whose HOST lines name the daemons.
    pub file: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = StateFormat::Vnet)]
    pub format: StateFormat,
    #[command(flatten)]
    pub control: ControlArgs,
}

pub fn run(args: Args, color: bool) -> Outcome {
    let (_, analysis) = load_clean(&args.file, color)?;
    let key = args.control.load_key().map_err(usage)?;
    let (mut sessions, live) =
        fetch::fetch(&analysis.state.hosts, &key, args.control.connect_timeout)
            .map_err(|e| daemons_failed(&e, "error: cannot show the live state"))?;
    warn_drift(&live.drift);
    let underlay = emulated_underlay(&mut sessions);
    let text = match args.format {
        StateFormat::Vnet => {
            let mut text = live.state.to_program();
            text.push_str(&underlay_comments(&underlay));
            text
        }
        StateFormat::Json => {
            let mut value =
                serde_json::to_value(&live.state).map_err(|e| Failure::Usage(e.to_string()))?;
            if let (Some(obj), false) = (value.as_object_mut(), underlay.is_empty()) {
                let u =
                    serde_json::to_value(&underlay).map_err(|e| Failure::Usage(e.to_string()))?;
                obj.insert("underlay".into(), u);
            }
            let mut json =
                serde_json::to_string_pretty(&value).map_err(|e| Failure::Usage(e.to_string()))?;
            json.push('\n');
            json
        }
    };
    write_output(None, text.as_bytes())
}

/// The emulated underlay of each daemon that has one (SPEC 5.4), by daemon.
fn emulated_underlay(sessions: &mut [fetch::Session]) -> BTreeMap<String, UnderlayState> {
    sessions
        .iter_mut()
        .filter_map(|s| {
            let u = s.client.status().ok()?.underlay?;
            Some((s.host.machine.clone(), u))
        })
        .collect()
}

/// The emulated underlay as comments after the program (it is not part of the language).
fn underlay_comments(underlay: &BTreeMap<String, UnderlayState>) -> String {
    let mut out = String::new();
    if underlay.is_empty() {
        return out;
    }
    out.push_str(
        "# Emulated wide-area underlay (for demos and experiments, not a real network):\n",
    );
    for (daemon, u) in underlay {
        for (peer, shape) in &u.peers {
            let rate = shape
                .rate_mbps
                .map_or("unlimited".to_string(), |r| format!("{r} Mbit/s"));
            out.push_str(&format!(
                "#   {daemon} -> {peer}: delay {} ms, rate {rate}\n",
                shape.delay_ms
            ));
        }
        if u.dropped > 0 {
            out.push_str(&format!(
                "#   {daemon}: {} dropped by full queues\n",
                u.dropped
            ));
        }
    }
    out
}
