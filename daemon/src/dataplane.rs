//! The data plane: one forwarding thread per daemon owns every data socket (interfaces, the
//! UDP link socket, TCP link connections), waits for them with `epoll`, and forwards each
//! frame itself straight to its output sockets. No frame crosses a channel or an async task,
//! and nothing is allocated per frame.
//!
//! - Interfaces: batches of up to [`crate::iface::RX_BATCH`] frames per `recvmmsg`.
//! - TCP links: a large receive buffer per connection; messages are parsed and forwarded in
//!   place (a relayed frame's link header is rewritten in front of it), so one `recv` of
//!   several frames costs one syscall and no copy.
//! - UDP links: `quinn-udp` batches (`recvmmsg` + UDP GRO); fragments are reassembled straight
//!   into a frame buffer; control messages (handshakes, keepalives) go to an async task.
//!
//! Latency: one thread for all sockets means a reply that comes back while the thread is still
//! awake (a VM's kernel answers within the `send` that delivered the request) is read at once,
//! without waking another thread; the thread asks for a short scheduler slice
//! ([`sys::forwarding_thread`]) so that a frame arriving while the CPU runs something else
//! preempts it.

use crate::engine::{self, account, Action, Engine, EngineCell, Lookup, Matrix};
use crate::fastpath::{self, FastPath};
use crate::iface::{Iface, RxBatch};
use crate::link::seal::{self, SealScratch};
use crate::link::{Link, OnChange, UdpBatch, UdpPort};
use crate::port::Port;
use crate::proto::FastPathStats;
use crate::stats::{DropReason, PortStats};
use crate::sys;
use crate::underlay::Underlay;
use crate::wire::{self, Frame, FrameBuf, Reasm, Reassembled, Segmenter};
use poll::{Epoll, PlaneHandle};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use vnet_grammar::model::Target;

mod home;
mod links;
mod placer;
mod poll;
mod shaped;
mod spin;
mod tcp_rx;
use placer::Placer;
use spin::Spin;
pub use spin::SpinPolicy;
use tcp_rx::TcpRx;

/// Scratch space of the forwarding thread (reused for every frame).
#[derive(Default)]
struct Scratch {
    seg: Segmenter,
    frags: Vec<u8>,
    seal: SealScratch,
    /// Frames received so far (what the busy-poll counts as work: keepalives are not).
    frames: u64,
}

/// A UDP link datagram that is not a frame, for the async control task.
pub(crate) enum UdpCtl {
    /// A handshake, keepalive or reset message (the whole message, sender).
    Msg(Vec<u8>, SocketAddr),
    /// A keepalive opened from a record of the sender's session (the clear message, sender).
    Sealed(Vec<u8>, SocketAddr),
    /// A frame from an address without a session (and the record's header, when it was one).
    NoSession(SocketAddr, Option<vnet_seal::Header>),
}

/// Control messages waiting for the async task; more are dropped (a flood cannot grow memory).
const UDP_CTL_QUEUE: usize = 256;

const WAKE: u64 = 0;
const UDP: u64 = 1;
const IFACE: u64 = 2;
const TCP: u64 = 1 << 32;

/// A TCP link connection for the forwarding thread (handed over by the control plane).
struct NewTcp {
    link: Arc<Link>,
    session: u64,
    stream: TcpStream,
    leftover: Vec<u8>,
    ended: oneshot::Sender<()>,
}

/// One interface's receiving state.
struct IfaceRx {
    iface: Arc<Iface>,
    batch: RxBatch,
    lookup: Lookup<Port>,
    /// After a receive error the interface is left out of the epoll set until then (a device
    /// that keeps failing, e.g. a TAP deleted under us, must not keep the thread spinning).
    resume_at: Option<Instant>,
}

/// How long an interface whose receive failed is left alone.
const IFACE_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// The UDP link socket's receiving state.
struct UdpRx {
    batch: UdpBatch,
    fb: FrameBuf,
    per_link: HashMap<String, (Lookup<Port>, Reasm)>,
    ctl: mpsc::Sender<UdpCtl>,
}

