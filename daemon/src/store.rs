//! The daemon's tables on disk: `STATE_DIR/tables.json`, replaced atomically on every change
//! (write a temporary file, rename it over the old one: a reader or a restarted daemon sees
//! the old tables or the new ones, never a mix). With `fsync`, the file and the directory are
//! also flushed to the disk before the change is acknowledged (survives power loss; costs
//! about a millisecond on this machine's disk).

use crate::proto::LinkSpec;
use serde::{Deserialize, Serialize};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use vnet_grammar::model::RuleDef;

pub const FILE: &str = "tables.json";
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    pub format: u32,
    pub daemon: String,
    pub generation: u64,
    pub config_bound_ms: Option<u64>,
    pub links: Vec<LinkSpec>,
    pub rules: Vec<RuleDef>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// Reads the saved tables; `None` when there are none.
pub fn load(dir: &Path) -> io::Result<Option<Persisted>> {
    let p = path(dir);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let state: Persisted = serde_json::from_slice(&bytes)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display())))?;
    if state.format != FORMAT {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: unknown format {}", p.display(), state.format),
        ));
    }
    Ok(Some(state))
}

/// Writes the tables atomically and durably.
pub fn save(dir: &Path, state: &Persisted, fsync: bool) -> io::Result<()> {
    let tmp = dir.join(format!(".{FILE}.tmp"));
    let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        if fsync {
            f.sync_data()?;
        }
    }
    std::fs::rename(&tmp, path(dir))?;
    if fsync {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
