//! The pre-shared control key and the HMAC-SHA256 challenge-response built on it.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use std::io;
use std::path::{Path, PathBuf};

type HmacSha256 = Hmac<Sha256>;

/// A pre-shared key, read from a key file. The file's bytes, with surrounding whitespace
/// trimmed, are the key; it must hold at least 16 bytes.
#[derive(Clone)]
pub struct Key(Vec<u8>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    pub const MIN_LEN: usize = 16;

    pub fn from_bytes(bytes: &[u8]) -> io::Result<Key> {
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < Key::MIN_LEN {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a control key needs at least {} bytes", Key::MIN_LEN),
            ));
        }
        Ok(Key(trimmed.to_vec()))
    }

    /// Reads a key file.
    pub fn load(path: &Path) -> io::Result<Key> {
        let bytes = std::fs::read(path)
            .map_err(|e| io::Error::new(e.kind(), format!("key file {}: {e}", path.display())))?;
        Key::from_bytes(&bytes)
            .map_err(|e| io::Error::new(e.kind(), format!("key file {}: {e}", path.display())))
    }

    /// Writes a new random key (64 hex characters) to `path` with mode 0600, creating the
    /// parent directory; fails if the file exists.
    pub fn generate_file(path: &Path) -> io::Result<Key> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = hex(&random_bytes::<32>());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        Key::from_bytes(text.as_bytes())
    }

    /// `$VNET_KEY_FILE`, else `$XDG_CONFIG_HOME/vnet/control.key`, else
    /// `$HOME/.config/vnet/control.key`.
    pub fn default_path() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("VNET_KEY_FILE").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(p));
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(config.join("vnet").join("control.key"))
    }

    /// HMAC-SHA256 of the parts, each prefixed with its length so that they cannot be
    /// re-split.
    pub fn sign(&self, label: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    /// Checks a hex proof in constant time.
    pub fn verify(&self, label: &str, parts: &[&[u8]], proof_hex: &str) -> bool {
        let Some(proof) = unhex(proof_hex) else {
            return false;
        };
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.verify_slice(&proof).is_ok()
    }
}

pub const CONTROL_CLIENT: &str = "vnet-control-client";
pub const CONTROL_SERVER: &str = "vnet-control-server";
pub const LINK_LISTENER: &str = "vnet-link-listener";
pub const LINK_DIALER: &str = "vnet-link-dialer";

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).expect("the kernel's random source");
    out
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let b = text.as_bytes();
    if !b.len().is_multiple_of(2) || b.len() > 1024 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    b.chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_with_the_same_key_and_parts() {
        let k1 = Key::from_bytes(b"0123456789abcdef0123").unwrap();
        let k2 = Key::from_bytes(b"0123456789abcdef0124").unwrap();
        let p = hex(&k1.sign("l", &[b"a", b"bc"]));
        assert!(k1.verify("l", &[b"a", b"bc"], &p));
        assert!(!k1.verify("l", &[b"ab", b"c"], &p));
        assert!(!k2.verify("l", &[b"a", b"bc"], &p));
        assert!(!k1.verify("l", &[b"a", b"bc"], "zz"));
        assert!(Key::from_bytes(b"short").is_err());
    }
}
