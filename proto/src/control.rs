//! The control protocol of `vnetd`: the one definition of its wire format (SPEC 1, 4).
//!
//! Transport: a TCP connection to the daemon's port (the same port that carries TCP overlay
//! links). Every message in either direction is a frame: a 4-byte big-endian length followed
//! by that many bytes of UTF-8 JSON. A control connection's first frame is a JSON object (its
//! first byte is `{`); an overlay link's first frame starts with the link magic byte instead
//! (see the daemon's `wire` module), which is how the daemon tells them apart.
//!
//! Session:
//! 1. client → [`ClientHello`] (protocol version and a fresh client nonce),
//! 2. daemon → [`ServerHello`] (a fresh server nonce, the daemon's name and instance id),
//! 3. client → [`ClientAuth`] (`HMAC-SHA256(key, "vnet-control-client" ‖ server_nonce ‖ client_nonce)`),
//! 4. daemon → [`ServerAuth`] (`HMAC-SHA256(key, "vnet-control-server" ‖ client_nonce ‖ server_nonce)`,
//!    so the client knows it talks to a daemon holding the same key), or an [`ErrorBody`] and
//!    the connection closes,
//! 5. then any number of [`RequestEnvelope`] → [`ReplyEnvelope`] exchanges, answered in order.
//!    A VTTIF report is the one request that is not JSON: a binary frame (first byte
//!    [`crate::report::TAG`]) carrying its own request id, answered like any other.
//!
//! A malformed or unauthenticated request is answered with an error and changes nothing.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use vnet_grammar::model::{LinkDef, LinkKey, RuleDef};
pub use vnet_underlay::shaper::Shape;

/// The version of this protocol. A daemon refuses clients that speak another one.
///
/// Version 2: a VTTIF report is a binary frame ([`crate::report`]), no longer a JSON request.
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest control frame either side accepts (bytes of JSON).
pub const MAX_CONTROL_FRAME: usize = 16 << 20;

/// First message of a control connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientHello {
    /// Always `"vnet-control"`.
    pub protocol: String,
    pub version: u32,
    /// 32 random bytes, hex.
    pub client_nonce: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerHello {
    pub version: u32,
    /// 32 random bytes, hex.
    pub server_nonce: String,
    /// The daemon's `--name`.
    pub daemon: String,
    /// Random per process start: a restart changes it.
    pub instance: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientAuth {
    /// Hex HMAC, see the module documentation.
    pub proof: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAuth {
    /// Hex HMAC, see the module documentation.
    pub proof: String,
}

/// A message the daemon sends when it refuses a handshake step.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeError {
    pub error: ErrorBody,
}

/// Where the peer of a link is reached, and the link itself, as sent to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkSpec {
    /// Transport, dialer and the two ends (one of them is the daemon receiving the request).
    pub link: LinkDef,
    /// The peer daemon's address, `HOST:PORT` (the peer's `--listen`).
    pub peer_addr: String,
    /// The peer daemon's static public key (base64, as `vnetc keys` prints it), pinned by
    /// `vnetc up`/`apply`: the link's handshake accepts only this key. A link without one
    /// cannot come up unless both daemons run with `--insecure-links`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_key: Option<String>,
}

impl LinkSpec {
    /// The other end, seen from `me`.
    pub fn peer_of(&self, me: &str) -> Option<&str> {
        if self.link.a == me {
            Some(&self.link.b)
        } else if self.link.b == me {
            Some(&self.link.a)
        } else {
            None
        }
    }
}

/// A conditional change: apply only if the daemon is this instance at this generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expect {
    pub instance: String,
    pub generation: u64,
}

/// One table change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Change {
    AddLink {
        link: LinkSpec,
    },
    /// Deletes the link of this pair (the transport and dialer need not be given).
    DeleteLink {
        key: LinkKey,
    },
    AddRule {
        rule: RuleDef,
    },
    DeleteRule {
        rule: RuleDef,
    },
    /// The configuration-time bound of thesis §3.2, in milliseconds (for VTTIF).
    SetConfigBound {
        millis: u64,
    },
}

