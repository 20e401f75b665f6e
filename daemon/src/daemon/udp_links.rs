//! UDP links: the handshake driven from datagrams (the sans-IO machine in
//! `link::handshake`), keepalives, resets after a listener restart, and the dialer.

use super::*;
use crate::link::msg::{LinkCookie, LinkReset};
use vnet_seal::Header;

const UDP_KEEPALIVE: Duration = Duration::from_millis(500);
const UDP_DEAD_MS: u64 = 2500;
const UDP_LISTENER_DEAD_MS: u64 = 10_000;
/// How long a dialer uses a listener's cookie (its secret lasts this long, and one more).
const COOKIE_LIFETIME: Duration = Duration::from_nanos(vnet_seal::cookie::SECRET_LIFETIME_NS);

impl Daemon {
    fn udp_send(&self, msg: &LinkMsg, to: SocketAddr) {
        self.plane.udp.send_control(&msg.encode(), to);
    }

    /// A frame or keepalive from an address without a session: if it is the address of a
    /// configured UDP link's peer, tell it to say hello again (a restarted listener). A record
    /// (`answered`: its header) is answered with a reset the static keys authenticate.
    fn maybe_reset(&self, from: SocketAddr, answered: Option<Header>) {
        let link = self
            .plane
            .links()
            .into_iter()
            .find(|l| l.transport == Transport::Udp && l.peer_addr == Some(from));
        if let Some(l) = link {
            let reset = self.seal.reset(&l, &self.cfg.name, answered);
            self.udp_send(&LinkMsg::Reset(reset), from);
        }
    }

