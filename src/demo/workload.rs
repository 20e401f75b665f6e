//! The workload: one VM per VM of the scenario running its Patterns rank, each on the
//! `dgram` interface of its host's daemon and registered in vnetc's VM registry so that
//! `vnetc adapt --apply` can move it. By default a user-space VM (a `vnet-patterns vm`
//! process, moved through its control socket); with `--vms` a QEMU guest
//! ([`super::guests`], migrated live over QMP).

use super::guests::Guests;
use super::procs::{self, Result, Spawned, Stop};
use crate::vm::registry::{Driver, Registry, VmRecord};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vnet_demo::story::RankReport;
use vnet_demo::Deployment;

/// The running workload, in user-space VMs or QEMU guests.
pub enum Workload {
    Processes(Vms),
    Guests(Guests),
}

impl Workload {
    /// Starts (and, for guests, boots) every VM for a run of `seconds` and registers it in
    /// the VM registry of `state_dir`.
    pub fn start(
        d: &Deployment,
        dir: &Path,
        patterns: &Path,
        state_dir: &Path,
        seconds: f64,
        qemu: bool,
    ) -> Result<Workload> {
        let (workload, drivers) = if qemu {
            let guests = Guests::start(d, dir, patterns, state_dir, seconds)?;
            let drivers = guests.drivers();
            (Workload::Guests(guests), drivers)
        } else {
            let vms = Vms::start(d, dir, patterns, seconds)?;
            let drivers = vms.drivers();
            (Workload::Processes(vms), drivers)
        };
        register(d, state_dir, drivers)?;
        Ok(workload)
    }

    /// Asks the run to end now, if its VMs can be asked (user-space VMs through rank 0's
    /// control socket); QEMU guests run their whole length. A VM that cannot be asked is no
    /// error: the run ends at its length anyway.
    pub fn end_now(&self) {
        if let Workload::Processes(vms) = self {
            if let Some(control) = vms.controls.first() {
                let asked = crate::vm::registry::end_patterns(control, Duration::from_secs(5));
                if let Err(e) = asked {
                    eprintln!("warning: asking rank 0 to end the run: {e}");
                }
            }
        }
    }

    /// Waits for every rank's end; rank 0's report, its times on this computer's clock.
    pub fn finish(self) -> Result<RankReport> {
        match self {
            Workload::Processes(vms) => vms.finish(),
            Workload::Guests(guests) => guests.finish(),
        }
    }
}

/// Enters every VM in vnetc's VM registry (in `state_dir`) with its driver, so that `vnetc
/// adapt --apply` can move it.
fn register(d: &Deployment, state_dir: &Path, drivers: Vec<Driver>) -> Result<()> {
    let registry = Registry::open(state_dir);
    for (vm, driver) in d.vms.iter().zip(drivers) {
        let record = VmRecord {
            name: vm.name.clone(),
            mac: vm.mac,
            host: d
                .daemon(&vm.host)
                .map_or_else(|| vm.host.clone(), |h| h.machine.clone()),
            driver,
            compute: 1.0,
            pinned: false,
        };
        registry
            .register(&record)
            .map_err(|e| Stop::Failed(format!("registering VM {}: {e}", vm.name)))?;
    }
    Ok(())
}

/// The running user-space VMs; dropping them kills any still running.
pub struct Vms {
    procs: Vec<Spawned>,
    outputs: Vec<PathBuf>,
    /// Each VM's control socket, in VM order.
    pub controls: Vec<PathBuf>,
    seconds: f64,
}

impl Vms {
    /// Starts every VM for a run of `seconds` (rank 0 decides when it ends).
    fn start(d: &Deployment, dir: &Path, patterns: &Path, seconds: f64) -> Result<Vms> {
        let mut vms = Vms {
            procs: Vec::new(),
            outputs: Vec::new(),
            controls: Vec::new(),
            seconds,
        };
        for (n, vm) in d.vms.iter().enumerate() {
            procs::check()?;
            let control = dir.join(format!("{}.sock", vm.name));
            let mut cmd = Command::new(patterns);
            cmd.args(d.patterns_args(n, seconds, &control.display().to_string()));
            let out = dir.join(format!("{}.json", vm.name));
            let log = dir.join(format!("{}.log", vm.name));
            let what = format!("VM {} (vnet-patterns rank {n})", vm.name);
            vms.procs.push(Spawned::start(&what, cmd, &out, &log)?);
            vms.outputs.push(out);
            vms.controls.push(control);
        }
        Ok(vms)
    }

    /// How the registry moves each VM: through its control socket.
    fn drivers(&self) -> Vec<Driver> {
        let control = |c: &PathBuf| Driver::Patterns { control: c.clone() };
        self.controls.iter().map(control).collect()
    }

    /// Waits for every VM to end its run and returns rank 0's report; any VM that fails
    /// fails the run, with its log.
    fn finish(mut self) -> Result<RankReport> {
        // Connecting, the run itself, and the stragglers' last supersteps.
        let deadline = Instant::now() + Duration::from_secs_f64(self.seconds + 60.0);
        for p in &mut self.procs {
            let status = p.wait(deadline)?;
            if !status.success() {
                return Err(Stop::Failed(format!(
                    "{} failed ({status}):\n{}",
                    p.what,
                    procs::tail(&p.log)
                )));
            }
        }
        let text = std::fs::read_to_string(&self.outputs[0])
            .map_err(|e| format!("{}: {e}", self.outputs[0].display()))?;
        serde_json::from_str(&text)
            .map_err(|e| Stop::Failed(format!("rank 0's report is not Patterns JSON: {e}")))
    }
}
