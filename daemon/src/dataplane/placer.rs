//! Applies the forwarding thread's home CPU ([`Home`], a pure state machine): the system calls
//! that move the thread.

use super::home::{Home, Placement};
use crate::sys;
use std::time::Instant;

/// The forwarding thread's [`Home`], applied: it moves the calling thread where the home says.
pub(super) struct Placer {
    home: Home,
    /// The CPUs the thread may use before it first goes home ("anywhere").
    anywhere: Vec<u32>,
}

impl Placer {
    /// Sends the calling thread to its home CPU.
    pub(super) fn start(cpu: u32) -> Placer {
        let p = Placer {
            home: Home::new(cpu, Instant::now()),
            anywhere: sys::allowed_cpus().unwrap_or_default(),
        };
        p.place(p.home.start());
        p
    }

    /// Accounts a wake-up's work and moves the thread if the home says so.
    pub(super) fn worked(&mut self, woke: Instant, done: Instant) {
        if let Some(to) = self.home.worked(woke, done) {
            self.place(to);
        }
    }

    /// The home CPU was checked at start (`--forward-cpu`); a CPU taken offline since is no
    /// reason to stop forwarding.
    fn place(&self, to: Placement) {
        let home;
        let cpus = match to {
            Placement::Home(cpu) => {
                home = [cpu];
                &home[..]
            }
            Placement::Anywhere => &self.anywhere[..],
        };
        match sys::pin_to_cpus(cpus) {
            Ok(()) => tracing::debug!(?to, "forwarding thread placed"),
            Err(e) => tracing::warn!(?to, "--forward-cpu: {e}; the thread stays where it is"),
        }
    }
}
