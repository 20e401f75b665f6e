//! The daemon's tables on disk, in its state directory:
//!
//! - `tables.json`: a snapshot (links, rules, generation, bound), replaced atomically (written
//!   to a temporary file, renamed over the old one);
//! - `tables.journal`: the changes since that snapshot, one JSON line per acknowledged change
//!   batch (`{"generation":G,"changes":[...]}`), appended with one `write` before the change is
//!   acknowledged.
//!
//! A change costs one small append, whatever the size of the tables (O(1), not O(rules)).
//! When the journal has grown past twice the snapshot (and at least [`COMPACT_MIN_BYTES`]), or
//! when the daemon starts, the tables are written as a new snapshot and the journal is emptied:
//! amortised, still O(1) per change.
//!
//! Atomicity: a batch is one line, all or nothing. A line cut short by a crash (no newline, or
//! not JSON) was never acknowledged and is ignored; entries at or below the snapshot's
//! generation (a crash between a snapshot's rename and the journal's truncation) are skipped.
//! With `fsync`, every append is flushed to the disk (`fdatasync`) before the change is
//! acknowledged, and a snapshot (file and directory) before the journal is emptied.
//!
//! Who does the IO: [`Files`] is the synchronous core; [`Store`] runs each file operation on
//! the calling thread after telling the runtime it blocks (`block_in_place`: the worker's other
//! tasks move to another thread, so no async task waits behind the disk). It is not handed to a
//! writer thread: that hop cost two thread wake-ups per change, a third of an `--fsync`
//! change's latency on an idle machine (BENCHMARKS.md, issue 10). Callers keep the order of
//! appends (the daemon's change turn); the mutex only makes the files one owner's.

use crate::proto::{Change, LinkSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use vnet_grammar::model::{LinkKey, RuleDef};

pub const FILE: &str = "tables.json";
pub const JOURNAL: &str = "tables.journal";
pub const FORMAT: u32 = 1;
/// The journal is compacted once it is this large and twice the snapshot.
pub const COMPACT_MIN_BYTES: u64 = 1 << 20;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persisted {
    pub format: u32,
    pub daemon: String,
    pub generation: u64,
    pub config_bound_ms: Option<u64>,
    pub links: Vec<LinkSpec>,
    pub rules: Vec<RuleDef>,
}

/// One journal line: a change batch and the generation it produced.
#[derive(Serialize)]
struct Entry<'a> {
    generation: u64,
    changes: &'a [Change],
}

#[derive(Deserialize)]
struct ReadEntry {
    generation: u64,
    changes: Vec<Change>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

pub fn journal_path(dir: &Path) -> PathBuf {
    dir.join(JOURNAL)
}

/// The journal line of a change batch that produced `generation`.
pub(crate) fn journal_line(generation: u64, changes: &[Change]) -> io::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(&Entry {
        generation,
        changes,
    })
    .map_err(io::Error::other)?;
    line.push(b'\n');
    Ok(line)
}

/// The tables of one state directory: each call does its file work at once, as blocking work
/// of the calling thread ([`crate::sys::blocking`]), so a change is on disk before the caller
/// acknowledges it.
pub(crate) struct Store {
    files: Mutex<Files>,
}

impl Store {
    /// The tables of `dir` (nothing is read yet).
    pub fn open(dir: &Path, fsync: bool) -> Store {
        Store {
            files: Mutex::new(Files::new(dir, fsync)),
        }
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        // A panic in an earlier call poisons nothing the files depend on: they are as the OS
        // has them, and the next call reports its own errors.
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the saved tables; `None` when there are none.
    pub fn load(&self) -> io::Result<Option<Persisted>> {
        crate::sys::blocking(|| self.files().load())
    }

    /// Writes `state` as the new snapshot and empties the journal.
    pub fn save(&self, state: &Persisted) -> io::Result<()> {
        crate::sys::blocking(|| self.files().snapshot(state))
    }

    /// Appends a journal line ([`journal_line`]); returns whether the journal is due for
    /// compaction (then [`Store::save`] the tables, before the next append).
    pub fn append(&self, line: &[u8]) -> io::Result<bool> {
        crate::sys::blocking(|| self.files().append(line))
    }
}

/// The snapshot and journal files of one state directory (synchronous: [`Store`] runs it).
pub(crate) struct Files {
    dir: PathBuf,
    fsync: bool,
    compact_min: u64,
    journal: Option<File>,
    bytes: u64,
    snapshot_bytes: u64,
}

impl Files {
    pub fn new(dir: &Path, fsync: bool) -> Files {
        Files {
            dir: dir.to_path_buf(),
            fsync,
            compact_min: COMPACT_MIN_BYTES,
            journal: None,
            bytes: 0,
            snapshot_bytes: 0,
        }
    }

