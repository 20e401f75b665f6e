//! TCP links: the dialer (reconnecting with backoff), the acceptor's handshake, and the
//! hand-over of a connection whose handshake is done to the forwarding thread.

use super::*;

impl Daemon {
    pub(super) async fn tcp_dialer(self: Arc<Daemon>, link: Arc<Link>) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if link.is_closed() {
                return;
            }
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.tcp_dial(&link)).await {
                Ok(Ok((reader, writer, remote, keys))) => {
                    backoff = BACKOFF_MIN;
                    link.install(keys, &self.seal.policy);
                    // The connection goes to a forwarding thread; wait until it ends, or
                    // until its keys are due for renewal: a new connection with a new
                    // handshake then replaces it.
                    match self.tcp_link_up(&link, reader, writer, remote) {
                        Ok(ended) => {
                            if self.tcp_until_rekey(&link, ended).await {
                                continue;
                            }
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

    /// Waits until a TCP link connection ends (false) or its keys are due (true).
    async fn tcp_until_rekey(
        &self,
        link: &Link,
        ended: tokio::sync::oneshot::Receiver<()>,
    ) -> bool {
        let mut ended = std::pin::pin!(ended);
        loop {
            tokio::select! {
                _ = &mut ended => return false,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if link.needs_rekey(&self.seal.policy) {
                        return true;
                    }
                }
            }
        }
    }

    async fn tcp_dial(
        &self,
        link: &Link,
    ) -> io::Result<(
        BufReader<tokio::net::tcp::OwnedReadHalf>,
        tokio::net::tcp::OwnedWriteHalf,
        SocketAddr,
        Option<vnet_seal::Established>,
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
        let (init, noise) = self
            .seal
            .offer(link)
            .map_err(|why| invalid(&why.to_string()))?
            .unzip();
        let nonce = auth::random_bytes::<32>();
        let mut d = Dialer::new(&self.cfg.name, &link.peer, Transport::Tcp, nonce);
        let mut hello = d.hello();
        hello.noise = noise;
        write_msg(&mut w, &LinkMsg::Hello(hello).encode()).await?;
        let mut buf = Vec::new();
        let LinkMsg::Challenge(c) = read_link_msg(&mut r, &mut buf).await? else {
            return Err(invalid("expected the link challenge"));
        };
        let proof = d
            .on_challenge(&self.cfg.key, &c, to)
            .map_err(|why| invalid(&why.to_string()))?;
        let keys = self
            .seal
            .finish(init, c.noise.as_deref())
            .map_err(|why| invalid(&why.to_string()))?;
        write_msg(&mut w, &LinkMsg::Proof(proof).encode()).await?;
        let LinkMsg::Ready(ready) = read_link_msg(&mut r, &mut buf).await? else {
            return Err(invalid("expected the link to be ready"));
        };
        d.on_ready(&ready, to)
            .map_err(|why| invalid(&why.to_string()))?;
        Ok((r, w, to, keys))
    }

    /// The listener's side of a TCP link handshake; `first` is the HELLO message.
    pub(super) async fn tcp_accept_link(
        self: Arc<Daemon>,
        stream: TcpStream,
        peer: SocketAddr,
        first: Vec<u8>,
    ) -> io::Result<()> {
        let (r, mut w) = stream.into_split();
        let mut r = BufReader::with_capacity(256 << 10, r);
        let Ok(LinkMsg::Hello(hello)) = LinkMsg::decode(&first) else {
            self.plane.global.drop(DropReason::Malformed);
            return Err(invalid("not a link hello"));
        };
        let link = self.link(&hello.from);
        let configured = link.as_ref().map(|l| Configured {
            transport: l.transport,
            dials: l.dials,
        });
        let nonce = auth::random_bytes::<32>();
        let l = self.listener();
        let answered = match (
            l.on_hello(&hello, Transport::Tcp, peer, configured, nonce),
            link,
        ) {
            (Ok((c, state)), Some(link)) => self
                .seal
                .answer(&link, &hello, peer, Transport::Tcp)
                .map(|keys| (c, state, link, keys)),
            (Ok(_), None) => Err(Refused::Stale),
            (Err(why), _) => Err(why),
        };
        let (mut challenge, state, link, keys) = match answered {
            Ok(a) => a,
            Err(refused) => {
                self.plane.global.drop(refused.drop_reason());
                let why = refused.to_string();
                let note = LinkNote::new(&self.cfg.name, &why);
                let _ = write_msg(&mut w, &LinkMsg::Refused(note).encode()).await;
                return Err(invalid(&why));
            }
        };
        let (keys, noise) = keys.unzip();
        challenge.noise = noise;
        write_msg(&mut w, &LinkMsg::Challenge(challenge).encode()).await?;
        let mut buf = Vec::new();
        let proof = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_link_msg(&mut r, &mut buf))
            .await
            .map_err(|_| invalid("handshake timed out"))??;
        let LinkMsg::Proof(proof) = proof else {
            return Err(invalid("expected the link proof"));
        };
        let ready = state.on_proof(&l, &proof, peer).map_err(|why| {
            self.plane.global.drop(DropReason::Unauthenticated);
            invalid(&why.to_string())
        })?;
        write_msg(&mut w, &LinkMsg::Ready(ready).encode()).await?;
        link.install(keys, &self.seal.policy);
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
}

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

pub(super) fn tune_tcp(s: &TcpStream) {
    let _ = s.set_nodelay(true);
    let sock = socket2::SockRef::from(s);
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(5))
        .with_interval(Duration::from_secs(2))
        .with_retries(3);
    let _ = sock.set_tcp_keepalive(&ka);
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
