//! The daemon: control server, link handshakes and dialers; the forwarding thread and what
//! it owns are the [`DataPlane`] (`dataplane.rs`).

use crate::auth::{self, hex, unhex, Key};
use crate::control::{Applied, Control};
use crate::dataplane::{DataPlane, UdpCtl};
use crate::fastpath::FastPath;
use crate::framing;
use crate::iface::{Iface, IfaceArg};
use crate::link::handshake::{Configured, Dialer, Listener, Refused};
use crate::link::msg::{LinkChallenge, LinkHello, LinkMsg, LinkNote, LinkProof};
use crate::link::{Link, UdpPort};
use crate::port::Port;
use crate::proto::*;
use crate::stats::Drop;
use crate::store::{Persisted, Store};
use crate::wire;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::Target;

/// Everything `vnetd` is started with.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub listen: SocketAddr,
    pub ifaces: Vec<IfaceArg>,
    pub key: Key,
    pub state_dir: PathBuf,
    pub fresh: bool,
    /// The largest UDP link datagram; larger frames are fragmented.
    pub udp_datagram: usize,
    /// Flush the tables to disk (fsync) before acknowledging a change.
    pub fsync: bool,
    /// Let the kernel forward established flows between packet interfaces and UDP links
    /// (see [`crate::fastpath`]).
    pub fast_path: bool,
}

pub struct Daemon {
    pub cfg: Config,
    pub instance: String,
    /// The forwarding thread's state (engine, interfaces, UDP sessions, fast path).
    plane: Arc<DataPlane>,
    /// The control tables (ground state); the links, engine and store follow them.
    ctl: Mutex<Control>,
    links: RwLock<HashMap<String, Arc<Link>>>,
    store: Store,
    shutdown: watch::Sender<bool>,
    /// The lease on the tables, and the id of the next control session (leases belong to one).
    leases: crate::lease::Leases,
    sessions: std::sync::atomic::AtomicU64,
    /// Whether the kernel fast path runs, and if not, why (for `status`).
    fast_path: FastPathState,
    weak: std::sync::Weak<Daemon>,
}

/// Starts the kernel fast path when asked for and possible; says whether it runs, or why not.
fn start_fast_path(
    cfg: &Config,
    ifaces: &[Arc<Iface>],
    listen: SocketAddr,
) -> (Option<FastPath>, FastPathState) {
    let packet: Vec<_> = ifaces
        .iter()
        .filter_map(|i| i.packet_socket().map(|fd| (i.name.clone(), fd)))
        .collect();
    let result = if !cfg.fast_path {
        Err("--no-fast-path".to_string())
    } else {
        crate::fastpath::start(&packet, listen, cfg.udp_datagram)
    };
    if let Err(why) = &result {
        tracing::info!("kernel fast path off: {why}");
    }
    let state = FastPathState {
        built_in: true,
        active: result.is_ok(),
        off_because: result.as_ref().err().cloned(),
    };
    (result.ok(), state)
}

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(4);
const UDP_KEEPALIVE: Duration = Duration::from_millis(500);
const UDP_DEAD_MS: u64 = 2500;
const UDP_LISTENER_DEAD_MS: u64 = 10_000;

