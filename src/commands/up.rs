//! `vnetc up FILE`: start the daemons of the HOST lines (locally, or over ssh), wait until
//! each answers, report the ones that did not. Daemons already running are left alone.

use super::live::{load_clean, usage};
use crate::live::config::{parse_duration, ControlArgs};
use crate::live::parallel;
use crate::live::up::{self, IfaceKind, MetricsAddr, Started};
use crate::{Failure, Outcome};
use std::path::PathBuf;
use std::time::Duration;
use vnet_grammar::model::HostDef;
use vnet_proto::Key;

#[derive(clap::Args)]
pub struct Args {
    /// The program whose HOST lines name the daemons.
    pub file: String,
    #[command(flatten)]
    pub control: ControlArgs,
    #[command(flatten)]
    pub start: StartArgs,
}

/// How daemons are started (shared with `down` and `apply --up`).
#[derive(clap::Args, Clone, Debug)]
pub struct StartArgs {
    /// The vnetd binary for local daemons [default: next to vnetc, else on PATH].
    #[arg(long, value_name = "PATH")]
    pub vnetd: Option<PathBuf>,
    /// The ssh command for remote daemons: program and leading arguments.
    #[arg(long, value_name = "CMD", default_value = "ssh")]
    pub ssh_command: String,
    /// vnetd as the remote shell finds it.
    #[arg(long, value_name = "PATH", default_value = "vnetd")]
    pub remote_vnetd: String,
    /// Start MACHINE over ssh even though its address is this computer's (repeatable).
    #[arg(long, value_name = "MACHINE")]
    pub remote: Vec<String>,
    /// The kind of every HOST interface: packet, tap, dgram (127.0.0.1, a free port) or
    /// dgram:LOCAL[,PEER] [default: vnetd chooses].
    #[arg(long, value_name = "KIND")]
    pub iface_kind: Option<String>,
    /// The kind of one interface (repeatable).
    #[arg(long = "iface", value_name = "[MACHINE/]NAME=KIND")]
    pub ifaces: Vec<IfaceKind>,
    /// Start with empty tables instead of the saved ones.
    #[arg(long)]
    pub fresh: bool,
    /// VTTIF report periods per second of every started daemon (vnetd's `--report-hz`;
    /// 0 turns reporting off) [default: vnetd's, 20].
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub report_hz: Option<u32>,
    /// Serve MACHINE's Prometheus metrics at http://ADDR/metrics (vnetd's `--metrics`;
    /// repeatable, one per machine).
    #[arg(long, value_name = "MACHINE=ADDR")]
    pub metrics: Vec<MetricsAddr>,
    /// The home CPU of every started daemon's forwarding thread (vnetd's `--forward-cpu`):
    /// with the daemons of one machine on one CPU, light traffic between them is handed over
    /// on an awake CPU (lower RTT) [default: the kernel places the threads].
    #[arg(long, value_name = "CPU")]
    pub forward_cpu: Option<u32>,
    /// How long to wait for each started daemon to answer.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub start_timeout: Duration,
}

impl StartArgs {
    pub fn options(&self) -> up::Options {
        up::Options {
            vnetd: self.vnetd.clone(),
            ssh_command: self.ssh_command.clone(),
            remote_vnetd: self.remote_vnetd.clone(),
            remote: self.remote.clone(),
            iface_kind: self.iface_kind.clone(),
            ifaces: self.ifaces.clone(),
            fresh: self.fresh,
            report_hz: self.report_hz,
            metrics: self.metrics.clone(),
            forward_cpu: self.forward_cpu,
            wait: self.start_timeout,
        }
    }
}

/// The key, created (mode 0600) when missing (SPEC 4).
pub fn ensure_key(control: &ControlArgs) -> Result<(Key, PathBuf), Failure> {
    let path = control.key_path().map_err(usage)?;
    if path.exists() {
        let key = Key::load(&path).map_err(|e| usage(e.to_string()))?;
        return Ok((key, path));
    }
    let key = Key::generate_file(&path).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    eprintln!("created control key {}", path.display());
    Ok((key, path))
}

/// Starts every daemon of `hosts` at once; prints a line per daemon (to stderr when `quiet`
/// is set, so `apply --up` keeps stdout for its own report). Fails when any did not start.
pub fn start_all(
    hosts: &[HostDef],
    control: &ControlArgs,
    start: &StartArgs,
    to_stderr: bool,
) -> Outcome {
    let (key, key_path) = ensure_key(control)?;
    let state_dir = control.state_dir();
    let options = start.options();
    for m in &options.remote {
        if !hosts.iter().any(|h| h.machine == m) {
            eprintln!("warning: --remote {m}: no HOST line declares it");
        }
    }
    for m in &options.metrics {
        if !hosts.iter().any(|h| h.machine == m.machine) {
            return Err(usage(format!(
                "--metrics {}={}: no HOST line declares {}",
                m.machine, m.addr, m.machine
            )));
        }
        if options
            .metrics
            .iter()
            .filter(|o| o.machine == m.machine)
            .count()
            > 1
        {
            return Err(usage(format!("--metrics names {} twice", m.machine)));
        }
    }
    if options.ssh_command.split_whitespace().next().is_none() {
        return Err(usage("--ssh-command is empty"));
    }
    let mut items: Vec<&HostDef> = hosts.iter().collect();
    let results = parallel(&mut items, |h| {
        up::up_one(h, &key, &key_path, &state_dir, &options)
    });
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name);
    let mut failed = Vec::new();
    let mut other_user = Vec::new();
    for (host, result) in hosts.iter().zip(results) {
        let line = match result {
            Ok(Started::AlreadyRunning) => format!("{}: already running", host.machine),
            Ok(Started::Local { pid, log }) => {
                if user.as_deref().is_some_and(|u| u != host.user) {
                    other_user.push(format!("{} (HOST user `{}`)", host.machine, host.user));
                }
                format!(
                    "{}: started (pid {pid}, log {})",
                    host.machine,
                    log.display()
                )
            }
            Ok(Started::Remote { detail }) => {
                format!(
                    "{}: started over ssh as {}@{} ({detail})",
                    host.machine, host.user, host.machine
                )
            }
            Err(e) => {
                failed.push(host.machine.clone());
                format!("{}: FAILED: {e}", host.machine)
            }
        };
        if to_stderr {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    if !other_user.is_empty() {
        eprintln!(
            "warning: started locally as {}, not as the HOST user (informational for a local daemon): {}",
            user.as_deref().unwrap_or("the current user"),
            other_user.join(", ")
        );
    }
    if failed.is_empty() {
        Ok(())
    } else {
        eprintln!(
            "error: {} of {} daemon{} did not start: {}",
            failed.len(),
            hosts.len(),
            if hosts.len() == 1 { "" } else { "s" },
            failed.join(", ")
        );
        Err(Failure::Subject)
    }
}

pub fn run(args: Args, color: bool) -> Outcome {
    let (_, analysis) = load_clean(&args.file, color)?;
    start_all(&analysis.state.hosts, &args.control, &args.start, false)
}