/// Everything the forwarding thread uses, and nothing else (no tables of the control plane,
/// no store, no leases): the engine, the interfaces, the UDP link socket and its sessions,
/// the traffic matrix and the kernel fast path. The data plane is the one owner of the fast
/// path: whoever changes the engine or a link goes through it, and it voids the fast path.
pub(crate) struct DataPlane {
    pub(crate) engine: EngineCell<Port>,
    pub(crate) matrix: Arc<Matrix>,
    /// Drops not attributed to a port.
    pub(crate) global: PortStats,
    pub(crate) ifaces: Vec<Arc<Iface>>,
    pub(crate) udp: UdpPort,
    /// The UDP link of each peer address with a session.
    udp_peers: RwLock<HashMap<SocketAddr, Arc<Link>>>,
    /// Lookup-cache hits and misses, gathered from the receivers now and then.
    pub(crate) lookups: Mutex<(u64, u64)>,
    fast: Option<Arc<FastPath>>,
    /// The emulated wide area (off unless configured).
    pub(crate) underlay: Arc<Underlay>,
    started: Instant,
    stopping: AtomicBool,
    underlay_started: AtomicBool,
    handle: PlaneHandle,
    /// How the forwarding thread busy-polls after work before it blocks.
    spin: SpinPolicy,
    /// The CPU the forwarding thread keeps to (`--forward-cpu`), if any.
    cpu: Option<u32>,
}

impl DataPlane {
    pub(crate) fn new(
        ifaces: Vec<Arc<Iface>>,
        udp: UdpPort,
        fast: Option<FastPath>,
        spin: SpinPolicy,
        cpu: Option<u32>,
    ) -> io::Result<DataPlane> {
        Ok(DataPlane {
            engine: EngineCell::default(),
            matrix: Arc::new(Matrix::default()),
            global: PortStats::default(),
            ifaces,
            udp,
            udp_peers: RwLock::new(HashMap::new()),
            lookups: Mutex::new((0, 0)),
            fast: fast.map(Arc::new),
            underlay: Arc::default(),
            started: Instant::now(),
            stopping: AtomicBool::new(false),
            underlay_started: AtomicBool::new(false),
            handle: PlaneHandle::new()?,
            spin,
            cpu,
        })
    }

