//! Overlay links: state shared between the control plane, the dialer and the forwarding
//! threads, and the daemon's UDP link socket (UDP GSO/GRO and batched receive through
//! `quinn-udp`).
//!
//! A TCP link's connection, once its handshake is done, leaves the async runtime: the
//! forwarding thread reads it (`epoll`), and frames are sent on it with one `send` each, under
//! a mutex so messages never interleave (a full send buffer drops the frame, see
//! [`Link::send_tcp`]).

use crate::proto::LinkSpec;
use crate::stats::{Counter, DropReason, PortStats};
use crate::sys;
use crate::wire::{self, Frame};
use std::io;
use std::net::{Shutdown, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use vnet_grammar::ast::Transport;

pub(crate) mod estimate;
pub(crate) mod handshake;
pub(crate) mod msg;
pub(crate) mod seal;

/// Where a UDP link's handshake stands (a TCP handshake lives in its connection's task).
#[derive(Default)]
pub struct Handshake {
    /// Dialer: the handshake of the HELLO in flight.
    pub(crate) dialer: Option<handshake::Dialer>,
    /// Dialer: its Noise state until the CHALLENGE, then the keys until READY.
    pub(crate) initiator: Option<vnet_seal::Initiator>,
    pub(crate) dialer_keys: Option<vnet_seal::Established>,
    /// Listener: the challenge sent, waiting for the proof.
    pub(crate) listener: Option<handshake::Challenged>,
    /// Listener: the keys of the challenge sent, installed when the proof holds.
    pub(crate) listener_keys: Option<vnet_seal::Established>,
    /// Dialer: the listener's last cookie (hex) and when it came.
    pub(crate) cookie: Option<(String, std::time::Instant)>,
    /// Dialer: whether the hello in flight carried that cookie.
    pub(crate) cookie_sent: bool,
}

/// Called after a link goes up or down: the data plane voids the kernel's copies of
/// decisions (without this module knowing the fast path).
pub(crate) type OnChange = std::sync::Arc<dyn Fn() + Send + Sync>;

pub struct Link {
    pub spec: LinkSpec,
    pub peer: String,
    pub dials: bool,
    pub transport: Transport,
    /// The peer's address, resolved when the link was installed.
    pub peer_addr: Option<SocketAddr>,
    /// The peer's static key, pinned by add-link: the only one its handshake may carry.
    pub peer_key: Option<vnet_seal::PublicKey>,
    pub(crate) seal: seal::LinkSeal,
    pub stats: PortStats,
    pub connects: Counter,
    up: AtomicBool,
    session: AtomicU64,
    /// The TCP connection frames are written to (session, stream).
    tcp_tx: Mutex<Option<(u64, TcpStream)>>,
    /// The same connection, to shut it down without waiting for a writer blocked on it.
    tcp_shut: Mutex<Option<(u64, TcpStream)>>,
    udp_remote: Mutex<Option<SocketAddr>>,
    remote: Mutex<Option<SocketAddr>>,
    /// Milliseconds (daemon clock) of the last message received.
    pub last_rx: AtomicU64,
    hs: Mutex<Handshake>,
    /// The passive latency and loss estimate (from keepalives).
    pub(crate) passive: estimate::Passive,
    tasks: Mutex<Vec<AbortHandle>>,
    closed: AtomicBool,
    /// Woken when the link goes down or up, or is deleted.
    pub wake: Notify,
    on_change: OnChange,
}

impl Link {
    /// The link `spec` as seen from `me`; `peer_addr`: the peer's address, when it resolved
    /// (the caller resolves it, outside any lock).
    pub(crate) fn new(
        spec: LinkSpec,
        me: &str,
        peer_addr: Option<SocketAddr>,
        on_change: OnChange,
    ) -> Option<Link> {
        let peer = spec.peer_of(me)?.to_string();
        Some(Link {
            dials: spec.link.dialer == me,
            transport: spec.link.transport,
            peer,
            peer_key: spec
                .peer_key
                .as_deref()
                .and_then(|k| vnet_seal::PublicKey::parse(k).ok()),
            seal: seal::LinkSeal::default(),
            spec,
            peer_addr,
            stats: PortStats::default(),
            connects: Counter::default(),
            up: AtomicBool::new(false),
            session: AtomicU64::new(0),
            tcp_tx: Mutex::new(None),
            tcp_shut: Mutex::new(None),
            udp_remote: Mutex::new(None),
            remote: Mutex::new(None),
            last_rx: AtomicU64::new(0),
            hs: Mutex::new(Handshake::default()),
            passive: Default::default(),
            tasks: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
            on_change,
        })
    }

    /// The UDP handshake state.
    pub(crate) fn hs(&self) -> std::sync::MutexGuard<'_, Handshake> {
        self.hs.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn remote(&self) -> Option<SocketAddr> {
        *self.remote.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn udp_remote(&self) -> Option<SocketAddr> {
        *self.udp_remote.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn session(&self) -> u64 {
        self.session.load(Ordering::Acquire)
    }

    pub fn add_task(&self, h: AbortHandle) {
        let mut t = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        t.retain(|h| !h.is_finished());
        if self.is_closed() {
            h.abort();
        } else {
            t.push(h);
        }
    }

    /// A TCP connection finished its handshake: it becomes the link's connection (replacing
    /// and shutting down any older one). Returns the new session number; the caller reads the
    /// connection (its reader ends when the session does).
    pub fn tcp_up(&self, stream: &TcpStream, remote: SocketAddr) -> io::Result<u64> {
        let writer = stream.try_clone()?;
        let shut = stream.try_clone()?;
        let session = self.session.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some((_, old)) = lock(&self.tcp_shut).replace((session, shut)) {
            let _ = old.shutdown(Shutdown::Both);
        }
        *lock(&self.tcp_tx) = Some((session, writer));
        *lock(&self.remote) = Some(remote);
        self.up.store(true, Ordering::Release);
        self.connects.inc();
        self.wake.notify_waiters();
        tracing::info!(link = %self.peer, %remote, "TCP link up");
        Ok(session)
    }

    /// A UDP session is established with `remote`.
    pub fn udp_up(&self, remote: SocketAddr, now: u64) -> u64 {
        let session = self.session.fetch_add(1, Ordering::AcqRel) + 1;
        *self.udp_remote.lock().unwrap_or_else(|e| e.into_inner()) = Some(remote);
        *self.remote.lock().unwrap_or_else(|e| e.into_inner()) = Some(remote);
        self.last_rx.store(now, Ordering::Release);
        if !self.up.swap(true, Ordering::AcqRel) {
            self.connects.inc();
            tracing::info!(link = %self.peer, %remote, "UDP link up");
        }
        (self.on_change)();
        self.wake.notify_waiters();
        session
    }

    /// The session `session` ended (only if it is still the current one).
    pub fn down(&self, session: u64, why: &str) {
        if self.session() != session {
            return;
        }
        // Unblock a writer or reader of this session first (a writer may hold `tcp_tx`).
        if let Some((s, st)) = lock(&self.tcp_shut).as_ref() {
            if *s == session {
                let _ = st.shutdown(Shutdown::Both);
            }
        }
        let mut tx = lock(&self.tcp_tx);
        if self.session() != session {
            return;
        }
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::info!(link = %self.peer, "link down: {why}");
        }
        *tx = None;
        drop(tx);
        {
            let mut shut = lock(&self.tcp_shut);
            if shut.as_ref().is_some_and(|(s, _)| *s == session) {
                *shut = None;
            }
        }
        *lock(&self.udp_remote) = None;
        *lock(&self.remote) = None;
        (self.on_change)();
        self.wake.notify_waiters();
    }

    /// The link was deleted: stop its tasks and close its connection.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for h in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            h.abort();
        }
        let s = self.session();
        self.down(s, "deleted");
        self.session.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_waiters();
    }

    /// Sends a frame over a TCP link (one `send`, the message built in place in front of the
    /// frame). A connection whose send buffer is full drops the frame (`send_error`) rather
    /// than stalling the forwarding thread, as a full router queue would; a message already
    /// started is always finished (the stream must stay whole), waiting up to 2 s.
    pub fn send_tcp(&self, f: &mut Frame<'_>, hop: u8) {
        let len = f.len;
        let mut guard = lock(&self.tcp_tx);
        let Some((session, w)) = guard.as_mut() else {
            self.stats.drop(DropReason::LinkDown);
            return;
        };
        let session = *session;
        let msg = f.tcp_message(hop);
        let sent = if self.is_sealed() {
            self.seal_tcp(msg, |m| send_whole(w, m)).and_then(|r| r)
        } else {
            send_whole(w, msg)
        };
        match sent {
            Ok(true) => self.stats.tx(len),
            Ok(false) => self.stats.drop(DropReason::SendError),
            Err(e) => {
                self.stats.drop(DropReason::SendError);
                drop(guard);
                self.down(session, &format!("send failed: {e}"));
            }
        }
    }
}

