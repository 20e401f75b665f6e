//! A link's passive latency and loss estimate (SPEC 5.2): UDP links from their keepalives
//! (each carries its send time, which the answer echoes), TCP links from the kernel's own
//! round-trip estimate (`TCP_INFO`). Costs nothing on the forwarding path.

use super::Link;
use crate::proto::LinkEstimate;
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use vnet_grammar::ast::Transport;

/// Keepalives remembered for the loss estimate.
const WINDOW: usize = 32;
/// A keepalive unanswered for this long counts as lost.
const LOST_AFTER_US: u64 = 2_000_000;

#[derive(Default)]
pub(crate) struct Passive {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Smoothed round trip, microseconds (RFC 6298's 1/8 gain).
    srtt_us: Option<f64>,
    /// Recent keepalives: send time (µs) and whether an answer came.
    sent: VecDeque<(u64, bool)>,
}

/// Microseconds on this process's monotonic clock (what keepalives carry).
pub(crate) fn now_us() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

impl Passive {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A keepalive stamped `at` is sent.
    pub fn sent(&self, at: u64) {
        let mut st = self.lock();
        if st.sent.len() == WINDOW {
            st.sent.pop_front();
        }
        st.sent.push_back((at, false));
    }

    /// The answer to the keepalive stamped `at` arrived now. Answers to keepalives this link
    /// did not send (or already answered) are ignored.
    pub fn answered(&self, at: u64) {
        let now = now_us();
        let mut st = self.lock();
        let Some(entry) = st.sent.iter_mut().find(|(t, done)| *t == at && !*done) else {
            return;
        };
        entry.1 = true;
        let rtt = now.saturating_sub(at) as f64;
        st.srtt_us = Some(st.srtt_us.map_or(rtt, |s| s + (rtt - s) / 8.0));
    }

    fn keepalive_estimate(&self) -> LinkEstimate {
        self.estimate_at(now_us())
    }

    fn estimate_at(&self, now: u64) -> LinkEstimate {
        let st = self.lock();
        let settled: Vec<bool> = st
            .sent
            .iter()
            .filter(|(t, done)| *done || now.saturating_sub(*t) > LOST_AFTER_US)
            .map(|(_, done)| *done)
            .collect();
        let loss = (!settled.is_empty())
            .then(|| settled.iter().filter(|d| !**d).count() as f64 / settled.len() as f64);
        LinkEstimate {
            rtt_ms: st.srtt_us.map(|us| us / 1000.0),
            loss,
            source: "keepalive".into(),
        }
    }
}

impl Link {
    /// The link's passive estimate, when it has a source.
    pub fn estimate(&self) -> Option<LinkEstimate> {
        match self.transport {
            Transport::Udp => Some(self.passive.keepalive_estimate()),
            Transport::Tcp => {
                let rtt_us = {
                    let tx = super::lock(&self.tcp_tx);
                    tcp_rtt_us(&tx.as_ref()?.1)?
                };
                Some(LinkEstimate {
                    rtt_ms: Some(f64::from(rtt_us) / 1000.0),
                    loss: None,
                    source: "tcp_info".into(),
                })
            }
        }
    }
}

/// The kernel's smoothed round trip of a TCP connection, microseconds.
fn tcp_rtt_us(s: &std::net::TcpStream) -> Option<u32> {
    // SAFETY: a valid socket and a buffer of the size given.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (r == 0).then_some(info.tcpi_rtt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_give_the_round_trip_and_silence_the_loss() {
        let p = Passive::default();
        p.sent(now_us()); // never answered
        std::thread::sleep(std::time::Duration::from_millis(2));
        let t = now_us();
        p.sent(t);
        std::thread::sleep(std::time::Duration::from_millis(5));
        p.answered(t);
        p.answered(t); // a duplicate answer changes nothing
        p.answered(12345); // nor does one to a keepalive never sent
        let e = p.keepalive_estimate();
        let rtt = e.rtt_ms.expect("a sample");
        assert!((5.0..100.0).contains(&rtt), "{rtt}");
        assert_eq!(
            e.loss,
            Some(0.0),
            "the unanswered one may still be in flight"
        );
        let later = p.estimate_at(t + LOST_AFTER_US + 10);
        assert_eq!(later.loss, Some(0.5), "now it is lost");
        assert_eq!(Passive::default().keepalive_estimate().loss, None);
    }
}
