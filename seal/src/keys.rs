//! Static Curve25519 key pairs and their text form (key files, `vnetc keys`).
//!
//! Text is standard base64 with padding (44 characters, as WireGuard writes keys); parsing also
//! takes 64 hex digits. Parsing is strict: one trailing newline is allowed (key files end in
//! one), anything else that is not the key is an error that names what is wrong and where.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use std::fmt;
use x25519_dalek::{PublicKey as DalekPublic, StaticSecret};
use zeroize::Zeroizing;

/// Bytes in a Curve25519 key.
pub const KEY_LEN: usize = 32;

/// Why a key's text was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Empty text (an empty key file).
    Empty,
    /// Neither 44 base64 characters nor 64 hex digits.
    Length { found: usize },
    /// A character that cannot be in the key's encoding, at this byte offset.
    BadCharacter { offset: usize, found: char },
    /// Base64 that decodes but not canonically (non-zero trailing bits or bad padding).
    NotCanonical,
    /// The public key is a low-order point: any shared secret with it is predictable.
    WeakPublicKey,
    /// The random generator of the operating system failed.
    Random(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => write!(f, "empty key"),
            KeyError::Length { found } => write!(
                f,
                "a key is 44 base64 characters or 64 hex digits, found {found} characters"
            ),
            KeyError::BadCharacter { offset, found } => {
                write!(
                    f,
                    "character {found:?} at offset {offset} is not part of a key"
                )
            }
            KeyError::NotCanonical => write!(
                f,
                "base64 key is not canonical (bad padding or trailing bits)"
            ),
            KeyError::WeakPublicKey => write!(f, "public key is a low-order point"),
            KeyError::Random(e) => write!(f, "no random bytes from the system: {e}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A static public key: what add-link pins and `vnetc keys` prints.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

/// A static private key. Zeroed on drop; `Debug` does not show it.
#[derive(Clone)]
pub struct PrivateKey(Zeroizing<[u8; KEY_LEN]>);

/// A daemon's identity: its private key and the public key derived from it.
#[derive(Clone)]
pub struct KeyPair {
    pub private: PrivateKey,
    pub public: PublicKey,
}

impl PublicKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> PublicKey {
        PublicKey(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses base64 or hex text, refusing low-order points (the all-zero key among them).
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let key = PublicKey(parse_key(text)?);
        if key.is_low_order() {
            return Err(KeyError::WeakPublicKey);
        }
        Ok(key)
    }

    /// Short form for logs and `status`: the first 8 bytes of SHA-256 of the key, in hex, in
    /// four groups (`3f2a-91c0-0b7e-d415`). For people comparing keys, not for security.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0);
        let hex = to_hex(&digest[..8]);
        format!(
            "{}-{}-{}-{}",
            &hex[0..4],
            &hex[4..8],
            &hex[8..12],
            &hex[12..16]
        )
    }

    pub fn to_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// A key whose Diffie-Hellman result with any secret is one of a few known values.
    fn is_low_order(&self) -> bool {
        let probe = StaticSecret::from([0x42; KEY_LEN]);
        !probe
            .diffie_hellman(&DalekPublic::from(self.0))
            .was_contributory()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self)
    }
}

impl std::str::FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<PublicKey, KeyError> {
        PublicKey::parse(s)
    }
}

impl PrivateKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> PrivateKey {
        PrivateKey(Zeroizing::new(bytes))
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses base64 or hex text (a key file's content).
    pub fn parse(text: &str) -> Result<PrivateKey, KeyError> {
        Ok(PrivateKey(Zeroizing::new(parse_key(text)?)))
    }

    /// The base64 text to write to the key file (with the file's mode set by the caller).
    pub fn to_text(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.0))
    }

    pub fn public_key(&self) -> PublicKey {
        let secret = StaticSecret::from(*self.0);
        PublicKey(DalekPublic::from(&secret).to_bytes())
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public {})", self.public_key())
    }
}

impl KeyPair {
    /// A fresh key pair from the operating system's random generator.
    pub fn generate() -> Result<KeyPair, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut bytes[..]).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(KeyPair::from_private(PrivateKey(bytes)))
    }

    pub fn from_private(private: PrivateKey) -> KeyPair {
        let public = private.public_key();
        KeyPair { private, public }
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair(public {})", self.public)
    }
}

