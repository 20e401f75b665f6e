//! Typed link control messages: everything on a link but frames and fragments (which the
//! forwarding thread reads in place, see [`crate::wire`]). A message is the 4-byte link
//! header `[MAGIC, kind, 0, 0]` and a JSON body; [`LinkMsg::decode`] turns any bytes into a
//! message or a [`Malformed`] naming what is wrong, so no caller matches on raw kinds.

use crate::wire::{self, LINK_HDR, MAGIC};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use vnet_grammar::ast::Transport;

/// A dialer's first message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkHello {
    pub from: String,
    pub to: String,
    pub transport: Transport,
    /// 32 random bytes, hex.
    pub nonce: String,
    /// The Noise IK first message, hex (absent only under `--insecure-links` without keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
    /// The listener's last cookie for this address, hex (UDP, when it asked for one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<String>,
}

/// A busy listener's answer to a hello without a valid cookie: the cookie for the hello's
/// source address, and the hello's nonce (so that only the sender of that hello takes it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkCookie {
    pub from: String,
    pub echo: String,
    pub cookie: String,
}

/// RESET: the sender has no session for a record it received. On a sealed link it names that
/// record (epoch and counter) and carries the tag of the two static keys (`vnet_seal::PairKey`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkReset {
    pub from: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

/// The listener's answer: its nonce and its proof of the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkChallenge {
    pub from: String,
    pub nonce: String,
    pub proof: String,
    /// The Noise IK reply, hex (when the hello carried a first message).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<String>,
}

/// The dialer's proof of the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkProof {
    pub from: String,
    pub proof: String,
}

/// The body of READY, KEEPALIVE, KEEPALIVE_ACK, REFUSED and REKEY.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LinkNote {
    pub from: String,
    #[serde(default)]
    pub reason: String,
    /// KEEPALIVE: the sender's clock (µs) when it sent it; KEEPALIVE_ACK: the same, echoed
    /// (the passive round-trip estimate). Absent from daemons before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_us: Option<u64>,
}

impl LinkNote {
    pub fn new(from: &str, reason: &str) -> LinkNote {
        LinkNote {
            from: from.to_string(),
            reason: reason.to_string(),
            sent_us: None,
        }
    }

    /// A keepalive (or its answer) carrying a send time.
    pub fn stamped(from: &str, sent_us: u64) -> LinkNote {
        LinkNote {
            sent_us: Some(sent_us),
            ..LinkNote::new(from, "")
        }
    }
}

/// A link control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LinkMsg {
    Hello(LinkHello),
    Challenge(LinkChallenge),
    Proof(LinkProof),
    Ready(LinkNote),
    Keepalive(LinkNote),
    KeepaliveAck(LinkNote),
    /// "I have no session with you": the dialer says hello again (a restarted listener).
    Reset(LinkReset),
    /// The listener refuses the link (TCP), with the reason.
    Refused(LinkNote),
    /// Retry the hello with this cookie.
    Cookie(LinkCookie),
    /// The listener's keys are due for renewal (sealed).
    Rekey(LinkNote),
}

/// Why bytes are not a link control message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "malformed link message: {}", self.0)
    }
}

fn body<T: DeserializeOwned>(kind: &str, bytes: &[u8]) -> Result<T, Malformed> {
    serde_json::from_slice(bytes).map_err(|e| Malformed(format!("{kind} body: {e}")))
}

impl LinkMsg {
    /// Reads a whole message (link header and body).
    pub fn decode(msg: &[u8]) -> Result<LinkMsg, Malformed> {
        if msg.len() < LINK_HDR {
            return Err(Malformed(format!(
                "{} bytes, shorter than a header",
                msg.len()
            )));
        }
        if msg[0] != MAGIC {
            return Err(Malformed(format!("magic byte {:#04x}", msg[0])));
        }
        let b = &msg[LINK_HDR..];
        Ok(match msg[1] {
            wire::KIND_HELLO => LinkMsg::Hello(body("hello", b)?),
            wire::KIND_CHALLENGE => LinkMsg::Challenge(body("challenge", b)?),
            wire::KIND_PROOF => LinkMsg::Proof(body("proof", b)?),
            wire::KIND_READY => LinkMsg::Ready(body("ready", b)?),
            wire::KIND_KEEPALIVE => LinkMsg::Keepalive(body("keepalive", b)?),
            wire::KIND_KEEPALIVE_ACK => LinkMsg::KeepaliveAck(body("keepalive ack", b)?),
            wire::KIND_RESET => LinkMsg::Reset(body("reset", b)?),
            wire::KIND_REFUSED => LinkMsg::Refused(body("refused", b)?),
            wire::KIND_COOKIE => LinkMsg::Cookie(body("cookie", b)?),
            wire::KIND_REKEY => LinkMsg::Rekey(body("rekey", b)?),
            k @ (wire::KIND_FRAME | wire::KIND_FRAGMENT) => {
                return Err(Malformed(format!("kind {k} is data, not control")))
            }
            k => return Err(Malformed(format!("unknown kind {k}"))),
        })
    }

