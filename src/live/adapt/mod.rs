//! `vnetc adapt FILE` (SPEC 5.3): VADAPT on the running system. [`problem`] assembles the
//! problem from FILE, the VM registry, VTTIF and the underlay measurement; [`proposal`] turns
//! the solver's answer into desired states; this module carries a proposal out: the VMs'
//! new places prepared, the migrations through the registry's drivers, then the new state,
//! each step through the apply engine (`commands::apply::apply_state`).

pub mod problem;
pub mod proposal;

use crate::live::fetch::Session;
use crate::vm::registry::{self, Destination, Moved, Registry};
use proposal::Move;
use std::net::SocketAddr;
use std::time::Duration;
use vnet_proto::control::InterfaceKind;

/// The address of daemon `session`'s `dgram` interface `iface`, where a VM attaches.
pub fn dgram_address(session: &mut Session, iface: &str) -> Result<SocketAddr, String> {
    let daemon = session.host.machine.clone();
    let interfaces = session
        .client
        .list_interfaces()
        .map_err(|e| format!("daemon {daemon}: listing interfaces: {e}"))?;
    let found = interfaces.into_iter().find(|i| i.name == iface);
    match found.map(|i| i.kind) {
        Some(InterfaceKind::Dgram { local, .. }) => local.parse().map_err(|_| {
            format!("daemon {daemon}: interface {iface} has the address `{local}`, not HOST:PORT")
        }),
        Some(_) => Err(format!(
            "daemon {daemon}: interface {iface} is not a `dgram` interface, so no VM can attach to it"
        )),
        None => Err(format!("daemon {daemon}: no interface {iface}")),
    }
}

/// Moves one VM with its registry driver to its new daemon's interface, and records the move.
pub fn migrate(
    sessions: &mut [Session],
    reg: &Registry,
    m: &Move,
    timeout: Duration,
) -> Result<Moved, String> {
    let vm = reg
        .get(&m.vm)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("VM {} is no longer registered", m.vm))?;
    let session = sessions
        .iter_mut()
        .find(|s| s.host.machine == m.to)
        .ok_or_else(|| format!("no session to daemon {}", m.to))?;
    let iface = session.host.iface.clone();
    let dest = Destination {
        host: m.to.clone(),
        dgram: dgram_address(session, &iface)?,
    };
    let moved = registry::migrate(&vm, &dest, timeout).map_err(|e| e.to_string())?;
    reg.register(&moved.record).map_err(|e| e.to_string())?;
    Ok(moved)
}

#[cfg(test)]
mod tests;
