//! `vnetc demo --vms`: the workload in real QEMU guests (TCG, no root). Every VM of the
//! scenario boots the host's Debian kernel with a busybox initramfs carrying `vnet-patterns`
//! and runs its rank over the guest's own TCP/IP stack; its NIC is `-netdev dgram` on its
//! host daemon's interface. The guests are started by the VM manager and entered in the VM
//! registry as `qemu` VMs, so `vnetc adapt --apply` migrates them live over QMP like any
//! other (`crate::vm`), and reports each migration's downtime.
//!
//! The guest prints everything the demo reads on its serial console, which QEMU writes to a
//! file per incarnation: a clock line (the guest's clock is set from the RTC in whole seconds,
//! so the demo measures its offset), then the rank's JSON report between markers, with the
//! rank's exit code.

use super::now;
use super::procs::{self, Result, Stop};
use crate::vm::registry::{Driver, Registry};
use crate::vm::{self, image, Attachment, Detached, ImageSpec, Vm, VmSpec};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vnet_demo::story::RankReport;
use vnet_demo::Deployment;

/// Where the Patterns binary lives in the guest.
const GUEST_PATTERNS: &str = "/bin/vnet-patterns";

/// The guest's script (`/etc/vnet/run`, after `eth0` is up). Kernel arguments carry the rank,
/// the peers and the program with `/` for the separators they may not contain. The clock
/// line is printed just after the guest's second turns, so the demo, seeing it, knows the
/// guest's clock to the latency of its console.
const RUN: &str = r#"
t=$(date +%s)
while [ "$(date +%s)" = "$t" ]; do :; done
echo "VNET-CLOCK $(date +%s)"
echo VNET-PATTERNS-START
/bin/vnet-patterns run --rank "$vnet_rank" --peers "$(echo "$vnet_peers" | tr / ,)" \
  $(echo "$vnet_program" | tr / ' ') >/tmp/report.json 2>/tmp/patterns.err
code=$?
cat /tmp/patterns.err
echo VNET-REPORT-BEGIN
cat /tmp/report.json
echo "VNET-REPORT-END $code"
"#;

/// How long a guest may take to boot to its script (TCG on a busy machine).
const BOOT: Duration = Duration::from_secs(180);

/// How long ranks wait for each other at the start (the guests boot at different speeds),
/// and for a partner's data: TCG guests on a busy host are slow, and a TCP connection whose
/// frames were lost during migrations backs off for seconds before it retransmits.
const CONNECT_TIMEOUT: &str = "180";
const DATA_TIMEOUT: &str = "120";

/// The running guests, detached from their handles at once (QEMU's QMP socket takes one
/// client, and `vnetc adapt` needs it). Dropping them stops every QEMU process of the run:
/// those the demo started and those `vnetc adapt` started for migrations.
pub struct Guests {
    vms: Vec<Detached>,
    names: Vec<String>,
    dir: PathBuf,
    registry: Registry,
    /// Host clock minus rank 0's guest clock, seconds.
    offset: f64,
    seconds: f64,
}

impl Guests {
    /// Builds the guest image, boots one guest per VM of the deployment for a run of
    /// `seconds`, and waits until every guest runs its rank; `state_dir`'s VM registry
    /// will say where each guest's current QEMU process is.
    pub fn start(
        d: &Deployment,
        dir: &Path,
        patterns: &Path,
        state_dir: &Path,
        seconds: f64,
    ) -> Result<Guests> {
        let (kernel, version) = image::prerequisites().map_err(|e| e.to_string())?;
        let dir = dir.join("vms");
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let files =
            image::program_files(patterns, GUEST_PATTERNS, &dir).map_err(|e| e.to_string())?;
        let spec = ImageSpec {
            run: RUN.into(),
            files,
        };
        let img = image::build(&dir, &kernel, &version, &spec).map_err(|e| e.to_string())?;
        let mut guests = Guests {
            vms: Vec::new(),
            names: d.vms.iter().map(|v| v.name.clone()).collect(),
            dir,
            registry: Registry::open(state_dir),
            offset: 0.0,
            seconds,
        };
        for n in 0..d.vms.len() {
            procs::check()?;
            let vm = guests.boot(d, n, &img, seconds)?;
            guests.vms.push(vm.detach());
        }
        guests.wait_started()?;
        Ok(guests)
    }

    fn boot(&self, d: &Deployment, n: usize, img: &vm::GuestImage, seconds: f64) -> Result<Vm> {
        let v = &d.vms[n];
        let daemon = d
            .daemon(&v.host)
            .ok_or_else(|| format!("VM {}: no daemon for host {}", v.name, v.host))?;
        let mut program = d.program_args(seconds);
        for (flag, value) in [
            ("--connect-timeout", CONNECT_TIMEOUT),
            ("--timeout", DATA_TIMEOUT),
        ] {
            program.extend([flag.to_string(), value.to_string()]);
        }
        let mut spec = VmSpec::new(&v.name, v.mac, img.clone())
            .arg("ip", &format!("{}/24", v.rank_addr.ip()))
            .arg("rank", &n.to_string())
            .arg("peers", &d.peers().join("/"))
            .arg("program", &program.join("/"));
        spec.memory_mb = memory_mb(&img.initrd);
        let at = Attachment {
            iface: daemon.dgram,
            local: v.card,
        };
        Vm::start(&self.dir, spec, at).map_err(|e| Stop::Failed(e.to_string()))
    }

    /// How the registry moves each guest: live over QMP.
    pub fn drivers(&self) -> Vec<Driver> {
        self.vms
            .iter()
            .map(|vm| Driver::Qemu { vm: vm.clone() })
            .collect()
    }

