//! The client of the control protocol (blocking; one TCP connection per [`Client`]).
//!
//! ```no_run
//! use vnet_proto::{Client, Key};
//! let key = Key::load("control.key".as_ref())?;
//! let mut c = Client::connect("127.0.0.2:7000", &key)?;
//! let generation = c.status()?.generation;
//! println!("{} at generation {generation}", c.daemon());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::auth::{self, hex, Key};
use crate::control::*;
use crate::framing::{read_frame, write_frame};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::io;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;
use vnet_grammar::model::{LinkKey, RuleDef};

/// What can go wrong talking to a daemon.
#[derive(Debug)]
pub enum ClientError {
    /// Connecting, reading or writing failed.
    Io(io::Error),
    /// The daemon answered with an error.
    Daemon(ErrorBody),
    /// The daemon sent something this client does not understand, or failed to prove it
    /// holds the key.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "{e}"),
            ClientError::Daemon(e) => write!(f, "daemon refused ({:?}): {}", e.code, e.message),
            ClientError::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl ClientError {
    /// The daemon's error code, when the daemon refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Daemon(body) => Some(body.code),
            _ => None,
        }
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An authenticated control connection to one daemon.
pub struct Client {
    stream: TcpStream,
    next_id: u64,
    daemon: String,
    instance: String,
    buf: Vec<u8>,
}

impl Client {
    /// Connects and authenticates (10 s timeout for each step).
    pub fn connect(addr: impl ToSocketAddrs, key: &Key) -> Result<Client> {
        Client::connect_timeout(addr, key, Duration::from_secs(10))
    }

    /// Connects and authenticates, waiting at most `timeout` for each step.
    pub fn connect_timeout(
        addr: impl ToSocketAddrs,
        key: &Key,
        timeout: Duration,
    ) -> Result<Client> {
        let addrs: Vec<SocketAddr> = addr.to_socket_addrs()?.collect();
        let mut last = io::Error::new(io::ErrorKind::InvalidInput, "no address to connect to");
        for a in addrs {
            match TcpStream::connect_timeout(&a, timeout) {
                Ok(stream) => return Client::handshake(stream, key, timeout),
                Err(e) => last = e,
            }
        }
        Err(ClientError::Io(last))
    }

    fn handshake(stream: TcpStream, key: &Key, timeout: Duration) -> Result<Client> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut c = Client {
            stream,
            next_id: 1,
            daemon: String::new(),
            instance: String::new(),
            buf: Vec::new(),
        };
        let client_nonce = auth::random_bytes::<32>();
        c.send(&ClientHello {
            protocol: "vnet-control".into(),
            version: PROTOCOL_VERSION,
            client_nonce: hex(&client_nonce),
        })?;
        let hello: ServerHello = c.recv_or_error()?;
        let server_nonce = auth::unhex(&hello.server_nonce)
            .ok_or_else(|| ClientError::Protocol("bad server nonce".into()))?;
        let proof = key.sign(auth::CONTROL_CLIENT, &[&server_nonce, &client_nonce]);
        c.send(&ClientAuth { proof: hex(&proof) })?;
        let server: ServerAuth = c.recv_or_error()?;
        if !key.verify(
            auth::CONTROL_SERVER,
            &[&client_nonce, &server_nonce],
            &server.proof,
        ) {
            return Err(ClientError::Protocol(
                "the daemon could not prove it holds the control key".into(),
            ));
        }
        c.daemon = hello.daemon;
        c.instance = hello.instance;
        Ok(c)
    }

    fn send(&mut self, msg: &impl Serialize) -> Result<()> {
        let text = serde_json::to_vec(msg).map_err(|e| ClientError::Protocol(e.to_string()))?;
        write_frame(&mut self.stream, &text)?;
        Ok(())
    }

    fn recv_or_error<T: DeserializeOwned>(&mut self) -> Result<T> {
        read_frame(&mut self.stream, &mut self.buf, MAX_CONTROL_FRAME)?;
        if let Ok(err) = serde_json::from_slice::<HandshakeError>(&self.buf) {
            return Err(ClientError::Daemon(err.error));
        }
        serde_json::from_slice(&self.buf).map_err(|e| ClientError::Protocol(e.to_string()))
    }

