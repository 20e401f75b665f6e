//! Starting and stopping the daemons of HOST lines (SPEC 4): a local `vnetd` process for a
//! machine that is this computer, `ssh USER@MACHINE` for any other. Local daemons keep their
//! pid file, log and tables in `STATE_DIR/daemons/MACHINE/`; remote ones in the same place
//! under the remote user's `$XDG_STATE_HOME/vnet` (the key goes over ssh's standard input,
//! never on a command line).

use super::hosts;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use vnet_grammar::model::HostDef;
use vnet_proto::control::ErrorCode;
use vnet_proto::{Client, ClientError, Key};

/// `--iface [MACHINE/]NAME=KIND`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceKind {
    pub machine: Option<String>,
    pub name: String,
    pub kind: String,
}

impl std::str::FromStr for IfaceKind {
    type Err = String;
    fn from_str(s: &str) -> Result<IfaceKind, String> {
        let (target, kind) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected [MACHINE/]NAME=KIND"))?;
        let (machine, name) = match target.split_once('/') {
            Some((m, n)) => (Some(m.to_string()), n.to_string()),
            None => (None, target.to_string()),
        };
        if name.is_empty() || kind.is_empty() || machine.as_deref() == Some("") {
            return Err(format!("`{s}`: expected [MACHINE/]NAME=KIND"));
        }
        Ok(IfaceKind {
            machine,
            name,
            kind: kind.to_string(),
        })
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// The local `vnetd` binary; default: next to this `vnetc`, else on PATH.
    pub vnetd: Option<PathBuf>,
    /// The ssh program and its leading arguments (`ssh`, or `ssh -p 2222`, or a test's fake).
    pub ssh_command: String,
    /// `vnetd` as the remote shell finds it.
    pub remote_vnetd: String,
    /// Machines to start over ssh even though their address is this computer's.
    pub remote: Vec<String>,
    pub iface_kind: Option<String>,
    pub ifaces: Vec<IfaceKind>,
    /// Start with empty tables.
    pub fresh: bool,
    /// vnetd's `--report-hz` for every daemon (vnetd's default when `None`).
    pub report_hz: Option<u32>,
    /// vnetd's `--metrics`, per machine.
    pub metrics: Vec<MetricsAddr>,
    /// vnetd's `--forward-cpu` for every daemon (the kernel places the thread when `None`).
    pub forward_cpu: Option<u32>,
    /// How long to wait for a started daemon to answer.
    pub wait: Duration,
}

/// `--metrics MACHINE=ADDR`: where one daemon serves Prometheus metrics (vnetd's `--metrics`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsAddr {
    pub machine: String,
    pub addr: SocketAddr,
}

impl std::str::FromStr for MetricsAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<MetricsAddr, String> {
        let expected = || format!("`{s}`: expected MACHINE=ADDR:PORT");
        let (machine, addr) = s.split_once('=').ok_or_else(expected)?;
        if machine.is_empty() {
            return Err(expected());
        }
        let addr = addr
            .parse()
            .map_err(|e| format!("`{s}`: `{addr}` is not an address and port ({e})"))?;
        Ok(MetricsAddr {
            machine: machine.to_string(),
            addr,
        })
    }
}

