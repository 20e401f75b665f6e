//! The binary report frame: how a daemon's VTTIF report travels to the Proxy (since protocol
//! version 2).
//!
//! At 64 daemons × 256 pairs × 20 Hz the Proxy reads 327,680 pairs a second; as JSON (two MACs
//! as text per pair) decoding them cost the Proxy most of its CPU. So a report is one
//! fixed-layout frame on the authenticated control connection, told apart from a JSON request
//! by its first byte ([`TAG`], never `{`). The Proxy answers it with the ordinary JSON
//! [`ReplyEnvelope`](crate::control::ReplyEnvelope) of the frame's request id. Users never see
//! this encoding: SPEC's JSON (`vnetc infer --format json`) is unchanged.
//!
//! Layout, integers big-endian (as the length framing):
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | [`TAG`] |
//! | 1 | [`VERSION`] of this layout |
//! | 8 | request id (the reply carries it) |
//! | 8 | the daemon's reporting instance |
//! | 8 | sequence number |
//! | 1 | flags: bit 0 = full report; the other bits are zero |
//! | 1 | name length `n`, 1 to [`MAX_NAME`] |
//! | n | daemon name, UTF-8 |
//! | 4 | pair count `c`, at most [`MAX_PAIRS`] |
//! | c × [`PAIR_LEN`] | per pair: source MAC (6), destination MAC (6), frames (8), bytes (8) |
//!
//! The frame's length must be exactly what the header announces. Decoding checks every bound
//! before reading, allocates once per report (never per pair) and never panics.

use vnet_grammar::Mac;
use vnet_vttif::report::{MAX_NAME, MAX_PAIRS};
use vnet_vttif::{PairCount, Report};

/// The first byte of a binary report frame.
pub const TAG: u8 = 0xB1;
/// The version of the layout above.
pub const VERSION: u8 = 1;
/// Bytes of one pair's record.
pub const PAIR_LEN: usize = 6 + 6 + 8 + 8;
/// Bytes before the name: tag, version, id, instance, seq, flags, name length.
const HEAD: usize = 1 + 1 + 8 + 8 + 8 + 1 + 1;
/// The largest frame a valid report can make.
pub const MAX_FRAME: usize = HEAD + MAX_NAME + 4 + MAX_PAIRS * PAIR_LEN;

const FULL: u8 = 1;

/// Why a frame is not a report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Bounds exceeded: more pairs than [`MAX_PAIRS`] or a frame over [`MAX_FRAME`].
    Oversized(String),
    /// Anything else: a wrong tag or version, a bad name, flags or length.
    Malformed(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Oversized(why) | DecodeError::Malformed(why) => f.write_str(why),
        }
    }
}

/// `report` as a frame payload for request `id`. Reports over the bounds are encoded anyway
/// (with the pair count they hold), so that the Proxy refuses and counts them.
pub fn encode(id: u64, report: &Report) -> Vec<u8> {
    let name = report.daemon.as_bytes();
    let name = &name[..name.len().min(MAX_NAME)];
    let mut out = Vec::with_capacity(HEAD + name.len() + 4 + report.pairs.len() * PAIR_LEN);
    out.extend_from_slice(&[TAG, VERSION]);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&report.instance.to_be_bytes());
    out.extend_from_slice(&report.seq.to_be_bytes());
    out.push(if report.full { FULL } else { 0 });
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&(report.pairs.len() as u32).to_be_bytes());
    for p in &report.pairs {
        out.extend_from_slice(&p.src.0);
        out.extend_from_slice(&p.dst.0);
        out.extend_from_slice(&p.frames.to_be_bytes());
        out.extend_from_slice(&p.bytes.to_be_bytes());
    }
    out
}

/// Whether a control frame is a binary report (rather than a JSON request).
pub fn is_report(frame: &[u8]) -> bool {
    frame.first() == Some(&TAG)
}

/// The request id of a frame that is at least long enough to hold one (to answer it).
pub fn request_id(frame: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(frame.get(2..10)?.try_into().ok()?))
}

