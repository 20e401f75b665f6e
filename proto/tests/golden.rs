//! The protocol's JSON, and its one binary frame (the VTTIF report), pinned. Every message
//! kind is written here once, as it travels on the wire;
//! `tests/snapshots/golden__protocol.snap` is the golden file. A change to it is a
//! change of the wire protocol (renaming a field of the grammar's `RuleDef` included): make it
//! a decision (additive and optional, or a new `PROTOCOL_VERSION`), then accept the new
//! snapshot (`cargo insta review`, or `INSTA_UPDATE=always`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Debug;
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{LinkDef, LinkKey, Match, RuleDef, Target};
use vnet_grammar::Mac;
use vnet_proto::control::*;

/// One line `label: json`, after checking that the JSON reads back as the same message.
fn line<T: Serialize + DeserializeOwned + PartialEq + Debug>(label: &str, msg: &T) -> String {
    let json = serde_json::to_string(msg).expect("serialise");
    let back: T = serde_json::from_str(&json).expect("read back");
    assert_eq!(&back, msg, "{label} does not round-trip");
    format!("{label}: {json}\n")
}

fn mac(last: u8) -> Mac {
    Mac([2, 0, 0, 0, 0, last])
}

fn rule() -> RuleDef {
    RuleDef {
        daemon: "h1".into(),
        src: Match::Exact(mac(1)),
        dst: Match::Any,
        target: Target::Link {
            peer: "proxy".into(),
        },
    }
}

fn spec() -> LinkSpec {
    LinkSpec {
        link: LinkDef::new(Transport::Udp, "h1", "h1", "proxy"),
        peer_addr: "127.0.0.2:7000".into(),
        peer_key: Some("S1wHQp9vKqEe9Xz6p3+7M0q1mYdQh8yJ8tIh4F2Yd3E=".into()),
    }
}

fn counters() -> PortCounters {
    PortCounters {
        rx_frames: 1,
        rx_bytes: 60,
        tx_frames: 2,
        tx_bytes: 120,
        drops: BTreeMap::from([("no_rule".to_string(), 3)]),
    }
}

fn handshake() -> String {
    [
        line(
            "client_hello",
            &ClientHello {
                protocol: "vnet-control".into(),
                version: PROTOCOL_VERSION,
                client_nonce: "00ff".into(),
            },
        ),
        line(
            "server_hello",
            &ServerHello {
                version: PROTOCOL_VERSION,
                server_nonce: "11ee".into(),
                daemon: "h1".into(),
                instance: "abcd".into(),
            },
        ),
        line(
            "client_auth",
            &ClientAuth {
                proof: "22dd".into(),
            },
        ),
        line(
            "server_auth",
            &ServerAuth {
                proof: "33cc".into(),
            },
        ),
        line(
            "handshake_error",
            &HandshakeError {
                error: ErrorBody {
                    code: ErrorCode::Auth,
                    message: "wrong key".into(),
                },
            },
        ),
    ]
    .concat()
}

fn requests() -> String {
    let changes = vec![
        Change::AddLink { link: spec() },
        Change::DeleteLink {
            key: LinkKey::new("h1", "h2"),
        },
        Change::AddRule { rule: rule() },
        Change::DeleteRule { rule: rule() },
        Change::SetConfigBound { millis: 250 },
    ];
    let requests = [
        Request::Status,
        Request::Change {
            changes,
            expect: Some(Expect {
                instance: "abcd".into(),
                generation: 7,
            }),
        },
        Request::Change {
            changes: vec![],
            expect: None,
        },
        Request::ListInterfaces,
        Request::ListLinks,
        Request::ListRules,
        Request::Stats,
        Request::TrafficMatrix { reset: true },
        Request::Shutdown,
        Request::Lease {
            holder: "alice@host pid 42".into(),
            ttl_ms: 30_000,
        },
        Request::Release,
        // ---- VTTIF
        Request::SetProxy { proxy: proxy() },
        Request::Infer {
            window_ms: 2000,
            threshold_ppm: 100_000,
        },
        Request::Vttif,
        Request::SetUnderlay {
            peers: BTreeMap::from([("h2".to_string(), shape())]),
        },
        Request::ProbeServe {
            peer: "h1".into(),
            token: "00ff".into(),
            ttl_ms: 5000,
        },
        Request::Probe {
            peer: "h2".into(),
            addr: "127.0.0.3:40000".into(),
            token: "00ff".into(),
            duration_ms: 1000,
        },
    ];
    requests
        .into_iter()
        .enumerate()
        .map(|(i, request)| {
            let id = i as u64 + 1;
            line("request", &RequestEnvelope { id, request })
        })
        .collect()
}

