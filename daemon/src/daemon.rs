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
use crate::stats::DropReason;
use crate::store::{Persisted, Store};
use crate::sys::blocking;
use crate::vttif::Vttif;
use crate::wire;

mod metrics;
mod probes;
mod session;
mod tcp_links;
mod udp_links;
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
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
    /// `--insecure-links`: frames in clear after an authenticated handshake (measurements).
    pub insecure_links: bool,
    /// When links make new keys (the dialer starts the handshake).
    pub rekey: vnet_seal::RekeyPolicy,
    /// VTTIF report periods per second (0: no reports; SPEC 5.1's default is 20).
    pub report_hz: u32,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics: Option<SocketAddr>,
    /// How the forwarding thread busy-polls after work before it blocks.
    pub busy_poll: crate::dataplane::SpinPolicy,
    /// `--cpu-latency-hint`: while the forwarding thread runs, ask the kernel (PM QoS,
    /// `/dev/cpu_dma_latency`) to keep idle CPUs out of deep idle states.
    pub cpu_latency_hint: bool,
    /// `--forward-cpu`: the CPU the forwarding thread keeps to (none: where the kernel puts it).
    pub forward_cpu: Option<u32>,
}

pub struct Daemon {
    pub cfg: Config,
    /// The link key pair, the rekey policy and the handshake limit (`link::seal`).
    seal: crate::link::seal::Crypto,
    pub instance: String,
    /// The forwarding thread's state (engine, interfaces, UDP sessions, fast path).
    plane: Arc<DataPlane>,
    /// The control tables (ground state); the live links (the data plane's), engine and store
    /// follow them.
    ctl: Mutex<Control>,
    /// Changes take turns: held from staging a batch to committing it, across the disk write
    /// (so the journal's order is the generations' order, and readers of `ctl` never wait for
    /// the disk).
    turn: tokio::sync::Mutex<()>,
    store: Store,
    shutdown: watch::Sender<bool>,
    /// The lease on the tables, and the id of the next control session (leases belong to one).
    leases: crate::lease::Leases,
    sessions: std::sync::atomic::AtomicU64,
    /// Whether the kernel fast path runs, and if not, why (for `status`).
    fast_path: FastPathState,
    /// VTTIF: the Proxy setting, the reporter's counters and (on the Proxy) the view.
    vttif: Arc<Vttif>,
    /// `--cpu-latency-hint`: the open PM QoS request (it holds while the descriptor is open).
    _latency_hint: Option<std::fs::File>,
    weak: std::sync::Weak<Daemon>,
}

