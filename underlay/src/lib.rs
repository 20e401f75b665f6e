//! The network under the overlay (SPEC 5.2 and the emulated wide area of `vnetc demo`), as
//! logic without IO: the daemons own the sockets and the clock.
//!
//! - [`shaper`]: what a link to one peer does to a frame when a wide area is emulated: it
//!   waits for the link's rate (a FIFO queue of bounded delay, tail drop beyond it) and then
//!   for the one-way delay. [`shaper::DelayLine`] holds frames until they are due.
//! - [`schedule`]: which daemon pairs probe when, so that no daemon is in two probes at once.
//! - [`estimate`]: latency, loss and bandwidth from what the probes saw, and the JSON of
//!   `vnetc measure`, which is the `links` of an adaptation problem.
//!
//! Times are nanoseconds on the caller's monotonic clock.

pub mod estimate;
pub mod schedule;
pub mod shaper;

/// Nanoseconds on the caller's monotonic clock.
pub type Nanos = u64;