impl Daemon {
    /// Binds the port, opens the interfaces and loads the tables. Then call [`Daemon::serve`].
    pub async fn start(cfg: Config) -> io::Result<(Arc<Daemon>, TcpListener)> {
        std::fs::create_dir_all(&cfg.state_dir)?;
        let store = Store::new(&cfg.state_dir, cfg.fsync);
        let saved = if cfg.fresh { None } else { store.load()? };
        if let Some(s) = &saved {
            if s.daemon != cfg.name {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "state directory {} holds the tables of daemon `{}`, not `{}` (use --fresh to start empty)",
                        cfg.state_dir.display(),
                        s.daemon,
                        cfg.name
                    ),
                ));
            }
        }
        let listener = bind_tcp(cfg.listen)?;
        let listen = listener.local_addr()?;
        tracing::info!(name = %cfg.name, %listen, "vnetd listening (TCP: control and TCP links; UDP: UDP links)");
        let udp = UdpPort::bind(listen, cfg.udp_datagram)?;
        let protected = crate::iface::protected_interfaces(&listen);
        let mut ifaces = Vec::new();
        for arg in &cfg.ifaces {
            let iface = Iface::open(arg, &protected).await?;
            tracing::info!(iface = %iface.name, kind = ?iface.kind(), "interface attached");
            ifaces.push(Arc::new(iface));
        }
        let (fast, fast_path) = start_fast_path(&cfg, &ifaces, listen);
        let plane = Arc::new(DataPlane::new(ifaces, udp, fast)?);
        let (shutdown, _) = watch::channel(false);
        let mut cfg = cfg;
        cfg.listen = listen;
        let instance = hex(&auth::random_bytes::<16>());
        let ctl = Control::new(
            &cfg.name,
            &instance,
            saved.as_ref().map_or(0, |s| s.generation),
            saved.as_ref().and_then(|s| s.config_bound_ms),
        );
        let d = Arc::new_cyclic(|weak| Daemon {
            weak: weak.clone(),
            instance,
            plane,
            ctl: Mutex::new(ctl),
            links: RwLock::new(HashMap::new()),
            store,
            shutdown,
            leases: Default::default(),
            sessions: Default::default(),
            fast_path,
            cfg,
        });
        d.plane.update_engine(|e| {
            for i in &d.plane.ifaces {
                e.set_port(
                    Target::Interface {
                        name: i.name.clone(),
                    },
                    Port::Iface(i.clone()),
                );
            }
        });
        // Reload the saved tables (through the same path as a control request, unconditionally).
        if let Some(s) = saved {
            let mut changes: Vec<Change> = s
                .links
                .into_iter()
                .map(|link| Change::AddLink { link })
                .collect();
            changes.extend(s.rules.into_iter().map(|rule| Change::AddRule { rule }));
            let generation = s.generation;
            d.change(changes, None, false).await.map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("saved tables: {}", e.message),
                )
            })?;
            d.lock_ctl().set_generation(generation);
            tracing::info!(generation, "tables reloaded");
        }
        // A fresh snapshot (and an empty journal) to append this run's changes to.
        let p = d.persisted();
        d.store.save(&p)?;
        Ok((d, listener))
    }

    fn lock_ctl(&self) -> std::sync::MutexGuard<'_, Control> {
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.plane.now_ms()
    }

    pub fn listen_addr(&self) -> SocketAddr {
        self.cfg.listen
    }

    /// Asks the daemon to stop.
    pub fn stop(&self) {
        self.shutdown.send_replace(true);
        self.plane.stop();
    }

    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Runs until [`Daemon::stop`] (or a Shutdown request).
    pub async fn serve(self: Arc<Daemon>, listener: TcpListener) -> io::Result<()> {
        let mut tasks = tokio::task::JoinSet::new();
        let udp_ctl = self.plane.start()?;
        {
            let d = self.clone();
            tasks.spawn(async move { d.udp_ctl(udp_ctl).await });
        }
        {
            let d = self.clone();
            tasks.spawn(async move { d.housekeeping().await });
        }
        let pending = Arc::new(Semaphore::new(256));
        let mut stop = self.stopping();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                accepted = listener.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!("accept: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = pending.clone().try_acquire_owned() else {
                        self.plane.global.drop(Drop::Unauthenticated);
                        continue;
                    };
                    let d = self.clone();
                    tokio::spawn(async move { d.connection(stream, peer, permit).await });
                }
            }
        }
        tracing::info!("shutting down");
        tasks.shutdown().await;
        let links: Vec<_> = self.links_read().values().cloned().collect();
        for l in links {
            l.close();
        }
        Ok(())
    }

    fn links_read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Link>>> {
        self.links.read().unwrap_or_else(|e| e.into_inner())
    }

    fn link(&self, peer: &str) -> Option<Arc<Link>> {
        self.links_read().get(peer).cloned()
    }

    // ---------------------------------------------------------------- UDP links

    fn udp_send(&self, msg: &LinkMsg, to: SocketAddr) {
        self.plane.udp.send_control(&msg.encode(), to);
    }

    /// A frame or keepalive from an address without a session: if it is the address of a
    /// configured UDP link's peer, tell it to say hello again (a restarted listener).
    fn maybe_reset(&self, from: SocketAddr) {
        let known = self
            .links_read()
            .values()
            .any(|l| l.transport == Transport::Udp && l.peer_addr == Some(from));
        if known {
            let note = LinkNote::new(&self.cfg.name, "no session");
            self.udp_send(&LinkMsg::Reset(note), from);
        }
    }

    fn listener(&self) -> Listener<'_> {
        Listener {
            me: &self.cfg.name,
            key: &self.cfg.key,
        }
    }

    /// A UDP link control message (handshakes, keepalives, resets) from `from`.
    fn udp_control(&self, msg: &[u8], from: SocketAddr) {
        let msg = match LinkMsg::decode(msg) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%from, "{e}");
                return self.plane.global.drop(Drop::Malformed);
            }
        };
        let done = match msg {
            LinkMsg::Hello(h) => self.udp_hello(&h, from),
            LinkMsg::Challenge(c) => self.udp_challenge(&c, from),
            LinkMsg::Proof(p) => self.udp_proof(&p, from),
            LinkMsg::Ready(n) => self.udp_ready(&n, from),
            LinkMsg::Keepalive(_) => {
                self.udp_keepalive(from);
                Ok(())
            }
            LinkMsg::KeepaliveAck(_) => {
                if let Some(l) = self.udp_peer(from) {
                    l.last_rx.store(self.now_ms(), Ordering::Relaxed);
                }
                Ok(())
            }
            LinkMsg::Reset(n) => {
                self.udp_reset(&n, from);
                Ok(())
            }
            LinkMsg::Refused(_) => return self.plane.global.drop(Drop::Malformed),
        };
        if let Err(why) = done {
            tracing::debug!(%from, "UDP link handshake refused: {why}");
            self.plane.global.drop(Drop::Unauthenticated);
        }
    }

    /// The UDP link with `peer` that this daemon dials (`dials`) or listens for.
    fn udp_link(&self, peer: &str, dials: bool) -> Result<Arc<Link>, Refused> {
        self.link(peer)
            .filter(|l| l.dials == dials && l.transport == Transport::Udp)
            .ok_or_else(|| Refused::UnknownPeer(format!("no UDP link with {peer} here")))
    }

    fn udp_peer(&self, from: SocketAddr) -> Option<Arc<Link>> {
        let peers = self
            .plane
            .udp_peers
            .read()
            .unwrap_or_else(|e| e.into_inner());
        peers.get(&from).cloned()
    }

    fn udp_hello(&self, h: &LinkHello, from: SocketAddr) -> Result<(), Refused> {
        let link = self.link(&h.from);
        let configured = link.as_ref().map(|l| Configured {
            transport: l.transport,
            dials: l.dials,
        });
        let nonce = auth::random_bytes::<32>();
        let (c, state) = self
            .listener()
            .on_hello(h, Transport::Udp, from, configured, nonce)?;
        if let Some(link) = link {
            link.hs().listener = Some(state);
        }
        self.udp_send(&LinkMsg::Challenge(c), from);
        Ok(())
    }

    fn udp_challenge(&self, c: &LinkChallenge, from: SocketAddr) -> Result<(), Refused> {
        let link = self.udp_link(&c.from, true)?;
        let proof = {
            let mut hs = link.hs();
            let d = hs.dialer.as_mut().ok_or(Refused::Stale)?;
            d.on_challenge(&self.cfg.key, c, from)?
        };
        self.udp_send(&LinkMsg::Proof(proof), from);
        Ok(())
    }

    fn udp_proof(&self, p: &LinkProof, from: SocketAddr) -> Result<(), Refused> {
        let link = self.udp_link(&p.from, false)?;
        let ready = {
            let mut hs = link.hs();
            let state = hs.listener.as_ref().ok_or(Refused::Stale)?;
            let ready = state.on_proof(&self.listener(), p, from)?;
            hs.listener = None;
            ready
        };
        self.udp_session(&link, from);
        self.udp_send(&LinkMsg::Ready(ready), from);
        Ok(())
    }

    fn udp_ready(&self, n: &LinkNote, from: SocketAddr) -> Result<(), Refused> {
        let link = self.udp_link(&n.from, true)?;
        {
            let mut hs = link.hs();
            hs.dialer
                .as_ref()
                .ok_or(Refused::Stale)?
                .on_ready(n, from)?;
            hs.dialer = None;
        }
        self.udp_session(&link, from);
        Ok(())
    }

    fn udp_keepalive(&self, from: SocketAddr) {
        match self.udp_peer(from) {
            Some(l) => {
                l.last_rx.store(self.now_ms(), Ordering::Relaxed);
                let note = LinkNote::new(&self.cfg.name, "");
                self.udp_send(&LinkMsg::KeepaliveAck(note), from);
            }
            None => self.maybe_reset(from),
        }
    }

    /// The listener has no session with us (it restarted): down, and the dialer says hello.
    fn udp_reset(&self, n: &LinkNote, from: SocketAddr) {
        if let Some(l) = self
            .link(&n.from)
            .filter(|l| l.dials && l.udp_remote() == Some(from))
        {
            self.plane
                .udp_peers
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&from);
            l.down(l.session(), "peer has no session (restarted?)");
        }
    }

    /// Handles UDP link control messages in order (handshakes, keepalives, resets).
    async fn udp_ctl(self: Arc<Daemon>, mut rx: tokio::sync::mpsc::Receiver<UdpCtl>) {
        let mut stop = self.stopping();
        loop {
            let m = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                m = rx.recv() => m,
            };
            match m {
                Some(UdpCtl::Msg(msg, from)) => self.udp_control(&msg, from),
                Some(UdpCtl::NoSession(from)) => self.maybe_reset(from),
                None => return,
            }
        }
    }

    fn udp_session(&self, link: &Arc<Link>, addr: SocketAddr) {
        let mut peers = self
            .plane
            .udp_peers
            .write()
            .unwrap_or_else(|e| e.into_inner());
        peers.retain(|_, l| !Arc::ptr_eq(l, link));
        peers.insert(addr, link.clone());
        drop(peers);
        link.udp_up(addr, self.now_ms());
    }

    /// The dialer of a UDP link: hello until a session is up, then keepalives.
    async fn udp_dialer(self: Arc<Daemon>, link: Arc<Link>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if link.is_closed() {
                return;
            }
            if link.is_up() {
                tokio::time::sleep(UDP_KEEPALIVE).await;
                let now = self.now_ms();
                if now.saturating_sub(link.last_rx.load(Ordering::Relaxed)) > UDP_DEAD_MS {
                    if let Some(r) = link.udp_remote() {
                        self.plane
                            .udp_peers
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&r);
                    }
                    link.down(link.session(), "no keepalive answer");
                    continue;
                }
                if let Some(r) = link.udp_remote() {
                    let note = LinkNote::new(&self.cfg.name, "");
                    self.udp_send(&LinkMsg::Keepalive(note), r);
                }
                backoff = BACKOFF_MIN;
                continue;
            }
            let to = match link.peer_addr {
                Some(a) => Some(a),
                None => tokio::net::lookup_host(&link.spec.peer_addr)
                    .await
                    .ok()
                    .and_then(|mut a| a.next()),
            };
            if let Some(to) = to {
                let nonce = auth::random_bytes::<32>();
                let d = Dialer::new(&self.cfg.name, &link.peer, Transport::Udp, nonce);
                let hello = d.hello();
                link.hs().dialer = Some(d);
                self.udp_send(&LinkMsg::Hello(hello), to);
            }
            let woken = link.wake.notified();
            let _ = tokio::time::timeout(backoff, woken).await;
            if !link.is_up() {
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// Marks listener-side UDP sessions dead after a silence; runs forever.
    async fn housekeeping(self: Arc<Daemon>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.now_ms();
            let links: Vec<_> = self.links_read().values().cloned().collect();
            for l in links {
                if l.transport == Transport::Udp
                    && !l.dials
                    && l.is_up()
                    && now.saturating_sub(l.last_rx.load(Ordering::Relaxed)) > UDP_LISTENER_DEAD_MS
                {
                    if let Some(r) = l.udp_remote() {
                        self.plane
                            .udp_peers
                            .write()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&r);
                    }
                    l.down(l.session(), "peer silent");
                }
            }
        }
    }

    // ---------------------------------------------------------------- TCP links

    async fn tcp_dialer(self: Arc<Daemon>, link: Arc<Link>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if link.is_closed() {
                return;
            }
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tcp_dial(&link)).await {
                Ok(Ok((reader, writer, remote))) => {
                    backoff = BACKOFF_MIN;
                    // The connection goes to a forwarding thread; wait until it ends.
                    match self.tcp_link_up(&link, reader, writer, remote) {
                        Ok(ended) => {
                            let _ = ended.await;
                        }
                        Err(e) => tracing::warn!(link = %link.peer, "link connection: {e}"),
                    }
                }
                Ok(Err(e)) => tracing::debug!(link = %link.peer, "dial: {e}"),
                Err(_) => tracing::debug!(link = %link.peer, "dial: handshake timed out"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn tcp_dial(
        &self,
        link: &Link,
    ) -> io::Result<(
        BufReader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
        SocketAddr,
    )> {
        let to = match link.peer_addr {
            Some(a) => a,
            None => tokio::net::lookup_host(&link.spec.peer_addr)
                .await?
                .next()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::NotFound, "peer address does not resolve")
                })?,
        };
        let stream = connect_from(self.cfg.listen, to).await?;
        tune_tcp(&stream);
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::with_capacity(256 << 10, r);
        let nonce = auth::random_bytes::<32>();
        let mut d = Dialer::new(&self.cfg.name, &link.peer, Transport::Tcp, nonce);
        write_msg(&mut w, &LinkMsg::Hello(d.hello()).encode()).await?;
        let mut buf = Vec::new();
        let LinkMsg::Challenge(c) = read_link_msg(&mut r, &mut buf).await? else {
            return Err(invalid("expected the link challenge"));
        };
        let proof = d
            .on_challenge(&self.cfg.key, &c, to)
            .map_err(|why| invalid(&why.to_string()))?;
        write_msg(&mut w, &LinkMsg::Proof(proof).encode()).await?;
        let LinkMsg::Ready(ready) = read_link_msg(&mut r, &mut buf).await? else {
            return Err(invalid("expected the link to be ready"));
        };
        d.on_ready(&ready, to)
            .map_err(|why| invalid(&why.to_string()))?;
        Ok((r, w, to))
    }

    /// The listener's side of a TCP link handshake; `first` is the HELLO message.
    async fn tcp_accept_link(
        self: Arc<Daemon>,
        stream: TcpStream,
        peer: SocketAddr,
        first: Vec<u8>,
    ) -> io::Result<()> {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::with_capacity(256 << 10, r);
        let Ok(LinkMsg::Hello(hello)) = LinkMsg::decode(&first) else {
            self.plane.global.drop(Drop::Malformed);
            return Err(invalid("not a link hello"));
        };
        let link = self.link(&hello.from);
        let configured = link.as_ref().map(|l| Configured {
            transport: l.transport,
            dials: l.dials,
        });
        let nonce = auth::random_bytes::<32>();
        let l = self.listener();
        let (challenge, state, link) = match (
            l.on_hello(&hello, Transport::Tcp, peer, configured, nonce),
            link,
        ) {
            (Ok((c, state)), Some(link)) => (c, state, link),
            (refused, _) => {
                self.plane.global.drop(Drop::Unauthenticated);
                let why = refused
                    .err()
                    .map_or("unknown link".into(), |e| e.to_string());
                let note = LinkNote::new(&self.cfg.name, &why);
                let _ = write_msg(&mut w, &LinkMsg::Refused(note).encode()).await;
                return Err(invalid(&why));
            }
        };
        write_msg(&mut w, &LinkMsg::Challenge(challenge).encode()).await?;
        let mut buf = Vec::new();
        let proof = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_link_msg(&mut r, &mut buf))
            .await
            .map_err(|_| invalid("handshake timed out"))??;
        let LinkMsg::Proof(proof) = proof else {
            return Err(invalid("expected the link proof"));
        };
        let ready = state.on_proof(&l, &proof, peer).map_err(|why| {
            self.plane.global.drop(Drop::Unauthenticated);
            invalid(&why.to_string())
        })?;
        write_msg(&mut w, &LinkMsg::Ready(ready).encode()).await?;
        self.tcp_link_up(&link, r, w, peer)?;
        Ok(())
    }

    /// A TCP link connection whose handshake is done becomes the link's connection, read by a
    /// forwarding thread; the receiver resolves when that thread has ended.
    fn tcp_link_up(
        self: &Arc<Daemon>,
        link: &Arc<Link>,
        r: BufReader<tokio::net::tcp::OwnedReadHalf>,
        w: tokio::net::tcp::OwnedWriteHalf,
        remote: SocketAddr,
    ) -> io::Result<tokio::sync::oneshot::Receiver<()>> {
        // Bytes the handshake reader already took past READY/PROOF belong to the link.
        let leftover = r.buffer().to_vec();
        let stream = r
            .into_inner()
            .reunite(w)
            .map_err(|_| invalid("halves of different connections"))?
            .into_std()?;
        stream.set_nonblocking(false)?;
        let session = link.tcp_up(&stream, remote)?;
        self.plane
            .start_tcp_reader(link.clone(), session, stream, leftover)
    }

    // ---------------------------------------------------------------- connections

    async fn connection(
        self: Arc<Daemon>,
        mut stream: TcpStream,
        peer: SocketAddr,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let _ = stream.set_nodelay(true);
        let mut buf = Vec::new();
        let first = tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            read_frame(&mut stream, &mut buf, 64 << 10),
        )
        .await;
        match first {
            Ok(Ok(())) => {}
            _ => {
                self.plane.global.drop(Drop::Malformed);
                return;
            }
        }
        match buf.first() {
            Some(b'{') => {
                let r = self.control_session(stream, buf, permit).await;
                if let Err(e) = r {
                    tracing::debug!(%peer, "control connection: {e}");
                }
            }
            Some(&wire::MAGIC) => {
                drop(permit);
                tune_tcp(&stream);
                if let Err(e) = self.tcp_accept_link(stream, peer, buf).await {
                    tracing::debug!(%peer, "link connection: {e}");
                }
            }
            _ => self.plane.global.drop(Drop::Malformed),
        }
    }

    async fn control_session(
        self: &Arc<Daemon>,
        mut stream: TcpStream,
        first: Vec<u8>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> io::Result<()> {
        let refuse = |code, message: &str| HandshakeError {
            error: ErrorBody {
                code,
                message: message.to_string(),
            },
        };
        let hello: ClientHello = match serde_json::from_slice(&first) {
            Ok(h) => h,
            Err(e) => {
                self.plane.global.drop(Drop::Malformed);
                send_json(
                    &mut stream,
                    &refuse(ErrorCode::Malformed, &format!("bad hello: {e}")),
                )
                .await?;
                return Ok(());
            }
        };
        if hello.protocol != "vnet-control" || hello.version != PROTOCOL_VERSION {
            let msg = format!("this daemon speaks vnet-control version {PROTOCOL_VERSION}");
            send_json(&mut stream, &refuse(ErrorCode::Version, &msg)).await?;
            return Ok(());
        }
        let Some(client_nonce) = unhex(&hello.client_nonce).filter(|n| n.len() >= 16) else {
            send_json(
                &mut stream,
                &refuse(ErrorCode::Malformed, "bad client nonce"),
            )
            .await?;
            return Ok(());
        };
        let server_nonce = auth::random_bytes::<32>();
        let sh = ServerHello {
            version: PROTOCOL_VERSION,
            server_nonce: hex(&server_nonce),
            daemon: self.cfg.name.clone(),
            instance: self.instance.clone(),
        };
        send_json(&mut stream, &sh).await?;
        let mut buf = Vec::new();
        tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            read_frame(&mut stream, &mut buf, 64 << 10),
        )
        .await
        .map_err(|_| invalid("auth timed out"))??;
        let ok = serde_json::from_slice::<ClientAuth>(&buf).is_ok_and(|a| {
            self.cfg.key.verify(
                auth::CONTROL_CLIENT,
                &[&server_nonce, &client_nonce],
                &a.proof,
            )
        });
        if !ok {
            self.plane.global.drop(Drop::Unauthenticated);
            send_json(
                &mut stream,
                &refuse(ErrorCode::Auth, "authentication failed"),
            )
            .await?;
            return Ok(());
        }
        let proof = self
            .cfg
            .key
            .sign(auth::CONTROL_SERVER, &[&client_nonce, &server_nonce]);
        send_json(&mut stream, &ServerAuth { proof: hex(&proof) }).await?;
        drop(permit);
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        // However the session ends, a lease it holds goes with it.
        let _lease = crate::lease::SessionLease {
            leases: &self.leases,
            session,
        };
        let mut stop = self.stopping();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                r = read_frame(&mut stream, &mut buf, MAX_CONTROL_FRAME) => r?,
            }
            let (id, reply, shutdown) = match serde_json::from_slice::<RequestEnvelope>(&buf) {
                Ok(env) => {
                    let shutdown = env.request == Request::Shutdown;
                    (env.id, self.handle(env.request, session).await, shutdown)
                }
                Err(e) => {
                    self.plane.global.drop(Drop::Malformed);
                    let id = serde_json::from_slice::<serde_json::Value>(&buf)
                        .ok()
                        .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
                        .unwrap_or(0);
                    (
                        id,
                        Reply::Error(ErrorBody {
                            code: ErrorCode::Malformed,
                            message: e.to_string(),
                        }),
                        false,
                    )
                }
            };
            send_json(&mut stream, &ReplyEnvelope { id, reply }).await?;
            if shutdown {
                let _ = stream.flush().await;
                self.stop();
                return Ok(());
            }
        }
    }

    // ---------------------------------------------------------------- control

    async fn handle(self: &Arc<Daemon>, request: Request, session: u64) -> Reply {
        let locked = |message| ErrorBody {
            code: ErrorCode::Locked,
            message,
        };
        // Counters the kernel fast path kept are credited before anything is read.
        self.plane.fold_fast_path();
        let r = match request {
            Request::Status => Ok(Response::Status(self.status())),
            Request::Change { changes, expect } => {
                match self.leases.check_change(&self.cfg.name, session) {
                    Ok(()) => self
                        .change(changes, expect, true)
                        .await
                        .map(Response::Changed),
                    Err(message) => Err(locked(message)),
                }
            }
            Request::Lease { holder, ttl_ms } => self
                .leases
                .acquire(
                    &self.cfg.name,
                    session,
                    &holder,
                    Duration::from_millis(ttl_ms),
                )
                .map(Response::Leased)
                .map_err(locked),
            Request::Release => Ok(Response::Released {
                held: self.leases.release(session),
            }),
            Request::ListInterfaces => Ok(Response::Interfaces {
                interfaces: self.interfaces(),
            }),
            Request::ListLinks => Ok(Response::Links {
                links: self.link_infos(),
            }),
            Request::ListRules => Ok(Response::Rules {
                rules: self.rule_infos(),
            }),
            Request::Stats => Ok(Response::Stats(self.stats())),
            Request::TrafficMatrix { reset } => {
                let (window_ms, cells) = self.plane.matrix.snapshot(reset);
                Ok(Response::TrafficMatrix(TrafficMatrix {
                    daemon: self.cfg.name.clone(),
                    window_ms,
                    entries: cells
                        .into_iter()
                        .map(|(src, dst, frames, bytes)| TrafficEntry {
                            src,
                            dst,
                            frames,
                            bytes,
                        })
                        .collect(),
                }))
            }
            Request::Shutdown => Ok(Response::ShuttingDown),
        };
        match r {
            Ok(r) => Reply::Ok(r),
            Err(e) => Reply::Error(e),
        }
    }

    fn status(&self) -> Status {
        let ctl = self.lock_ctl();
        let links = self.links_read();
        Status {
            daemon: self.cfg.name.clone(),
            instance: self.instance.clone(),
            generation: ctl.generation(),
            protocol_version: PROTOCOL_VERSION,
            listen: self.cfg.listen.to_string(),
            uptime_ms: self.now_ms(),
            config_bound_ms: ctl.bound(),
            interfaces: self.plane.ifaces.len(),
            links: links.len(),
            links_up: links.values().filter(|l| l.is_up()).count(),
            rules: ctl.rules().len(),
            lease: self.leases.current(),
            fast_path: Some(self.fast_path.clone()),
        }
    }

    fn interfaces(&self) -> Vec<InterfaceInfo> {
        self.plane
            .ifaces
            .iter()
            .map(|i| InterfaceInfo {
                name: i.name.clone(),
                kind: i.kind(),
                counters: i.stats.snapshot(),
            })
            .collect()
    }

    fn link_infos(&self) -> Vec<LinkInfo> {
        let ctl = self.lock_ctl();
        let links = self.links_read();
        ctl.links()
            .filter_map(|spec| {
                let peer = spec.peer_of(&self.cfg.name)?.to_string();
                let l = links.get(&peer)?;
                Some(LinkInfo {
                    spec: spec.clone(),
                    peer,
                    up: l.is_up(),
                    remote: l.remote().map(|r| r.to_string()),
                    connects: l.connects.get(),
                    counters: l.stats.snapshot(),
                })
            })
            .collect()
    }

    fn rule_infos(&self) -> Vec<RuleInfo> {
        let ctl = self.lock_ctl();
        let engine = self.plane.engine.read();
        ctl.rules()
            .iter()
            .map(|r| {
                let c = engine.rule_counters(r);
                RuleInfo {
                    rule: r.clone(),
                    frames: c.map_or(0, |c| c.frames.get()),
                    bytes: c.map_or(0, |c| c.bytes.get()),
                }
            })
            .collect()
    }

    fn stats(&self) -> Stats {
        let generation = self.lock_ctl().generation();
        let (hits, misses) = *self.plane.lookups.lock().unwrap_or_else(|e| e.into_inner());
        let mut drops: BTreeMap<String, u64> = self.plane.global.snapshot().drops;
        // Frames dropped because no rule matched are also summed here over all ports.
        let mut no_rule = 0;
        for i in &self.plane.ifaces {
            no_rule += i.stats.drops(Drop::NoRule);
        }
        let links: Vec<_> = {
            let l = self.links_read();
            let mut v: Vec<_> = l
                .values()
                .map(|l| (l.peer.clone(), l.stats.snapshot()))
                .collect();
            no_rule += l.values().map(|l| l.stats.drops(Drop::NoRule)).sum::<u64>();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        if no_rule > 0 {
            drops.insert("no_rule".into(), no_rule);
        }
        Stats {
            generation,
            drops,
            interfaces: self
                .plane
                .ifaces
                .iter()
                .map(|i| (i.name.clone(), i.stats.snapshot()))
                .collect(),
            links,
            rules: self.rule_infos(),
            cache_hits: hits,
            cache_misses: misses,
            fast_path: self.plane.fast_path_stats(),
        }
    }

    fn persisted(&self) -> Persisted {
        self.lock_ctl().persisted()
    }

    /// Applies changes atomically ([`Control::apply`]), persists them (taken back if that
    /// fails), then makes them live. Peer addresses are resolved before the tables are locked;
    /// links are closed and dialers started after the lock is released.
    pub async fn change(
        &self,
        changes: Vec<Change>,
        expect: Option<Expect>,
        persist: bool,
    ) -> Result<Changed, ErrorBody> {
        let resolved = resolve_peers(&changes).await;
        let work = || self.change_locked(&changes, expect.as_ref(), persist, &resolved);
        // With --fsync a change waits for the disk: let the runtime move its other tasks to
        // another worker meanwhile. (Without it, the append is one write to the page cache.)
        let (reply, closed, opened) = if self.cfg.fsync {
            blocking(work)
        } else {
            work()
        }?;
        for old in closed {
            old.close();
        }
        for l in opened {
            self.spawn_dialer(l);
        }
        Ok(reply)
    }

    /// The part of [`Daemon::change`] under the tables' lock: apply, persist, make live.
    /// Returns the reply, the links to close and the links opened.
    fn change_locked(
        &self,
        changes: &[Change],
        expect: Option<&Expect>,
        persist: bool,
        resolved: &HashMap<String, SocketAddr>,
    ) -> Result<LiveChange, ErrorBody> {
        let mut ctl = self.lock_ctl();
        let applied = ctl.apply(changes, expect)?;
        if !applied.changed() {
            return Ok((applied.reply(&self.instance), Vec::new(), Vec::new()));
        }
        if persist {
            let saved = self
                .store
                .record(applied.generation, changes, || ctl.persisted());
            if let Err(err) = saved {
                ctl.revert(applied);
                return Err(ErrorBody {
                    code: ErrorCode::Internal,
                    message: format!("could not save the tables (nothing changed): {err}"),
                });
            }
        }
        let (closed, opened) = self.make_live(&applied, changes, resolved);
        Ok((applied.reply(&self.instance), closed, opened))
    }

    /// Brings the links and the engine in step with applied changes: links first (their
    /// ports), then the rules, in one engine update.
    fn make_live(
        &self,
        applied: &Applied,
        changes: &[Change],
        resolved: &HashMap<String, SocketAddr>,
    ) -> (Vec<Arc<Link>>, Vec<Arc<Link>>) {
        let me = &self.cfg.name;
        let (mut closed, mut opened) = (Vec::new(), Vec::new());
        {
            let mut links = self.links.write().unwrap_or_else(|e| e.into_inner());
            for key in &applied.close {
                if let Some(old) = key.peer_of(me).and_then(|peer| links.remove(peer)) {
                    closed.push(old);
                }
            }
            for spec in &applied.open {
                let addr = resolved.get(&spec.peer_addr).copied();
                let on_change = self.plane.on_link_change();
                if let Some(l) = Link::new(spec.clone(), me, addr, on_change) {
                    let l = Arc::new(l);
                    links.insert(l.peer.clone(), l.clone());
                    opened.push(l);
                }
            }
        }
        if !closed.is_empty() {
            let mut peers = self
                .plane
                .udp_peers
                .write()
                .unwrap_or_else(|e| e.into_inner());
            peers.retain(|_, l| !closed.iter().any(|c| Arc::ptr_eq(c, l)));
        }
        self.plane.update_engine(|e| {
            for old in &closed {
                e.remove_port(&Target::Link {
                    peer: old.peer.clone(),
                });
            }
            for l in &opened {
                let target = Target::Link {
                    peer: l.peer.clone(),
                };
                e.set_port(target, Port::Link(l.clone()));
            }
            for c in changes {
                match c {
                    Change::AddRule { rule } => {
                        e.add_rule(rule);
                    }
                    Change::DeleteRule { rule } => {
                        e.remove_rule(rule);
                    }
                    _ => {}
                }
            }
        });
        (closed, opened)
    }

    fn spawn_dialer(&self, link: Arc<Link>) {
        if !link.dials {
            return;
        }
        let Some(me) = self.weak.upgrade() else {
            return;
        };
        let l2 = link.clone();
        let h = match link.transport {
            Transport::Tcp => tokio::spawn(async move { me.tcp_dialer(l2).await }),
            Transport::Udp => tokio::spawn(async move { me.udp_dialer(l2).await }),
        };
        link.add_task(h.abort_handle());
    }
}

