//! Helpers shared by `daemon/tests` (through `daemon/tests/common`) and the workspace's live
//! tests (through `tests/live_common`): temporary directories, shell commands, waiting, the
//! CPUs a process may use. A dev-dependency only; nothing here is built into `vnetc` or `vnetd`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A temporary directory (`vnet-test-TAG-PID-NANOS`), removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let p =
            std::env::temp_dir().join(format!("vnet-test-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `cmd` with `sh -c` (stdin empty): did it succeed, and its stdout and stderr.
pub fn sh(cmd: &str) -> (bool, String) {
    match Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::null())
        .output()
    {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// Runs `cmd` and fails the test (or benchmark) with its output when it fails.
pub fn must(cmd: &str) {
    let (ok, out) = sh(cmd);
    assert!(ok, "{cmd}: {out}");
}

/// Whether the program `cmd` is on PATH.
pub fn have(cmd: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {cmd}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Asks `f` every 25 ms until it says yes or `timeout` has passed; its last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    f()
}

/// The CPUs a process or thread may run on, as `/proc/PID[/task/TID]/status` lists them
/// ("0-1,3").
pub fn cpus_allowed(status_path: &Path) -> String {
    let text = std::fs::read_to_string(status_path).expect("proc status");
    text.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list")
        .trim()
        .to_string()
}

/// The CPUs this test process may run on ([`cpus_allowed`] of `/proc/self`).
pub fn my_cpus() -> String {
    cpus_allowed(Path::new("/proc/self/status"))
}

/// The highest CPU of such a list: a home for `--forward-cpu` that is not the kernel's usual
/// first choice, CPU 0.
pub fn last_cpu(list: &str) -> u32 {
    list.rsplit([',', '-'])
        .next()
        .and_then(|c| c.parse().ok())
        .expect("a CPU number")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temp_dir_goes_with_its_owner_and_sh_reports_failure() {
        let d = TempDir::new("kit");
        let p = d.path().to_path_buf();
        std::fs::write(p.join("f"), b"x").unwrap();
        let (ok, out) = sh(&format!("cat {}/f; echo err >&2", p.display()));
        assert!(ok && out.contains('x') && out.contains("err"), "{out}");
        assert!(!sh("exit 3").0);
        assert!(have("sh") && !have("no-such-program-vnet"));
        drop(d);
        assert!(!p.exists());
        let mut n = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            n += 1;
            n >= 3
        }));
        assert!(!wait_until(Duration::from_millis(50), || false));
    }
}
