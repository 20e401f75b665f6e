//! VMs that vnetc starts and live-migrates itself (issue 12's QMP driver, reused by
//! `vnetc demo --vms`): QEMU guests (TCG, no root) on `-netdev dgram`, attached to a vnetd
//! `dgram` interface; a live migration moves a guest to a new QEMU process attached to another
//! daemon's interface, keeping its MAC.
//!
//! How the overlay follows a migrated VM (make before break, so no frame is lost beyond the
//! guest's own pause):
//! 1. before migrating, add the VM's rules at its new daemon (its interface for the VM's MAC,
//!    links for its traffic out) and, at its old daemon, a rule sending frames for the VM's
//!    MAC over a link to the new daemon *beside* the interface rule (same priority, so both
//!    fire). Nothing else changes: until the VM moves, the new daemon's `dgram` interface knows
//!    no peer and drops what it gets.
//! 2. migrate. The new QEMU process announces the VM (`announce-self`: RARP, or the guest's
//!    own gratuitous ARP), and the new daemon's `dgram` interface learns the VM's address from
//!    that first frame; from then on frames reaching the old daemon are relayed to it.
//! 3. point every other daemon's rules for the VM's MAC at the new daemon (one atomic batch
//!    per daemon: the rule replaced, never absent),
//! 4. remove the old daemon's rules for the VM.
//!
//! Only the guest's pause (the source's `STOP` to the destination's `RESUME`) loses frames: a frame reaching the old place
//! after the pause began is either queued to the paused source or relayed to the new place.

pub mod libvirt;
pub mod manager;
pub mod qmp;
pub mod registry;

pub use manager::{Attachment, Detached, MigrateOptions, Migration, Vm, VmSpec};
/// The guest a VM boots (the `vnet-guest` crate, shared with the daemon's QEMU test).
pub use vnet_guest as image;
pub use vnet_guest::{GuestImage, ImageSpec};

use std::fmt;

#[derive(Debug)]
pub enum Error {
    /// A file or process could not be made or read.
    Io(String),
    Qmp(qmp::QmpError),
    /// QEMU exited, or refused its command line; with the end of its stderr.
    Qemu {
        vm: String,
        detail: String,
    },
    /// The migration failed or was cancelled; the VM runs on at its source.
    Migration {
        vm: String,
        detail: String,
    },
    /// Bad input from the caller (a name, a kernel argument), naming it.
    Invalid(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::Qmp(e) => write!(f, "{e}"),
            Error::Qemu { vm, detail } => write!(f, "QEMU of VM {vm}: {detail}"),
            Error::Migration { vm, detail } => write!(f, "migrating VM {vm}: {detail}"),
            Error::Invalid(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<qmp::QmpError> for Error {
    fn from(e: qmp::QmpError) -> Error {
        Error::Qmp(e)
    }
}