/// The reply to a change, the links it closed and the links it opened.
type LiveChange = (Changed, Vec<Arc<Link>>, Vec<Arc<Link>>);

/// The addresses of the peers of the links a batch adds (resolved before any lock is
/// taken; a name that does not resolve is tried again by the link's dialer).
async fn resolve_peers(changes: &[Change]) -> HashMap<String, SocketAddr> {
    let mut out = HashMap::new();
    for c in changes {
        if let Change::AddLink { link } = c {
            if out.contains_key(&link.peer_addr) {
                continue;
            }
            let addr = tokio::net::lookup_host(link.peer_addr.as_str())
                .await
                .ok()
                .and_then(|mut a| a.next());
            if let Some(addr) = addr {
                out.insert(link.peer_addr.clone(), addr);
            }
        }
    }
    out
}

/// Runs blocking work on this worker after handing its other tasks to another one (a
/// current-thread runtime runs it as it is).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn invalid(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    TcpListener::from_std(s.into())
}

/// Dials from the daemon's own address (so the peer sees the overlay address, not whatever
/// the kernel picks on a multi-address loopback).
async fn connect_from(local: SocketAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let sock = if to.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    if local.is_ipv4() == to.is_ipv4() && !local.ip().is_unspecified() {
        sock.bind(SocketAddr::new(local.ip(), 0))?;
    }
    sock.connect(to).await
}

