//! Patterns, the thesis's BSP workload generator.
//!
//! A program is a topology, an operation, a message size, a compute/communicate ratio and
//! a length; every rank runs supersteps of a compute phase and a communication phase whose
//! rounds come from a pure [`Schedule`]. [`run_tcp`] runs one rank over TCP, [`run_local`]
//! runs all ranks of a program as threads on loopback.
//!
//! ```no_run
//! use vnet_patterns::{run_local, Length, Operation, Options, Program, Topology};
//! let program = Program {
//!     topology: Topology::Ring,
//!     operation: Operation::Exchange,
//!     ranks: 4,
//!     message_size: 1024,
//!     compute_ratio: 0.0,
//!     length: Length::Supersteps(100),
//! };
//! let reports = run_local(&program, &Options::default()).unwrap();
//! println!("{:.1} supersteps/s", reports[0].supersteps_per_second);
//! ```

pub mod compute;
pub mod engine;
pub mod handshake;
pub mod payload;
pub mod program;
pub mod report;
mod run;
pub mod schedule;
pub mod tcp;
pub mod topology;
pub mod vm;
pub mod wire;

pub use program::{Error, Length, Options, Program};
pub use report::{PeerStats, Report, Sample};
pub use run::{run_local, run_tcp, run_vm};
pub use schedule::{Operation, Schedule};
pub use topology::{Graph, Topology};
