//! Counters: frames, bytes and drops by reason, per interface, link and rule.

use crate::proto::PortCounters;
use std::sync::atomic::{AtomicU64, Ordering};

/// A relaxed atomic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    pub fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

/// Why a frame (or message) was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// No rule matched.
    NoRule,
    /// A link send with no hop left.
    HopLimit,
    /// Too short, bad header, bad length, or undecodable.
    Malformed,
    /// The link is configured but not connected.
    LinkDown,
    /// A firing rule names a link or interface this daemon does not have.
    NoTarget,
    /// Every top-priority destination was the one the frame came from (not an error).
    SplitHorizon,
    /// The output refused the frame (socket error or full queue).
    SendError,
    /// A UDP link fragment arrived out of order or a frame lost a fragment.
    FragmentLost,
    /// A datagram or connection from a peer without an authenticated session.
    Unauthenticated,
    /// A super-frame the output cannot take and the daemon cannot segment.
    Oversize,
    /// A sealed record that failed authentication (forged, altered, other keys, unknown
    /// epoch, or not a record).
    BadRecord,
    /// A sealed record shorter than its header and tag.
    Truncated,
    /// A sealed record already delivered, or older than the replay window.
    Replay,
    /// A link handshake from a static key no link here was given.
    UnknownKey,
    /// A clear frame on a sealed link, or a handshake offering clear records where sealed
    /// ones are required.
    Downgrade,
    /// A link handshake over the rate limit (a flood), not answered.
    HandshakeLimit,
    /// A UDP link handshake without a valid cookie while the handshake budget was in use:
    /// answered with a cookie, not processed.
    HandshakeCookie,
}

pub const DROP_REASONS: [DropReason; 17] = [
    DropReason::NoRule,
    DropReason::HopLimit,
    DropReason::Malformed,
    DropReason::LinkDown,
    DropReason::NoTarget,
    DropReason::SplitHorizon,
    DropReason::SendError,
    DropReason::FragmentLost,
    DropReason::Unauthenticated,
    DropReason::Oversize,
    DropReason::BadRecord,
    DropReason::Truncated,
    DropReason::Replay,
    DropReason::UnknownKey,
    DropReason::Downgrade,
    DropReason::HandshakeLimit,
    DropReason::HandshakeCookie,
];

impl DropReason {
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NoRule => "no_rule",
            DropReason::HopLimit => "hop_limit",
            DropReason::Malformed => "malformed",
            DropReason::LinkDown => "link_down",
            DropReason::NoTarget => "no_target",
            DropReason::SplitHorizon => "split_horizon",
            DropReason::SendError => "send_error",
            DropReason::FragmentLost => "fragment_lost",
            DropReason::Unauthenticated => "unauthenticated",
            DropReason::Oversize => "oversize",
            DropReason::BadRecord => "bad_record",
            DropReason::Truncated => "truncated",
            DropReason::Replay => "replay",
            DropReason::UnknownKey => "unknown_key",
            DropReason::Downgrade => "downgrade",
            DropReason::HandshakeLimit => "handshake_limit",
            DropReason::HandshakeCookie => "handshake_cookie",
        }
    }
}

/// Counters of one port (interface or link). Drops are counted at the port where the frame
/// entered, except `LinkDown`, `HopLimit` and `SendError`, counted at the output.
#[derive(Debug, Default)]
pub struct PortStats {
    pub rx_frames: Counter,
    pub rx_bytes: Counter,
    pub tx_frames: Counter,
    pub tx_bytes: Counter,
    drops: [Counter; DROP_REASONS.len()],
}

impl PortStats {
    #[inline]
    pub fn rx(&self, bytes: usize) {
        self.rx_many(1, bytes as u64);
    }
    #[inline]
    pub fn tx(&self, bytes: usize) {
        self.tx_many(1, bytes as u64);
    }
    #[inline]
    pub fn drop(&self, reason: DropReason) {
        self.drop_many(reason, 1);
    }
    /// [`PortStats::rx`] for `frames` frames at once (what the kernel fast path carried).
    #[inline]
    pub fn rx_many(&self, frames: u64, bytes: u64) {
        self.rx_frames.add(frames);
        self.rx_bytes.add(bytes);
    }
    #[inline]
    pub fn tx_many(&self, frames: u64, bytes: u64) {
        self.tx_frames.add(frames);
        self.tx_bytes.add(bytes);
    }
    #[inline]
    pub fn drop_many(&self, reason: DropReason, frames: u64) {
        self.drops[reason as usize].add(frames);
    }
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].get()
    }

    pub fn snapshot(&self) -> PortCounters {
        PortCounters {
            rx_frames: self.rx_frames.get(),
            rx_bytes: self.rx_bytes.get(),
            tx_frames: self.tx_frames.get(),
            tx_bytes: self.tx_bytes.get(),
            drops: DROP_REASONS
                .iter()
                .filter(|r| self.drops(**r) > 0)
                .map(|r| (r.name().to_string(), self.drops(*r)))
                .collect(),
        }
    }
}
