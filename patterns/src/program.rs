//! What a Patterns run is: the program every rank must agree on, and the error type.

use crate::schedule::{Operation, Schedule};
use crate::topology::{Graph, Topology};
use std::fmt;
use std::time::Duration;

/// The largest message a program may use (a frame holds up to n² of them in a routed
/// all-to-all, so this also bounds what a receiver accepts).
pub const MAX_MESSAGE: usize = 64 << 20;

/// How long a program runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Length {
    Supersteps(u64),
    /// Rank 0 decides to stop when this has passed; the others follow within n supersteps.
    Duration(Duration),
}

/// The BSP program: every rank must run the same one (they compare it when they connect).
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    pub topology: Topology,
    pub operation: Operation,
    pub ranks: usize,
    /// Bytes of each message (each item of a transfer).
    pub message_size: usize,
    /// Compute work per superstep, in units per byte of message size; a unit is one step
    /// of a 64-bit linear congruential generator (about a nanosecond).
    pub compute_ratio: f64,
    pub length: Length,
}

/// What a rank's run may need besides the program: how long to wait.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// The longest a rank waits for a peer's data, or for a send to be taken, before it
    /// gives up naming that peer.
    pub timeout: Duration,
    /// The longest a rank waits for all its connections at the start.
    pub connect_timeout: Duration,
    /// The width of the throughput samples in the report.
    pub sample_interval: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            sample_interval: Duration::from_secs(1),
        }
    }
}

/// A failed run, with a message naming the problem (and the rank or address concerned).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error(pub String);

impl Error {
    pub fn new(msg: impl Into<String>) -> Error {
        Error(msg.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl Program {
    /// The neighbour sets and the communication schedule, or why the program is invalid.
    pub fn plan(&self) -> Result<(Graph, Schedule), Error> {
        if self.message_size > MAX_MESSAGE {
            return Err(Error(format!(
                "message size {} is above the limit of {MAX_MESSAGE} bytes",
                self.message_size
            )));
        }
        if !(self.compute_ratio.is_finite() && self.compute_ratio >= 0.0) {
            return Err(Error(format!(
                "compute ratio {} must be a finite number of at least 0",
                self.compute_ratio
            )));
        }
        let graph = self
            .topology
            .graph(self.ranks)
            .map_err(|e| Error(e.to_string()))?;
        let schedule = Schedule::new(&graph, self.operation);
        Ok((graph, schedule))
    }

    /// The text ranks compare in their hello: equal texts mean equal programs.
    pub fn describe(&self) -> String {
        let length = match self.length {
            Length::Supersteps(s) => format!("{s} supersteps"),
            Length::Duration(d) => format!("{} s", d.as_secs_f64()),
        };
        format!("{}, {length}", self.work())
    }

    /// What each superstep does: the program without its length.
    pub fn work(&self) -> String {
        format!(
            "{} {} of {} ranks, {} B messages, compute ratio {}",
            self.topology, self.operation, self.ranks, self.message_size, self.compute_ratio
        )
    }

    /// Compute units of one superstep.
    pub fn compute_units(&self) -> u64 {
        (self.compute_ratio * self.message_size as f64) as u64
    }

    /// The largest frame body a rank of this program can legitimately receive.
    pub fn max_frame(&self, schedule: &Schedule) -> usize {
        let item = 13 + self.message_size;
        let hello = 11 + 4 * self.describe().len();
        (32 + schedule.max_items() * item).max(hello)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(size: usize, ratio: f64) -> Program {
        Program {
            topology: Topology::Ring,
            operation: Operation::Exchange,
            ranks: 4,
            message_size: size,
            compute_ratio: ratio,
            length: Length::Supersteps(1),
        }
    }

    #[test]
    fn bad_programs_say_what_is_wrong() {
        assert!(ring(MAX_MESSAGE + 1, 0.0)
            .plan()
            .unwrap_err()
            .0
            .contains("message size"));
        for r in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(
                ring(8, r).plan().unwrap_err().0.contains("compute ratio"),
                "{r}"
            );
        }
        let mut p = ring(8, 0.0);
        p.topology = Topology::Hypercube;
        p.ranks = 6;
        assert!(p.plan().unwrap_err().0.contains("power of two"));
    }

    #[test]
    fn frames_are_bounded_by_the_program() {
        let p = ring(1000, 2.5);
        let (_, s) = p.plan().unwrap();
        // One item of 1000 bytes plus its header and the frame's header.
        assert!(p.max_frame(&s) >= 1000 + 13 + 25 && p.max_frame(&s) < 2000);
        assert_eq!(p.compute_units(), 2500);
        assert_ne!(ring(8, 0.0).describe(), ring(9, 0.0).describe());
    }
}