    pub(super) fn listener(&self) -> Listener<'_> {
        Listener {
            me: &self.cfg.name,
            key: &self.cfg.key,
        }
    }

    /// A UDP link control message (handshakes, keepalives, resets) from `from`; `sealed`: it
    /// came in a record of the session with `from` (keepalives on a sealed link must).
    fn udp_control(&self, msg: &[u8], from: SocketAddr, sealed: bool) {
        let msg = match LinkMsg::decode(msg) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(%from, "{e}");
                return self.plane.global.drop(DropReason::Malformed);
            }
        };
        let clear_on_sealed = !sealed && self.udp_peer(from).is_some_and(|l| l.is_sealed());
        let done = match msg {
            LinkMsg::Keepalive(_) | LinkMsg::KeepaliveAck(_) if clear_on_sealed => {
                return self.plane.global.drop(DropReason::Downgrade)
            }
            LinkMsg::Hello(h) => self.udp_hello(&h, from),
            LinkMsg::Challenge(c) => self.udp_challenge(&c, from),
            LinkMsg::Proof(p) => self.udp_proof(&p, from),
            LinkMsg::Ready(n) => self.udp_ready(&n, from),
            LinkMsg::Keepalive(n) => {
                self.udp_keepalive(&n, from);
                Ok(())
            }
            LinkMsg::KeepaliveAck(n) => {
                if let Some(l) = self.udp_peer(from) {
                    l.last_rx.store(self.now_ms(), Ordering::Relaxed);
                    if let Some(at) = n.sent_us {
                        l.passive.answered(at);
                    }
                }
                Ok(())
            }
            LinkMsg::Reset(r) => self.udp_reset(&r, from),
            LinkMsg::Cookie(c) => self.udp_cookie(&c, from),
            // A rekey request counts only sealed (the forwarding thread takes those).
            LinkMsg::Refused(_) | LinkMsg::Rekey(_) => {
                return self.plane.global.drop(DropReason::Malformed)
            }
        };
        if let Err(why) = done {
            tracing::debug!(%from, "UDP link handshake refused: {why}");
            self.plane.global.drop(why.drop_reason());
        }
    }

    /// The UDP link with `peer` that this daemon dials (`dials`) or listens for.
    fn udp_link(&self, peer: &str, dials: bool) -> Result<Arc<Link>, Refused> {
        self.link(peer)
            .filter(|l| l.dials == dials && l.transport == Transport::Udp)
            .ok_or_else(|| Refused::UnknownPeer(format!("no UDP link with {peer} here")))
    }

    fn udp_peer(&self, from: SocketAddr) -> Option<Arc<Link>> {
        self.plane.udp_session_link(from)
    }

    fn udp_hello(&self, h: &LinkHello, from: SocketAddr) -> Result<(), Refused> {
        let link = self.link(&h.from);
        let configured = link.as_ref().map(|l| Configured {
            transport: l.transport,
            dials: l.dials,
        });
        let nonce = auth::random_bytes::<32>();
        let (mut c, state) =
            self.listener()
                .on_hello(h, Transport::Udp, from, configured, nonce)?;
        // on_hello refuses links not configured here, so there is one.
        let link = link.ok_or(Refused::Stale)?;
        let keys = match self.seal.answer(&link, h, from, Transport::Udp) {
            Err(Refused::Busy(cookie)) => {
                let c = LinkCookie {
                    from: self.cfg.name.clone(),
                    echo: h.nonce.clone(),
                    cookie: hex(&cookie),
                };
                self.udp_send(&LinkMsg::Cookie(c), from);
                return Err(Refused::Busy(cookie));
            }
            keys => keys?,
        };
        let mut hs = link.hs();
        hs.listener = Some(state);
        (hs.listener_keys, c.noise) = keys.map(|(e, r)| (Some(e), Some(r))).unwrap_or_default();
        drop(hs);
        self.udp_send(&LinkMsg::Challenge(c), from);
        Ok(())
    }

    fn udp_challenge(&self, c: &LinkChallenge, from: SocketAddr) -> Result<(), Refused> {
        let link = self.udp_link(&c.from, true)?;
        let proof = {
            let mut hs = link.hs();
            let d = hs.dialer.as_mut().ok_or(Refused::Stale)?;
            let proof = d.on_challenge(&self.cfg.key, c, from)?;
            let init = hs.initiator.take();
            hs.dialer_keys = self.seal.finish(init, c.noise.as_deref())?;
            proof
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
            link.install(hs.listener_keys.take(), &self.seal.policy);
            ready
        };
        self.plane.udp_session_up(&link, from);
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
            link.install(hs.dialer_keys.take(), &self.seal.policy);
        }
        self.plane.udp_session_up(&link, from);
        Ok(())
    }

    fn udp_keepalive(&self, n: &LinkNote, from: SocketAddr) {
        match self.udp_peer(from) {
            Some(l) => {
                l.last_rx.store(self.now_ms(), Ordering::Relaxed);
                let note = LinkNote {
                    sent_us: n.sent_us,
                    ..LinkNote::new(&self.cfg.name, "")
                };
                let ack = LinkMsg::KeepaliveAck(note).encode();
                if let Some(ack) = l.seal_message(&ack) {
                    self.plane.send_control_to(&l.peer, ack, from);
                }
            }
            None => self.maybe_reset(from, None),
        }
    }

    /// The listener has no session with us (it restarted). A clear link goes down and the
    /// dialer says hello; a sealed one takes only a reset the static keys authenticate, for a
    /// record of its current keys, and answers it with a new handshake (the link stays up
    /// meanwhile, so a replayed reset costs a handshake, never the link).
    fn udp_reset(&self, r: &LinkReset, from: SocketAddr) -> Result<(), Refused> {
        let Some(l) = self
            .link(&r.from)
            .filter(|l| l.dials && l.udp_remote() == Some(from))
        else {
            return Ok(());
        };
        if !l.is_sealed() {
            self.plane
                .udp_session_down(&l, "peer has no session (restarted?)");
            return Ok(());
        }
        if !self.seal.check_reset(&l, r) {
            return Err(Refused::WrongKey);
        }
        if l.ask_rekey() {
            tracing::info!(link = %l.peer, "peer has no session (restarted?): new handshake");
            self.udp_say_hello(&l, from);
        }
        Ok(())
    }

    /// A busy listener's cookie for our hello: kept, and the hello retried with it at once
    /// (unless the hello it answers carried a cookie already: then the dialer's own retry
    /// sends the new one).
    fn udp_cookie(&self, c: &LinkCookie, from: SocketAddr) -> Result<(), Refused> {
        let link = self.udp_link(&c.from, true)?;
        let retry = {
            let mut hs = link.hs();
            let d = hs.dialer.as_ref().ok_or(Refused::Stale)?;
            if !d.sent_nonce(&c.echo) {
                return Err(Refused::Stale);
            }
            hs.cookie = Some((c.cookie.clone(), std::time::Instant::now()));
            !hs.cookie_sent
        };
        if retry {
            self.udp_say_hello(&link, from);
        }
        Ok(())
    }

    /// Handles UDP link control messages in order (handshakes, keepalives, resets).
    pub(super) async fn udp_ctl(self: Arc<Daemon>, mut rx: tokio::sync::mpsc::Receiver<UdpCtl>) {
        let mut stop = self.stopping();
        loop {
            let m = tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                m = rx.recv() => m,
            };
            match m {
                Some(UdpCtl::Msg(msg, from)) => self.udp_control(&msg, from, false),
                Some(UdpCtl::Sealed(msg, from)) => self.udp_control(&msg, from, true),
                Some(UdpCtl::NoSession(from, answered)) => self.maybe_reset(from, answered),
                None => return,
            }
        }
    }

    /// The dialer of a UDP link: hello until a session is up, then keepalives.
    pub(super) async fn udp_dialer(self: Arc<Daemon>, link: Arc<Link>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if link.is_closed() {
                return;
            }
            if link.is_up() {
                tokio::time::sleep(UDP_KEEPALIVE).await;
                if link.needs_rekey(&self.seal.policy) {
                    if let Some(r) = link.udp_remote() {
                        self.udp_say_hello(&link, r);
                    }
                }
                let now = self.now_ms();
                if now.saturating_sub(link.last_rx.load(Ordering::Relaxed)) > UDP_DEAD_MS {
                    self.plane.udp_session_down(&link, "no keepalive answer");
                    continue;
                }
                if let Some(r) = link.udp_remote() {
                    self.send_keepalive(&link, r);
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
                self.udp_say_hello(&link, to);
            }
            let woken = link.wake.notified();
            let _ = tokio::time::timeout(backoff, woken).await;
            if !link.is_up() {
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }

    /// A keepalive stamped for the passive estimate, through the emulated underlay.
    fn send_keepalive(&self, link: &Link, to: SocketAddr) {
        let at = crate::link::estimate::now_us();
        link.passive.sent(at);
        let msg = LinkMsg::Keepalive(LinkNote::stamped(&self.cfg.name, at)).encode();
        if let Some(msg) = link.seal_message(&msg) {
            self.plane.send_control_to(&link.peer, msg, to);
        }
    }

    /// A listener whose keys are due asks its dialer for a handshake (only dialers start
    /// them: they may be behind NAT, and a TCP rekey is a new connection), sealed, every
    /// housekeeping round until new keys are in use.
    fn ask_for_rekey(&self, l: &Link) {
        let msg = LinkMsg::Rekey(LinkNote::new(&self.cfg.name, "keys due")).encode();
        match l.transport {
            Transport::Udp => {
                if let (Some(to), Some(m)) = (l.udp_remote(), l.seal_message(&msg)) {
                    self.plane.send_control_to(&l.peer, m, to);
                }
            }
            Transport::Tcp => {
                l.send_tcp_control(&msg);
            }
        }
    }

    /// Starts a handshake (a link's first, or a rekey while it is up): HELLO with the Noise
    /// first message.
    fn udp_say_hello(&self, link: &Link, to: SocketAddr) {
        let noise = match self.seal.offer(link) {
            Ok(n) => n,
            Err(why) => {
                tracing::warn!(link = %link.peer, "cannot start the link handshake: {why}");
                return;
            }
        };
        let nonce = auth::random_bytes::<32>();
        let d = Dialer::new(&self.cfg.name, &link.peer, Transport::Udp, nonce);
        let mut hello = d.hello();
        let mut hs = link.hs();
        hs.dialer = Some(d);
        hello.cookie = hs
            .cookie
            .as_ref()
            .filter(|(_, at)| at.elapsed() < COOKIE_LIFETIME)
            .map(|(c, _)| c.clone());
        hs.cookie_sent = hello.cookie.is_some();
        (hs.initiator, hello.noise) = noise.map(|(i, m)| (Some(i), Some(m))).unwrap_or_default();
        drop(hs);
        self.udp_send(&LinkMsg::Hello(hello), to);
    }

    /// Marks listener-side UDP sessions dead after a silence, and sends their keepalives
    /// (for the listener's own estimate); asks the dialer of any link whose listener-side keys
    /// are due for a new handshake; runs forever.
    pub(super) async fn housekeeping(self: Arc<Daemon>) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.now_ms();
            let links = self.plane.links();
            for l in links {
                if !l.dials && l.is_up() && l.is_sealed() && l.needs_rekey(&self.seal.policy) {
                    self.ask_for_rekey(&l);
                }
                if l.transport == Transport::Udp
                    && !l.dials
                    && l.is_up()
                    && now.saturating_sub(l.last_rx.load(Ordering::Relaxed)) > UDP_LISTENER_DEAD_MS
                {
                    self.plane.udp_session_down(&l, "peer silent");
                } else if l.transport == Transport::Udp && !l.dials && l.is_up() {
                    if let Some(r) = l.udp_remote() {
                        self.send_keepalive(&l, r);
                    }
                }
            }
        }
    }
}
