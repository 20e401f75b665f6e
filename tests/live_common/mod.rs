//! Helpers for the live tests: real `vnetc` and `vnetd` processes on loopback addresses of the
//! test's own (`127.NET.0.x`), a temporary directory holding the key, the state directory and
//! the files, and a guard that stops every daemon even when a test fails.
#![allow(dead_code)]

pub mod daemons;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub fn vnetc_path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vnetc"))
}

/// `vnetd` beside `vnetc` (what `vnetc up` starts). Cargo builds it for the workspace's tests
/// (`cargo test --workspace`); when only this package is tested it may be missing, so build it.
pub fn vnetd_path() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| beside_vnetc("vnet-daemon", "vnetd"))
        .clone()
}

/// `vnet-patterns` beside `vnetc`, built when missing (as `vnetd_path`).
pub fn patterns_path() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| beside_vnetc("vnet-patterns", "vnet-patterns"))
        .clone()
}

/// The binary `bin` of `package` beside `vnetc`, built (in vnetc's profile) when missing.
fn beside_vnetc(package: &str, bin: &str) -> PathBuf {
    let path = vnetc_path().with_file_name(bin);
    if !path.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", package, "--bin", bin])
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(
            status.success() && path.is_file(),
            "{bin} is missing at {}: run `cargo build -p {package} --bin {bin}`",
            path.display()
        );
    }
    path
}

#[allow(unused_imports)] // each test binary uses some of them
pub use vnet_testkit::{sh, wait_until, TempDir};

/// One test's world: its directory (key, state, files) and its loopback network 127.NET.0.x.
/// Dropping it stops every daemon it started.
pub struct World {
    pub dir: TempDir,
    pub net: u8,
    /// Files whose daemons to stop on drop.
    pub files: Vec<PathBuf>,
    pub extra_args: Vec<String>,
}

impl World {
    pub fn new(tag: &str, net: u8) -> World {
        vnetd_path();
        World {
            dir: TempDir::new(tag),
            net,
            files: Vec::new(),
            extra_args: Vec::new(),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.0.join(name)
    }

    pub fn state_dir(&self) -> PathBuf {
        self.path("state")
    }

    pub fn key_file(&self) -> PathBuf {
        self.path("control.key")
    }

    pub fn addr(&self, host: usize) -> String {
        format!("127.{}.0.{}", self.net, host + 1)
    }

    /// Writes a file into the world; remembers it so its daemons are stopped on drop.
    pub fn write(&mut self, name: &str, text: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, text).expect("write file");
        self.files.push(p.clone());
        p.to_string_lossy().into_owned()
    }

    /// Runs `vnetc` with this world's key, state directory and environment.
    pub fn vnetc(&self, args: &[&str]) -> Output {
        self.vnetc_env(args, &[])
    }

    pub fn vnetc_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = self.command(args, env).output().expect("run vnetc");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "vnetc panicked: {stderr}");
        out
    }

    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(vnetc_path());
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env("VNET_KEY_FILE", self.key_file())
            .env("XDG_STATE_HOME", self.path("xdg-state"))
            .env("XDG_CONFIG_HOME", self.path("xdg-config"));
        let live = ["up", "down", "show", "diff", "plan", "apply"];
        if args.first().is_some_and(|a| live.contains(a)) || args.contains(&"--live") {
            cmd.arg("--state-dir").arg(self.state_dir());
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Pids of live `vnetd` processes whose command line mentions this world's directory.
    pub fn daemon_pids(&self) -> Vec<i32> {
        let needle = self.dir.0.to_string_lossy().into_owned();
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            if !cmdline.contains("vnetd") || !cmdline.contains(&needle) {
                continue;
            }
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            if !zombie {
                pids.push(pid);
            }
        }
        pids
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for f in self.files.clone() {
            let f = f.to_string_lossy().into_owned();
            let mut args = vec!["down", f.as_str()];
            let extra: Vec<&str> = self.extra_args.iter().map(String::as_str).collect();
            args.extend(extra);
            let _ = self.command(&args, &[]).output();
        }
        for pid in self.daemon_pids() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts an exit status, showing the output when it is not.
#[track_caller]
pub fn expect_code(out: &Output, want: i32) {
    assert_eq!(
        code(out),
        want,
        "exit status\n--- stdout\n{}\n--- stderr\n{}",
        stdout(out),
        stderr(out)
    );
}

pub fn mac(i: usize) -> String {
    format!("00:50:56:00:{:02x}:{:02x}", i / 256, i % 256)
}

/// The thesis topologies on `n` daemons of 127.NET.0.1..n (port `port`): the first is the
/// Proxy, each other host serves one VM (Figure 2's rules) on interface `vmI`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// HOST lines only.
    Empty,
    /// The resilient star.
    Star,
    /// The star plus a UDP fast path between every pair of hosts (VADAPT's all-to-all).
    AllToAll,
}