/// Where the daemon of a HOST line runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    Local,
    Remote,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    AlreadyRunning,
    Local { pid: u32, log: PathBuf },
    Remote { detail: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stopped {
    Stopped,
    NotRunning,
}

pub fn place(host: &HostDef, addr: SocketAddr, remote: &[String]) -> Place {
    if remote.iter().any(|m| *m == host.machine) || !hosts::is_local(addr.ip()) {
        Place::Remote
    } else {
        Place::Local
    }
}

/// A local daemon's directory: pid file, log, tables.
pub fn daemon_dir(state_dir: &Path, machine: &str) -> PathBuf {
    state_dir.join("daemons").join(machine)
}

/// The `--iface` argument for a HOST line: its interface, with the kind the options give.
pub fn iface_arg(host: &HostDef, options: &Options) -> String {
    let specific = options
        .ifaces
        .iter()
        .find(|i| i.machine.as_deref() == Some(host.machine.as_str()) && i.name == host.iface)
        .or_else(|| {
            options
                .ifaces
                .iter()
                .find(|i| i.machine.is_none() && i.name == host.iface)
        });
    match specific
        .map(|i| i.kind.as_str())
        .or(options.iface_kind.as_deref())
    {
        Some(kind) => format!("{}={kind}", host.iface),
        None => host.iface.to_string(),
    }
}

/// The vnetd flags that follow from `options` alone (after name, address, interface, key and
/// state directory), the same for a local and a remote start.
pub fn daemon_flags(host: &HostDef, options: &Options) -> Vec<String> {
    let mut flags = Vec::new();
    if options.fresh {
        flags.push("--fresh".to_string());
    }
    if let Some(hz) = options.report_hz {
        flags.extend(["--report-hz".to_string(), hz.to_string()]);
    }
    if let Some(m) = options.metrics.iter().find(|m| m.machine == host.machine) {
        flags.extend(["--metrics".to_string(), m.addr.to_string()]);
    }
    if let Some(cpu) = options.forward_cpu {
        flags.extend(["--forward-cpu".to_string(), cpu.to_string()]);
    }
    flags
}

/// Is a daemon answering at `addr` as `machine`? `Ok(false)` when nothing is there.
fn probe(addr: SocketAddr, machine: &str, key: &Key, timeout: Duration) -> Result<bool, String> {
    match Client::connect_timeout(addr, key, timeout) {
        Ok(c) if c.daemon() == machine => Ok(true),
        Ok(c) => Err(format!(
            "{addr} is served by daemon `{}`, not `{machine}`",
            c.daemon()
        )),
        Err(ClientError::Io(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::UnexpectedEof
            ) =>
        {
            Ok(false)
        }
        Err(e) if e.code() == Some(ErrorCode::Auth) => Err(format!(
            "a daemon at {addr} refuses our control key (started with another key file?)"
        )),
        Err(e) => Err(format!("something at {addr} is not a vnetd: {e}")),
    }
}

/// Starts the daemon of `host` unless it already answers; waits until it does.
pub fn up_one(
    host: &HostDef,
    key: &Key,
    key_path: &Path,
    state_dir: &Path,
    options: &Options,
) -> Result<Started, String> {
    let addr = hosts::resolve(host)?;
    if probe(addr, &host.machine, key, Duration::from_millis(500))? {
        return Ok(Started::AlreadyRunning);
    }
    match place(host, addr, &options.remote) {
        Place::Local => start_local(host, addr, key, key_path, state_dir, options),
        Place::Remote => start_remote(host, addr, key, key_path, options),
    }
}

fn vnetd_path(options: &Options) -> PathBuf {
    if let Some(p) = &options.vnetd {
        return p.clone();
    }
    if let Some(sibling) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("vnetd")))
        .filter(|p| p.is_file())
    {
        return sibling;
    }
    PathBuf::from("vnetd")
}