    /// Reads the saved tables (snapshot, then the journal's later changes); `None` when there
    /// are none.
    pub fn load(&self) -> io::Result<Option<Persisted>> {
        let p = path(&self.dir);
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut state: Persisted = serde_json::from_slice(&bytes).map_err(|e| {
            io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))
        })?;
        if state.format != FORMAT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: unknown format {}", p.display(), state.format),
            ));
        }
        let journal = match std::fs::read(journal_path(&self.dir)) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        replay(&mut state, &journal);
        Ok(Some(state))
    }

    /// Appends one journal line (flushed to the disk with `fsync`); returns whether the
    /// journal is now due for compaction into a new snapshot.
    pub fn append(&mut self, line: &[u8]) -> io::Result<bool> {
        if self.journal.is_none() {
            self.journal = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(journal_path(&self.dir))?,
            );
        }
        let f = self.journal.as_mut().expect("opened above");
        if let Err(e) = f.write_all(line) {
            // The line may be partly written: cut it off, so the next one starts cleanly.
            let _ = f.set_len(self.bytes);
            return Err(e);
        }
        if self.fsync {
            f.sync_data()?;
        }
        self.bytes += line.len() as u64;
        Ok(self.bytes >= self.compact_min.max(2 * self.snapshot_bytes))
    }

    /// Writes `state` as the new snapshot and empties the journal.
    pub fn snapshot(&mut self, state: &Persisted) -> io::Result<()> {
        let tmp = self.dir.join(format!(".{FILE}.tmp"));
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            if self.fsync {
                f.sync_data()?;
            }
        }
        std::fs::rename(&tmp, path(&self.dir))?;
        if self.fsync {
            File::open(&self.dir)?.sync_all()?;
        }
        // The snapshot holds every change the journal had: empty it.
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(journal_path(&self.dir))?;
        f.set_len(0)?;
        if self.fsync {
            f.sync_data()?;
        }
        self.journal = Some(f);
        self.bytes = 0;
        self.snapshot_bytes = bytes.len() as u64;
        Ok(())
    }
}