/// A request of the control protocol. (Not `Eq`: an underlay [`Shape`] holds floats.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// Name, instance, generation and counters at a glance.
    Status,
    /// Apply the changes in order, atomically: all of them or, on any error, none. The
    /// generation goes up by one if anything changed. With `expect`, refused with
    /// [`ErrorCode::Conflict`] unless the daemon is at that instance and generation.
    Change {
        changes: Vec<Change>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expect: Option<Expect>,
    },
    ListInterfaces,
    ListLinks,
    ListRules,
    /// Counters of every interface, link and rule, and the drops by reason.
    Stats,
    /// The raw traffic matrix (frames entering from local interfaces, by source and
    /// destination MAC). `reset` zeroes it after reading.
    TrafficMatrix {
        #[serde(default)]
        reset: bool,
    },
    /// Stop the daemon (it answers first).
    Shutdown,
    /// Take, or renew, this connection's lease on the tables for `ttl_ms` milliseconds
    /// (clamped to 100 ms .. 1 h). While it is held, changes from other connections are
    /// refused with [`ErrorCode::Locked`]; it ends on [`Request::Release`], when this
    /// connection closes, or when the time runs out without a renewal. `holder` says who
    /// holds it (shown to the clients it refuses).
    Lease {
        holder: String,
        ttl_ms: u64,
    },
    /// Give back this connection's lease (nothing happens if it holds none).
    Release,

    // ---- The underlay (SPEC 5.2, 5.4): an emulated wide area and probes.
    /// Emulate a wide area, for demos and experiments: every link to a peer daemon named here
    /// (and every probe to it) waits for that peer's rate and then its one-way delay. The set
    /// replaces the previous one as a whole (declarative, idempotent); empty turns it off.
    /// Not persisted: a restarted daemon has no emulated underlay.
    SetUnderlay {
        peers: BTreeMap<String, Shape>,
    },
    /// Be probed by daemon `peer` for `ttl_ms` (clamped to 30 s): open a probe socket that
    /// answers only datagrams authenticated with `token` (32 random bytes, hex, chosen by the
    /// client). Answered with [`Response::ProbeServing`].
    ProbeServe {
        peer: String,
        token: String,
        ttl_ms: u64,
    },
    /// Probe daemon `peer`, whose probe socket is at `addr` (from its
    /// [`Response::ProbeServing`]), for about `duration_ms` (clamped to 10 s): echoes for
    /// latency and loss, then a packet train for bandwidth. Answered with [`Response::Probed`].
    Probe {
        peer: String,
        addr: String,
        token: String,
        duration_ms: u64,
    },
    // ---- VTTIF (SPEC 5.1): who the Proxy is, the daemons' reports, inference.
    /// Tells a daemon which daemon is the Proxy (the first HOST line) and which daemons may
    /// report to it; `vnetc apply` sends it to every daemon of the file. Idempotent.
    SetProxy {
        proxy: ProxySpec,
    },
    /// The Proxy's answer over a window, with the detection threshold in millionths.
    Infer {
        window_ms: u64,
        threshold_ppm: u32,
    },
    /// This daemon's VTTIF state: its Proxy, what it sent, and on the Proxy what it took.
    Vttif,
}

/// The Proxy, as told to every daemon of a file (see [`Request::SetProxy`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxySpec {
    /// The Proxy's daemon name (its HOST machine).
    pub name: String,
    /// Its control address, `HOST:PORT`.
    pub addr: String,
    /// The daemons that may report to it (the file's HOST machines).
    pub members: Vec<String>,
}

/// A daemon's VTTIF state (see [`Request::Vttif`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VttifState {
    /// The Proxy this daemon reports to, when told.
    pub proxy: Option<ProxySpec>,
    /// Report periods per second (0: reporting is off).
    pub report_hz: u32,
    /// Reports sent and acknowledged, and reports that could not be delivered.
    pub reports_sent: u64,
    pub reports_failed: u64,
    /// On the Proxy: reports taken, and refused by reason (`unknown_daemon`, `not_proxy`,
    /// `malformed`, `oversized`, `too_many_daemons`).
    pub reports_taken: u64,
    pub refused: std::collections::BTreeMap<String, u64>,
    /// On the Proxy: pairs with a history, and pair updates dropped by its caps.
    pub pairs: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    pub id: u64,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyEnvelope {
    pub id: u64,
    #[serde(flatten)]
    pub reply: Reply,
}

// One reply per request, moved once: its size is not worth a box on every `Ok`.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Ok(Response),
    Error(ErrorBody),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The handshake failed: wrong key, or a request before authentication.
    Auth,
    /// Not a frame, not JSON, or not a known request.
    Malformed,
    /// The client speaks another protocol version.
    Version,
    /// `expect` named another instance or generation.
    Conflict,
    /// The request is well-formed but not valid here (a rule for another daemon, …).
    Invalid,
    /// The daemon could not do it (for example, persisting the tables failed).
    Internal,
    /// Another connection holds the lease (the message names the holder and since when).
    Locked,
    /// A bounded resource is in use (every probe socket is serving): the same request
    /// succeeds later, so a client may retry it.
    Busy,
}

