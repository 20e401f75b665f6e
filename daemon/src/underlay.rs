//! The emulated wide-area underlay (SPEC 5.4; for demos and experiments, off unless
//! configured): what this daemon sends to a shaped peer daemon (link frames, keepalives,
//! probes) waits in that peer's [`Shaper`] (rate, bounded queue) and then in a
//! [`DelayLine`] (one-way delay). A timer thread releases what is due; the forwarding thread
//! only copies the frame and goes on, so it never sleeps for the emulated network.
//!
//! When nothing is configured the cost on the forwarding path is one relaxed atomic load.

use crate::link::Link;
use crate::proto::{Shape, UnderlayState};
use crate::stats::{Counter, DropReason};
use crate::wire::{Frame, PREFIX};
use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use vnet_underlay::shaper::{DelayLine, Shaper};
use vnet_underlay::Nanos;

/// What waits for its time.
pub(crate) enum Held {
    /// A frame for a link: its virtio-net header and Ethernet frame at [`PREFIX`], so the
    /// link's send path can write its header in front as it does for any frame.
    Frame {
        link: Arc<Link>,
        buf: Vec<u8>,
        len: usize,
        hop: u8,
    },
    /// A link control message (keepalive) for the daemon's UDP link socket.
    Control { msg: Vec<u8>, to: SocketAddr },
    /// A probe datagram on a probe socket.
    Probe {
        sock: Arc<UdpSocket>,
        to: SocketAddr,
        msg: Vec<u8>,
    },
}

impl Held {
    fn bytes(&self) -> usize {
        match self {
            Held::Frame { len, .. } => *len,
            Held::Control { msg, .. } | Held::Probe { msg, .. } => msg.len(),
        }
    }

    /// Builds the frame view back (for the release thread).
    pub(crate) fn frame(buf: &mut [u8], len: usize, hop: u8) -> Option<Frame<'_>> {
        Frame::new(buf, PREFIX, len, hop)
    }
}

/// The most bytes held for one peer. The shaper's queue bounds what a rate holds; this bounds
/// a delay without a rate (a fast sender times a long delay).
const MAX_HELD_BYTES: usize = 64 << 20;

/// A message let go more than this after its due time was let go late: this thread was not
/// scheduled in time, and the messages behind it leave in a bunch a real link would not make.
const LATE: Nanos = 1_000_000;

struct Peer {
    shape: Shape,
    shaper: Shaper,
    line: DelayLine<Held>,
    bytes: usize,
}

impl Peer {
    /// Admits a message of `bytes` offered at `now` to this emulated link and holds `make()`
    /// until it is due; false (nothing held, the link's time untouched) when the queue is full.
    fn hold(&mut self, now: Nanos, bytes: usize, make: impl FnOnce() -> Held) -> bool {
        if self.bytes + bytes > MAX_HELD_BYTES {
            return false;
        }
        let Some(due) = self.shaper.admit(now, bytes) else {
            return false;
        };
        self.line.push(due, make());
        self.bytes += bytes;
        true
    }
}

#[derive(Default)]
struct State {
    peers: HashMap<String, Peer>,
    stop: bool,
    running: bool,
}

pub(crate) struct Underlay {
    on: AtomicBool,
    state: Mutex<State>,
    due: Condvar,
    dropped: Counter,
    /// Messages let go more than [`LATE`] after their time (see [`Underlay::late_releases`]).
    late: Counter,
    epoch: Instant,
    /// Datagrams probe sockets dropped (not authenticated, replayed, or not a request).
    pub(crate) probe_garbage: Counter,
    /// Probe sockets open now.
    pub(crate) serving: std::sync::atomic::AtomicUsize,
}

impl Default for Underlay {
    fn default() -> Self {
        Underlay {
            on: AtomicBool::new(false),
            state: Mutex::new(State::default()),
            due: Condvar::new(),
            dropped: Counter::default(),
            late: Counter::default(),
            epoch: Instant::now(),
            probe_garbage: Counter::default(),
            serving: Default::default(),
        }
    }
}

/// What [`Underlay::offer`] did with a message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Offer {
    /// The peer is not shaped: send it now.
    NotShaped,
    /// Held until due.
    Held,
    /// The peer's queue is full: dropped (counted).
    Dropped,
}

impl Underlay {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Nanos {
        self.epoch.elapsed().as_nanos() as Nanos
    }