fn tune_tcp(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let sock = socket2::SockRef::from(s);
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&ka);
}

async fn write_msg(w: &mut (impl AsyncWriteExt + Unpin), msg: &[u8]) -> io::Result<()> {
    w.write_all(&framing::encode(msg)).await
}

async fn read_frame(
    r: &mut (impl AsyncReadExt + Unpin),
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<()> {
    let mut prefix = [0u8; framing::HEADER];
    r.read_exact(&mut prefix).await?;
    let len = framing::check_len(u32::from_be_bytes(prefix) as usize, max)?;
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(())
}

/// Reads one link control message of a TCP handshake; the peer's refusal is an error.
async fn read_link_msg(
    r: &mut (impl AsyncReadExt + Unpin),
    buf: &mut Vec<u8>,
) -> io::Result<LinkMsg> {
    read_frame(r, buf, 64 << 10).await?;
    match LinkMsg::decode(buf) {
        Ok(LinkMsg::Refused(note)) => Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("peer refused the link: {}", note.reason),
        )),
        Ok(msg) => Ok(msg),
        Err(e) => Err(invalid(&e.to_string())),
    }
}

async fn send_json(
    w: &mut (impl AsyncWriteExt + Unpin),
    msg: &impl serde::Serialize,
) -> io::Result<()> {
    let text = serde_json::to_vec(msg).map_err(io::Error::other)?;
    write_msg(w, &text).await
}

/// Starts a daemon and serves until `stop` resolves or a Shutdown request arrives.
pub async fn run(
    cfg: Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (d, listener) = Daemon::start(cfg).await?;
    let d2 = d.clone();
    tokio::spawn(async move {
        stop.await;
        d2.stop();
    });
    d.serve(listener).await
}