    /// The whole message (link header and JSON body).
    pub fn encode(&self) -> Vec<u8> {
        let (kind, json) = match self {
            LinkMsg::Hello(h) => (wire::KIND_HELLO, serde_json::to_vec(h)),
            LinkMsg::Challenge(c) => (wire::KIND_CHALLENGE, serde_json::to_vec(c)),
            LinkMsg::Proof(p) => (wire::KIND_PROOF, serde_json::to_vec(p)),
            LinkMsg::Ready(n) => (wire::KIND_READY, serde_json::to_vec(n)),
            LinkMsg::Keepalive(n) => (wire::KIND_KEEPALIVE, serde_json::to_vec(n)),
            LinkMsg::KeepaliveAck(n) => (wire::KIND_KEEPALIVE_ACK, serde_json::to_vec(n)),
            LinkMsg::Reset(n) => (wire::KIND_RESET, serde_json::to_vec(n)),
            LinkMsg::Refused(n) => (wire::KIND_REFUSED, serde_json::to_vec(n)),
            LinkMsg::Cookie(c) => (wire::KIND_COOKIE, serde_json::to_vec(c)),
            LinkMsg::Rekey(n) => (wire::KIND_REKEY, serde_json::to_vec(n)),
        };
        let mut out = wire::LinkHeader::control(kind).encode().to_vec();
        // Serialising these plain structs of strings cannot fail.
        out.extend_from_slice(&json.unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note() -> LinkNote {
        LinkNote::new("a", "why")
    }

    #[test]
    fn every_message_round_trips() {
        let msgs = [
            LinkMsg::Hello(LinkHello {
                from: "a".into(),
                to: "b".into(),
                transport: Transport::Udp,
                nonce: "00".into(),
                noise: Some("0102".into()),
                cookie: Some("0a".into()),
            }),
            LinkMsg::Challenge(LinkChallenge {
                from: "b".into(),
                nonce: "11".into(),
                proof: "22".into(),
                noise: None,
            }),
            LinkMsg::Proof(LinkProof {
                from: "a".into(),
                proof: "33".into(),
            }),
            LinkMsg::Ready(note()),
            LinkMsg::Keepalive(note()),
            LinkMsg::KeepaliveAck(note()),
            LinkMsg::Reset(LinkReset {
                from: "b".into(),
                reason: "no session".into(),
                epoch: Some(3),
                counter: Some(9),
                tag: Some("44".into()),
            }),
            LinkMsg::Refused(note()),
            LinkMsg::Cookie(LinkCookie {
                from: "b".into(),
                echo: "00".into(),
                cookie: "55".into(),
            }),
            LinkMsg::Rekey(note()),
        ];
        for m in msgs {
            assert_eq!(LinkMsg::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn the_wire_format_is_unchanged() {
        // What daemons before the typed messages sent: header, then the JSON body.
        let bytes = LinkMsg::Ready(LinkNote::new("b", "")).encode();
        assert_eq!(&bytes[..4], &[0x56, 5, 0, 0]);
        assert_eq!(&bytes[4..], br#"{"from":"b","reason":""}"#);
        // A note without a reason is still a note; a reset of an older daemon, a clear reset.
        let m = LinkMsg::decode(b"\x56\x0a\0\0{\"from\":\"a\"}");
        assert_eq!(m, Ok(LinkMsg::Refused(LinkNote::new("a", ""))));
        let m = LinkMsg::decode(b"\x56\x09\0\0{\"from\":\"a\",\"reason\":\"x\"}");
        let clear = LinkReset {
            from: "a".into(),
            reason: "x".into(),
            epoch: None,
            counter: None,
            tag: None,
        };
        assert_eq!(m, Ok(LinkMsg::Reset(clear)));
    }

    #[test]
    fn malformed_messages_say_what_is_wrong() {
        let cases: [(&[u8], &str); 7] = [
            (b"", "shorter than a header"),
            (b"\x56\x02\0", "shorter than a header"),
            (b"{\"id\":1}", "magic byte 0x7b"),
            (b"\x56\x63\0\0{}", "unknown kind 99"),
            (b"\x56\x01\0\0abc", "kind 1 is data"),
            (b"\x56\x02\0\0{\"from\":\"a\"}", "hello body"),
            (b"\x56\x04\0\0not json", "proof body"),
        ];
        for (bytes, why) in cases {
            let err = LinkMsg::decode(bytes).expect_err("malformed");
            assert!(err.0.contains(why), "{bytes:?}: {err}");
        }
    }
}
