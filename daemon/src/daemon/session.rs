//! Control connections: telling a control connection from a link, the authenticated
//! session, and the answers to read requests (status, lists, stats).

use super::tcp_links::tune_tcp;
use super::*;

impl Daemon {
    pub(super) async fn connection(
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
                self.plane.global.drop(DropReason::Malformed);
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
            _ => self.plane.global.drop(DropReason::Malformed),
        }
    }

    async fn control_session(
        self: &Arc<Daemon>,
        mut stream: TcpStream,
        first: Vec<u8>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> io::Result<()> {
        if !self.authenticate(&mut stream, &first).await? {
            return Ok(());
        }
        drop(permit);
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        // However the session ends, a lease it holds goes with it.
        let _lease = crate::lease::SessionLease {
            leases: &self.leases,
            session,
        };
        self.requests(&mut stream, session).await
    }

    /// The control handshake (`vnet_proto::control`); whether the client proved it holds
    /// the key (a refusal has been answered).
    async fn authenticate(&self, stream: &mut TcpStream, first: &[u8]) -> io::Result<bool> {
        let refuse = |code, message: &str| HandshakeError {
            error: ErrorBody {
                code,
                message: message.to_string(),
            },
        };
        let hello: ClientHello = match serde_json::from_slice(first) {
            Ok(h) => h,
            Err(e) => {
                self.plane.global.drop(DropReason::Malformed);
                let why = format!("bad hello: {e}");
                send_json(stream, &refuse(ErrorCode::Malformed, &why)).await?;
                return Ok(false);
            }
        };
        if hello.protocol != "vnet-control" || hello.version != PROTOCOL_VERSION {
            let msg = format!("this daemon speaks vnet-control version {PROTOCOL_VERSION}");
            send_json(stream, &refuse(ErrorCode::Version, &msg)).await?;
            return Ok(false);
        }
        let Some(client_nonce) = unhex(&hello.client_nonce).filter(|n| n.len() >= 16) else {
            send_json(stream, &refuse(ErrorCode::Malformed, "bad client nonce")).await?;
            return Ok(false);
        };
        let server_nonce = auth::random_bytes::<32>();
        let sh = ServerHello {
            version: PROTOCOL_VERSION,
            server_nonce: hex(&server_nonce),
            daemon: self.cfg.name.clone(),
            instance: self.instance.clone(),
        };
        send_json(stream, &sh).await?;
        let mut buf = Vec::new();
        tokio::time::timeout(HANDSHAKE_TIMEOUT, read_frame(stream, &mut buf, 64 << 10))
            .await
            .map_err(|_| invalid("auth timed out"))??;
        let ok = serde_json::from_slice::<ClientAuth>(&buf).is_ok_and(|a| {
            let parts: [&[u8]; 2] = [&server_nonce, &client_nonce];
            self.cfg.key.verify(auth::CONTROL_CLIENT, &parts, &a.proof)
        });
        if !ok {
            self.plane.global.drop(DropReason::Unauthenticated);
            send_json(stream, &refuse(ErrorCode::Auth, "authentication failed")).await?;
            return Ok(false);
        }
        let proof = self
            .cfg
            .key
            .sign(auth::CONTROL_SERVER, &[&client_nonce, &server_nonce]);
        send_json(stream, &ServerAuth { proof: hex(&proof) }).await?;
        Ok(true)
    }

    /// Answers an authenticated session's requests, in order, until it ends.
    async fn requests(self: &Arc<Daemon>, stream: &mut TcpStream, session: u64) -> io::Result<()> {
        // Buffered, a frame's length and body come in one read (a report is ~7 KB).
        let stream = &mut tokio::io::BufReader::with_capacity(16 << 10, stream);
        let mut buf = Vec::new();
        let mut stop = self.stopping();
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                r = read_frame(stream, &mut buf, MAX_CONTROL_FRAME) => r?,
            }
            // A report is checked and queued for the view's thread, never waited for: the
            // reply says it was taken (or why not) without a second thread's wake-up.
            if vnet_proto::report::is_report(&buf) {
                let (id, taken) = self.vttif.ingest_frame(&buf);
                let reply = match taken {
                    Ok(()) => Reply::Ok(Response::Reported),
                    Err(error) => Reply::Error(error),
                };
                send_json(stream, &ReplyEnvelope { id, reply }).await?;
                continue;
            }
            let (id, reply, shutdown) = match serde_json::from_slice::<RequestEnvelope>(&buf) {
                Ok(env) => {
                    let shutdown = env.request == Request::Shutdown;
                    let reply = self.handle(env.request, session).await;
                    (env.id, reply, shutdown)
                }
                Err(e) => {
                    self.plane.global.drop(DropReason::Malformed);
                    let value = serde_json::from_slice::<serde_json::Value>(&buf).ok();
                    let id = value
                        .as_ref()
                        .and_then(|v| v.get("id").and_then(|i| i.as_u64()))
                        .unwrap_or(0);
                    let error = ErrorBody {
                        code: ErrorCode::Malformed,
                        message: e.to_string(),
                    };
                    (id, Reply::Error(error), false)
                }
            };
            send_json(stream, &ReplyEnvelope { id, reply }).await?;
            if shutdown {
                let _ = stream.flush().await;
                self.stop();
                return Ok(());
            }
        }
    }

    // ---------------------------------------------------------------- control

    /// Answers one request.
    async fn handle(self: &Arc<Daemon>, request: Request, session: u64) -> Reply {
        let locked = |message| ErrorBody {
            code: ErrorCode::Locked,
            message,
        };
        // Counters the kernel fast path kept are credited before anything is read.
        self.plane.credit_fast_path();
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
            Request::TrafficMatrix { reset } => Ok(Response::TrafficMatrix(self.traffic(reset))),
            Request::Shutdown => Ok(Response::ShuttingDown),
            Request::SetProxy { proxy } => self
                .vttif
                .set_proxy(proxy)
                .map(|changed| Response::ProxySet { changed }),
            Request::Infer {
                window_ms,
                threshold_ppm,
            } => {
                let bound = self.lock_ctl().bound().unwrap_or(0);
                let v = self.vttif.clone();
                blocking(move || v.infer(window_ms, threshold_ppm, bound)).map(Response::Inferred)
            }
            Request::Vttif => Ok(Response::Vttif(self.vttif.state())),
            Request::SetUnderlay { peers } => self.set_underlay(peers),
            Request::ProbeServe {
                peer,
                token,
                ttl_ms,
            } => self.probe_serve(&peer, &token, ttl_ms),
            Request::Probe {
                peer,
                addr,
                token,
                duration_ms,
            } => self.probe(&peer, &addr, &token, duration_ms).await,
        };
        match r {
            Ok(r) => Reply::Ok(r),
            Err(e) => Reply::Error(e),
        }
    }

    fn traffic(&self, reset: bool) -> TrafficMatrix {
        let (window_ms, cells) = self.plane.matrix.snapshot(reset);
        TrafficMatrix {
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
        }
    }

    fn set_underlay(&self, peers: BTreeMap<String, Shape>) -> Result<Response, ErrorBody> {
        self.plane
            .set_underlay(peers)
            .map(|()| Response::Underlay(self.plane.underlay.state().unwrap_or_default()))
            .map_err(|message| ErrorBody {
                code: ErrorCode::Invalid,
                message,
            })
    }

    fn status(&self) -> Status {
        let ctl = self.lock_ctl();
        let links = self.plane.links();
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
            links_up: links.iter().filter(|l| l.is_up()).count(),
            rules: ctl.rules().len(),
            lease: self.leases.current(),
            fast_path: Some(self.fast_path.clone()),
            underlay: self.plane.underlay.state(),
            public_key: Some(self.seal.keys.public.to_string()),
            insecure_links: self.seal.insecure,
            forward_cpu: self.cfg.forward_cpu,
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

    pub(super) fn link_infos(&self) -> Vec<LinkInfo> {
        let ctl = self.lock_ctl();
        let links: std::collections::HashMap<String, _> = self
            .plane
            .links()
            .into_iter()
            .map(|l| (l.peer.clone(), l))
            .collect();
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
                    estimate: l.estimate(),
                    security: l.security(),
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

    pub(super) fn stats(&self) -> Stats {
        let generation = self.lock_ctl().generation();
        let (hits, misses) = *self.plane.lookups.lock().unwrap_or_else(|e| e.into_inner());
        let mut drops: BTreeMap<String, u64> = self.plane.global.snapshot().drops;
        // Frames dropped because no rule matched are also summed here over all ports.
        let mut no_rule = 0;
        for i in &self.plane.ifaces {
            no_rule += i.stats.drops(DropReason::NoRule);
        }
        let links: Vec<_> = {
            let l = self.plane.links();
            let mut v: Vec<_> = l
                .iter()
                .map(|l| (l.peer.clone(), l.stats.snapshot()))
                .collect();
            no_rule += l
                .iter()
                .map(|l| l.stats.drops(DropReason::NoRule))
                .sum::<u64>();
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
            link_estimates: self
                .plane
                .links()
                .iter()
                .filter_map(|l| Some((l.peer.clone(), l.estimate()?)))
                .collect(),
            underlay: self.plane.underlay.state(),
            probe_garbage: self.plane.underlay.probe_garbage.get(),
        }
    }
}

async fn send_json(
    w: &mut (impl AsyncWriteExt + Unpin),
    msg: &impl serde::Serialize,
) -> io::Result<()> {
    let text = serde_json::to_vec(msg).map_err(io::Error::other)?;
    write_msg(w, &text).await
}
