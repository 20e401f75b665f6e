//! Active probes between daemons (SPEC 5.2, the thesis's Wren role): the responder side
//! (`serve`: a short-lived socket that answers authenticated probes) and the prober side
//! (`run`: echoes for latency and loss, then packet trains for bandwidth). Both send through
//! the emulated underlay, so `vnetc measure` sees it as it would see a real wide area.
//! The estimators are `vnet_underlay::estimate`'s.

use crate::auth::Key;
use crate::proto::ProbeResult;
use crate::underlay::{Held, Offer, Underlay};
use msg::{Kind, Probe};
use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vnet_underlay::estimate::{Echoes, Train};

pub(crate) mod msg;

/// The longest a probe socket serves, and the longest a probe runs.
pub(crate) const MAX_SERVE: Duration = Duration::from_secs(30);
pub(crate) const MAX_PROBE: Duration = Duration::from_secs(10);
/// Probe sockets served at once (each is a thread and a port).
pub(crate) const MAX_SERVING: usize = 8;
/// The most distinct messages one serve answers: each is answered once (a replayed one is
/// garbage), and the set of those seen stays bounded.
const MAX_ANSWERS: usize = 100_000;

const ECHO_SIZE: usize = 64;
const ECHO_EVERY: Duration = Duration::from_millis(10);
const TRAIN_SIZE: usize = 1200;
/// The first train's length; later ones last about [`TRAIN_SPAN`] at the rate it found (so
/// a late wake-up at either end is a small part of the train), within these bounds.
const TRAIN_FIRST: u32 = 48;
const TRAIN_MAX: u32 = 400;
const TRAIN_SPAN: f64 = 0.03;
const TRAINS: u32 = 5;

/// A probe socket and the peer that probes it (whose shape its answers take).
pub(crate) struct Endpoint {
    pub sock: Arc<UdpSocket>,
    pub peer: String,
    pub key: Key,
    pub underlay: Arc<Underlay>,
    epoch: Instant,
}

