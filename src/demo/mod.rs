//! `vnetc demo` (SPEC 5.4): the whole adaptive loop on this computer, without root. The
//! scenario, its layout and the story are the pure `vnet_demo` crate; this module runs
//! them: daemons ([`overlay`]), the VMs ([`workload`]: user-space, or QEMU guests with
//! `--vms`, [`guests`]), the stages other commands own as child `vnetc` processes
//! ([`stages`]), and the pictures ([`pictures`]). Everything
//! started is stopped by dropping its handle, so an error or Ctrl-C anywhere cleans up.

pub mod guests;
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
use vnet_demo::{Deployment, Scenario, Summary};
use workload::Workload;

/// How long after the "before" window the workload's run leaves for the loop to infer and
/// adapt; the "after" window follows. User-space VMs are asked to end once the "after" window
/// is over, so this bounds only a slow adaptation; QEMU guests run it all. With QEMU guests the budget grows with the VMs (a
/// new QEMU process per migration, 0.2–0.7 s each under TCG on a busy machine) but starts
/// lower, since booting them already takes a while.
const ADAPT_BUDGET: f64 = 25.0;
const GUEST_ADAPT_BUDGET: (f64, f64) = (12.0, 3.0);

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
    /// Real QEMU guests (`--vms`) instead of user-space VMs.
    pub qemu: bool,
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

/// Runs the demo.
pub fn run(o: &Options) -> Result<Summary> {
    procs::catch_interrupts()?;
    let checked = Scenario::parse(&o.scenario)
        .map_err(|e| Stop::Failed(format!("{}: {e}", o.scenario_name)))?;
    let d = overlay::free_deployment(&checked)?;
    // Declared first, dropped last: the daemons and VMs stop before their files go.
    let dir = RunDir::new(o.keep)?;
    let mut timer = stages::Timer::default();
    timer.restart();
    let overlay = bring_up(o, &d, &dir.path, &mut timer)?;
    let mut summary = run_loop(o, &d, &dir.path, &overlay, &mut timer)?;
    summary.stages = timer.laps;
    pictures::draw(&o.out, &d, &mut summary)?;
    drop(overlay);
    Ok(summary)
}

fn say(o: &Options, line: String) {
    if o.progress {
        eprintln!("demo: {line}");
    }
}

/// The daemons, the star, the emulated wide area and its measurement.
fn bring_up(o: &Options, d: &Deployment, dir: &Path, timer: &mut stages::Timer) -> Result<Overlay> {
    let (first, last) = (&d.daemons[0], &d.daemons[d.daemons.len() - 1]);
    say(
        o,
        format!(
            "starting {} daemons on {}..{} (the Proxy is {})",
            d.daemons.len(),
            first.machine,
            last.machine,
            first.host
        ),
    );
    let overlay = Overlay::start(d, dir, o.vnetd.clone(), o.keep)?;
    let star = dir.join("star.vnet");
    std::fs::write(&star, d.star(&d.checked.start()))
        .map_err(|e| format!("{}: {e}", star.display()))?;
    overlay.apply(dir, "apply-star", &star)?;
    timer.lap("start");
    stages::set_underlay(d, &overlay)?;
    say(o, "measuring the underlay (vnetc measure)".into());
    stages::Loop {
        dir,
        overlay: &overlay,
    }
    .measure()?;
    timer.lap("measure");
    Ok(overlay)
}

/// Patterns in the VMs: the "before" window, infer (and adapt), then "after".
fn run_loop(
    o: &Options,
    d: &Deployment,
    dir: &Path,
    overlay: &Overlay,
    timer: &mut stages::Timer,
) -> Result<Summary> {
    let w = &d.checked.scenario.workload;
    let budget = match o.qemu {
        true => GUEST_ADAPT_BUDGET.0 + GUEST_ADAPT_BUDGET.1 * d.vms.len() as f64,
        false => ADAPT_BUDGET,
    };
    let total = w.seconds + CONNECT + budget + w.seconds;
    let kind = if o.qemu { "QEMU" } else { "user-space" };
    say(
        o,
        format!(
            "running Patterns ({} {}) in {} {kind} VMs: {:.0} s before adapting, {:.0} s after",
            w.topology,
            w.operation,
            d.vms.len(),
            w.seconds,
            w.seconds
        ),
    );
    let lp = stages::Loop { dir, overlay };
    let state = &overlay.state_dir;
    let vms = Workload::start(d, dir, &o.patterns, state, total, o.qemu)?;
    if o.qemu {
        timer.lap("boot");
    }
    let zero = now();
    procs::sleep(Duration::from_secs_f64(w.seconds + CONNECT))?;
    let start = now();
    timer.restart();
    say(o, "inferring the application topology (vnetc infer)".into());
    let inferred = lp.infer(w.seconds)?;
    timer.lap("infer");
    say(
        o,
        "adapting: solving, migrating, applying (vnetc adapt --apply)".into(),
    );
    let adapted = lp.adapt()?;
    timer.lap("adapt");
    let stop = now();
    // The "after" window is as long as the "before" one: the run ends then rather than at
    // its length, which only leaves room for a slow adaptation (guests run their length).
    procs::sleep(Duration::from_secs_f64(SETTLE + w.seconds))?;
    vms.end_now();
    let report = vms.finish()?;
    let mut summary = tell(&report, zero, (start, stop))?;
    stages::into_summary(d, inferred, adapted, &mut summary);
    Ok(summary)
}

/// Throughput before (the samples before the loop began at `start`) and after (those from
/// `SETTLE` after it ended at `stop`), on rank 0's own clock.
fn tell(report: &RankReport, zero: f64, (start, stop): (f64, f64)) -> Result<Summary> {
    let end = report.started_unix + report.seconds + 1.0;
    let before = report
        .rate_between(report.started_unix, start)
        .ok_or_else(|| {
            Stop::Failed(
                "the workload had not completed one sample interval before the adaptation began"
                    .into(),
            )
        })?;
    // The run ended when asked, not at the length it was given: say how long it ran.
    let program = format!("{}, {:.0} s", report.work, report.seconds);
    let mut summary = Summary::new(program, before);
    summary.samples = report.curve(zero);
    summary.adapted_at = Some((start - zero, stop - zero));
    let after = report.rate_between(stop + SETTLE, end).ok_or_else(|| {
        Stop::Failed(format!(
            "the adaptation took {:.1} s and left no time to measure the workload after it",
            stop - start
        ))
    })?;
    summary.set_after(after);
    Ok(summary)
}

/// Where the pictures of a run go: `DIR/topology.svg` and `DIR/throughput.svg`.
pub fn picture_paths(out: &Path) -> (PathBuf, PathBuf) {
    (out.join("topology.svg"), out.join("throughput.svg"))
}
