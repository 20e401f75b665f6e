//! Ethernet MAC addresses.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Multicast and broadcast addresses have the group bit (the low bit of the first octet) set.
    pub fn is_group(self) -> bool {
        self.0[0] & 1 == 1
    }

    /// Parses exactly six groups of two hex digits joined by `:`.
    pub fn parse(text: &str) -> Option<Mac> {
        let bytes = text.as_bytes();
        if bytes.len() != 17 {
            return None;
        }
        let mut out = [0u8; 6];
        for (i, octet) in out.iter_mut().enumerate() {
            let at = i * 3;
            if i > 0 && bytes[at - 1] != b':' {
                return None;
            }
            let hi = hex(bytes[at])?;
            let lo = hex(bytes[at + 1])?;
            *octet = hi << 4 | lo;
        }
        Some(Mac(out))
    }

    pub fn to_u64(self) -> u64 {
        let mut v = 0u64;
        for b in self.0 {
            v = v << 8 | b as u64;
        }
        v
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> Result<Mac, String> {
        Mac::parse(s).ok_or_else(|| {
            format!("`{s}` is not a MAC address (six pairs of hex digits joined by `:`)")
        })
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let text = String::deserialize(d)?;
        Mac::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("malformed MAC address `{text}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_lower_case() {
        let mac = Mac::parse("00:50:56:00:21:0A").unwrap();
        assert_eq!(mac.to_string(), "00:50:56:00:21:0a");
        assert!(Mac::BROADCAST.is_group());
        assert!(!mac.is_group());
        for bad in [
            "00:50:56:00:21",
            "00:50:56:00:21:0g",
            "0:50:56:00:21:01:",
            "00-50-56-00-21-01",
        ] {
            assert_eq!(Mac::parse(bad), None, "{bad}");
        }
    }
}
