//! The model: what a `.vnet` program means. Folded state (hosts, links, rules), the MAC
//! matching and priority of SPEC 2.4, and the forwarding table every consumer shares.

mod matching;
mod state;
mod table;

pub use matching::{Match, Priority};
pub use state::{HostDef, LinkDef, LinkKey, RuleDef, State, Target};
pub use table::{Decision, Table};
