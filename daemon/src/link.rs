//! Overlay links: state shared between the control plane, the dialer and the receivers.

use crate::proto::LinkSpec;
use crate::stats::{Counter, Drop, PortStats};
use crate::wire::FrameBuf;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use vnet_grammar::ast::Transport;

/// Handshake messages (JSON bodies of HELLO, CHALLENGE, PROOF, READY, REFUSED).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkHello {
    pub from: String,
    pub to: String,
    pub transport: Transport,
    pub nonce: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkChallenge {
    pub from: String,
    pub nonce: String,
    pub proof: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkProof {
    pub from: String,
    pub proof: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkNote {
    pub from: String,
    #[serde(default)]
    pub reason: String,
}

/// UDP handshake state.
#[derive(Default)]
pub struct Handshake {
    /// Dialer: the nonce of the HELLO in flight.
    pub dialer_nonce: Option<[u8; 32]>,
    /// Dialer: the listener answered our challenge from here; waiting for READY.
    pub dialer_awaiting: Option<SocketAddr>,
    /// Listener: a challenge sent to this address (dialer nonce, listener nonce).
    pub listener: Option<(SocketAddr, [u8; 32], [u8; 32])>,
}

pub struct Link {
    pub spec: LinkSpec,
    pub peer: String,
    pub me: String,
    pub dials: bool,
    pub transport: Transport,
    /// The peer's address, resolved when the link was installed.
    pub peer_addr: Option<SocketAddr>,
    pub stats: PortStats,
    pub connects: Counter,
    up: AtomicBool,
    session: AtomicU64,
    tcp_tx: tokio::sync::Mutex<Option<(u64, OwnedWriteHalf)>>,
    udp_remote: Mutex<Option<SocketAddr>>,
    remote: Mutex<Option<SocketAddr>>,
    /// Milliseconds (daemon clock) of the last message received.
    pub last_rx: AtomicU64,
    pub hs: Mutex<Handshake>,
    tasks: Mutex<Vec<AbortHandle>>,
    closed: AtomicBool,
    /// Woken when the link goes down or up, or is deleted.
    pub wake: Notify,
}

impl Link {
    pub fn new(spec: LinkSpec, me: &str) -> Option<Link> {
        let peer = spec.peer_of(me)?.to_string();
        let peer_addr = std::net::ToSocketAddrs::to_socket_addrs(&spec.peer_addr)
            .ok()
            .and_then(|mut a| a.next());
        Some(Link {
            dials: spec.link.dialer == me,
            transport: spec.link.transport,
            peer,
            me: me.to_string(),
            spec,
            peer_addr,
            stats: PortStats::default(),
            connects: Counter::default(),
            up: AtomicBool::new(false),
            session: AtomicU64::new(0),
            tcp_tx: tokio::sync::Mutex::new(None),
            udp_remote: Mutex::new(None),
            remote: Mutex::new(None),
            last_rx: AtomicU64::new(0),
            hs: Mutex::new(Handshake::default()),
            tasks: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            wake: Notify::new(),
        })
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
    /// any older one). Returns the new session number.
    pub async fn tcp_up(&self, writer: OwnedWriteHalf, remote: SocketAddr) -> u64 {
        let session = self.session.fetch_add(1, Ordering::AcqRel) + 1;
        *self.tcp_tx.lock().await = Some((session, writer));
        *self.remote.lock().unwrap_or_else(|e| e.into_inner()) = Some(remote);
        self.up.store(true, Ordering::Release);
        self.connects.inc();
        self.wake.notify_waiters();
        tracing::info!(link = %self.peer, %remote, "TCP link up");
        session
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
        self.wake.notify_waiters();
        session
    }

    /// The session `session` ended (only if it is still the current one).
    pub async fn down(&self, session: u64, why: &str) {
        if self.session() != session {
            return;
        }
        let mut tx = self.tcp_tx.lock().await;
        if self.session() != session {
            return;
        }
        if self.up.swap(false, Ordering::AcqRel) {
            tracing::info!(link = %self.peer, "link down: {why}");
        }
        *tx = None;
        *self.udp_remote.lock().unwrap_or_else(|e| e.into_inner()) = None;
        *self.remote.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.wake.notify_waiters();
    }

    /// The link was deleted: stop its tasks and close its connection.
    pub async fn close(&self) {
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
        self.down(s, "deleted").await;
        self.session.fetch_add(1, Ordering::AcqRel);
        self.wake.notify_waiters();
    }

    /// Sends a frame over a TCP link.
    pub async fn send_tcp(&self, fb: &mut FrameBuf, hop: u8) {
        let len = fb.len;
        let mut guard = self.tcp_tx.lock().await;
        let Some((session, w)) = guard.as_mut() else {
            self.stats.drop(Drop::LinkDown);
            return;
        };
        let session = *session;
        match w.write_all(fb.tcp_message(hop)).await {
            Ok(()) => self.stats.tx(len),
            Err(e) => {
                self.stats.drop(Drop::SendError);
                drop(guard);
                self.down(session, &format!("send failed: {e}")).await;
            }
        }
    }

    /// Sends a control message (already framed with its link header) over a TCP link.
    pub async fn send_tcp_control(&self, msg: &[u8]) -> bool {
        let mut guard = self.tcp_tx.lock().await;
        let Some((_, w)) = guard.as_mut() else {
            return false;
        };
        let mut out = Vec::with_capacity(4 + msg.len());
        out.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        out.extend_from_slice(msg);
        w.write_all(&out).await.is_ok()
    }
}
