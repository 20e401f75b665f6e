//! Length framing: every message on a control connection or a TCP overlay link is
//! `u32 length (big-endian) ‖ payload`. The one implementation of it: the header codec, and
//! blocking reads and writes on top (the daemon's async and in-place readers use the codec).

use std::io::{self, Read, Write};

/// Bytes of the length prefix.
pub const HEADER: usize = 4;

/// The prefix for a payload of `len` bytes.
pub fn header(len: usize) -> [u8; HEADER] {
    debug_assert!(u32::try_from(len).is_ok(), "a frame of {len} bytes");
    (len as u32).to_be_bytes()
}

/// The payload length announced by the first [`HEADER`] bytes of `buf`, if there are that
/// many.
pub fn peek_len(buf: &[u8]) -> Option<usize> {
    let prefix: [u8; HEADER] = buf.get(..HEADER)?.try_into().ok()?;
    Some(u32::from_be_bytes(prefix) as usize)
}

/// Checks an announced length against the largest payload the reader accepts.
pub fn check_len(len: usize, max: usize) -> io::Result<usize> {
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame too large ({len} bytes, at most {max})"),
        ));
    }
    Ok(len)
}

/// `payload` with its prefix, ready to write with one call.
pub fn encode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(&header(payload.len()));
    out.extend_from_slice(payload);
    out
}

/// Writes one frame.
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> io::Result<()> {
    w.write_all(&encode(payload))
}

/// Reads one frame of at most `max` bytes into `buf`.
pub fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>, max: usize) -> io::Result<()> {
    let mut prefix = [0u8; HEADER];
    r.read_exact(&mut prefix)?;
    let len = check_len(u32::from_be_bytes(prefix) as usize, max)?;
    buf.resize(len, 0);
    r.read_exact(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_oversize_is_refused() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").unwrap();
        write_frame(&mut wire, b"").unwrap();
        assert_eq!(&wire[..4], &[0, 0, 0, 5]);
        assert_eq!(peek_len(&wire), Some(5));
        assert_eq!(peek_len(&wire[..3]), None);
        let mut r = &wire[..];
        let mut buf = Vec::new();
        read_frame(&mut r, &mut buf, 16).unwrap();
        assert_eq!(buf, b"hello");
        read_frame(&mut r, &mut buf, 16).unwrap();
        assert!(buf.is_empty());
        let err = read_frame(&mut &encode(&[0; 17])[..], &mut buf, 16).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("17 bytes"), "{err}");
        // A prefix cut short is an error, not a hang or a panic.
        assert!(read_frame(&mut &[0u8, 0][..], &mut buf, 16).is_err());
    }
}