/// The request id and the report of a frame.
pub fn decode(frame: &[u8]) -> Result<(u64, Report), DecodeError> {
    let bad = |why: String| DecodeError::Malformed(why);
    if frame.len() > MAX_FRAME {
        let why = format!("{} bytes (at most {MAX_FRAME})", frame.len());
        return Err(DecodeError::Oversized(why));
    }
    if frame.len() < HEAD {
        return Err(bad(format!("{} bytes, shorter than a header", frame.len())));
    }
    if frame[0] != TAG || frame[1] != VERSION {
        return Err(bad(format!(
            "tag {:#04x} version {} (this Proxy reads tag {TAG:#04x} version {VERSION})",
            frame[0], frame[1]
        )));
    }
    let u64_at = |at: usize| u64::from_be_bytes(frame[at..at + 8].try_into().unwrap_or([0; 8]));
    let (id, instance, seq, flags) = (u64_at(2), u64_at(10), u64_at(18), frame[26]);
    if flags & !FULL != 0 {
        return Err(bad(format!("unknown flags {flags:#04x}")));
    }
    let name_len = frame[27] as usize;
    let count_at = HEAD + name_len;
    let count = frame
        .get(count_at..count_at + 4)
        .map(|b| u32::from_be_bytes(b.try_into().unwrap_or([0; 4])) as usize)
        .ok_or_else(|| bad(format!("{} bytes, cut inside the header", frame.len())))?;
    if count > MAX_PAIRS {
        let why = format!("{count} pairs in one report (at most {MAX_PAIRS})");
        return Err(DecodeError::Oversized(why));
    }
    let body = count_at + 4;
    if frame.len() != body + count * PAIR_LEN {
        return Err(bad(format!(
            "{} bytes for {count} pairs (want {})",
            frame.len(),
            body + count * PAIR_LEN
        )));
    }
    let daemon = std::str::from_utf8(&frame[HEAD..count_at])
        .map_err(|_| bad("the daemon name is not UTF-8".into()))?;
    if daemon.is_empty() {
        return Err(bad("an empty daemon name".into()));
    }
    let pairs = frame[body..]
        .chunks_exact(PAIR_LEN)
        .map(pair)
        .collect::<Vec<_>>();
    let full = flags & FULL != 0;
    let report = Report {
        daemon: daemon.to_string(),
        instance,
        seq,
        full,
        pairs,
    };
    Ok((id, report))
}

/// One record of exactly [`PAIR_LEN`] bytes (`chunks_exact` guarantees it).
fn pair(r: &[u8]) -> PairCount {
    let mac = |at: usize| {
        let mut m = [0u8; 6];
        m.copy_from_slice(&r[at..at + 6]);
        Mac(m)
    };
    let num = |at: usize| u64::from_be_bytes(r[at..at + 8].try_into().unwrap_or([0; 8]));
    PairCount {
        src: mac(0),
        dst: mac(6),
        frames: num(12),
        bytes: num(20),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(pairs: usize) -> Report {
        Report {
            daemon: "h1".into(),
            instance: 7,
            seq: 3,
            full: true,
            pairs: (0..pairs)
                .map(|i| PairCount {
                    src: Mac([2, 0, 0, 0, (i >> 8) as u8, i as u8]),
                    dst: Mac([2, 0, 0, 0, 0, 0xfe]),
                    frames: i as u64,
                    bytes: u64::MAX - i as u64,
                })
                .collect(),
        }
    }

    #[test]
    fn round_trip() {
        for n in [0, 1, 256] {
            let r = report(n);
            let frame = encode(42, &r);
            assert_eq!(frame.len(), HEAD + 2 + 4 + n * PAIR_LEN);
            assert!(is_report(&frame));
            assert_eq!(request_id(&frame), Some(42));
            assert_eq!(decode(&frame), Ok((42, r)));
        }
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let frame = encode(1, &report(3));
        for cut in 0..frame.len() {
            assert!(
                matches!(decode(&frame[..cut]), Err(DecodeError::Malformed(_))),
                "cut at {cut}"
            );
        }
        let mut long = frame.clone();
        long.push(0);
        assert!(decode(&long).unwrap_err().to_string().contains("want"));
    }

    #[test]
    fn bad_fields_are_named() {
        let frame = encode(1, &report(1));
        let with = |at: usize, byte: u8| {
            let mut f = frame.clone();
            f[at] = byte;
            decode(&f).unwrap_err().to_string()
        };
        assert!(with(1, 2).contains("version 2"));
        assert!(with(26, 0x81).contains("flags"));
        assert!(with(28, 0xff).contains("UTF-8"));
        // A count over the cap is oversized, whatever follows.
        let mut huge = frame[..HEAD + 2].to_vec();
        huge.extend_from_slice(&(MAX_PAIRS as u32 + 1).to_be_bytes());
        assert!(matches!(decode(&huge), Err(DecodeError::Oversized(_))));
        let mut empty = report(0);
        empty.daemon.clear();
        assert!(decode(&encode(1, &empty))
            .unwrap_err()
            .to_string()
            .contains("empty"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every byte of a valid frame set to every value.
        let frame = encode(5, &report(2));
        for at in 0..frame.len() {
            for b in 0..=255u8 {
                let mut f = frame.clone();
                f[at] = b;
                // What decodes is canonical: it encodes back to the same bytes.
                if let Ok((id, r)) = decode(&f) {
                    assert_eq!(encode(id, &r), f, "byte {at} = {b}");
                }
            }
        }
    }
}