    /// Waits until every guest runs its rank, and reads rank 0's clock offset.
    fn wait_started(&mut self) -> Result<()> {
        let deadline = Instant::now() + BOOT;
        let mut clock = None;
        let mut checked = Instant::now();
        loop {
            procs::check()?;
            if clock.is_none() {
                clock = guest_clock(&consoles(&self.vms[0])).map(|t| now() - t);
            }
            let booted = self
                .vms
                .iter()
                .all(|v| consoles(v).contains("VNET-PATTERNS-START"));
            if booted {
                self.offset = clock.unwrap_or(0.0);
                return Ok(());
            }
            if checked.elapsed() > Duration::from_secs(1) {
                self.check_running()?;
                checked = Instant::now();
            }
            if Instant::now() > deadline {
                return Err(Stop::Failed(format!(
                    "the guests did not boot within {BOOT:?}; consoles:\n{}",
                    self.consoles_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn check_running(&self) -> Result<()> {
        match self.vms.iter().find(|v| !v.running()) {
            Some(v) => Err(Stop::Failed(format!(
                "the QEMU process of VM {} ended while booting; its console:\n{}",
                v.name,
                last_lines(&consoles(v), 10)
            ))),
            None => Ok(()),
        }
    }

    fn consoles_tail(&self) -> String {
        self.vms
            .iter()
            .map(|v| format!("--- {}\n{}", v.name, last_lines(&consoles(v), 8)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The console of VM `name` over all its incarnations, as the registry knows them.
    fn console(&self, name: &str) -> Result<String> {
        let record = self
            .registry
            .get(name)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("VM {name} is no longer registered"))?;
        let Driver::Qemu { vm } = record.driver else {
            return Err(Stop::Failed(format!("VM {name} is no longer a QEMU guest")));
        };
        Ok(consoles(&vm))
    }

    /// Waits for every rank's end and returns rank 0's report on the host's clock; a rank
    /// that failed fails the run, with its console.
    pub fn finish(self) -> Result<RankReport> {
        let deadline = Instant::now() + Duration::from_secs_f64(self.seconds + 120.0);
        let mut reports = Vec::new();
        for name in &self.names {
            let text = loop {
                procs::check()?;
                let text = self.console(name)?;
                if text.contains("VNET-REPORT-END") {
                    break text;
                }
                if Instant::now() > deadline {
                    return Err(Stop::Failed(format!(
                        "VM {name} did not finish its rank in time; its console:\n{}",
                        last_lines(&text, 10)
                    )));
                }
                procs::sleep(Duration::from_millis(200))?;
            };
            reports.push(report(name, &text)?);
        }
        let mut first = reports.swap_remove(0);
        first.started_unix += self.offset;
        Ok(first)
    }
}

impl Drop for Guests {
    fn drop(&mut self) {
        vm::manager::stop_all_in(&self.dir);
    }
}

/// The guest's memory: room for the kernel and its work (the manager's default) plus twice
/// the initramfs, which the kernel holds while it unpacks it into its root file system.
fn memory_mb(initrd: &Path) -> u32 {
    let size = std::fs::metadata(initrd).map_or(0, |m| m.len());
    VmSpec::DEFAULT_MEMORY_MB + (2 * size).div_ceil(1 << 20) as u32
}

/// Every incarnation's console, in order.
fn consoles(vm: &Detached) -> String {
    (0..=vm.incarnation)
        .map(|n| std::fs::read_to_string(vm.console(n)).unwrap_or_default())
        .collect()
}

/// The guest's clock from its `VNET-CLOCK` line.
fn guest_clock(console: &str) -> Option<f64> {
    let line = console.lines().find(|l| l.starts_with("VNET-CLOCK "))?;
    line["VNET-CLOCK ".len()..].trim().parse().ok()
}

/// The rank's JSON report between the markers; a non-zero exit is an error with the
/// console's last lines.
fn report(name: &str, console: &str) -> Result<RankReport> {
    let fail = |why: &str| {
        Stop::Failed(format!(
            "VM {name}: {why}; its console:\n{}",
            last_lines(console, 10)
        ))
    };
    let begin = console
        .find("VNET-REPORT-BEGIN")
        .ok_or_else(|| fail("no report"))?;
    let rest = &console[begin + "VNET-REPORT-BEGIN".len()..];
    let end = rest
        .find("VNET-REPORT-END")
        .ok_or_else(|| fail("no report end"))?;
    let code = rest[end + "VNET-REPORT-END".len()..]
        .lines()
        .next()
        .map(str::trim);
    if code != Some("0") {
        return Err(fail(&format!(
            "Patterns exited with {}",
            code.unwrap_or("?")
        )));
    }
    serde_json::from_str(&rest[..end]).map_err(|e| fail(&format!("its report is not JSON: {e}")))
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_gives_the_clock_and_the_report() {
        let console = "VNET-VM-UP\r\nVNET-CLOCK 1796604977\r\nVNET-PATTERNS-START\r\n\
            VNET-REPORT-BEGIN\r\n{\"rank\":0,\"program\":\"ring, 1 s\",\"work\":\"ring\",\"started_unix\":5.0,\r\n\
            \"supersteps\":3,\"seconds\":1.0,\"samples\":[]}\r\nVNET-REPORT-END 0\r\n";
        assert_eq!(guest_clock(console), Some(1796604977.0));
        let r = report("vm1", console).expect("report");
        assert_eq!((r.rank, r.supersteps), (0, 3));
        let failed = console.replace("END 0", "END 1");
        let e = match report("vm1", &failed) {
            Err(Stop::Failed(e)) => e,
            other => panic!("{other:?}"),
        };
        assert!(e.contains("VM vm1: Patterns exited with 1"), "{e}");
        assert!(report("vm1", "VNET-VM-UP\n").is_err());
        assert_eq!(guest_clock("VNET-VM-UP\n"), None);
    }
}
