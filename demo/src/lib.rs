//! What `vnetc demo` runs: its scenarios (sites, hosts, the emulated wide area, VMs and the
//! Patterns workload) and what follows from them. Pure: no processes, sockets or files.

pub mod scenario;

pub use scenario::{Checked, Placement, Scenario};
