//! `vnetc measure FILE`: latency, loss and achievable bandwidth between the daemons of FILE
//! (SPEC 5.2), as a table or as the JSON VADAPT reads. The work is `live::measure`'s.

use super::live::{daemons_failed, load_clean, usage};
use super::write_output;
use crate::live::config::{parse_duration, ControlArgs};
use crate::live::measure::{self, Options, Pairs};
use crate::{DataFormat, Failure, Outcome};
use vnet_underlay::estimate::Measurement;

#[derive(clap::Args)]
pub struct Args {
    /// The program whose HOST lines name the daemons.
    pub file: String,
    /// Every ordered pair of daemons, or only the linked ones.
    #[arg(long, value_enum, default_value_t = Pairs::All)]
    pub pairs: Pairs,
    /// How long each directed probe runs (`500ms`, `2s`).
    #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_duration)]
    pub duration: std::time::Duration,
    #[arg(long, value_enum, default_value_t = DataFormat::Human)]
    pub format: DataFormat,
    #[command(flatten)]
    pub control: ControlArgs,
}

pub fn run(args: Args, color: bool) -> Outcome {
    let (_, analysis) = load_clean(&args.file, color)?;
    let key = args.control.load_key().map_err(usage)?;
    let opts = Options {
        pairs: args.pairs,
        duration: args.duration,
        connect_timeout: args.control.connect_timeout,
    };
    let out = measure::run(&analysis.state, &key, &opts)
        .map_err(|e| daemons_failed(&e, "error: cannot measure the underlay"))?;
    for why in &out.unmeasured {
        eprintln!("warning: {why}");
    }
    let text = match args.format {
        DataFormat::Human => table(&out.measurement),
        DataFormat::Json => {
            let mut json = serde_json::to_string_pretty(&out.measurement)
                .map_err(|e| Failure::Usage(e.to_string()))?;
            json.push('\n');
            json
        }
    };
    write_output(None, text.as_bytes())
}

fn table(m: &Measurement) -> String {
    let w = m
        .links
        .iter()
        .map(|l| l.from.len().max(l.to.len()))
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!(
        "{:w$}  {:w$}  {:>12}  {:>17}  {:>6}\n",
        "FROM", "TO", "LATENCY (ms)", "BANDWIDTH (Mbit/s)", "LOSS"
    );
    for l in &m.links {
        out.push_str(&format!(
            "{:w$}  {:w$}  {:>12.3}  {:>18.1}  {:>5.1}%\n",
            l.from,
            l.to,
            l.lat,
            l.bw,
            l.loss * 100.0
        ));
    }
    out
}
