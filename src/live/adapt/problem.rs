//! The adaptation problem of the running system (SPEC 5.3's `vnetc adapt FILE`), assembled
//! without IO from what the live commands read: FILE's desired state (the hosts), vnetc's VM
//! registry (the VMs it can move), VTTIF's answer (the demands, and where unknown MACs were
//! seen) and the underlay measurement (the possible links).
//!
//! - Every HOST line is a host. Its compute capacity is `vms_per_host` VMs, by default the
//!   most registered VMs any host carries now (at least one), so today's placement stays
//!   feasible and the thesis's one VM per host is the default for one-per-host systems.
//! - Every registered VM behind one of FILE's daemons is a VM (compute from its record).
//! - Every topology pair of VTTIF between two distinct unicast MACs is a demand of its
//!   `bytes_per_s` in Mbit/s. A MAC the registry does not know is a VM named by its MAC,
//!   pinned to the daemon it was seen entering at, taking no compute (vnetc cannot move it).
//! - Every measured direction between two of FILE's daemons that carried something is a
//!   possible link with the measured bandwidth and latency.
//!
//! What is left out, and why, is returned as notes for the user.

use crate::vm::registry::VmRecord;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use vnet_adapt::Problem;
use vnet_grammar::model::State;
use vnet_grammar::Mac;
use vnet_underlay::estimate::Measurement;
use vnet_vttif::view::Answer as Inferred;

/// What the command line adds to the live inputs.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub vms_per_host: Option<f64>,
    pub max_hops: Option<usize>,
    /// VMs that must stay where they are (for example: no driver here can move them).
    pub pinned: Vec<String>,
}

/// The problem, with the MAC of each of its VMs (by index) and the notes.
#[derive(Clone, Debug)]
pub struct Assembled {
    pub problem: Problem,
    /// SPEC 5.3's JSON of the problem, as solved (`--show-problem`).
    pub document: Value,
    pub macs: Vec<Mac>,
    pub notes: Vec<String>,
}

struct Builder<'a> {
    hosts: Vec<&'a str>,
    vms: Vec<Value>,
    macs: Vec<Mac>,
    notes: Vec<String>,
}

impl Builder<'_> {
    fn has_host(&self, h: &str) -> bool {
        self.hosts.contains(&h)
    }

    /// The VM of `mac`: a registered one, else a pinned stand-in at `seen` if that is a host.
    fn vm_of(&mut self, mac: Mac, seen: Option<&str>) -> Option<usize> {
        if let Some(i) = self.macs.iter().position(|&m| m == mac) {
            return Some(i);
        }
        let host = seen.filter(|h| self.has_host(h))?;
        self.vms.push(
            json!({"name": mac.to_string(), "mac": mac.to_string(), "host": host,
            "compute": 0, "pinned": true}),
        );
        self.macs.push(mac);
        Some(self.macs.len() - 1)
    }
}

/// Builds the problem (see the module's comment). The error is the adapt crate's: a
/// malformed assembly names the field, as for `--problem`.
pub fn assemble(
    state: &State,
    registry: &[VmRecord],
    inferred: &Inferred,
    measured: &Measurement,
    settings: &Settings,
) -> Result<Assembled, vnet_adapt::Error> {
    let mut b = Builder {
        hosts: state.hosts.iter().map(|h| h.machine.as_str()).collect(),
        vms: Vec::new(),
        macs: Vec::new(),
        notes: Vec::new(),
    };
    let mut per_host: BTreeMap<&str, usize> = BTreeMap::new();
    for vm in registry {
        if !b.has_host(&vm.host) {
            b.notes.push(format!(
                "VM {} is left out: it runs behind {}, which has no HOST line",
                vm.name, vm.host
            ));
        } else if b.macs.contains(&vm.mac) {
            b.notes.push(format!(
                "VM {} is left out: another registered VM has its MAC {}",
                vm.name, vm.mac
            ));
        } else {
            *per_host.entry(&vm.host).or_default() += 1;
            let pinned = vm.pinned || settings.pinned.contains(&vm.name);
            b.vms.push(
                json!({"name": vm.name, "mac": vm.mac.to_string(), "host": vm.host,
                "compute": vm.compute, "pinned": pinned}),
            );
            b.macs.push(vm.mac);
        }
    }
    let demands = demands(&mut b, inferred);
    let links = links(&mut b, measured);
    let capacity = settings
        .vms_per_host
        .unwrap_or_else(|| per_host.values().copied().max().unwrap_or(1).max(1) as f64);
    let hosts: Vec<Value> = b
        .hosts
        .iter()
        .map(|h| json!({"name": h, "compute": capacity}))
        .collect();
    let document = json!({"hosts": hosts, "links": links, "vms": b.vms, "demands": demands,
        "max_hops": settings.max_hops, "local_bw": null});
    let problem = Problem::from_json(&document.to_string())?;
    Ok(Assembled {
        problem,
        document,
        macs: b.macs,
        notes: b.notes,
    })
}

/// The topology's unicast pairs between placeable MACs, in Mbit/s, summed per pair.
fn demands(b: &mut Builder, inferred: &Inferred) -> Vec<Value> {
    let mut rates: BTreeMap<(usize, usize), f64> = BTreeMap::new();
    for pair in &inferred.topology {
        if pair.dst.is_group() || pair.src.is_group() || pair.src == pair.dst {
            continue;
        }
        let src = b.vm_of(pair.src, Some(&pair.src_daemon));
        let dst = b.vm_of(pair.dst, pair.dst_daemon.as_deref());
        let (Some(src), Some(dst)) = (src, dst) else {
            b.notes.push(format!(
                "demand {} -> {} is left out: a MAC that is not registered was not seen at any of FILE's daemons",
                pair.src, pair.dst
            ));
            continue;
        };
        let mbit = pair.bytes_per_s * 8.0 / 1e6;
        if mbit.is_finite() && mbit > 0.0 {
            *rates.entry((src, dst)).or_default() += mbit;
        }
    }
    let name = |v: usize| b.vms[v]["name"].clone();
    rates
        .into_iter()
        .map(|((s, d), bw)| json!({"src": name(s), "dst": name(d), "bw": bw, "lat": null}))
        .collect()
}

fn links(b: &mut Builder, measured: &Measurement) -> Vec<Value> {
    let mut out = Vec::new();
    for l in &measured.links {
        if !b.has_host(&l.from) || !b.has_host(&l.to) || l.from == l.to {
            b.notes.push(format!(
                "measured link {} -> {} is left out: not between two of FILE's daemons",
                l.from, l.to
            ));
        } else if !(l.bw.is_finite() && l.bw > 0.0 && l.lat.is_finite() && l.lat >= 0.0)
            || l.loss >= 1.0
        {
            b.notes.push(format!(
                "measured link {} -> {} is left out: it carried nothing (bw {}, lat {}, loss {})",
                l.from, l.to, l.bw, l.lat, l.loss
            ));
        } else {
            out.push(json!({"from": l.from, "to": l.to, "bw": l.bw, "lat": l.lat}));
        }
    }
    out
}