    /// Milliseconds since the daemon started (the clock of link liveness).
    pub(crate) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Ends the forwarding thread (within its idle wake-up).
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        self.underlay.stop();
        self.handle.wake();
    }

    fn stopping_now(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Changes the forwarding tables; the kernel's copies of decisions are void before this
    /// returns (so before the change is answered).
    pub(crate) fn update_engine<R>(&self, f: impl FnOnce(&mut Engine<Port>) -> R) -> R {
        let r = self.engine.update(f);
        self.void_fast_path();
        r
    }

    /// Voids the fast path after a table change (on the control side: the routes to the UDP
    /// sessions' peers are read again here, not on the forwarding thread).
    fn void_fast_path(&self) {
        if let Some(f) = &self.fast {
            f.learn_routes(self.udp_session_addrs());
            f.invalidate();
        }
    }

    fn udp_session_addrs(&self) -> Vec<SocketAddr> {
        let peers = self.udp_peers.read().unwrap_or_else(|e| e.into_inner());
        peers.keys().copied().collect()
    }

    /// What a link calls when it goes up or down.
    pub(crate) fn on_link_change(&self) -> OnChange {
        let fast = self.fast.clone();
        Arc::new(move || {
            if let Some(f) = &fast {
                f.invalidate();
            }
        })
    }

    /// A UDP link's session is up with `addr` (its only one: an older address is forgotten).
    pub(crate) fn udp_session_up(&self, link: &Arc<Link>, addr: SocketAddr) {
        let mut peers = self.udp_peers.write().unwrap_or_else(|e| e.into_inner());
        peers.retain(|_, l| !Arc::ptr_eq(l, link));
        peers.insert(addr, link.clone());
        drop(peers);
        if let Some(f) = &self.fast {
            // Before the link is up (and the fast path may carry its frames).
            f.learn_routes(self.udp_session_addrs());
        }
        link.udp_up(addr, self.now_ms());
    }

    /// Ends a UDP link's session: its address no longer leads to it, and it is down.
    pub(crate) fn udp_session_down(&self, link: &Link, why: &str) {
        if let Some(r) = link.udp_remote() {
            let mut peers = self.udp_peers.write().unwrap_or_else(|e| e.into_inner());
            peers.remove(&r);
        }
        link.down(link.session(), why);
    }

    /// Credits what the kernel forwarded to the counters (before any of them is read).
    pub(crate) fn credit_fast_path(&self) {
        if let Some(f) = &self.fast {
            f.credit_kernel_counts();
        }
    }

    pub(crate) fn fast_path_stats(&self) -> Option<FastPathStats> {
        self.fast.as_ref().map(|f| f.stats())
    }

    /// Starts the forwarding thread; returns the UDP link control messages it passes on
    /// (for the control plane's task).
    pub(crate) fn start(self: &Arc<DataPlane>) -> io::Result<mpsc::Receiver<UdpCtl>> {
        let new_tcp = self
            .handle
            .rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
            .ok_or_else(|| io::Error::other("the data plane is already running"))?;
        let ep = Epoll::new()?;
        ep.ctl(libc::EPOLL_CTL_ADD, self.handle.wake.as_raw_fd(), WAKE)?;
        ep.ctl(libc::EPOLL_CTL_ADD, self.udp.sock.as_raw_fd(), UDP)?;
        for (i, iface) in self.ifaces.iter().enumerate() {
            ep.ctl(libc::EPOLL_CTL_ADD, iface.raw_fd(), IFACE + i as u64)?;
        }
        let (tx, rx) = mpsc::channel(UDP_CTL_QUEUE);
        let plane = self.clone();
        std::thread::Builder::new()
            .name("vnetd-forward".into())
            .spawn(move || {
                sys::forwarding_thread();
                plane.forwarding(ep, new_tcp, tx)
            })?;
        Ok(rx)
    }

    /// Hands a TCP link connection whose handshake is done to the forwarding thread
    /// (`leftover`: bytes already read past the handshake). The receiver resolves when the
    /// connection has ended (and its session is down).
    pub(crate) fn start_tcp_reader(
        &self,
        link: Arc<Link>,
        session: u64,
        stream: TcpStream,
        leftover: Vec<u8>,
    ) -> io::Result<oneshot::Receiver<()>> {
        let (ended, rx) = oneshot::channel();
        self.handle
            .tx
            .send(NewTcp {
                link,
                session,
                stream,
                leftover,
                ended,
            })
            .map_err(|_| io::Error::other("the data plane has stopped"))?;
        self.handle.wake();
        Ok(rx)
    }

    /// The forwarding thread. (Long on purpose: one loop owning every receiver's state as
    /// locals, dispatching on epoll tokens; each arm is one call.)
    fn forwarding(
        &self,
        ep: Epoll,
        new_tcp: std_mpsc::Receiver<NewTcp>,
        ctl: mpsc::Sender<UdpCtl>,
    ) {
        let mut sc = Scratch::default();
        let mut ifaces: Vec<IfaceRx> = self
            .ifaces
            .iter()
            .map(|i| IfaceRx {
                resume_at: None,
                iface: i.clone(),
                batch: RxBatch::default(),
                lookup: Lookup::new(
                    Target::Interface {
                        name: i.name.clone().into(),
                    },
                    Some(self.matrix.clone()),
                ),
            })
            .collect();
        let mut udp = UdpRx {
            batch: UdpBatch::default(),
            fb: FrameBuf::new(),
            per_link: HashMap::new(),
            ctl,
        };
        let mut tcp: HashMap<u64, TcpRx> = HashMap::new();
        let mut next_tcp = TCP;
        // SAFETY: epoll_event is plain data.
        let mut events: [libc::epoll_event; 64] = unsafe { std::mem::zeroed() };
        let mut spin = Spin::new(self.spin, Instant::now());
        let mut home = self.cpu.map(Placer::start);
        while !self.stopping_now() {
            let mut timeout = sys::IDLE_WAKE;
            let now = Instant::now();
            for (i, rx) in ifaces.iter_mut().enumerate() {
                match rx.resume_at {
                    Some(t) if t <= now => {
                        rx.resume_at = None;
                        let _ = ep.ctl(libc::EPOLL_CTL_ADD, rx.iface.raw_fd(), IFACE + i as u64);
                    }
                    Some(t) => timeout = timeout.min(t - now),
                    None => {}
                }
            }
            let poll = spin.poll_next(now);
            let n = ep.wait(&mut events, if poll { Duration::ZERO } else { timeout });
            if poll && n == 0 {
                // Let a task woken on this CPU (the VM that gets the frame just sent) run.
                std::thread::yield_now();
            }
            let woke = Instant::now();
            let frames = sc.frames;
            for ev in &events[..n] {
                let token = ev.u64;
                match token {
                    WAKE => {
                        let mut v = 0u64;
                        // SAFETY: an eventfd and an 8-byte buffer.
                        unsafe {
                            libc::read(self.handle.wake.as_raw_fd(), (&mut v as *mut u64).cast(), 8)
                        };
                        while let Ok(c) = new_tcp.try_recv() {
                            let token = next_tcp;
                            next_tcp += 1;
                            if let Some(rx) = self.tcp_add(&ep, token, c, &mut sc) {
                                tcp.insert(token, rx);
                            }
                        }
                    }
                    UDP => self.udp_rx(&mut udp, &mut sc),
                    t if t < TCP => {
                        if let Some(rx) = ifaces.get_mut((t - IFACE) as usize) {
                            if let Err(e) = self.iface_rx(rx, &mut sc) {
                                tracing::warn!(iface = %rx.iface.name, "receive: {e}");
                                let _ = ep.ctl(libc::EPOLL_CTL_DEL, rx.iface.raw_fd(), t);
                                rx.resume_at = Some(Instant::now() + IFACE_ERROR_PAUSE);
                            }
                        }
                    }
                    t => {
                        let Some(rx) = tcp.get_mut(&t) else { continue };
                        match self.tcp_rx(rx, &mut sc) {
                            Ok(()) => {}
                            Err(why) => {
                                if let Some(rx) = tcp.remove(&t) {
                                    let _ = ep.ctl(libc::EPOLL_CTL_DEL, rx.stream.as_raw_fd(), t);
                                    rx.link.down(rx.session, &why);
                                    // Dropping `rx` closes this descriptor and tells the
                                    // dialer (through `ended`) that the connection is over.
                                }
                            }
                        }
                    }
                }
            }
            spin.woke(woke, sc.frames != frames);
            if let Some(h) = home.as_mut() {
                h.worked(woke, Instant::now());
            }
        }
        tracing::debug!(busy_poll = ?spin.total(), "forwarding thread stops");
    }

    /// Forwards one received frame per SPEC 2.4.
    fn forward(
        &self,
        f: &mut Frame<'_>,
        lookup: &mut Lookup<Port>,
        rx: &PortStats,
        came: Option<fastpath::Arrival<'_>>,
        sc: &mut Scratch,
    ) {
        sc.frames += 1;
        let Some((src, dst)) = f.macs() else {
            rx.drop(DropReason::Malformed);
            return;
        };
        let (route, fresh) = lookup.resolve(&self.engine, src, dst);
        // The kernel carries clear frames only: flows over sealed links stay here.
        let sealed = |p: &Port| matches!(p, Port::Link(l) if l.is_sealed());
        let clear = |c: &fastpath::Arrival<'_>| {
            !matches!(c, fastpath::Arrival::Link(_, l) if l.is_sealed())
                && !route.outs.iter().any(|o| sealed(&o.port))
        };
        if let (Some(version), Some(came), Some(fast), false) =
            (fresh, came, &self.fast, self.shaped(&route.outs))
        {
            if !clear(&came) {
                return self.send_outs(f, route, rx, sc);
            }
            let decision = fastpath::Decision {
                src,
                dst,
                version,
                outs: &route.outs,
                missing: route.missing,
                rules: &route.rules,
                pair: route.pair.as_ref(),
                hop: f.hop,
            };
            fast.offer(came, &decision, |v| self.engine.version() == v);
        }
        self.send_outs(f, route, rx, sc)
    }

    /// Sends a frame where its route says, once counted.
    fn send_outs(
        &self,
        f: &mut Frame<'_>,
        route: &engine::Route<Port>,
        rx: &PortStats,
        sc: &mut Scratch,
    ) {
        if !account(route, f.len as u64, rx) {
            return;
        }
        let hop = f.hop;
        for out in &route.outs {
            match (engine::action(out.over_link, hop), &out.port) {
                (Action::HopLimit, Port::Link(l)) => l.stats.drop(DropReason::HopLimit),
                (Action::Send(next), Port::Link(l)) => self.send_link(l, f, next, sc),
                (_, Port::Iface(i)) => i.send(f, &mut sc.seg),
                (_, Port::Link(_)) => {}
            }
        }
    }

    fn send_link_now(&self, l: &Link, f: &mut Frame<'_>, hop: u8, sc: &mut Scratch) {
        if !l.is_up() {
            l.stats.drop(DropReason::LinkDown);
            return;
        }
        match l.transport {
            vnet_grammar::ast::Transport::Tcp => l.send_tcp(f, hop),
            vnet_grammar::ast::Transport::Udp => {
                let Some(to) = l.udp_remote() else {
                    l.stats.drop(DropReason::LinkDown);
                    return;
                };
                let len = f.len;
                let sent = if l.is_sealed() {
                    self.udp.send_sealed(l, f, hop, to, &mut sc.seal)
                } else {
                    self.udp.send_frame(f, hop, to, &mut sc.frags)
                };
                match sent {
                    Ok(()) => l.stats.tx(len),
                    Err(e) => {
                        tracing::debug!(link = %l.peer, "UDP send: {e}");
                        l.stats.drop(DropReason::SendError)
                    }
                }
            }
        }
    }

    fn note_lookups(&self, l: &mut Lookup<Port>) {
        if l.hits + l.misses >= 4096 {
            let mut g = self.lookups.lock().unwrap_or_else(|e| e.into_inner());
            g.0 += l.hits;
            g.1 += l.misses;
            l.hits = 0;
            l.misses = 0;
        }
    }

    // ------------------------------------------------------------ interfaces

    /// One batch from an interface.
    fn iface_rx(&self, rx: &mut IfaceRx, sc: &mut Scratch) -> io::Result<()> {
        let n = rx.iface.recv(&mut rx.batch)?;
        let ifindex = rx.iface.packet_ifindex();
        for fb in &mut rx.batch.bufs[..n] {
            if fb.len == 0 {
                continue;
            }
            rx.iface.stats.rx(fb.len);
            let came = ifindex.map(|i| fastpath::Arrival::Iface(i, &rx.iface));
            self.forward(&mut fb.view(), &mut rx.lookup, &rx.iface.stats, came, sc);
        }
        self.note_lookups(&mut rx.lookup);
        Ok(())
    }

    // ------------------------------------------------------------ UDP links

    /// One batch from the UDP link socket. (Long on purpose: the link and its reassembly
    /// state are looked up once per GRO run and borrowed across its datagrams, which a split
    /// into functions would have to re-borrow per datagram.)
    fn udp_rx(&self, rx: &mut UdpRx, sc: &mut Scratch) {
        let n = match self.udp.recv(&mut rx.batch) {
            Ok(n) => n,
            Err(e) => {
                // E.g. ICMP port unreachable from a peer that is down.
                tracing::debug!("UDP receive: {e}");
                return;
            }
        };
        let UdpRx {
            batch,
            fb,
            per_link,
            ctl,
        } = rx;
        let now = self.now_ms();
        let wall = seal::wall_ns();
        for i in 0..n {
            let (from, datagrams) = batch.datagrams(i);
            // A buffer holds datagrams of one sender (a GRO run): find its link and receiving
            // state once, at its first frame.
            let mut resolved = false;
            let mut link: Option<Arc<Link>> = None;
            let mut state: Option<&mut (Lookup<Port>, Reasm)> = None;
            for raw in datagrams {
                let record = seal::is_record(raw);
                if !record {
                    let Some(wire::LinkHeader { kind, .. }) = wire::LinkHeader::parse(raw) else {
                        self.global.drop(DropReason::Malformed);
                        continue;
                    };
                    if kind != wire::KIND_FRAME && kind != wire::KIND_FRAGMENT {
                        if ctl.try_send(UdpCtl::Msg(raw.to_vec(), from)).is_err() {
                            self.global.drop(DropReason::Malformed);
                        }
                        continue;
                    }
                }
                if !resolved {
                    resolved = true;
                    link = self
                        .udp_peers
                        .read()
                        .unwrap_or_else(|e| e.into_inner())
                        .get(&from)
                        .cloned();
                    if let Some(l) = &link {
                        if !per_link.contains_key(&l.peer) {
                            let lookup = Lookup::new(
                                Target::Link {
                                    peer: l.peer.clone().into(),
                                },
                                None,
                            );
                            per_link.insert(l.peer.clone(), (lookup, Reasm::default()));
                        }
                        state = per_link.get_mut(&l.peer);
                    }
                }
                let (Some(link), Some((lookup, reasm))) = (&link, state.as_deref_mut()) else {
                    self.global.drop(DropReason::Unauthenticated);
                    let answered = vnet_seal::Header::read(raw).ok().filter(|_| record);
                    let _ = ctl.try_send(UdpCtl::NoSession(from, answered));
                    continue;
                };
                // A sealed link takes records only; a clear one, clear frames only.
                let msg = match (record, link.is_sealed()) {
                    (true, true) => match link.open_in_place(raw, wall) {
                        Ok(n) => &raw[vnet_seal::HEADER_LEN..vnet_seal::HEADER_LEN + n],
                        Err(why) => {
                            link.stats.drop(why);
                            continue;
                        }
                    },
                    (false, false) => &*raw,
                    _ => {
                        link.stats.drop(DropReason::Downgrade);
                        continue;
                    }
                };
                let Some(wire::LinkHeader { kind, hop, flags }) = wire::LinkHeader::parse(msg)
                else {
                    link.stats.drop(DropReason::Malformed);
                    continue;
                };
                link.last_rx.store(now, Ordering::Relaxed);
                if kind != wire::KIND_FRAME && kind != wire::KIND_FRAGMENT {
                    // Only a record gets here (clear control messages went to the task above):
                    // an authenticated keepalive or rekey request.
                    if kind == wire::KIND_REKEY {
                        link.ask_rekey();
                    } else if ctl.try_send(UdpCtl::Sealed(msg.to_vec(), from)).is_err() {
                        link.stats.drop(DropReason::Malformed);
                    }
                    continue;
                }
                let body = &msg[wire::LINK_HDR..];
                let frame = if kind == wire::KIND_FRAME {
                    if !fb.load_body(flags, body) {
                        link.stats.drop(DropReason::Malformed);
                        continue;
                    }
                    fb.hop = hop;
                    &mut *fb
                } else {
                    let r = reasm.push(hop, flags, body);
                    for _ in 0..reasm.take_lost() {
                        link.stats.drop(DropReason::FragmentLost);
                    }
                    match r {
                        Reassembled::Done => &mut reasm.fb,
                        Reassembled::Malformed => {
                            link.stats.drop(DropReason::Malformed);
                            continue;
                        }
                        Reassembled::Pending | Reassembled::Lost => continue,
                    }
                };
                link.stats.rx(frame.len);
                let came = Some(fastpath::Arrival::Link(from, link));
                self.forward(&mut frame.view(), lookup, &link.stats, came, sc);
                self.note_lookups(lookup);
            }
        }
    }
}