/// Refuses a `--forward-cpu` this process may not run on, naming the ones it may.
fn check_forward_cpu(cpu: u32) -> io::Result<()> {
    let allowed = crate::sys::allowed_cpus()?;
    if allowed.contains(&cpu) {
        return Ok(());
    }
    let list: Vec<String> = allowed.iter().map(u32::to_string).collect();
    Err(io::Error::other(format!(
        "--forward-cpu {cpu}: not a CPU vnetd may run on (it may run on {})",
        list.join(",")
    )))
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

/// How long a connection may take to say who it is, and a link handshake to finish.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(4);

impl Daemon {
    /// Binds the port, opens the interfaces and loads the tables. Then call [`Daemon::serve`].
    pub async fn start(cfg: Config) -> io::Result<(Arc<Daemon>, TcpListener)> {
        std::fs::create_dir_all(&cfg.state_dir)?;
        let keys = crate::identity::load_or_create(&cfg.state_dir)?;
        tracing::info!(public_key = %keys.public, fingerprint = %keys.public.fingerprint(), "link key");
        if cfg.insecure_links {
            tracing::warn!("INSECURE LINKS: --insecure-links sends every frame in clear and unauthenticated after the handshake; for measurements only");
        }
        let seal = crate::link::seal::Crypto::new(keys, cfg.insecure_links, cfg.rekey);
        let store = Store::open(&cfg.state_dir, cfg.fsync);
        let saved = load_saved(&cfg, &store)?;
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
        let latency_hint = if cfg.cpu_latency_hint {
            let f = crate::sys::cpu_latency_hint().map_err(|e| {
                io::Error::other(format!("--cpu-latency-hint: /dev/cpu_dma_latency: {e}"))
            })?;
            tracing::warn!("--cpu-latency-hint: idle CPUs of this machine poll instead of sleeping while vnetd runs (lower wake-up latency, more power)");
            Some(f)
        } else {
            None
        };
        if let Some(cpu) = cfg.forward_cpu {
            check_forward_cpu(cpu)?;
            tracing::info!(
                cpu,
                "--forward-cpu: the forwarding thread keeps to CPU {cpu}"
            );
        }
        let plane = Arc::new(DataPlane::new(
            ifaces,
            udp,
            fast,
            cfg.busy_poll,
            cfg.forward_cpu,
        )?);
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
        let vttif = Vttif::new(&cfg.name, &cfg.state_dir, cfg.report_hz, cfg.fresh);
        let d = Arc::new_cyclic(|weak| Daemon {
            weak: weak.clone(),
            vttif,
            instance,
            plane,
            ctl: Mutex::new(ctl),
            turn: Default::default(),
            store,
            shutdown,
            leases: Default::default(),
            sessions: Default::default(),
            fast_path,
            seal,
            _latency_hint: latency_hint,
            cfg,
        });
        d.plane.update_engine(|e| {
            for i in &d.plane.ifaces {
                e.set_port(
                    Target::Interface {
                        name: i.name.clone().into(),
                    },
                    Port::Iface(i.clone()),
                );
            }
        });
        if let Some(saved) = saved {
            d.reload(saved).await?;
        }
        // A fresh snapshot (and an empty journal) to append this run's changes to.
        let p = d.persisted();
        d.store.save(&p)?;
        Ok((d, listener))
    }

    /// Installs the saved tables through the same path as a control request,
    /// unconditionally, and takes their generation.
    async fn reload(&self, saved: Persisted) -> io::Result<()> {
        let mut changes: Vec<Change> = saved
            .links
            .into_iter()
            .map(|link| Change::AddLink { link })
            .collect();
        changes.extend(saved.rules.into_iter().map(|rule| Change::AddRule { rule }));
        self.change(changes, None, false).await.map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("saved tables: {}", e.message),
            )
        })?;
        self.lock_ctl().set_generation(saved.generation);
        tracing::info!(generation = saved.generation, "tables reloaded");
        Ok(())
    }

    fn lock_ctl(&self) -> std::sync::MutexGuard<'_, Control> {
        self.ctl.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        self.plane.now_ms()
    }

    /// Asks the daemon to stop.
    pub fn stop(&self) {
        self.shutdown.send_replace(true);
        self.plane.stop();
        self.vttif.stop();
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
        self.start_reporter()?;
        if let Some(addr) = self.cfg.metrics {
            let d = self.clone();
            tasks.spawn(async move { d.serve_metrics(addr).await });
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
                        self.plane.global.drop(DropReason::Unauthenticated);
                        continue;
                    };
                    let d = self.clone();
                    tokio::spawn(async move { d.connection(stream, peer, permit).await });
                }
            }
        }
        tracing::info!("shutting down");
        tasks.shutdown().await;
        for l in self.plane.links() {
            l.close();
        }
        Ok(())
    }

    /// Starts the VTTIF reporter on the data plane's matrix (kernel counts credited first).
    fn start_reporter(&self) -> io::Result<()> {
        let plane = self.plane.clone();
        let snapshot = Box::new(move || {
            plane.credit_fast_path();
            let (_, cells) = plane.matrix.snapshot(false);
            cells
                .into_iter()
                .map(|(src, dst, frames, bytes)| vnet_vttif::PairCount {
                    src,
                    dst,
                    frames,
                    bytes,
                })
                .collect()
        });
        crate::vttif::reporter::start(self.vttif.clone(), self.cfg.key.clone(), snapshot)
    }

    fn link(&self, peer: &str) -> Option<Arc<Link>> {
        self.plane.link(peer)
    }

    fn persisted(&self) -> Persisted {
        self.lock_ctl().persisted()
    }

    /// Applies changes atomically: stages them ([`Control::stage`]), makes them durable (the
    /// journal's append, as blocking work of this thread), then commits them and makes them live.
    /// Peer addresses are resolved before anything is locked; links are closed and dialers
    /// started after the lock is released. Changes take turns (`turn`), so nothing changes
    /// the tables between a batch's staging and its commit.
    pub async fn change(
        &self,
        changes: Vec<Change>,
        expect: Option<Expect>,
        persist: bool,
    ) -> Result<Changed, ErrorBody> {
        let resolved = resolve_peers(&changes).await;
        let _turn = self.turn.lock().await;
        let staged = self.lock_ctl().stage(&changes, expect.as_ref())?;
        if !staged.applied.changed() {
            return Ok(staged.applied.reply(&self.instance));
        }
        let compact = if persist {
            self.persist(staged.applied.generation, &changes).await?
        } else {
            false
        };
        let (reply, closed, opened) = {
            let mut ctl = self.lock_ctl();
            let applied = ctl.commit(staged);
            let (closed, opened) = self.make_live(&applied, &changes, &resolved);
            (applied.reply(&self.instance), closed, opened)
        };
        if compact {
            // Still this batch's turn: no later append can come before the new snapshot.
            if let Err(e) = self.store.save(&self.persisted()) {
                tracing::warn!("compacting the tables' journal: {e}");
            }
        }
        for old in closed {
            old.close();
        }
        for l in opened {
            self.spawn_dialer(l);
        }
        Ok(reply)
    }

    /// Appends a staged batch to the journal (durable before it is acknowledged); whether the
    /// journal is due for compaction. On failure nothing has changed.
    async fn persist(&self, generation: u64, changes: &[Change]) -> Result<bool, ErrorBody> {
        let saved = match crate::store::journal_line(generation, changes) {
            Ok(line) => self.store.append(&line),
            Err(e) => Err(e),
        };
        saved.map_err(|err| ErrorBody {
            code: ErrorCode::Internal,
            message: format!("could not save the tables (nothing changed): {err}"),
        })
    }

    /// Brings the live links and the engine in step with applied changes: links first (their
    /// ports), then the rules, in one engine update. Returns the links to close and the links
    /// opened.
    fn make_live(
        &self,
        applied: &Applied,
        changes: &[Change],
        resolved: &HashMap<String, SocketAddr>,
    ) -> (Vec<Arc<Link>>, Vec<Arc<Link>>) {
        let me = &self.cfg.name;
        let close: Vec<&str> = applied.close.iter().filter_map(|k| k.peer_of(me)).collect();
        let opened: Vec<Arc<Link>> = applied
            .open
            .iter()
            .filter_map(|spec| {
                let addr = resolved.get(&spec.peer_addr).copied();
                Link::new(spec.clone(), me, addr, self.plane.on_link_change()).map(Arc::new)
            })
            .collect();
        let closed = self.plane.update_links(&close, &opened, |e| {
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

/// The saved tables, unless `--fresh`; refused when they belong to another daemon.
fn load_saved(cfg: &Config, store: &Store) -> io::Result<Option<Persisted>> {
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
    Ok(saved)
}

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

/// Starts a daemon and serves until `stop` resolves or a Shutdown request arrives.
pub async fn run(
    cfg: Config,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let (d, listener) = Daemon::start(cfg).await?;
    let d2 = d.clone();
    let watch = tokio::spawn(async move {
        stop.await;
        d2.stop();
    });
    let served = d.serve(listener).await;
    // Served to the end by a Shutdown request: the stop signal's watcher has nothing left to do.
    watch.abort();
    served
}