fn start_local(
    host: &HostDef,
    addr: SocketAddr,
    key: &Key,
    key_path: &Path,
    state_dir: &Path,
    options: &Options,
) -> Result<Started, String> {
    let dir = daemon_dir(state_dir, &host.machine);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let log_path = dir.join("vnetd.log");
    let pid_path = dir.join("vnetd.pid");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log_start = log.metadata().map_or(0, |m| m.len());
    let err_log = log.try_clone().map_err(|e| e.to_string())?;
    let key_path = std::path::absolute(key_path).unwrap_or_else(|_| key_path.to_path_buf());
    let vnetd = vnetd_path(options);
    let mut cmd = Command::new(&vnetd);
    cmd.arg("--name")
        .arg(&host.machine)
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--iface")
        .arg(iface_arg(host, options))
        .arg("--key-file")
        .arg(&key_path)
        .arg("--state-dir")
        .arg(&dir)
        .args(daemon_flags(host, options))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log);
    // Its own process group: a Ctrl-C meant for vnetc does not stop the daemons it started.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e} (pass --vnetd PATH)", vnetd.display()))?;
    let pid = child.id();
    std::fs::write(&pid_path, format!("{pid}\n"))
        .map_err(|e| format!("{}: {e}", pid_path.display()))?;
    let deadline = Instant::now() + options.wait;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = std::fs::remove_file(&pid_path);
            return Err(format!(
                "vnetd exited ({status}) at start; its log ({}) says:\n{}",
                log_path.display(),
                log_tail(&log_path, log_start)
            ));
        }
        if probe(addr, &host.machine, key, Duration::from_millis(300)).unwrap_or(false) {
            return Ok(Started::Local { pid, log: log_path });
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "vnetd (pid {pid}) did not answer at {addr} within {:?}; see {}",
                options.wait,
                log_path.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last lines a daemon wrote to its log since `from`.
fn log_tail(path: &Path, from: u64) -> String {
    let text = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(text.get(from as usize..).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(8)..]
        .iter()
        .map(|l| format!("    {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Quotes a word for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

fn remote_dir_expr(machine: &str) -> String {
    format!(
        "\"${{XDG_STATE_HOME:-$HOME/.local/state}}/vnet/daemons/\"{}",
        shell_quote(machine)
    )
}

/// Runs `script` with `sh` on `host` over ssh, `stdin` on its standard input.
fn ssh(host: &HostDef, options: &Options, script: &str, stdin: &[u8]) -> Result<String, String> {
    let mut words = options.ssh_command.split_whitespace();
    let program = words.next().ok_or("--ssh-command is empty")?;
    let mut cmd = Command::new(program);
    cmd.args(words)
        .arg(format!("{}@{}", host.user, host.machine))
        .arg(format!("sh -c {}", shell_quote(script)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run `{}`: {e}", options.ssh_command))?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text.trim().to_string())
    } else {
        Err(format!(
            "`{} {}@{}` failed ({}): {}",
            options.ssh_command,
            host.user,
            host.machine,
            out.status,
            text.trim()
        ))
    }
}

fn start_remote(
    host: &HostDef,
    addr: SocketAddr,
    key: &Key,
    key_path: &Path,
    options: &Options,
) -> Result<Started, String> {
    let key_bytes = std::fs::read(key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let dir = remote_dir_expr(&host.machine);
    let mut daemon = format!(
        "{} --name {} --listen {} --iface {} --key-file \"$d/control.key\" --state-dir \"$d\"",
        shell_quote(&options.remote_vnetd),
        shell_quote(&host.machine),
        shell_quote(&addr.to_string()),
        shell_quote(&iface_arg(host, options)),
    );
    for flag in daemon_flags(host, options) {
        daemon.push(' ');
        daemon.push_str(&shell_quote(&flag));
    }
    let script = format!(
        "set -e; d={dir}; mkdir -p \"$d\"; umask 077; cat > \"$d/control.key\"; \
         if [ -f \"$d/vnetd.pid\" ] && kill -0 \"$(cat \"$d/vnetd.pid\")\" 2>/dev/null; then \
         echo \"already running as pid $(cat \"$d/vnetd.pid\")\"; exit 0; fi; \
         nohup {daemon} </dev/null >>\"$d/vnetd.log\" 2>&1 & \
         echo $! > \"$d/vnetd.pid\"; echo \"started as pid $!\""
    );
    let detail = ssh(host, options, &script, &key_bytes)?;
    let deadline = Instant::now() + options.wait;
    loop {
        if probe(addr, &host.machine, key, Duration::from_millis(300)).unwrap_or(false) {
            return Ok(Started::Remote { detail });
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "started over ssh ({detail}) but did not answer at {addr} within {:?}; see its vnetd.log under $XDG_STATE_HOME/vnet/daemons/{} there",
                options.wait, host.machine
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Is `pid` a live (not zombie) process?
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn is_vnetd(pid: i32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("vnetd"))
        .unwrap_or(false)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits for `pid` to exit; TERM after `grace`, KILL after twice that.
fn reap(pid: i32, grace: Duration) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let start = Instant::now();
    let mut termed = false;
    while alive(pid) {
        let waited = start.elapsed();
        if waited > grace * 2 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        } else if waited > grace && !termed {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            termed = true;
        }
        if waited > grace * 3 {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the daemon of `host`: a shutdown request if it answers, else its pid (local) or a
/// kill over ssh (remote); waits until it is gone.
pub fn down_one(
    host: &HostDef,
    key: &Key,
    state_dir: &Path,
    options: &Options,
) -> Result<Stopped, String> {
    let addr = hosts::resolve(host)?;
    let place = place(host, addr, &options.remote);
    let pid_path = daemon_dir(state_dir, &host.machine).join("vnetd.pid");
    let pid = match place {
        Place::Local => read_pid(&pid_path).filter(|&p| alive(p) && is_vnetd(p)),
        Place::Remote => None,
    };
    let answered = match Client::connect_timeout(addr, key, Duration::from_millis(800)) {
        Ok(c) if c.daemon() == host.machine => {
            c.shutdown()
                .map_err(|e| format!("shutdown refused at {addr}: {e}"))?;
            true
        }
        Ok(c) => {
            return Err(format!(
                "{addr} is served by daemon `{}`, not `{}`",
                c.daemon(),
                host.machine
            ))
        }
        Err(_) => false,
    };
    let stopped = match (place, pid) {
        (Place::Local, Some(pid)) => {
            if !answered {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            reap(pid, Duration::from_secs(5));
            if alive(pid) {
                return Err(format!("vnetd (pid {pid}) would not exit"));
            }
            true
        }
        (Place::Local, None) => answered,
        (Place::Remote, _) => {
            if !answered {
                let dir = remote_dir_expr(&host.machine);
                let script = format!(
                    "d={dir}; if [ -f \"$d/vnetd.pid\" ] && kill \"$(cat \"$d/vnetd.pid\")\" 2>/dev/null; then \
                     rm -f \"$d/vnetd.pid\"; echo stopped; else rm -f \"$d/vnetd.pid\"; echo not running; fi"
                );
                ssh(host, options, &script, b"")? == "stopped"
            } else {
                true
            }
        }
    };
    let _ = std::fs::remove_file(&pid_path);
    if stopped {
        // Until the port refuses, a following `up` could take the dying daemon for a live one.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline
            && std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(if stopped {
        Stopped::Stopped
    } else {
        Stopped::NotRunning
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_kinds_per_machine_then_per_name_then_default() {
        let host = HostDef {
            user: "u".into(),
            machine: "m1".into(),
            port: 1,
            iface: "vm".into(),
        };
        let mut o = Options {
            vnetd: None,
            ssh_command: "ssh".into(),
            remote_vnetd: "vnetd".into(),
            remote: vec![],
            iface_kind: None,
            ifaces: vec![],
            fresh: false,
            report_hz: None,
            metrics: vec![],
            forward_cpu: None,
            wait: Duration::from_secs(1),
        };
        assert_eq!(iface_arg(&host, &o), "vm");
        o.iface_kind = Some("tap".into());
        assert_eq!(iface_arg(&host, &o), "vm=tap");
        o.ifaces.push("vm=packet".parse().unwrap());
        assert_eq!(iface_arg(&host, &o), "vm=packet");
        o.ifaces.push("m1/vm=dgram:127.0.0.1:0".parse().unwrap());
        assert_eq!(iface_arg(&host, &o), "vm=dgram:127.0.0.1:0");
        assert!("novalue".parse::<IfaceKind>().is_err());
        assert!(daemon_flags(&host, &o).is_empty(), "vnetd's defaults");
        o.fresh = true;
        o.report_hz = Some(0);
        o.metrics.push("m2=127.0.0.1:9000".parse().unwrap());
        o.metrics.push("m1=127.0.0.1:9001".parse().unwrap());
        o.forward_cpu = Some(1);
        assert_eq!(
            daemon_flags(&host, &o),
            [
                "--fresh",
                "--report-hz",
                "0",
                "--metrics",
                "127.0.0.1:9001",
                "--forward-cpu",
                "1"
            ]
        );
        assert!("m1=nowhere".parse::<MetricsAddr>().is_err());
        assert!("=127.0.0.1:1".parse::<MetricsAddr>().is_err());
        assert!("/x=tap".parse::<IfaceKind>().is_err());
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
    }
}