/// Applies the journal's complete lines above the snapshot's generation, in order.
fn replay(state: &mut Persisted, journal: &[u8]) {
    let mut links: BTreeMap<LinkKey, LinkSpec> = std::mem::take(&mut state.links)
        .into_iter()
        .map(|l| (l.link.key(), l))
        .collect();
    let mut rules: BTreeSet<RuleDef> = std::mem::take(&mut state.rules).into_iter().collect();
    let mut rest = journal;
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let line = &rest[..end];
        rest = &rest[end + 1..];
        let Ok(entry) = serde_json::from_slice::<ReadEntry>(line) else {
            tracing::warn!("ignoring an unreadable line of the tables' journal");
            continue;
        };
        if entry.generation <= state.generation {
            continue;
        }
        for c in &entry.changes {
            match c {
                Change::AddLink { link } => {
                    links.insert(link.link.key(), link.clone());
                }
                Change::DeleteLink { key } => {
                    links.remove(&LinkKey::new(&key.0, &key.1));
                }
                Change::AddRule { rule } => {
                    rules.insert(rule.clone());
                }
                Change::DeleteRule { rule } => {
                    rules.remove(rule);
                }
                Change::SetConfigBound { millis } => state.config_bound_ms = Some(*millis),
            }
        }
        state.generation = entry.generation;
    }
    state.links = links.into_values().collect();
    state.rules = rules.into_iter().collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnet_grammar::ast::Transport;
    use vnet_grammar::model::{LinkDef, Match, Target};
    use vnet_grammar::Mac;

    fn rule(n: u8) -> RuleDef {
        RuleDef {
            daemon: "a".into(),
            src: Match::Any,
            dst: Match::Exact(Mac([2, 0, 0, 0, 0, n])),
            target: Target::Interface { name: "vm".into() },
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vnetd-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn empty() -> Persisted {
        Persisted {
            format: FORMAT,
            daemon: "a".into(),
            ..Persisted::default()
        }
    }

    /// Appends a change batch as the daemon does.
    fn record(files: &mut Files, generation: u64, changes: &[Change]) -> bool {
        files
            .append(&journal_line(generation, changes).unwrap())
            .unwrap()
    }

    #[test]
    fn changes_are_journalled_and_replayed_a_torn_line_is_ignored() {
        let d = dir("journal");
        let mut s = Files::new(&d, false);
        s.snapshot(&empty()).unwrap();
        let link = LinkSpec {
            link: LinkDef::new(Transport::Tcp, "a", "a", "b"),
            peer_addr: "127.0.0.2:7000".into(),
            peer_key: None,
        };
        record(&mut s, 1, &[Change::AddLink { link: link.clone() }]);
        record(
            &mut s,
            2,
            &[
                Change::AddRule { rule: rule(1) },
                Change::AddRule { rule: rule(2) },
            ],
        );
        record(
            &mut s,
            3,
            &[
                Change::DeleteRule { rule: rule(1) },
                Change::SetConfigBound { millis: 40 },
            ],
        );
        // A crash in the middle of the next append.
        let mut f = OpenOptions::new()
            .append(true)
            .open(journal_path(&d))
            .unwrap();
        f.write_all(br#"{"generation":4,"changes":[{"op":"#)
            .unwrap();
        let got = Files::new(&d, false).load().unwrap().unwrap();
        assert_eq!(got.generation, 3);
        assert_eq!(got.links, vec![link]);
        assert_eq!(got.rules, vec![rule(2)]);
        assert_eq!(got.config_bound_ms, Some(40));
        // A new snapshot empties the journal; what it held is in the snapshot.
        let mut s = Files::new(&d, false);
        s.snapshot(&got).unwrap();
        assert_eq!(std::fs::metadata(journal_path(&d)).unwrap().len(), 0);
        assert_eq!(Files::new(&d, false).load().unwrap().unwrap(), got);
        // Entries at or below the snapshot's generation (a crash before the truncation) are
        // skipped.
        record(&mut s, 3, &[Change::AddRule { rule: rule(9) }]);
        record(&mut s, 4, &[Change::AddRule { rule: rule(3) }]);
        let again = Files::new(&d, true).load().unwrap().unwrap();
        assert_eq!(again.generation, 4);
        assert_eq!(again.rules, vec![rule(2), rule(3)]);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_long_journal_is_compacted_into_the_snapshot() {
        let d = dir("compact");
        let mut s = Files::new(&d, false);
        s.compact_min = 16 << 10;
        s.snapshot(&empty()).unwrap();
        let mut state = empty();
        let mut model = BTreeSet::new();
        let mut compacted = 0;
        for g in 1..=2_000u64 {
            let r = rule((g % 251) as u8);
            let c = if g % 3 == 0 {
                model.remove(&r);
                Change::DeleteRule { rule: r }
            } else {
                model.insert(r.clone());
                Change::AddRule { rule: r }
            };
            state.rules = model.iter().cloned().collect();
            state.generation = g;
            if record(&mut s, g, &[c]) {
                s.snapshot(&state).unwrap();
                compacted += 1;
            }
        }
        assert!(compacted > 1, "{compacted}");
        // Well under the 2,000 lines appended: the journal was emptied along the way.
        let snapshot = std::fs::metadata(path(&d)).unwrap().len();
        let journal = std::fs::metadata(journal_path(&d)).unwrap().len();
        assert!(
            journal <= s.compact_min.max(2 * snapshot),
            "{journal} {snapshot}"
        );
        let got = Files::new(&d, false).load().unwrap().unwrap();
        assert_eq!(got.generation, 2_000);
        assert_eq!(got.rules, state.rules);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Called from a worker of a multi-threaded runtime, as the daemon does (the blocking work
    /// runs through `block_in_place`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_store_keeps_the_order_of_calls_and_reports_errors() {
        let d = dir("writer");
        let s = Store::open(&d, true);
        assert_eq!(s.load().unwrap(), None);
        s.save(&empty()).unwrap();
        for g in 1..=50u64 {
            let line = journal_line(
                g,
                &[Change::AddRule {
                    rule: rule(g as u8),
                }],
            )
            .unwrap();
            assert!(!s.append(&line).unwrap());
            tokio::task::yield_now().await;
        }
        let got = s.load().unwrap().unwrap();
        assert_eq!(got.generation, 50);
        assert_eq!(got.rules.len(), 50);
        // A directory that is gone: the error comes back to the caller, the store lives on.
        let _ = std::fs::remove_dir_all(&d);
        assert!(s.save(&got).is_err());
        std::fs::create_dir_all(&d).unwrap();
        s.save(&empty()).unwrap();
        assert_eq!(s.load().unwrap(), Some(empty()));
        let _ = std::fs::remove_dir_all(&d);
    }
}
