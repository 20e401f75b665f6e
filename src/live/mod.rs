//! The live control plane: `.vnet` files driving running `vnetd` daemons (SPEC 3, 4; thesis
//! 3.3). Everything here speaks the grammar crate's model (`State`, `LinkDef`, `RuleDef`) and
//! the daemon crate's client; the commands in `crate::commands` only parse flags and render.
//!
//! - [`config`]: the key file, the state directory and timeouts every live command shares.
//! - [`hosts`]: where a HOST line's daemon is (address, this computer or another).
//! - [`fetch`]: reading the daemons' tables into a `State` (plus drift and generations).
//! - [`plan`]: the difference between live and desired, as a patch and as ordered operations.
//! - [`lease`]: taking every daemon's lease before changing anything.
//! - [`apply`]: running a plan concurrently across daemons.
//! - [`measure`]: probing the underlay between daemons (`vnetc measure`, SPEC 5.2).
//! - [`infer`]: telling the daemons who the Proxy is, and asking it (VTTIF, SPEC 5.1).
//! - [`up`]: starting and stopping daemons, locally or over ssh.
//! - [`adapt`]: VADAPT on the running system (`vnetc adapt FILE`).

pub mod adapt;
pub mod apply;
pub mod config;
pub mod fetch;
pub mod hosts;
pub mod infer;
pub mod lease;
pub mod measure;
pub mod plan;
pub mod up;

/// One problem with one daemon, named (every live error says which daemon and what).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonError {
    pub daemon: String,
    pub message: String,
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "daemon {}: {}", self.daemon, self.message)
    }
}

impl DaemonError {
    pub fn new(daemon: &str, message: impl Into<String>) -> DaemonError {
        DaemonError {
            daemon: daemon.to_string(),
            message: message.into(),
        }
    }
}

/// Runs `f` on every item at once, one thread each (the daemons are independent), and
/// returns the results in the items' order.
pub fn parallel<T: Send, R: Send>(items: &mut [T], f: impl Fn(&mut T) -> R + Sync) -> Vec<R> {
    if items.len() <= 1 {
        return items.iter_mut().map(&f).collect();
    }
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = items
            .iter_mut()
            .map(|item| scope.spawn(move || f(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}
