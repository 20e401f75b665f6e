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
    let (_, live) = fetch::fetch(&analysis.state.hosts, &key, args.control.connect_timeout)
        .map_err(|e| daemons_failed(&e, "error: cannot show the live state"))?;
    warn_drift(&live.drift);
    let underlay = emulated_underlay(&live);
    let text = match args.format {
        StateFormat::Vnet => {
            let mut text = live.state.to_program();
            text.push_str(&underlay_comments(&underlay));
            text
        }
        StateFormat::Json => {
            let shown = Shown {
                state: &live.state,
                security: security(&live),
                underlay: (!underlay.is_empty()).then_some(&underlay),
            };
            let mut json =
                serde_json::to_string_pretty(&shown).map_err(|e| Failure::Usage(e.to_string()))?;
            json.push('\n');
            json
        }
    };
    write_output(None, text.as_bytes())
}

/// The emulated underlay of each daemon that has one (SPEC 5.4), by daemon, as the fetch read
/// it from the daemons' status.
fn emulated_underlay(live: &fetch::Live) -> BTreeMap<String, UnderlayState> {
    live.snapshots
        .iter()
        .filter_map(|(name, s)| Some((name.clone(), s.underlay.clone()?)))
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

/// `show --format json`: the state as `vnetc state` prints it, the links' security and the
/// emulated underlay.
#[derive(serde::Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    state: &'a vnet_grammar::model::State,
    security: serde_json::Value,
    /// The emulated underlay of each daemon that has one (SPEC 5.4).
    #[serde(skip_serializing_if = "Option::is_none")]
    underlay: Option<&'a BTreeMap<String, UnderlayState>>,
}

/// Each daemon's link key and mode, and the security state of each end of each up link.
fn security(live: &fetch::Live) -> serde_json::Value {
    let daemons: serde_json::Map<String, serde_json::Value> = live
        .snapshots
        .iter()
        .map(|(name, s)| {
            let v = serde_json::json!({
                "public_key": s.public_key,
                "insecure_links": s.insecure_links,
            });
            (name.clone(), v)
        })
        .collect();
    let links: Vec<serde_json::Value> = live
        .snapshots
        .iter()
        .flat_map(|(name, s)| {
            s.security.iter().map(move |(key, sec)| {
                serde_json::json!({
                    "daemon": name,
                    "link": format!("{}–{}", key.0, key.1),
                    "mode": sec.mode,
                    "peer_key": sec.peer_key,
                    "epoch": sec.epoch,
                    "handshakes": sec.handshakes,
                })
            })
        })
        .collect();
    serde_json::json!({ "daemons": daemons, "links": links })
}