fn parse_key(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    let body = body.strip_suffix('\r').unwrap_or(body);
    if body.is_empty() {
        return Err(KeyError::Empty);
    }
    if let Some((offset, found)) = body.char_indices().find(|(_, c)| !c.is_ascii_graphic()) {
        return Err(KeyError::BadCharacter { offset, found });
    }
    match body.len() {
        44 => parse_base64(body),
        64 => parse_hex(body),
        found => Err(KeyError::Length { found }),
    }
}

fn parse_base64(body: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let alphabet = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    let bytes = body.as_bytes();
    // 32 bytes are 43 characters and one '=' of padding.
    if let Some(offset) = (0..43).find(|&i| !alphabet(bytes[i])) {
        return Err(KeyError::BadCharacter {
            offset,
            found: bytes[offset] as char,
        });
    }
    if bytes[43] != b'=' {
        return Err(KeyError::BadCharacter {
            offset: 43,
            found: bytes[43] as char,
        });
    }
    let mut key = [0u8; KEY_LEN];
    match STANDARD.decode_slice(body, &mut key) {
        Ok(KEY_LEN) => Ok(key),
        _ => Err(KeyError::NotCanonical),
    }
}

fn parse_hex(body: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let mut key = [0u8; KEY_LEN];
    for (i, pair) in body.as_bytes().chunks_exact(2).enumerate() {
        let digit = |at: usize| {
            (pair[at - 2 * i] as char)
                .to_digit(16)
                .ok_or(KeyError::BadCharacter {
                    offset: at,
                    found: pair[at - 2 * i] as char,
                })
        };
        key[i] = (digit(2 * i)? * 16 + digit(2 * i + 1)?) as u8;
    }
    Ok(key)
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trips_in_both_encodings() {
        let pair = KeyPair::generate().unwrap();
        let text = pair.public.to_string();
        assert_eq!(text.len(), 44);
        assert_eq!(PublicKey::parse(&text).unwrap(), pair.public);
        assert_eq!(PublicKey::parse(&format!("{text}\n")).unwrap(), pair.public);
        assert_eq!(
            PublicKey::parse(&pair.public.to_hex()).unwrap(),
            pair.public
        );
        let private = PrivateKey::parse(&pair.private.to_text()).unwrap();
        assert_eq!(private.public_key(), pair.public);
    }

    #[test]
    fn parse_errors_name_the_problem() {
        let good = KeyPair::generate().unwrap().public.to_string();
        let bad = |offset: usize, found: char| Err(KeyError::BadCharacter { offset, found });
        let cases = [
            (String::new(), Err(KeyError::Empty)),
            ("abc".into(), Err(KeyError::Length { found: 3 })),
            (format!("{}*{}", &good[..7], &good[8..]), bad(7, '*')),
            (format!(" {}", &good[1..]), bad(0, ' ')),
            (format!("{}g", "0".repeat(63)), bad(63, 'g')),
            (format!("{}=={}", &good[..42], ""), bad(42, '=')),
            // 'B' before '=' leaves a set trailing bit: decodes, but is not the canonical text.
            (format!("{}B=", "A".repeat(42)), Err(KeyError::NotCanonical)),
            ("0".repeat(64), Err(KeyError::WeakPublicKey)),
            (format!("{good}\n\n"), bad(44, '\n')),
        ];
        for (text, want) in cases {
            assert_eq!(PublicKey::parse(&text), want, "{text:?}");
        }
    }

    #[test]
    fn fingerprints_differ_and_debug_hides_the_private_key() {
        let a = KeyPair::generate().unwrap();
        let b = KeyPair::generate().unwrap();
        assert_ne!(a.public.fingerprint(), b.public.fingerprint());
        assert_eq!(a.public.fingerprint().len(), 19);
        let shown = format!("{:?}", a.private);
        assert!(!shown.contains(&*a.private.to_text()));
        assert!(shown.contains(&a.public.to_string()));
    }
}