/// What a request returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "response", rename_all = "snake_case")]
pub enum Response {
    Status(Status),
    Changed(Changed),
    Interfaces {
        interfaces: Vec<InterfaceInfo>,
    },
    Links {
        links: Vec<LinkInfo>,
    },
    Rules {
        rules: Vec<RuleInfo>,
    },
    Stats(Stats),
    TrafficMatrix(TrafficMatrix),
    ShuttingDown,
    /// The lease this connection now holds.
    Leased(LeaseInfo),
    /// The answer to [`Request::Release`]: whether this connection held the lease.
    Released {
        held: bool,
    },
    // ---- VTTIF (SPEC 5.1).
    /// The answer to [`Request::SetProxy`]: whether it changed anything.
    ProxySet {
        changed: bool,
    },
    /// A report (a binary frame, see [`crate::report`]) passed the Proxy's checks and is queued
    /// for its view, which takes it within a bucket (50 ms) and before answering any later
    /// question.
    Reported,
    /// The Proxy's inference (SPEC 5.1's JSON less `proxy`).
    Inferred(vnet_vttif::Answer),
    Vttif(VttifState),

    // ---- The underlay.
    /// The emulated underlay now in force (the answer to [`Request::SetUnderlay`]).
    Underlay(UnderlayState),
    /// The probe socket's address, `HOST:PORT`.
    ProbeServing {
        addr: String,
    },
    Probed(ProbeResult),
}

/// What an emulated underlay does (for demos and experiments; see [`Request::SetUnderlay`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UnderlayState {
    /// The shape of what is sent to each peer daemon.
    pub peers: BTreeMap<String, Shape>,
    /// Frames and probes held back now, and dropped because a peer's queue was full.
    pub queued: u64,
    pub dropped: u64,
}

/// What one probe saw (see [`Request::Probe`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProbeResult {
    /// One-way latency (half the median round trip), ms; `None` if no echo came back.
    pub lat_ms: Option<f64>,
    /// The fraction of echoes lost.
    pub loss: f64,
    /// Achievable bandwidth from the train's dispersion, Mbit/s; `None` if too few arrived.
    pub bw_mbps: Option<f64>,
    pub echoes_sent: u32,
    pub echoes_back: u32,
    pub train_sent: u32,
    pub train_arrived: u32,
}

/// A link's passive estimate from its keepalives (UDP links) or the kernel's round-trip
/// estimate (TCP links).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkEstimate {
    /// Smoothed round-trip time, ms; `None` before the first sample.
    pub rtt_ms: Option<f64>,
    /// The fraction of recent keepalives without an answer (UDP links only).
    pub loss: Option<f64>,
    /// Where the estimate comes from: `keepalive` or `tcp_info`.
    pub source: String,
}

/// A lease on a daemon's tables (see [`Request::Lease`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// Who holds it, as the holder described itself.
    pub holder: String,
    /// When it was taken, in milliseconds since the Unix epoch.
    pub acquired_unix_ms: u64,
    /// How long it lasts without a renewal.
    pub expires_in_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub daemon: String,
    pub instance: String,
    pub generation: u64,
    pub protocol_version: u32,
    pub listen: String,
    pub uptime_ms: u64,
    pub config_bound_ms: Option<u64>,
    pub interfaces: usize,
    pub links: usize,
    pub links_up: usize,
    pub rules: usize,
    /// The lease on the tables, when one is held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseInfo>,
    /// Whether the kernel fast path is built in and running (absent from daemons before it
    /// was reported).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<FastPathState>,
    /// The emulated underlay, when one is configured (for demos and experiments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<UnderlayState>,
    /// This daemon's static public key (base64), which its links' peers pin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// Whether the daemon runs with `--insecure-links` (frames in clear, for measurements).
    #[serde(default)]
    pub insecure_links: bool,
    /// The CPU the forwarding thread keeps to (`--forward-cpu`), when one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_cpu: Option<u32>,
}

/// Whether the kernel fast path is built in and active, and if not, why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastPathState {
    pub built_in: bool,
    pub active: bool,
    /// Why it is not active (`--no-fast-path`, no privileges, kernel too old, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub off_because: Option<String>,
}

/// The result of a [`Request::Change`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    pub instance: String,
    /// The generation after the change.
    pub generation: u64,
    /// For each change in order: whether it changed the tables (adding what is there, or
    /// deleting what is not, changes nothing).
    pub effective: Vec<bool>,
}