impl Endpoint {
    /// A probe socket on `ip`, any port.
    pub fn bind(ip: IpAddr, peer: &str, key: Key, underlay: Arc<Underlay>) -> io::Result<Self> {
        let sock = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        sock.set_read_timeout(Some(Duration::from_millis(20)))?;
        let _ = nix::sys::socket::setsockopt(
            &sock,
            nix::sys::socket::sockopt::ReceiveTimestampns,
            &true,
        );
        Ok(Endpoint {
            sock: Arc::new(sock),
            peer: peer.to_string(),
            key,
            underlay,
            epoch: Instant::now(),
        })
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Sends through the emulated underlay when the peer is shaped.
    fn send(&self, p: Probe, size: usize, to: SocketAddr) {
        self.send_bytes(p.encode(&self.key, size), to);
    }

    fn send_bytes(&self, msg: Vec<u8>, to: SocketAddr) {
        let mut msg = Some(msg);
        if self.underlay.is_on() {
            let len = msg.as_ref().map_or(0, Vec::len);
            let o = self.underlay.offer(&self.peer, len, || Held::Probe {
                sock: self.sock.clone(),
                to,
                msg: msg.take().unwrap_or_default(),
            });
            if o != Offer::NotShaped {
                return;
            }
        }
        if let Some(m) = msg {
            let _ = self.sock.send_to(&m, to);
        }
    }

    /// Sends `msgs` back to back, through the emulated underlay as one burst when the peer
    /// is shaped.
    fn send_burst(&self, msgs: Vec<Vec<u8>>, to: SocketAddr) {
        let held = msgs
            .into_iter()
            .map(|msg| Held::Probe {
                sock: self.sock.clone(),
                to,
                msg,
            })
            .collect();
        let Some(unshaped) = self.underlay.offer_burst(&self.peer, held) else {
            return;
        };
        for h in unshaped {
            if let Held::Probe { msg, .. } = h {
                let _ = self.sock.send_to(&msg, to);
            }
        }
    }

    /// The next authenticated message before `until`, with its sender and its arrival time
    /// (the kernel's receive timestamp, wall clock ns, so that this thread's scheduling does
    /// not bunch a train up); garbage is counted.
    fn recv(&self, buf: &mut [u8], until: Instant) -> Option<(Probe, SocketAddr, u64)> {
        while Instant::now() < until {
            let Some((n, from, at)) = recv_stamped(&self.sock, buf) else {
                continue;
            };
            match Probe::decode(&self.key, &buf[..n]) {
                Some(p) => return Some((p, from, at)),
                None => self.underlay.probe_garbage.inc(),
            }
        }
        None
    }
}

/// Answers probes until `until`: an echo with an echo reply, a train datagram with an
/// acknowledgement carrying its arrival time. Each message is answered once.
pub(crate) fn serve(ep: &Endpoint, until: Instant) {
    let mut answered: HashSet<(u8, u32)> = HashSet::new();
    let mut buf = vec![0u8; 2048];
    while let Some((p, from, at)) = ep.recv(&mut buf, until) {
        let answer = match p.kind {
            Kind::Echo => Kind::EchoReply,
            Kind::Train => Kind::TrainAck,
            Kind::EchoReply | Kind::TrainAck => {
                ep.underlay.probe_garbage.inc();
                continue;
            }
        };
        if answered.len() >= MAX_ANSWERS || !answered.insert((p.kind as u8, p.seq)) {
            ep.underlay.probe_garbage.inc();
            continue;
        }
        let reply = Probe {
            kind: answer,
            seq: p.seq,
            sent: p.sent,
            received: at,
        };
        ep.send(reply, ECHO_SIZE, from);
    }
}

/// Probes the responder at `to` for about `duration`: echoes for the first half, then up to
/// [`TRAINS`] packet trains, the median of whose bandwidths is the answer.
pub(crate) fn run(ep: &Endpoint, to: SocketAddr, duration: Duration) -> ProbeResult {
    let duration = duration.clamp(Duration::from_millis(100), MAX_PROBE);
    let echoes = echo_phase(ep, to, duration / 2);
    let rtt = echoes.rtts.iter().max().copied().unwrap_or(0);
    let (bws, train_sent, train_arrived) = train_phase(ep, to, duration / 2, rtt);
    ProbeResult {
        lat_ms: echoes.latency_ms(),
        loss: echoes.loss(),
        bw_mbps: median(bws),
        echoes_sent: echoes.sent,
        echoes_back: echoes.rtts.len() as u32,
        train_sent,
        train_arrived,
    }
}

fn echo_phase(ep: &Endpoint, to: SocketAddr, span: Duration) -> Echoes {
    let count = (span.as_millis() / ECHO_EVERY.as_millis()).clamp(5, 500) as u32;
    let start = Instant::now();
    let mut echoes = Echoes::default();
    let mut back = HashSet::new();
    let mut buf = vec![0u8; 2048];
    let mut take = |ep: &Endpoint, until: Instant, echoes: &mut Echoes| {
        while let Some((p, _, _)) = ep.recv(&mut buf, until) {
            if p.kind == Kind::EchoReply && p.seq < echoes.sent && back.insert(p.seq) {
                echoes.rtts.push(ep.now().saturating_sub(p.sent));
            }
        }
    };
    for seq in 0..count {
        let p = Probe {
            kind: Kind::Echo,
            seq,
            sent: ep.now(),
            received: 0,
        };
        ep.send(p, ECHO_SIZE, to);
        echoes.sent += 1;
        take(ep, start + ECHO_EVERY * (seq + 1), &mut echoes);
    }
    // Late echoes: three of the slowest round trips seen, within limits.
    let slowest = Duration::from_nanos(echoes.rtts.iter().max().copied().unwrap_or(0));
    let grace = (slowest * 3).clamp(Duration::from_millis(200), Duration::from_secs(2));
    take(ep, Instant::now() + grace, &mut echoes);
    echoes
}

/// Packet trains; returns their bandwidths and how many datagrams were sent and arrived.
///
/// A train a third of which this daemon's emulated underlay let go late (its release thread
/// was not scheduled in time, so the train left in a bunch) is set aside and another one sent while
/// time allows; only when every train was late are the late ones the answer.
fn train_phase(ep: &Endpoint, to: SocketAddr, span: Duration, rtt: u64) -> (Vec<f64>, u32, u32) {
    let gap = (Duration::from_nanos(rtt) * 2).max(Duration::from_millis(60))
        + Duration::from_secs_f64(TRAIN_SPAN);
    let end = Instant::now() + span.max(gap * 2);
    let (mut bws, mut late_bws) = (Vec::new(), Vec::new());
    let (mut sent, mut arrived) = (0, 0);
    let mut buf = vec![0u8; 2048];
    let mut len = TRAIN_FIRST;
    let mut base = 0;
    for t in 0..TRAINS * 2 {
        if bws.len() as u32 >= TRAINS || (t >= 2 && Instant::now() + gap > end) {
            break;
        }
        let late_before = ep.underlay.late_releases();
        let mut train = Train {
            size: TRAIN_SIZE,
            sent: len,
            arrivals: Vec::new(),
        };
        // Signed first, then sent back to back: the train must leave at the sender's full
        // speed, not at the speed of signing.
        let msgs: Vec<Vec<u8>> = (0..len)
            .map(|i| {
                let p = Probe {
                    kind: Kind::Train,
                    seq: base + i,
                    sent: 0,
                    received: 0,
                };
                p.encode(&ep.key, TRAIN_SIZE)
            })
            .collect();
        ep.send_burst(msgs, to);
        sent += len;
        let mut seen = HashSet::new();
        let until = Instant::now() + gap;
        while let Some((p, _, _)) = ep.recv(&mut buf, until) {
            let ours = p.kind == Kind::TrainAck && (base..base + len).contains(&p.seq);
            if ours && seen.insert(p.seq) {
                train.arrivals.push(p.received);
            }
        }
        arrived += train.arrivals.len() as u32;
        base += len;
        // The estimate reads through bunches that hold back less than half the train; a
        // third leaves a margin for other shaped traffic counted in the same counter.
        let on_time = (ep.underlay.late_releases() - late_before) * 3 < len as u64;
        match train.bandwidth_mbps() {
            Some(bw) if on_time => {
                bws.push(bw);
                let fit = bw * 1e6 * TRAIN_SPAN / (TRAIN_SIZE as f64 * 8.0);
                len = (fit as u32).clamp(TRAIN_FIRST, TRAIN_MAX);
            }
            Some(bw) => late_bws.push(bw),
            None => {}
        }
    }
    if bws.is_empty() {
        bws = late_bws;
    }
    (bws, sent, arrived)
}

/// One datagram with its sender and kernel receive timestamp (wall clock ns; the time of the
/// call when the kernel gave none).
fn recv_stamped(sock: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr, u64)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut iov = [io::IoSliceMut::new(buf)];
    let mut space = nix::cmsg_space!(nix::sys::time::TimeSpec);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .ok()?;
    let from = msg.address.and_then(|a| {
        a.as_sockaddr_in()
            .map(|v4| SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
            .or_else(|| {
                a.as_sockaddr_in6()
                    .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
            })
    })?;
    let mut at = None;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmTimestampns(ts) = c {
            at = Some(ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64);
        }
    }
    let at = at.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    Some((msg.bytes, from, at))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}
