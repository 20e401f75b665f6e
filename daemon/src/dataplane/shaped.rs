//! The data plane's side of the emulated underlay (`crate::underlay`): starting its release
//! thread, sending what it releases, and link control messages through it.

use super::{DataPlane, Scratch};
use crate::engine::Out;
use crate::link::Link;
use crate::port::Port;
use crate::stats::DropReason;
use crate::underlay::{Held, Offer};
use crate::wire::Frame;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

impl DataPlane {
    /// Sends a frame over a link, through the emulated underlay when its peer is shaped.
    pub(super) fn send_link(&self, l: &Arc<Link>, f: &mut Frame<'_>, hop: u8, sc: &mut Scratch) {
        if !l.is_up() {
            l.stats.drop(DropReason::LinkDown);
            return;
        }
        if self.underlay.is_on() && self.underlay.hold_frame(l, f, hop) {
            return;
        }
        self.send_link_now(l, f, hop, sc);
    }

    /// Whether a decision sends to a shaped peer: the kernel fast path would bypass the
    /// emulated underlay, so such decisions stay in user space.
    pub(super) fn shaped(&self, outs: &[Out<Port>]) -> bool {
        self.underlay.is_on()
            && outs
                .iter()
                .any(|o| matches!(&o.port, Port::Link(l) if self.underlay.shapes(&l.peer)))
    }

    /// Replaces the emulated underlay (SPEC 5.4), starting its release thread the first time;
    /// the kernel's copies of decisions are void before this returns.
    pub(crate) fn set_underlay(
        self: &Arc<DataPlane>,
        peers: std::collections::BTreeMap<String, crate::proto::Shape>,
    ) -> Result<(), String> {
        let start = !peers.is_empty();
        self.underlay.set(peers)?;
        self.void_fast_path();
        if start && !self.underlay_started.swap(true, Ordering::AcqRel) {
            let plane = Arc::downgrade(self);
            let underlay = self.underlay.clone();
            std::thread::Builder::new()
                .name("vnetd-underlay".into())
                .spawn(move || {
                    // The emulated link's clock: woken on time, like the forwarding thread.
                    crate::sys::forwarding_thread();
                    // SAFETY: prctl on the calling thread with plain integer arguments.
                    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
                    let mut sc = Scratch::default();
                    underlay.run(|h| match plane.upgrade() {
                        Some(p) => p.release(h, &mut sc),
                        None => underlay.stop(),
                    })
                })
                .map_err(|e| format!("the underlay's thread: {e}"))?;
        }
        Ok(())
    }

    /// Sends what the emulated underlay held, now that it is due.
    fn release(&self, h: Held, sc: &mut Scratch) {
        match h {
            Held::Frame {
                link,
                mut buf,
                len,
                hop,
            } => {
                if let Some(mut f) = Held::frame(&mut buf, len, hop) {
                    self.send_link_now(&link, &mut f, hop, sc);
                }
            }
            Held::Control { msg, to } => self.udp.send_control(&msg, to),
            Held::Probe { sock, to, msg } => {
                let _ = sock.send_to(&msg, to);
            }
        }
    }

    /// Sends a UDP link control message to `peer` at `to`, through the emulated underlay.
    pub(crate) fn send_control_to(&self, peer: &str, msg: Vec<u8>, to: SocketAddr) {
        let mut msg = Some(msg);
        if self.underlay.is_on() {
            let len = msg.as_ref().map_or(0, Vec::len);
            let o = self.underlay.offer(peer, len, || Held::Control {
                msg: msg.take().unwrap_or_default(),
                to,
            });
            if o != Offer::NotShaped {
                return;
            }
        }
        if let Some(m) = msg {
            self.udp.send_control(&m, to);
        }
    }
}