/// How a local interface is attached.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InterfaceKind {
    /// An existing Linux interface through a promiscuous packet socket.
    Packet { ifindex: u32, vnet_hdr: bool },
    /// A TAP device this daemon created.
    Tap { vnet_hdr: bool },
    /// UDP datagrams, one Ethernet frame each (QEMU `-netdev dgram`).
    Dgram {
        local: String,
        peer: Option<String>,
        /// Learned peers: `MAC → address`.
        learned: Vec<(String, String)>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    pub name: String,
    #[serde(flatten)]
    pub kind: InterfaceKind,
    pub counters: PortCounters,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinkInfo {
    #[serde(flatten)]
    pub spec: LinkSpec,
    /// The peer, seen from this daemon.
    pub peer: String,
    pub up: bool,
    /// The remote address of the open connection (or UDP session), when up.
    pub remote: Option<String>,
    /// How many times the link came up.
    pub connects: u64,
    pub counters: PortCounters,
    /// The passive latency and loss estimate (absent from daemons before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate: Option<LinkEstimate>,
    /// How the link's frames travel, when it is up (absent from daemons before sealing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<LinkSecurity>,
}

/// The security state of an up link.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkSecurity {
    /// `sealed` (Noise IK keys, ChaCha20-Poly1305 records) or `clear` (`--insecure-links`).
    pub mode: String,
    /// The fingerprint of the peer's authenticated static key.
    pub peer_key: String,
    /// The epoch of the keys in use (one more at each rekey).
    pub epoch: u32,
    /// Handshakes completed on this link (the first and every rekey).
    pub handshakes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    pub rule: RuleDef,
    /// Frames and bytes the rule fired for.
    pub frames: u64,
    pub bytes: u64,
}

/// Counters of one interface or link.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Drops by reason (only reasons with a non-zero count).
    pub drops: std::collections::BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub generation: u64,
    /// Drops not attributed to one port, by reason.
    pub drops: std::collections::BTreeMap<String, u64>,
    pub interfaces: Vec<(String, PortCounters)>,
    pub links: Vec<(String, PortCounters)>,
    pub rules: Vec<RuleInfo>,
    /// Lookup-cache hits and misses.
    pub cache_hits: u64,
    pub cache_misses: u64,
    /// The kernel fast path, when it runs (its frames are also in the counters above).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fast_path: Option<FastPathStats>,
    /// Each link's passive latency and loss estimate, by peer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub link_estimates: BTreeMap<String, LinkEstimate>,
    /// The emulated underlay, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<UnderlayState>,
    /// Datagrams dropped by probe sockets (not authenticated, malformed or replayed).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub probe_garbage: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What the kernel fast path holds and has carried.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastPathStats {
    /// Decisions the kernel repeats now: from an interface to a UDP link, and back.
    pub encap_entries: u64,
    pub decap_entries: u64,
    /// Frames and bytes the kernel forwarded since the daemon started.
    pub frames: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficEntry {
    pub src: vnet_grammar::Mac,
    pub dst: vnet_grammar::Mac,
    pub frames: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficMatrix {
    pub daemon: String,
    /// Milliseconds since the matrix was last reset (or the daemon started).
    pub window_ms: u64,
    pub entries: Vec<TrafficEntry>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnet_grammar::ast::Transport;
    use vnet_grammar::model::{Match, Target};
    use vnet_grammar::Mac;

    #[test]
    fn requests_round_trip_as_json() {
        let rule = RuleDef {
            daemon: "h1".into(),
            src: Match::Any,
            dst: Match::Exact(Mac::BROADCAST),
            target: Target::Link {
                peer: "proxy".into(),
            },
        };
        let req = RequestEnvelope {
            id: 7,
            request: Request::Change {
                changes: vec![
                    Change::AddLink {
                        link: LinkSpec {
                            link: LinkDef::new(Transport::Udp, "h1", "h1", "proxy"),
                            peer_addr: "127.0.0.2:7000".into(),
                            peer_key: None,
                        },
                    },
                    Change::AddRule { rule },
                ],
                expect: Some(Expect {
                    instance: "abc".into(),
                    generation: 3,
                }),
            },
        };
        let text = serde_json::to_string(&req).unwrap();
        assert!(text.starts_with('{'));
        let back: RequestEnvelope = serde_json::from_str(&text).unwrap();
        assert_eq!(back, req);
        let reply = ReplyEnvelope {
            id: 7,
            reply: Reply::Error(ErrorBody {
                code: ErrorCode::Conflict,
                message: "x".into(),
            }),
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<ReplyEnvelope>(&text).unwrap(), reply);
    }
}