fn shape() -> Shape {
    Shape {
        delay_ms: 20.0,
        rate_mbps: Some(100.0),
    }
}

fn underlay() -> UnderlayState {
    UnderlayState {
        peers: BTreeMap::from([("h2".to_string(), shape())]),
        queued: 3,
        dropped: 1,
    }
}

fn estimate() -> LinkEstimate {
    LinkEstimate {
        rtt_ms: Some(0.25),
        loss: Some(0.0),
        source: "keepalive".into(),
    }
}

fn lease() -> LeaseInfo {
    LeaseInfo {
        holder: "alice@host pid 42".into(),
        acquired_unix_ms: 1_700_000_000_000,
        expires_in_ms: 30_000,
    }
}

fn status() -> Status {
    Status {
        daemon: "h1".into(),
        instance: "abcd".into(),
        generation: 7,
        protocol_version: PROTOCOL_VERSION,
        listen: "127.0.0.1:7000".into(),
        uptime_ms: 1234,
        config_bound_ms: Some(250),
        interfaces: 1,
        links: 1,
        links_up: 1,
        rules: 2,
        lease: Some(lease()),
        fast_path: Some(FastPathState {
            built_in: true,
            active: false,
            off_because: Some("--no-fast-path".into()),
        }),
        underlay: None,
        public_key: Some("HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=".into()),
        insecure_links: false,
        forward_cpu: None,
    }
}

fn responses() -> Vec<Response> {
    let link = LinkInfo {
        spec: spec(),
        peer: "proxy".into(),
        up: true,
        remote: Some("127.0.0.2:7000".into()),
        connects: 1,
        counters: counters(),
        estimate: None,
        security: Some(LinkSecurity {
            mode: "sealed".into(),
            peer_key: "3f2a-91c0-0b7e-d415".into(),
            epoch: 2,
            handshakes: 3,
        }),
    };
    let interfaces = ["packet", "tap", "dgram"].map(|name| InterfaceInfo {
        name: name.into(),
        kind: match name {
            "packet" => InterfaceKind::Packet {
                ifindex: 3,
                vnet_hdr: true,
            },
            "tap" => InterfaceKind::Tap { vnet_hdr: true },
            _ => InterfaceKind::Dgram {
                local: "127.0.0.1:6000".into(),
                peer: None,
                learned: vec![(mac(1).to_string(), "127.0.0.1:6001".into())],
            },
        },
        counters: counters(),
    });
    let rules = vec![RuleInfo {
        rule: rule(),
        frames: 5,
        bytes: 300,
    }];
    vec![
        Response::Status(status()),
        Response::Changed(Changed {
            instance: "abcd".into(),
            generation: 8,
            effective: vec![true, false],
        }),
        Response::Interfaces {
            interfaces: interfaces.to_vec(),
        },
        Response::Links {
            links: vec![link.clone()],
        },
        Response::Rules {
            rules: rules.clone(),
        },
        Response::Stats(Stats {
            generation: 8,
            drops: BTreeMap::from([("malformed".to_string(), 1)]),
            interfaces: vec![("vm".into(), counters())],
            links: vec![("proxy".into(), counters())],
            rules,
            cache_hits: 10,
            cache_misses: 2,
            fast_path: Some(FastPathStats {
                encap_entries: 1,
                decap_entries: 1,
                frames: 40,
                bytes: 4000,
            }),
            link_estimates: BTreeMap::new(),
            underlay: None,
            probe_garbage: 0,
        }),
        Response::TrafficMatrix(TrafficMatrix {
            daemon: "h1".into(),
            window_ms: 1000,
            entries: vec![TrafficEntry {
                src: mac(1),
                dst: mac(2),
                frames: 3,
                bytes: 180,
            }],
        }),
        Response::ShuttingDown,
        Response::Leased(lease()),
        Response::Released { held: true },
        // ---- VTTIF
        Response::ProxySet { changed: true },
        Response::Reported,
        Response::Inferred(answer()),
        Response::Vttif(VttifState {
            proxy: Some(proxy()),
            report_hz: 20,
            reports_sent: 5,
            reports_failed: 1,
            reports_taken: 7,
            refused: BTreeMap::from([("unknown_daemon".to_string(), 2)]),
            pairs: 1,
            dropped: 0,
        }),
        Response::Status(Status {
            underlay: Some(underlay()),
            ..status()
        }),
        Response::Links {
            links: vec![LinkInfo {
                estimate: Some(estimate()),
                ..link.clone()
            }],
        },
        Response::Underlay(underlay()),
        Response::ProbeServing {
            addr: "127.0.0.3:40000".into(),
        },
        Response::Probed(ProbeResult {
            lat_ms: Some(10.5),
            loss: 0.0,
            bw_mbps: Some(98.0),
            echoes_sent: 20,
            echoes_back: 20,
            train_sent: 160,
            train_arrived: 158,
        }),
    ]
}

