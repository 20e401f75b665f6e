//! `vnetc demo` (SPEC 5.4): the whole adaptive loop on this computer, without root. The
//! scenario, its layout and the story are the pure `vnet_demo` crate; this module runs
//! them: daemons ([`overlay`]), user-space VMs ([`workload`]), the stages other commands
//! own as child `vnetc` processes ([`stages`]), and the pictures ([`pictures`]). Everything
//! started is stopped by dropping its handle, so an error or Ctrl-C anywhere cleans up.

pub mod overlay;
pub mod pictures;
pub mod procs;
pub mod stages;
pub mod workload;

use overlay::Overlay;
use procs::{Result, Stop};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use vnet_demo::story::RankReport;
use vnet_demo::{Scenario, Summary};
use workload::Vms;

/// How long after the "before" window the workload keeps running while the loop measures,
/// infers and adapts; the "after" window follows.
const ADAPT_BUDGET: f64 = 25.0;

/// How long the VMs get to connect before the "before" window counts.
const CONNECT: f64 = 2.0;

/// After the adaptation, the workload settles this long before "after" counts.
const SETTLE: f64 = 1.0;

pub struct Options {
    /// The scenario's text and where it came from (for messages).
    pub scenario: String,
    pub scenario_name: String,
    /// Where the pictures go.
    pub out: PathBuf,
    pub vnetd: Option<PathBuf>,
    pub patterns: PathBuf,
    /// Keep the run directory (logs, the daemons' state) instead of removing it.
    pub keep: bool,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// The run's scratch directory (key, daemons' state, VM sockets, logs); removed on drop.
struct RunDir {
    path: PathBuf,
    keep: bool,
}

impl RunDir {
    fn new(keep: bool) -> Result<RunDir> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("vnet-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(RunDir { path, keep })
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept the run directory {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the demo. A stage that this build cannot run yet ends the run after the "before"
/// measurement with a summary naming it in `error`.
pub fn run(o: &Options) -> Result<Summary> {
    procs::catch_interrupts()?;
    let checked = Scenario::parse(&o.scenario)
        .map_err(|e| Stop::Failed(format!("{}: {e}", o.scenario_name)))?;
    let say = |line: String| {
        if o.progress {
            eprintln!("demo: {line}");
        }
    };
    let d = overlay::free_deployment(&checked)?;
    // Declared first, dropped last: the daemons and VMs stop before their files go.
    let dir = RunDir::new(o.keep)?;
    let mut timer = stages::Timer::default();
    timer.restart();
    say(format!(
        "starting {} daemons on {}..{} (the Proxy is {})",
        d.daemons.len(),
        d.daemons[0].machine,
        d.daemons[d.daemons.len() - 1].machine,
        d.daemons[0].host
    ));
    let overlay = Overlay::start(&d, &dir.path, o.vnetd.clone())?;
    let star = dir.path.join("star.vnet");
    std::fs::write(&star, d.star(&d.checked.start()))
        .map_err(|e| format!("{}: {e}", star.display()))?;
    overlay.apply(&dir.path, "apply-star", &star)?;
    timer.lap("start");
    let missing = stages::unavailable();
    stages::set_underlay(&d, &overlay)?;
    let lp = stages::Loop {
        dir: &dir.path,
        overlay: &overlay,
    };
    if missing.is_empty() {
        say("measuring the underlay (vnetc measure)".into());
        lp.measure()?;
        timer.lap("measure");
    }
    let w = &checked.scenario.workload;
    let total = if missing.is_empty() {
        2.0 * w.seconds + ADAPT_BUDGET
    } else {
        w.seconds
    };
    say(format!(
        "running Patterns ({} {}) in {} user-space VMs for {total:.0} s",
        w.topology,
        w.operation,
        d.vms.len()
    ));
    let zero = now();
    let vms = Vms::start(&d, &dir.path, &o.patterns, total)?;
    vms.register(&d, &overlay.state_dir)?;
    let adapted = if missing.is_empty() {
        procs::sleep(Duration::from_secs_f64(w.seconds + CONNECT))?;
        let start = now();
        let found = lp.adapt(w.seconds, &mut timer, &say)?;
        Some((start, now(), found))
    } else {
        None
    };
    let report = vms.finish()?;
    let mut summary = tell(&report, zero, adapted.as_ref().map(|a| (a.0, a.1)))?;
    if let Some((_, _, found)) = adapted {
        found.into_summary(&d, &mut summary);
    }
    summary.stages = timer.laps;
    if !missing.is_empty() {
        summary.error = Some(format!(
            "this build cannot yet {}; the run stopped after measuring the workload before adaptation",
            missing.join(", ")
        ));
    }
    pictures::draw(&o.out, &d, &mut summary)?;
    drop(overlay);
    Ok(summary)
}

/// Throughput before (the samples before the adaptation began) and after (those from
/// `SETTLE` after it ended), on rank 0's own clock.
fn tell(report: &RankReport, zero: f64, adapted: Option<(f64, f64)>) -> Result<Summary> {
    let end = report.started_unix + report.seconds + 1.0;
    let before_end = adapted.map_or(end, |(start, _)| start);
    let before = report
        .rate_between(report.started_unix, before_end)
        .ok_or_else(|| {
            Stop::Failed(
                "the workload had not completed one sample interval before the adaptation began"
                    .into(),
            )
        })?;
    let mut summary = Summary::new(report.program.clone(), before);
    summary.samples = report.curve(zero);
    if let Some((start, stop)) = adapted {
        summary.adapted_at = Some((start - zero, stop - zero));
        let after = report.rate_between(stop + SETTLE, end).ok_or_else(|| {
            Stop::Failed(format!(
                "the adaptation took {:.1} s and left no time to measure the workload after it",
                stop - start
            ))
        })?;
        summary.set_after(after);
    }
    Ok(summary)
}

/// Where the pictures of a run go: `DIR/topology.svg` and `DIR/throughput.svg`.
pub fn picture_paths(out: &Path) -> (PathBuf, PathBuf) {
    (out.join("topology.svg"), out.join("throughput.svg"))
}
