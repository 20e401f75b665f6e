//! What `vnetc demo` runs: its scenarios (sites, hosts, the emulated wide area, VMs and the
//! Patterns workload), where they run on this computer, and the story a run tells. Pure: no
//! processes, sockets or files.

pub mod deploy;
pub mod scenario;
pub mod story;

pub use deploy::Deployment;
pub use scenario::{Checked, Placement, Scenario};
pub use story::Summary;