fn proxy() -> ProxySpec {
    ProxySpec {
        name: "proxy".into(),
        addr: "127.0.0.2:7000".into(),
        members: vec!["proxy".into(), "h1".into()],
    }
}

fn answer() -> vnet_vttif::Answer {
    let pair = vnet_vttif::PairRate {
        src: mac(1),
        dst: mac(2),
        src_daemon: "h1".into(),
        dst_daemon: Some("h2".into()),
        bytes_per_s: 125_000.0,
        frames_per_s: 100.0,
        intensity: 1.0,
    };
    vnet_vttif::Answer {
        window_ms: 2000,
        threshold: 0.1,
        settled: true,
        settled_for_ms: 2500,
        changes: 1,
        pairs: vec![pair.clone()],
        topology: vec![pair],
        capped: false,
        dropped: 0,
    }
}

fn replies() -> String {
    let mut out: String = responses()
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            let reply = Reply::Ok(r);
            line(
                "reply",
                &ReplyEnvelope {
                    id: i as u64 + 1,
                    reply,
                },
            )
        })
        .collect();
    for code in [
        ErrorCode::Auth,
        ErrorCode::Malformed,
        ErrorCode::Version,
        ErrorCode::Conflict,
        ErrorCode::Invalid,
        ErrorCode::Internal,
        ErrorCode::Locked,
        ErrorCode::Busy,
    ] {
        let reply = Reply::Error(ErrorBody {
            code,
            message: "why".into(),
        });
        out += &line("reply", &ReplyEnvelope { id: 99, reply });
    }
    out
}

/// The binary report frame (protocol version 2), as hex: one line per field, so a change of
/// the layout shows here field by field.
fn report_frame() -> String {
    let report = vnet_vttif::Report {
        daemon: "h1".into(),
        instance: 9,
        seq: 3,
        full: false,
        pairs: vec![vnet_vttif::PairCount {
            src: mac(1),
            dst: mac(2),
            frames: 10,
            bytes: 1500,
        }],
    };
    let frame = vnet_proto::report::encode(13, &report);
    assert_eq!(vnet_proto::report::decode(&frame), Ok((13, report)));
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let fields = [
        ("tag", 1),
        ("version", 1),
        ("id", 8),
        ("instance", 8),
        ("seq", 8),
        ("flags", 1),
        ("name_len", 1),
        ("name", 2),
        ("count", 4),
        ("pair.src", 6),
        ("pair.dst", 6),
        ("pair.frames", 8),
        ("pair.bytes", 8),
    ];
    let mut at = 0;
    let mut out = String::from("binary report frame:\n");
    for (name, len) in fields {
        out += &format!("  {name}: {}\n", hex(&frame[at..at + len]));
        at += len;
    }
    assert_eq!(at, frame.len(), "every byte of the frame is listed");
    out
}

#[test]
fn protocol() {
    let text = format!(
        "protocol version {PROTOCOL_VERSION}\n{}{}{}{}",
        handshake(),
        requests(),
        report_frame(),
        replies()
    );
    insta::assert_snapshot!("protocol", text);
}
