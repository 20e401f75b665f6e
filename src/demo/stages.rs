//! The stages of the adaptive loop that other commands own, run as child `vnetc` processes
//! whose SPEC JSON is the interface: the emulated underlay, `vnetc measure` (5.2), `vnetc
//! infer` (5.1) and `vnetc adapt --apply` (5.3). Each stage is timed.

use super::overlay::Overlay;
use super::procs::{self, Result, Stop};
use crate::live::{fetch, parallel};
use std::path::Path;
use std::time::{Duration, Instant};
use vnet_demo::story::{Adapted, Inferred, InferredPair};
use vnet_demo::{Deployment, Summary};
use vnet_grammar::model::HostDef;
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

/// Tells every daemon the delay and rate to emulate towards every other daemon.
pub fn set_underlay(d: &Deployment, overlay: &Overlay) -> Result<()> {
    let mut hosts: Vec<&HostDef> = overlay.hosts.iter().collect();
    let results = parallel(&mut hosts, |h| {
        let peers = d.underlay(d.host_of(&h.machine).unwrap_or(&h.machine));
        let mut client =
            fetch::connect(h, &overlay.key, Duration::from_secs(3)).map_err(|e| e.to_string())?;
        client
            .set_underlay(peers)
            .map(|_| ())
            .map_err(|e| format!("daemon {}: the emulated underlay: {e}", h.machine))
    });
    results
        .into_iter()
        .collect::<std::result::Result<Vec<()>, String>>()?;
    Ok(())
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
        // Short probes: every ordered pair of a dozen daemons is measured, one probe per
        // daemon at a time, and the demo should take about a minute.
        let args = ["--format", "json", "--duration", "400ms"];
        self.vnetc("measure", &args, 120).map(|_| ())
    }

    /// `vnetc infer` over the last `window_s` seconds.
    pub fn infer(&self, window_s: f64) -> Result<Inferred> {
        let window = format!("{}ms", (window_s.clamp(1.0, 60.0) * 1000.0) as u64);
        let text = self.vnetc("infer", &["--format", "json", "--window", &window], 30)?;
        parse("vnetc infer", &text)
    }

    /// `vnetc adapt --apply` with the saved inference and measurement.
    pub fn adapt(&self) -> Result<Adapted> {
        let (infer, measure) = (self.json("infer"), self.json("measure"));
        let args = [
            "--apply",
            "--format",
            "json",
            "--infer",
            &infer,
            "--measure",
            &measure,
        ];
        let text = self.vnetc("adapt", &args, 60)?;
        parse("vnetc adapt", &text)
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| {
        Stop::Failed(format!(
            "{what} printed something that is not its SPEC JSON: {e}"
        ))
    })
}

/// Puts what the loop found and did into the summary, in the scenario's names (VMs for
/// MACs, hosts for daemons).
pub fn into_summary(d: &Deployment, inferred: Inferred, adapted: Adapted, summary: &mut Summary) {
    let vm = |mac: &str| {
        mac.parse::<Mac>()
            .ok()
            .and_then(|m| d.vm_of(m))
            .map_or_else(|| mac.to_string(), |v| v.name.clone())
    };
    let host = |m: &str| d.host_of(m).unwrap_or(m).to_string();
    summary.topology = inferred
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
    let mut adapted = adapted;
    for m in &mut adapted.moved {
        m.vm = vm(&m.vm);
        m.from = host(&m.from);
        m.to = host(&m.to);
    }
    for m in &mut adapted.migrations {
        m.vm = vm(&m.vm);
        m.from = m.from.as_deref().map(host);
        m.to = host(&m.to);
        // SPEC 5.4: with QEMU guests each migration carries its downtime.
        m.downtime_ms = adapted
            .moved
            .iter()
            .find(|done| done.vm == m.vm)
            .and_then(|done| done.downtime_ms);
    }
    for l in &mut adapted.links {
        l.from = host(&l.from);
        l.to = host(&l.to);
    }
    summary.migrations = adapted.migrations.clone();
    summary.adaptation = Some(adapted);
}
