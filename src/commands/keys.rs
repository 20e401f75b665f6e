//! `vnetc keys FILE`: the static link keys of the daemons FILE's HOST lines declare, as
//! `apply` pins them in their peers' links (one line per daemon: machine, key, fingerprint).

use super::live::{daemons_failed, load_clean, usage};
use super::state::StateFormat;
use super::write_output;
use crate::live::fetch::{self, Snapshot};
use crate::{Failure, Outcome};
use std::collections::BTreeMap;

/// The same arguments as `show` (`--format vnet`: one line per daemon; `json`: an object by
/// machine).
pub use super::show::Args;

/// One daemon's key as printed.
#[derive(serde::Serialize)]
struct KeyLine {
    public_key: Option<String>,
    fingerprint: Option<String>,
    insecure_links: bool,
}

fn key_line(s: &Snapshot) -> KeyLine {
    let fingerprint = s
        .public_key
        .as_deref()
        .and_then(|k| vnet_seal::PublicKey::parse(k).ok())
        .map(|k| k.fingerprint());
    KeyLine {
        public_key: s.public_key.clone(),
        fingerprint,
        insecure_links: s.insecure_links,
    }
}

pub fn run(args: Args, color: bool) -> Outcome {
    let (_, analysis) = load_clean(&args.file, color)?;
    let key = args.control.load_key().map_err(usage)?;
    let (_, live) = fetch::fetch(&analysis.state.hosts, &key, args.control.connect_timeout)
        .map_err(|e| daemons_failed(&e, "error: cannot read the daemons' keys"))?;
    let lines: BTreeMap<&str, KeyLine> = analysis
        .state
        .hosts
        .iter()
        .filter_map(|h| {
            Some((
                h.machine.as_str(),
                key_line(live.snapshots.get(h.machine.as_str())?),
            ))
        })
        .collect();
    let text = match args.format {
        StateFormat::Json => {
            let mut json =
                serde_json::to_string_pretty(&lines).map_err(|e| Failure::Usage(e.to_string()))?;
            json.push('\n');
            json
        }
        StateFormat::Vnet => lines
            .iter()
            .map(|(machine, k)| {
                let key = k
                    .public_key
                    .as_deref()
                    .unwrap_or("(no key: an older vnetd)");
                let fp = k.fingerprint.as_deref().unwrap_or("-");
                let insecure = if k.insecure_links {
                    "  INSECURE-LINKS"
                } else {
                    ""
                };
                format!("{machine}\t{key}\t{fp}{insecure}\n")
            })
            .collect(),
    };
    write_output(None, text.as_bytes())
}
