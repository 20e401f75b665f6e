//! The workload: one user-space VM (a `vnet-patterns vm` process) per VM of the scenario,
//! each on the `dgram` interface of its host's daemon, with a control socket through which
//! it can be moved to another daemon while it runs.

use super::procs::{self, Result, Spawned, Stop};
use crate::vm::registry::{Driver, Registry, VmRecord};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use vnet_demo::story::RankReport;
use vnet_demo::Deployment;

/// The running VMs; dropping them kills any still running.
pub struct Vms {
    procs: Vec<Spawned>,
    outputs: Vec<PathBuf>,
    /// Each VM's control socket, in VM order.
    pub controls: Vec<PathBuf>,
    seconds: f64,
}

impl Vms {
    /// Starts every VM for a run of `seconds` (rank 0 decides when it ends).
    pub fn start(d: &Deployment, dir: &Path, patterns: &Path, seconds: f64) -> Result<Vms> {
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

    /// Enters every VM in vnetc's VM registry (in `state_dir`), so that `vnetc adapt
    /// --apply` can move it through its control socket.
    pub fn register(&self, d: &Deployment, state_dir: &Path) -> Result<()> {
        let registry = Registry::open(state_dir);
        for (vm, control) in d.vms.iter().zip(&self.controls) {
            let record = VmRecord {
                name: vm.name.clone(),
                mac: vm.mac,
                host: d
                    .daemon(&vm.host)
                    .map_or_else(|| vm.host.clone(), |h| h.machine.clone()),
                driver: Driver::Patterns {
                    control: control.clone(),
                },
                compute: 1.0,
                pinned: false,
            };
            registry
                .register(&record)
                .map_err(|e| Stop::Failed(format!("registering VM {}: {e}", vm.name)))?;
        }
        Ok(())
    }

    /// Waits for every VM to end its run and returns rank 0's report; any VM that fails
    /// fails the run, with its log.
    pub fn finish(mut self) -> Result<RankReport> {
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
