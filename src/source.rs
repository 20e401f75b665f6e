//! Reading `.vnet` inputs: files or standard input, as bytes, decoded once.

use std::io::Read;
use std::path::Path;

/// Files larger than this are refused with a clear error rather than read into memory.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

/// One input text, with the name diagnostics use for it.
pub struct Source {
    pub name: String,
    pub text: String,
    /// Where the first byte that was not UTF-8 stood (it reads as U+FFFD in `text`).
    pub invalid_utf8: Option<usize>,
}

impl Source {
    /// Reads `path`, or standard input when it is `-`.
    pub fn read(path: &str) -> Result<Source, String> {
        let bytes = if path == "-" {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(MAX_FILE_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| format!("<stdin>: cannot read: {e}"))?;
            bytes
        } else {
            let p = Path::new(path);
            let meta = std::fs::metadata(p).map_err(|e| format!("{path}: {e}"))?;
            if meta.is_dir() {
                return Err(format!("{path}: is a directory"));
            }
            if meta.len() > MAX_FILE_BYTES {
                return Err(format!(
                    "{path}: file is {} MiB; vnetc reads files of at most {} MiB",
                    meta.len() / (1024 * 1024),
                    MAX_FILE_BYTES / (1024 * 1024)
                ));
            }
            std::fs::read(p).map_err(|e| format!("{path}: {e}"))?
        };
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(format!(
                "{path}: input is larger than {} MiB",
                MAX_FILE_BYTES / (1024 * 1024)
            ));
        }
        // Valid UTF-8 (the usual case) becomes the String without a copy.
        let (text, invalid_utf8) = match String::from_utf8(bytes) {
            Ok(text) => (text, None),
            Err(error) => {
                let (text, offset) = vnet_grammar::decode(error.as_bytes());
                (text.into_owned(), offset)
            }
        };
        Ok(Source {
            name: if path == "-" {
                "<stdin>".to_string()
            } else {
                path.to_string()
            },
            text,
            invalid_utf8,
        })
    }
}