pub fn topology(net: u8, n: usize, port: u16, shape: Shape) -> String {
    let host = |i: usize| format!("127.{net}.0.{}", i + 1);
    let mut out = String::from("BEGIN\n");
    for i in 0..n {
        let iface = if i == 0 {
            "lan0".to_string()
        } else {
            format!("vm{i}")
        };
        out.push_str(&format!("HOST vnet AT {} {port} {iface}\n", host(i)));
    }
    if shape != Shape::Empty {
        let p = host(0);
        out.push_str("ADD\n");
        for i in 1..n {
            out.push_str(&format!("    LINK TCP {h} {h} {p}\n", h = host(i)));
        }
        if shape == Shape::AllToAll {
            for i in 1..n {
                for j in i + 1..n {
                    out.push_str(&format!(
                        "    LINK UDP {h} {h} {o}\n",
                        h = host(i),
                        o = host(j)
                    ));
                }
            }
        }
        for i in 1..n {
            let h = host(i);
            let m = mac(i);
            out.push_str(&format!("    FORWARD INTERFACE {h} ANY {m} vm{i}\n"));
            out.push_str(&format!(
                "    FORWARD INTERFACE {h} NOT {m} ff:ff:ff:ff:ff:ff vm{i}\n"
            ));
            out.push_str(&format!("    FORWARD EDGE {h} {m} NONE {h} {p}\n"));
            if shape == Shape::AllToAll {
                for j in 1..n {
                    if j != i {
                        out.push_str(&format!(
                            "    FORWARD EDGE {h} ANY {} {h} {}\n",
                            mac(j),
                            host(j)
                        ));
                    }
                }
            }
        }
        for i in 1..n {
            out.push_str(&format!(
                "    FORWARD EDGE {p} ANY {} {p} {}\n",
                mac(i),
                host(i)
            ));
            out.push_str(&format!(
                "    FORWARD EDGE {p} ANY ff:ff:ff:ff:ff:ff {p} {}\n",
                host(i)
            ));
        }
        out.push_str(&format!(
            "    FORWARD INTERFACE {p} ANY ff:ff:ff:ff:ff:ff lan0\n"
        ));
        out.push_str(&format!("    FORWARD INTERFACE {p} ANY NONE lan0\n"));
    }
    out.push_str("END\n");
    out
}

/// Every daemon's interface as an unprivileged UDP datagram interface on a free port, so the
/// tests need no root and never collide (the bare `dgram` kind: 127.0.0.1, a free port).
pub const DGRAM: [&str; 2] = ["--iface-kind", "dgram"];

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// (transmitted, received, sequence numbers answered) from busybox ping's output.
pub fn ping_result(console: &str) -> Option<(u32, u32, Vec<u32>)> {
    let summary = console
        .lines()
        .find(|l| l.contains("packets transmitted"))?;
    let mut nums = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().ok());
    let (tx, rx) = (nums.next()??, nums.next()??);
    let seqs = console
        .lines()
        .filter_map(|l| l.split("seq=").nth(1))
        .filter_map(|s| s.split_whitespace().next()?.parse().ok())
        .collect();
    Some((tx, rx, seqs))
}

/// The guest script of the QEMU tests (`vm::image`): the VM with `vnet.role=pinger` waits for
/// `vnet.peer`, then pings it `vnet.count` times every `vnet.interval` s; the other only answers.
pub const PINGER: &str = r#"
if [ "$vnet_role" = pinger ]; then
  i=0
  while [ $i -lt 150 ] && ! ping -c 1 -W 1 "$vnet_peer" >/dev/null 2>&1; do i=$((i+1)); done
  echo VNET-PING-START
  ping -c "$vnet_count" -i "$vnet_interval" "$vnet_peer"
  echo VNET-PING-END
fi
"#;
