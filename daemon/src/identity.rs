//! The daemon's static link key pair: made on first start, kept in the state directory
//! (`link.key`, the private key in base64, mode 0600), read at every later start. The public
//! key is in `status`; `vnetc up`/`apply` pin it in the peers' links.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use vnet_seal::{KeyPair, PrivateKey};

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "link.key";

fn invalid(path: &Path, why: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("link key {}: {why}", path.display()),
    )
}

/// Reads the key pair of `state_dir`, or makes one and saves it there (0600, written whole
/// before it is linked in, so a crash never leaves half a key).
pub fn load_or_create(state_dir: &Path) -> io::Result<KeyPair> {
    let path = state_dir.join(KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => load(&path, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(&path),
        Err(e) => Err(invalid(&path, e)),
    }
}

fn load(path: &Path, text: &str) -> io::Result<KeyPair> {
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(invalid(
            path,
            format!("readable by others (mode {:o}): chmod 600 it", mode & 0o777),
        ));
    }
    let private = PrivateKey::parse(text).map_err(|e| invalid(path, e))?;
    Ok(KeyPair::from_private(private))
}

fn create(path: &Path) -> io::Result<KeyPair> {
    let pair = KeyPair::generate().map_err(|e| invalid(path, e))?;
    let tmp: PathBuf = path.with_extension("key.new");
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(pair.private.to_text().as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    tracing::info!(public = %pair.public, fingerprint = %pair.public.fingerprint(), "made this daemon's link key pair");
    Ok(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vnetd-identity-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn a_key_is_made_once_private_and_read_back() {
        let d = dir("once");
        let first = load_or_create(&d).expect("made");
        let mode = std::fs::metadata(d.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create(&d).expect("read");
        assert_eq!(first.public, again.public);
        std::fs::remove_dir_all(&d).ok();
    }

    #[test]
    fn a_readable_or_broken_key_file_is_refused_with_its_path() {
        let d = dir("bad");
        load_or_create(&d).expect("made");
        let path = d.join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_or_create(&d).expect_err("mode 644").to_string();
        assert!(
            e.contains("readable by others") && e.contains(KEY_FILE),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not a key").unwrap();
        let e = load_or_create(&d).expect_err("garbage").to_string();
        assert!(e.contains(KEY_FILE), "{e}");
        std::fs::remove_dir_all(&d).ok();
    }
}
