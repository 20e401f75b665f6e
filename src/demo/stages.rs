//! The stages of the adaptive loop that other commands own, run as child `vnetc` processes
//! whose SPEC JSON is the interface: the emulated underlay, `vnetc measure` (5.2), `vnetc
//! infer` (5.1) and `vnetc adapt --apply` (5.3). Each stage is timed.

use super::overlay::Overlay;
use super::procs::{self, Result, Stop};
use std::path::Path;
use std::time::{Duration, Instant};
use vnet_demo::story::{Adapted, Inferred, InferredPair};
use vnet_demo::{Deployment, Summary};
use vnet_grammar::Mac;

/// Seconds per stage, in order.
#[derive(Default)]
pub struct Timer {
    pub laps: Vec<(String, f64)>,
    last: Option<Instant>,
}

impl Timer {
    /// Ends the stage `name` (it began at the previous lap, or at the first call).
    pub fn lap(&mut self, name: &str) {
        let now = Instant::now();
        let began = self.last.unwrap_or(now);
        self.laps
            .push((name.to_string(), (now - began).as_secs_f64()));
        self.last = Some(now);
    }

    pub fn restart(&mut self) {
        self.last = Some(Instant::now());
    }
}

/// The stages this build cannot run yet, in words.
pub fn unavailable() -> Vec<&'static str> {
    vec![
        "emulate the wide-area underlay (the daemons' SetUnderlay request)",
        "measure the underlay (`vnetc measure`)",
        "infer the application topology (`vnetc infer`)",
    ]
}

/// Tells every daemon the delay and rate to emulate towards every other daemon.
pub fn set_underlay(_d: &Deployment, _overlay: &Overlay) -> Result<()> {
    Ok(())
}

/// What the loop found and did.
pub struct Found {
    pub inferred: Inferred,
    pub adapted: Adapted,
}

/// The child `vnetc` commands of the loop, each on the star's file and the overlay's key
/// and state directory, each keeping its JSON in the run directory for the next.
pub struct Loop<'a> {
    pub dir: &'a Path,
    pub overlay: &'a Overlay,
}

impl Loop<'_> {
    fn vnetc(&self, verb: &str, extra: &[&str], limit: u64) -> Result<String> {
        let mut args = vec![verb.to_string(), self.star()];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(self.overlay.control_args());
        let out = procs::vnetc(self.dir, verb, &args, Duration::from_secs(limit))?;
        std::fs::write(self.json(verb), &out).map_err(|e| format!("{verb}.json: {e}"))?;
        Ok(out)
    }

    fn star(&self) -> String {
        self.dir.join("star.vnet").display().to_string()
    }

    fn json(&self, verb: &str) -> String {
        self.dir.join(format!("{verb}.json")).display().to_string()
    }

    /// `vnetc measure`: the underlay between every pair of daemons, before the workload
    /// loads it (the emulated wide area does not change during a run).
    pub fn measure(&self) -> Result<()> {
        self.vnetc("measure", &["--format", "json"], 120)
            .map(|_| ())
    }

    /// `vnetc infer` over the last `window_s` seconds, then `vnetc adapt --apply` with it
    /// and the measurement.
    pub fn adapt(&self, window_s: f64, timer: &mut Timer, say: &dyn Fn(String)) -> Result<Found> {
        timer.restart();
        say("inferring the application topology (vnetc infer)".into());
        let window = format!("{}ms", (window_s.clamp(1.0, 60.0) * 1000.0) as u64);
        let text = self.vnetc("infer", &["--format", "json", "--window", &window], 30)?;
        let inferred: Inferred = parse("vnetc infer", &text)?;
        timer.lap("infer");
        say("adapting: solving, migrating, applying (vnetc adapt --apply)".into());
        let args = [
            "--apply",
            "--format",
            "json",
            "--infer",
            &self.json("infer"),
            "--measure",
            &self.json("measure"),
        ];
        let text = self.vnetc("adapt", &args, 60)?;
        let adapted: Adapted = parse("vnetc adapt", &text)?;
        timer.lap("adapt");
        Ok(Found { inferred, adapted })
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        Stop::Failed(format!(
            "{what} printed something that is not its SPEC JSON: {e}"
        ))
    })
}

impl Found {
    /// Puts what was found into the summary, in the scenario's names (VMs for MACs, hosts
    /// for daemons).
    pub fn into_summary(self, d: &Deployment, summary: &mut Summary) {
        let vm = |mac: &str| {
            mac.parse::<Mac>()
                .ok()
                .and_then(|m| d.vm_of(m))
                .map_or_else(|| mac.to_string(), |v| v.name.clone())
        };
        let host = |m: &str| d.host_of(m).unwrap_or(m).to_string();
        summary.topology = self
            .inferred
            .topology
            .into_iter()
            .map(|p| InferredPair {
                src: vm(&p.src),
                dst: vm(&p.dst),
                src_daemon: host(&p.src_daemon),
                dst_daemon: p.dst_daemon.as_deref().map(host),
                ..p
            })
            .collect();
        let mut adapted = self.adapted;
        for m in &mut adapted.migrations {
            m.vm = vm(&m.vm);
            m.from = m.from.as_deref().map(host);
            m.to = host(&m.to);
        }
        for l in &mut adapted.links {
            l.from = host(&l.from);
            l.to = host(&l.to);
        }
        summary.migrations = adapted.migrations.clone();
        summary.adaptation = Some(adapted);
    }
}
