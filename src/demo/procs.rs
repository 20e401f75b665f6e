//! The demo's processes: Ctrl-C as a flag every wait checks, child processes that are
//! killed when their handle drops (so an error or an interruption anywhere leaves none
//! behind), and `vnetc` itself run as a child for the stages other commands own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Why the demo stopped early.
#[derive(Debug)]
pub enum Stop {
    /// Ctrl-C (SIGINT) or SIGTERM.
    Interrupted,
    Failed(String),
}

impl From<String> for Stop {
    fn from(s: String) -> Stop {
        Stop::Failed(s)
    }
}

pub type Result<T> = std::result::Result<T, Stop>;

/// From now on SIGINT and SIGTERM set a flag instead of ending the process, so that the
/// demo unwinds and stops what it started.
pub fn catch_interrupts() -> std::result::Result<(), String> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))
            .map_err(|e| format!("cannot catch Ctrl-C: {e}"));
    });
    result
}

/// Fails with [`Stop::Interrupted`] once Ctrl-C was pressed.
pub fn check() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        Err(Stop::Interrupted)
    } else {
        Ok(())
    }
}

/// Sleeps, waking for Ctrl-C.
pub fn sleep(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

/// A child process, killed and reaped when dropped.
pub struct Spawned {
    pub what: String,
    child: Child,
    /// Where its stderr goes.
    pub log: PathBuf,
}

impl Spawned {
    /// Starts `cmd` with stdout to `out` and stderr to `log`, in a process group of its own
    /// (a Ctrl-C at the terminal reaches the demo, which then stops it in order).
    pub fn start(what: &str, mut cmd: Command, out: &Path, log: &Path) -> Result<Spawned> {
        let file = |p: &Path| std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()));
        cmd.stdin(Stdio::null())
            .stdout(file(out)?)
            .stderr(file(log)?);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {what} ({:?}): {e}", cmd.get_program()))?;
        Ok(Spawned {
            what: what.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// Waits for the exit until `deadline`, waking for Ctrl-C.
    pub fn wait(&mut self, deadline: Instant) -> Result<ExitStatus> {
        loop {
            check()?;
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() >= deadline => {
                    return Err(Stop::Failed(format!(
                        "{} did not finish in time; its log says:\n{}",
                        self.what,
                        tail(&self.log)
                    )))
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => return Err(Stop::Failed(format!("{}: {e}", self.what))),
            }
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The last lines of a log, indented.
pub fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs this `vnetc` with `args` (a stage another command owns: apply, measure, infer,
/// adapt), its output kept in `dir/NAME.out` and `dir/NAME.log`; returns its stdout.
pub fn vnetc(dir: &Path, name: &str, args: &[String], limit: Duration) -> Result<String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find vnetc itself: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.arg("--color").arg("never").args(args);
    let (out, log) = (
        dir.join(format!("{name}.out")),
        dir.join(format!("{name}.log")),
    );
    let what = format!("`vnetc {}`", args.first().map_or("", String::as_str));
    let mut child = Spawned::start(&what, cmd, &out, &log)?;
    let status = child.wait(Instant::now() + limit)?;
    let stdout = std::fs::read_to_string(&out).unwrap_or_default();
    if !status.success() {
        return Err(Stop::Failed(format!(
            "{what} failed ({status}):\n{}",
            tail(&log)
        )));
    }
    Ok(stdout)
}

/// The binary `name` next to this vnetc (as cargo builds them), else on PATH.
pub fn sibling(name: &str) -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name))
}
