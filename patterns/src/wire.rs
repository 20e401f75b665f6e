//! The frames ranks exchange over a byte stream: a length, a kind, a body. Pure.

use crate::schedule::Item;
use std::io::{self, Read};

const HELLO: u8 = 1;
const REFUSE: u8 = 2;
const DATA: u8 = 3;

/// The version of this frame format, carried in every hello.
pub const VERSION: u16 = 1;

/// One frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// The first frame each way on a connection: who I am and which program I run.
    Hello {
        version: u16,
        rank: u32,
        ranks: u32,
        program: String,
    },
    /// The answer to a hello that does not fit, with the reason.
    Refuse(String),
    Data(Data),
}

/// One transfer of one round of a superstep.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Data {
    pub superstep: u64,
    pub round: u32,
    /// The superstep at which every rank stops; `u64::MAX` while nobody knows yet.
    pub stop_at: u64,
    pub items: Vec<(Item, Vec<u8>)>,
}

/// The bytes of `frame`, length prefix included.
pub fn encode(frame: &Frame) -> Vec<u8> {
    let mut b = vec![0; 4];
    match frame {
        Frame::Hello {
            version,
            rank,
            ranks,
            program,
        } => {
            b.push(HELLO);
            b.extend(version.to_le_bytes());
            b.extend(rank.to_le_bytes());
            b.extend(ranks.to_le_bytes());
            b.extend(program.as_bytes());
        }
        Frame::Refuse(reason) => {
            b.push(REFUSE);
            b.extend(reason.as_bytes());
        }
        Frame::Data(d) => {
            b.push(DATA);
            b.extend(d.superstep.to_le_bytes());
            b.extend(d.round.to_le_bytes());
            b.extend(d.stop_at.to_le_bytes());
            b.extend((d.items.len() as u32).to_le_bytes());
            for (item, bytes) in &d.items {
                let (tag, origin, dest) = match *item {
                    Item::Direct { origin, dest } => (0u8, origin, dest),
                    Item::Partial => (1, 0, 0),
                    Item::Total => (2, 0, 0),
                };
                b.push(tag);
                b.extend(origin.to_le_bytes());
                b.extend(dest.to_le_bytes());
                b.extend((bytes.len() as u32).to_le_bytes());
                b.extend(bytes);
            }
        }
    }
    let len = (b.len() - 4) as u32;
    b[..4].copy_from_slice(&len.to_le_bytes());
    b
}

/// Reads one frame whose body is at most `max` bytes.
pub fn read_frame(r: &mut impl Read, max: usize) -> io::Result<Frame> {
    let mut len = [0; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len == 0 || len > max {
        return Err(invalid(format!(
            "a frame of {len} bytes (at most {max} fit this program)"
        )));
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    decode(&body).map_err(invalid)
}

/// The first whole frame at the start of `buf` and its length with prefix, `None` while
/// `buf` holds only part of one: for transports that receive bytes in arbitrary pieces.
pub fn split_frame(buf: &[u8], max: usize) -> Result<Option<(Frame, usize)>, String> {
    let Some(len) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len == 0 || len > max {
        return Err(format!(
            "a frame of {len} bytes (at most {max} fit this program)"
        ));
    }
    match buf.get(4..4 + len) {
        Some(body) => Ok(Some((decode(body)?, 4 + len))),
        None => Ok(None),
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A cursor over a frame body that fails, instead of panicking, when it runs short.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("a truncated frame".to_string());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| "short")?,
        ))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "short")?,
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "short")?,
        ))
    }
    fn text(self) -> Result<String, String> {
        String::from_utf8(self.0.to_vec()).map_err(|_| "a frame with text that is not UTF-8".into())
    }
}

/// The frame in `body` (without its length prefix).
pub fn decode(body: &[u8]) -> Result<Frame, String> {
    let mut b = Body(body);
    match b.u8()? {
        HELLO => Ok(Frame::Hello {
            version: b.u16()?,
            rank: b.u32()?,
            ranks: b.u32()?,
            program: b.text()?,
        }),
        REFUSE => Ok(Frame::Refuse(b.text()?)),
        DATA => {
            let (superstep, round, stop_at) = (b.u64()?, b.u32()?, b.u64()?);
            let count = b.u32()? as usize;
            // Each item takes at least 13 bytes, so a count the body cannot hold is refused
            // before anything is allocated for it.
            if count > b.0.len() / 13 {
                return Err(format!("a frame claiming {count} items"));
            }
            let mut items = Vec::with_capacity(count);
            for _ in 0..count {
                let (tag, origin, dest) = (b.u8()?, b.u32()?, b.u32()?);
                let item = match tag {
                    0 => Item::Direct { origin, dest },
                    1 => Item::Partial,
                    2 => Item::Total,
                    t => return Err(format!("an item of unknown kind {t}")),
                };
                let len = b.u32()? as usize;
                items.push((item, b.take(len)?.to_vec()));
            }
            if !b.0.is_empty() {
                return Err("trailing bytes after a frame's items".to_string());
            }
            Ok(Frame::Data(Data {
                superstep,
                round,
                stop_at,
                items,
            }))
        }
        k => Err(format!("a frame of unknown kind {k}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let bytes = encode(&f);
        assert_eq!(read_frame(&mut &bytes[..], 1 << 20).unwrap(), f);
    }

    #[test]
    fn frames_round_trip() {
        round_trip(Frame::Hello {
            version: VERSION,
            rank: 3,
            ranks: 8,
            program: "ring exchange".into(),
        });
        round_trip(Frame::Refuse("no".into()));
        round_trip(Frame::Data(Data {
            superstep: 7,
            round: 2,
            stop_at: u64::MAX,
            items: vec![
                (Item::Direct { origin: 1, dest: 4 }, vec![1, 2, 3]),
                (Item::Partial, vec![]),
                (Item::Total, vec![9; 40]),
            ],
        }));
    }

    #[test]
    fn frames_split_from_pieces() {
        let f = Frame::Refuse("why".into());
        let mut bytes = encode(&f);
        let whole = bytes.len();
        bytes.extend(encode(&f));
        for cut in 0..whole {
            assert_eq!(split_frame(&bytes[..cut], 100), Ok(None), "cut at {cut}");
        }
        assert_eq!(split_frame(&bytes, 100), Ok(Some((f, whole))));
        assert!(split_frame(&[0, 0, 0, 0], 100).is_err());
        assert!(split_frame(&[101, 0, 0, 0], 100).is_err());
    }

    #[test]
    fn malformed_frames_are_errors_not_panics() {
        let good = encode(&Frame::Data(Data {
            superstep: 1,
            round: 0,
            stop_at: 5,
            items: vec![(Item::Partial, vec![1, 2])],
        }));
        for cut in 4..good.len() {
            assert!(decode(&good[4..cut]).is_err(), "cut at {cut}");
        }
        assert!(decode(&[9]).is_err());
        assert!(decode(&[
            DATA, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255
        ])
        .is_err());
        let big = (1u32 << 30).to_le_bytes();
        let e = read_frame(&mut &big[..], 1000).unwrap_err();
        assert!(e.to_string().contains("at most 1000"), "{e}");
    }
}