    /// Whether any peer is shaped (one relaxed load: the whole cost when it is off).
    #[inline]
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// How many held messages were let go late so far: a probe train sent while this grew
    /// measured this machine's scheduler, not the emulated link.
    pub(crate) fn late_releases(&self) -> u64 {
        self.late.get()
    }

    pub(crate) fn shapes(&self, peer: &str) -> bool {
        self.is_on() && self.lock().peers.contains_key(peer)
    }

    /// Replaces the whole set of shaped peers. A peer whose shape did not change keeps its
    /// queue; a removed one's held messages are released at once (in order). The caller
    /// starts the release thread ([`Underlay::run`]) once.
    pub(crate) fn set(&self, shapes: BTreeMap<String, Shape>) -> Result<(), String> {
        for (peer, s) in &shapes {
            s.check()
                .map_err(|e| format!("underlay peer {peer}: {e}"))?;
        }
        let mut st = self.lock();
        let now = self.now();
        let mut old = std::mem::take(&mut st.peers);
        for (name, shape) in shapes {
            let peer = match old.remove(&name) {
                Some(p) if p.shape == shape => p,
                Some(mut p) => {
                    // New timing for what comes next; what is held keeps its due time.
                    p.shape = shape;
                    p.shaper = Shaper::new(shape);
                    p
                }
                None => Peer {
                    shape,
                    shaper: Shaper::new(shape),
                    line: DelayLine::default(),
                    bytes: 0,
                },
            };
            st.peers.insert(name, peer);
        }
        // What was held for peers no longer shaped is due now.
        let mut flush = Peer {
            shape: Shape {
                delay_ms: 0.0,
                rate_mbps: None,
            },
            shaper: Shaper::new(Shape {
                delay_ms: 0.0,
                rate_mbps: None,
            }),
            line: DelayLine::default(),
            bytes: 0,
        };
        for (_, mut p) in old {
            while let Some((_, h)) = p.line.pop_due(Nanos::MAX) {
                flush.line.push(now, h);
            }
        }
        if !flush.line.is_empty() {
            st.peers.insert(String::new(), flush);
        }
        self.on.store(!st.peers.is_empty(), Ordering::Relaxed);
        drop(st);
        self.due.notify_one();
        Ok(())
    }

    /// Holds `make()` for `peer` if the peer is shaped.
    pub(crate) fn offer(&self, peer: &str, bytes: usize, make: impl FnOnce() -> Held) -> Offer {
        let mut st = self.lock();
        let now = self.now();
        let Some(p) = st.peers.get_mut(peer) else {
            return Offer::NotShaped;
        };
        let was_empty = p.line.is_empty();
        if !p.hold(now, bytes, make) {
            self.dropped.inc();
            return Offer::Dropped;
        }
        drop(st);
        if was_empty {
            self.due.notify_one();
        }
        Offer::Held
    }

    /// Holds a burst of messages for `peer`, all offered at one instant (as a sender's burst
    /// reaches a link), so that the sender being descheduled halfway through cannot open gaps
    /// in it; a message that then leaves late is counted in [`Underlay::late_releases`]. Gives
    /// the burst back when the peer is not shaped; what the queue cannot take is dropped.
    pub(crate) fn offer_burst(&self, peer: &str, burst: Vec<Held>) -> Option<Vec<Held>> {
        let mut st = self.lock();
        let now = self.now();
        let Some(p) = st.peers.get_mut(peer) else {
            return Some(burst);
        };
        for h in burst {
            if !p.hold(now, h.bytes(), || h) {
                self.dropped.inc();
            }
        }
        drop(st);
        self.due.notify_one();
        None
    }

    /// Holds a frame for `link` if its peer is shaped; true when the frame was taken (held or
    /// dropped, counted on the link).
    pub(crate) fn hold_frame(&self, link: &Arc<Link>, f: &Frame<'_>, hop: u8) -> bool {
        let taken = self.offer(&link.peer, f.len, || {
            let body = f.vnet_and_frame();
            let mut buf = vec![0u8; PREFIX + body.len()];
            buf[PREFIX..].copy_from_slice(body);
            Held::Frame {
                link: link.clone(),
                buf,
                len: f.len,
                hop,
            }
        });
        if taken == Offer::Dropped {
            link.stats.drop(DropReason::SendError);
        }
        taken != Offer::NotShaped
    }