/// Sends `msg` on a stream: `Ok(false)` if nothing could be sent without waiting, `Ok(true)`
/// once all of it is sent.
fn send_whole(s: &TcpStream, msg: &[u8]) -> io::Result<bool> {
    let fd = s.as_raw_fd();
    let mut sent = 0;
    while sent < msg.len() {
        let rest = &msg[sent..];
        // SAFETY: a valid socket and buffer.
        let n = unsafe {
            libc::send(
                fd,
                rest.as_ptr().cast(),
                rest.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n >= 0 {
            sent += n as usize;
            continue;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => {}
            io::ErrorKind::WouldBlock if sent == 0 => return Ok(false),
            io::ErrorKind::WouldBlock => {
                if !sys::wait(fd, libc::POLLOUT, TCP_STALL) {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the peer took nothing for 2 s",
                    ));
                }
            }
            _ => return Err(e),
        }
    }
    Ok(true)
}

/// How long a TCP link's peer may take nothing before the link is declared down.
const TCP_STALL: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The daemon's UDP socket: UDP links' frames and handshakes. Non-blocking; the forwarding
/// thread takes batches (`recvmmsg`, and UDP GRO: the kernel hands over runs of same-sized
/// datagrams from one sender as one buffer); frames larger than one datagram go out as UDP GSO
/// `sendmsg`s (the kernel cuts the run of fragments).
pub struct UdpPort {
    pub sock: UdpSocket,
    state: quinn_udp::UdpSocketState,
    /// The largest datagram sent (`--udp-datagram`); larger frames go as fragments.
    max: usize,
    /// The most bytes one UDP GSO send may carry (the largest UDP payload).
    gso_bytes: usize,
    frag_id: AtomicU32,
}

