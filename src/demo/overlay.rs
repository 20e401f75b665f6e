//! The demo's overlay: a free loopback block, the daemons of every host (started as `vnetc
//! up` starts them, with a `dgram` interface for the VMs), the resilient star applied by
//! `vnetc apply`, and the daemons stopped again when the overlay is dropped.

use super::procs::{self, Result, Stop};
use crate::live::parallel;
use crate::live::up::{self, IfaceKind, Started};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;
use vnet_demo::deploy::IFACE;
use vnet_demo::{Checked, Deployment};
use vnet_grammar::model::HostDef;
use vnet_proto::Key;

/// The daemons' port on every host address.
const PORT: u16 = 7100;

/// Lays the scenario out on a loopback block none of whose addresses is in use (tests run
/// demos side by side): the process id picks the first block tried.
pub fn free_deployment(checked: &Checked) -> Result<Deployment> {
    let pid = std::process::id();
    for attempt in 0..64u32 {
        let n = pid.wrapping_add(attempt.wrapping_mul(7919));
        let block = [100 + (n % 100) as u8, 1 + ((n / 100) % 250) as u8];
        let d = Deployment::new(checked, block, PORT)?;
        if is_free(&d) {
            return Ok(d);
        }
    }
    Err(Stop::Failed(
        "no free block of loopback addresses (127.A.B.0/24) after 64 tries".into(),
    ))
}

fn is_free(d: &Deployment) -> bool {
    let tcp = d.daemons.iter().all(|h| {
        let ip: Ipv4Addr = h.machine.parse().unwrap_or(Ipv4Addr::LOCALHOST);
        TcpListener::bind(SocketAddrV4::new(ip, d.port)).is_ok()
            && UdpSocket::bind(SocketAddrV4::new(ip, d.port)).is_ok()
    });
    let udp = d.daemons.iter().map(|h| h.dgram);
    tcp && udp
        .chain(d.vms.iter().map(|v| v.card))
        .all(|a| UdpSocket::bind(a).is_ok())
}

/// The running daemons; dropping it stops them.
pub struct Overlay {
    pub hosts: Vec<HostDef>,
    pub key: Key,
    /// The key file and state directory every child `vnetc` is given.
    pub key_path: PathBuf,
    pub state_dir: PathBuf,
    options: up::Options,
    /// Whether each daemon's counters are written beside its log before it stops (`--keep`).
    keep_stats: bool,
}

impl Overlay {
    /// Starts every host's daemon at once, with its `dgram` interface at the address the
    /// deployment gives it.
    pub fn start(
        d: &Deployment,
        dir: &Path,
        vnetd: Option<PathBuf>,
        keep_stats: bool,
    ) -> Result<Overlay> {
        let key_path = dir.join("control.key");
        let key =
            Key::generate_file(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
        let star = d.star(&d.checked.start());
        let analysis = vnet_grammar::analyze(&star);
        if analysis.has_errors() {
            return Err(Stop::Failed(format!(
                "internal error: the star does not check: {:?}",
                analysis.diagnostics
            )));
        }
        let ifaces = d
            .daemons
            .iter()
            .map(|h| IfaceKind {
                machine: Some(h.machine.clone()),
                name: IFACE.into(),
                kind: d.dgram_kind(h),
            })
            .collect();
        let overlay = Overlay {
            hosts: analysis.state.hosts,
            key,
            key_path,
            state_dir: dir.join("state"),
            options: up::Options {
                vnetd,
                ssh_command: "ssh".into(),
                remote_vnetd: "vnetd".into(),
                remote: Vec::new(),
                iface_kind: None,
                ifaces,
                fresh: true,
                report_hz: None,
                metrics: Vec::new(),
                forward_cpu: None,
                wait: Duration::from_secs(15),
            },
            keep_stats,
        };
        procs::check()?;
        let mut hosts: Vec<&HostDef> = overlay.hosts.iter().collect();
        let started = parallel(&mut hosts, |h| {
            up::up_one(
                h,
                &overlay.key,
                &overlay.key_path,
                &overlay.state_dir,
                &overlay.options,
            )
        });
        for (h, s) in overlay.hosts.iter().zip(started) {
            match s {
                Ok(Started::Local { .. }) => {}
                Ok(other) => {
                    return Err(Stop::Failed(format!(
                        "daemon {}: expected a fresh local daemon, found {other:?}",
                        h.machine
                    )))
                }
                Err(e) => return Err(Stop::Failed(format!("daemon {}: {e}", h.machine))),
            }
        }
        Ok(overlay)
    }

    /// The flags every child `vnetc` needs to reach these daemons.
    pub fn control_args(&self) -> Vec<String> {
        vec![
            "--key-file".into(),
            self.key_path.display().to_string(),
            "--state-dir".into(),
            self.state_dir.display().to_string(),
        ]
    }

    /// `vnetc apply --wait FILE`.
    pub fn apply(&self, dir: &Path, name: &str, file: &Path) -> Result<()> {
        let mut args = vec!["apply".to_string(), "--wait".into()];
        args.extend(self.control_args());
        args.push(file.display().to_string());
        procs::vnetc(dir, name, &args, Duration::from_secs(60)).map(|_| ())
    }
}

impl Overlay {
    /// Writes daemon `h`'s counters (drops by reason included) to `stats.json` in its state
    /// directory, so a kept run says where frames were lost.
    fn save_stats(&self, h: &HostDef) -> std::result::Result<(), String> {
        let addr = crate::live::hosts::resolve(h)?;
        let mut client =
            vnet_proto::Client::connect_timeout(addr, &self.key, Duration::from_secs(1))
                .map_err(|e| format!("connecting for its counters: {e}"))?;
        let stats = client.stats().map_err(|e| format!("its counters: {e}"))?;
        let path = up::daemon_dir(&self.state_dir, &h.machine).join("stats.json");
        let json = serde_json::to_string_pretty(&stats).map_err(|e| e.to_string())?;
        std::fs::write(&path, json).map_err(|e| format!("{}: {e}", path.display()))
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if self.keep_stats {
            for h in &self.hosts {
                if let Err(e) = self.save_stats(h) {
                    eprintln!("warning: daemon {}: {e}", h.machine);
                }
            }
        }
        let mut hosts: Vec<&HostDef> = self.hosts.iter().collect();
        let results = parallel(&mut hosts, |h| {
            up::down_one(h, &self.key, &self.state_dir, &self.options)
        });
        for (h, r) in self.hosts.iter().zip(results) {
            if let Err(e) = r {
                eprintln!("warning: daemon {}: {e}", h.machine);
            }
        }
    }
}