    pub(crate) fn state(&self) -> Option<UnderlayState> {
        let st = self.lock();
        let peers: BTreeMap<String, Shape> = st
            .peers
            .iter()
            .filter(|(name, _)| !name.is_empty())
            .map(|(n, p)| (n.clone(), p.shape))
            .collect();
        if peers.is_empty() && self.dropped.get() == 0 {
            return None;
        }
        Some(UnderlayState {
            peers,
            queued: st.peers.values().map(|p| p.line.len() as u64).sum(),
            dropped: self.dropped.get(),
        })
    }

    /// The release loop: sends what is due with `send`, sleeps until the next due time. Runs
    /// on its own thread until [`Underlay::stop`]; returns at once if another runs.
    pub(crate) fn run(&self, mut send: impl FnMut(Held)) {
        {
            let mut st = self.lock();
            if st.running {
                return;
            }
            st.running = true;
        }
        let mut due_now = Vec::new();
        loop {
            let mut st = self.lock();
            loop {
                if st.stop {
                    return;
                }
                let now = self.now();
                let mut next: Option<Nanos> = None;
                for p in st.peers.values_mut() {
                    while let Some((due, h)) = p.line.pop_due(now) {
                        if now.saturating_sub(due) > LATE {
                            self.late.inc();
                        }
                        p.bytes = p.bytes.saturating_sub(h.bytes());
                        due_now.push(h);
                    }
                    if let Some(d) = p.line.next_due() {
                        next = Some(next.map_or(d, |n: Nanos| n.min(d)));
                    }
                }
                st.peers
                    .retain(|name, p| !(name.is_empty() && p.line.is_empty()));
                self.on.store(!st.peers.is_empty(), Ordering::Relaxed);
                if !due_now.is_empty() {
                    break;
                }
                let wait = next.map_or(Duration::from_secs(1), |d| {
                    Duration::from_nanos(d.saturating_sub(now))
                });
                st = self
                    .due
                    .wait_timeout(st, wait)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            drop(st);
            for h in due_now.drain(..) {
                send(h);
            }
        }
    }

    pub(crate) fn stop(&self) {
        self.lock().stop = true;
        self.due.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(delay_ms: f64, rate_mbps: Option<f64>) -> Shape {
        Shape {
            delay_ms,
            rate_mbps,
        }
    }

    #[test]
    fn held_messages_come_out_after_the_delay_in_order() {
        let u = Arc::new(Underlay::default());
        assert!(!u.is_on());
        u.set(BTreeMap::from([("b".to_string(), shape(30.0, None))]))
            .expect("a valid shape");
        assert!(u.is_on() && u.shapes("b") && !u.shapes("c"));
        let (tx, rx) = std::sync::mpsc::channel();
        let runner = {
            let u = u.clone();
            std::thread::spawn(move || u.run(|h| tx.send((h, Instant::now())).unwrap_or(())))
        };
        let to: SocketAddr = "127.0.0.1:9".parse().expect("an address");
        let start = Instant::now();
        for i in 0..3u8 {
            let o = u.offer("b", 10, || Held::Control {
                to,
                msg: vec![i; 10],
            });
            assert_eq!(o, Offer::Held);
        }
        assert_eq!(u.offer("c", 10, || unreachable!()), Offer::NotShaped);
        for i in 0..3u8 {
            let (h, at) = rx.recv_timeout(Duration::from_secs(2)).expect("released");
            let Held::Control { msg, .. } = h else {
                panic!("not the probe")
            };
            assert_eq!(msg[0], i, "in order");
            let waited = at - start;
            assert!(waited >= Duration::from_millis(30), "{waited:?}");
            assert!(waited < Duration::from_millis(300), "{waited:?}");
        }
        u.stop();
        runner.join().expect("the release thread ends");
    }

    #[test]
    fn bad_shapes_are_refused_and_empty_turns_it_off() {
        let u = Underlay::default();
        let err = u
            .set(BTreeMap::from([("b".to_string(), shape(-1.0, None))]))
            .expect_err("negative delay");
        assert!(err.contains("underlay peer b"), "{err}");
        assert!(!u.is_on());
        u.set(BTreeMap::from([("b".to_string(), shape(1.0, Some(5.0)))]))
            .expect("valid");
        assert!(u.state().is_some_and(|s| s.peers.len() == 1));
        u.set(BTreeMap::new()).expect("empty");
        assert!(!u.is_on() && u.state().is_none());
    }
}