/// Datagram buffers one receive call fills (a GRO run is at most 64 KB).
pub const UDP_BATCH: usize = 8;
const UDP_BUF: usize = 96 << 10;

/// Receive buffers of the UDP receiving thread.
pub struct UdpBatch {
    bufs: Vec<Vec<u8>>,
    meta: Vec<quinn_udp::RecvMeta>,
}

impl Default for UdpBatch {
    fn default() -> Self {
        UdpBatch {
            bufs: (0..UDP_BATCH).map(|_| vec![0u8; UDP_BUF]).collect(),
            meta: vec![quinn_udp::RecvMeta::default(); UDP_BATCH],
        }
    }
}

impl UdpBatch {
    /// The datagrams of buffer `i` of the last receive, with their sender (mutable: sealed
    /// records are opened where they arrived).
    pub fn datagrams(&mut self, i: usize) -> (SocketAddr, impl Iterator<Item = &mut [u8]>) {
        let m = &self.meta[i];
        let stride = m.stride.max(1);
        (m.addr, self.bufs[i][..m.len].chunks_mut(stride))
    }
}

impl UdpPort {
    pub fn bind(addr: SocketAddr, max_datagram: usize) -> io::Result<UdpPort> {
        let sock = UdpSocket::bind(addr)?;
        let state = quinn_udp::UdpSocketState::new((&sock).into())?;
        // Receive timestamps are not used.
        let _ = sys::setsockopt_int(sock.as_raw_fd(), libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 0);
        let _ = state.set_recv_buffer_size((&sock).into(), 8 << 20);
        let _ = state.set_send_buffer_size((&sock).into(), 8 << 20);
        let ipv6 = addr.is_ipv6();
        // quinn-udp forbids IP fragmentation; datagrams larger than the path MTU need it.
        if max_datagram > 1472 {
            let fd = sock.as_raw_fd();
            if ipv6 {
                let _ = sys::setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_DONTFRAG, 0);
                let _ = sys::setsockopt_int(
                    fd,
                    libc::IPPROTO_IPV6,
                    libc::IPV6_MTU_DISCOVER,
                    libc::IPV6_PMTUDISC_DONT,
                );
            } else {
                let _ = sys::setsockopt_int(
                    fd,
                    libc::IPPROTO_IP,
                    libc::IP_MTU_DISCOVER,
                    libc::IP_PMTUDISC_DONT,
                );
            }
        }
        Ok(UdpPort {
            sock,
            state,
            max: max_datagram,
            gso_bytes: if ipv6 { 65527 } else { 65507 },
            frag_id: AtomicU32::new(0),
        })
    }

    /// Sends a link control message (handshake, keepalive). Never blocks: one that finds the
    /// socket full is dropped (they are all repeated).
    pub fn send_control(&self, msg: &[u8], to: SocketAddr) {
        let _ = self.sock.send_to(msg, to);
    }

    /// Sends a frame over a UDP link: one datagram when it fits, else fragments, as few UDP GSO
    /// sends as the 64 KB limit of one allows (a 64 KB super-frame with 1472-byte datagrams:
    /// two `sendmsg`s). `scratch` holds the fragments (reused; no allocation once warm).
    pub fn send_frame(
        &self,
        f: &mut Frame<'_>,
        hop: u8,
        to: SocketAddr,
        scratch: &mut Vec<u8>,
    ) -> io::Result<()> {
        if wire::LINK_HDR + wire::VNET_HDR_LEN + f.len <= self.max {
            return self.transmit(f.udp_message(hop), None, to);
        }
        let id = self.frag_id.fetch_add(1, Ordering::Relaxed);
        let count = wire::pack_fragments(scratch, f.vnet_and_frame(), id, hop, self.max)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame too large"))?;
        self.send_datagrams(scratch, count, self.max, to)
    }

    /// Sends `count` datagrams laid out in `buf` at a stride of `stride` bytes (the last one
    /// may be shorter), in as few UDP GSO sends as the 64 KB limit of one allows.
    fn send_datagrams(
        &self,
        buf: &[u8],
        count: usize,
        stride: usize,
        to: SocketAddr,
    ) -> io::Result<()> {
        let per_send = self
            .state
            .max_gso_segments()
            .min(self.gso_bytes / stride)
            .max(1);
        let mut sent = 0;
        while sent < count {
            let n = per_send.min(count - sent);
            let start = sent * stride;
            let end = (start + n * stride).min(buf.len());
            let run = &buf[start..end];
            if n == 1 {
                self.transmit(run, None, to)?;
            } else if self.transmit(run, Some(stride), to).is_err() {
                // GSO refused (quinn-udp turns it off for the socket): one datagram at a time.
                for d in run.chunks(stride) {
                    self.transmit(d, None, to)?;
                }
            }
            sent += n;
        }
        Ok(())
    }

    fn transmit(
        &self,
        contents: &[u8],
        segment_size: Option<usize>,
        to: SocketAddr,
    ) -> io::Result<()> {
        let t = quinn_udp::Transmit {
            destination: to,
            ecn: None,
            contents,
            segment_size,
            src_ip: None,
        };
        loop {
            match self.state.try_send((&self.sock).into(), &t) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !sys::wait(self.sock.as_raw_fd(), libc::POLLOUT, UDP_SEND_WAIT) {
                        return Err(e);
                    }
                }
                r => return r,
            }
        }
    }

    /// Takes a batch of what is ready into `batch` (see [`UdpBatch::datagrams`]); never
    /// blocks (0 when nothing is ready).
    pub fn recv(&self, batch: &mut UdpBatch) -> io::Result<usize> {
        loop {
            let r = {
                let mut iov: [io::IoSliceMut<'_>; UDP_BATCH] = {
                    let mut it = batch.bufs.iter_mut();
                    std::array::from_fn(|_| {
                        io::IoSliceMut::new(it.next().map_or(&mut [][..], |b| &mut b[..]))
                    })
                };
                self.state
                    .recv((&self.sock).into(), &mut iov, &mut batch.meta)
            };
            match r {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                r => return r,
            }
        }
    }
}

/// How long a UDP link send may wait for room in the socket before the frame is dropped.
const UDP_SEND_WAIT: Duration = Duration::from_millis(100);