    /// The daemon's name (its `--name`).
    pub fn daemon(&self) -> &str {
        &self.daemon
    }

    /// The daemon's instance id (changes on every restart).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Sends any request and waits for its response.
    pub fn call(&mut self, request: Request) -> Result<Response> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&RequestEnvelope { id, request })?;
        self.reply(id)
    }

    /// Reads the reply to request `id`.
    fn reply(&mut self, id: u64) -> Result<Response> {
        read_frame(&mut self.stream, &mut self.buf, MAX_CONTROL_FRAME)?;
        let reply: ReplyEnvelope =
            serde_json::from_slice(&self.buf).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if reply.id != id {
            return Err(ClientError::Protocol(format!(
                "reply {} to request {id}",
                reply.id
            )));
        }
        match reply.reply {
            Reply::Ok(r) => Ok(r),
            Reply::Error(e) => Err(ClientError::Daemon(e)),
        }
    }

    fn unexpected(r: Response) -> ClientError {
        ClientError::Protocol(format!("unexpected response {r:?}"))
    }

    pub fn status(&mut self) -> Result<Status> {
        match self.call(Request::Status)? {
            Response::Status(s) => Ok(s),
            r => Err(Client::unexpected(r)),
        }
    }

    /// Applies changes atomically; with `expect`, only at that instance and generation.
    pub fn change(&mut self, changes: Vec<Change>, expect: Option<Expect>) -> Result<Changed> {
        match self.call(Request::Change { changes, expect })? {
            Response::Changed(c) => Ok(c),
            r => Err(Client::unexpected(r)),
        }
    }

    pub fn add_link(&mut self, link: LinkSpec) -> Result<Changed> {
        self.change(vec![Change::AddLink { link }], None)
    }

    pub fn delete_link(&mut self, key: LinkKey) -> Result<Changed> {
        self.change(vec![Change::DeleteLink { key }], None)
    }

    pub fn add_rule(&mut self, rule: RuleDef) -> Result<Changed> {
        self.change(vec![Change::AddRule { rule }], None)
    }

    pub fn delete_rule(&mut self, rule: RuleDef) -> Result<Changed> {
        self.change(vec![Change::DeleteRule { rule }], None)
    }

    pub fn set_config_bound(&mut self, millis: u64) -> Result<Changed> {
        self.change(vec![Change::SetConfigBound { millis }], None)
    }

    pub fn list_interfaces(&mut self) -> Result<Vec<InterfaceInfo>> {
        match self.call(Request::ListInterfaces)? {
            Response::Interfaces { interfaces } => Ok(interfaces),
            r => Err(Client::unexpected(r)),
        }
    }

    pub fn list_links(&mut self) -> Result<Vec<LinkInfo>> {
        match self.call(Request::ListLinks)? {
            Response::Links { links } => Ok(links),
            r => Err(Client::unexpected(r)),
        }
    }

    pub fn list_rules(&mut self) -> Result<Vec<RuleInfo>> {
        match self.call(Request::ListRules)? {
            Response::Rules { rules } => Ok(rules),
            r => Err(Client::unexpected(r)),
        }
    }

    pub fn stats(&mut self) -> Result<Stats> {
        match self.call(Request::Stats)? {
            Response::Stats(s) => Ok(s),
            r => Err(Client::unexpected(r)),
        }
    }

    pub fn traffic_matrix(&mut self, reset: bool) -> Result<TrafficMatrix> {
        match self.call(Request::TrafficMatrix { reset })? {
            Response::TrafficMatrix(m) => Ok(m),
            r => Err(Client::unexpected(r)),
        }
    }

    /// Takes, or renews, this connection's lease on the daemon's tables for `ttl`. Refused with
    /// [`ErrorCode::Locked`] (the message names the holder) while another connection holds it.
    pub fn lease(&mut self, holder: &str, ttl: Duration) -> Result<LeaseInfo> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        match self.call(Request::Lease {
            holder: holder.to_string(),
            ttl_ms,
        })? {
            Response::Leased(l) => Ok(l),
            r => Err(Client::unexpected(r)),
        }
    }

    /// Gives back this connection's lease; returns whether it held one.
    pub fn release(&mut self) -> Result<bool> {
        match self.call(Request::Release)? {
            Response::Released { held } => Ok(held),
            r => Err(Client::unexpected(r)),
        }
    }

    /// Replaces the daemon's emulated underlay (for demos and experiments): what it sends to
    /// each named peer daemon gets that peer's delay and rate; an empty map turns it off.
    pub fn set_underlay(
        &mut self,
        peers: std::collections::BTreeMap<String, Shape>,
    ) -> Result<UnderlayState> {
        match self.call(Request::SetUnderlay { peers })? {
            Response::Underlay(u) => Ok(u),
            r => Err(Client::unexpected(r)),
        }
    }

    /// Opens the daemon's probe socket for probes from `peer` authenticated with `token`
    /// (hex); returns its address.
    pub fn probe_serve(&mut self, peer: &str, token: &str, ttl: Duration) -> Result<String> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        match self.call(Request::ProbeServe {
            peer: peer.to_string(),
            token: token.to_string(),
            ttl_ms,
        })? {
            Response::ProbeServing { addr } => Ok(addr),
            r => Err(Client::unexpected(r)),
        }
    }

    /// Has the daemon probe `peer` at `addr` for about `duration` (this call waits for it).
    pub fn probe(
        &mut self,
        peer: &str,
        addr: &str,
        token: &str,
        duration: Duration,
    ) -> Result<ProbeResult> {
        let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
        let old = self.stream.read_timeout()?;
        self.stream
            .set_read_timeout(Some(duration + Duration::from_secs(10)))?;
        let r = self.call(Request::Probe {
            peer: peer.to_string(),
            addr: addr.to_string(),
            token: token.to_string(),
            duration_ms,
        });
        self.stream.set_read_timeout(old)?;
        match r? {
            Response::Probed(p) => Ok(p),
            r => Err(Client::unexpected(r)),
        }
    }

    /// Asks the daemon to exit; it answers before it stops.
    pub fn shutdown(mut self) -> Result<()> {
        match self.call(Request::Shutdown)? {
            Response::ShuttingDown => Ok(()),
            r => Err(Client::unexpected(r)),
        }
    }

    // ---- VTTIF (SPEC 5.1).

    /// Tells the daemon which daemon is the Proxy; returns whether that changed anything.
    pub fn set_proxy(&mut self, proxy: ProxySpec) -> Result<bool> {
        match self.call(Request::SetProxy { proxy })? {
            Response::ProxySet { changed } => Ok(changed),
            r => Err(Client::unexpected(r)),
        }
    }

    /// Sends a traffic report to this daemon, which must be the Proxy (as a binary frame).
    pub fn report(&mut self, report: &vnet_vttif::Report) -> Result<()> {
        let id = self.next_id;
        self.next_id += 1;
        write_frame(&mut self.stream, &crate::report::encode(id, report))?;
        match self.reply(id)? {
            Response::Reported => Ok(()),
            r => Err(Client::unexpected(r)),
        }
    }

    /// The Proxy's inference over `window_ms` at `threshold` (0 to 1).
    pub fn infer(&mut self, window_ms: u64, threshold: f64) -> Result<vnet_vttif::Answer> {
        let threshold_ppm = (threshold.clamp(0.0, 1.0) * 1e6).round() as u32;
        match self.call(Request::Infer {
            window_ms,
            threshold_ppm,
        })? {
            Response::Inferred(a) => Ok(a),
            r => Err(Client::unexpected(r)),
        }
    }

    pub fn vttif(&mut self) -> Result<VttifState> {
        match self.call(Request::Vttif)? {
            Response::Vttif(s) => Ok(s),
            r => Err(Client::unexpected(r)),
        }
    }
}
