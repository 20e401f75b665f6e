//! The document store: each open file's latest text, and the grammar's analysis of it.
//!
//! Edits apply at once, in the order they arrive; the analysis runs off the event loop and
//! always on the latest text, so a burst of keystrokes costs one analysis, not one each.
//! Requests wait for the analysis of the text they are about (the current version) and then
//! hold an `Arc` to it, so a long request never sees a half-applied edit.

use crate::{convert, worker};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::Notify;
use tower_lsp_server::ls_types::{TextDocumentContentChangeEvent, Uri};
use vnet_grammar::{Analysis, LineIndex};

/// One version of an open file, analysed.
#[derive(Debug)]
pub struct Document {
    pub uri: Uri,
    pub version: i32,
    pub text: String,
    pub index: LineIndex,
    /// Shared with the file's incremental analysis, which starts the next one from it.
    pub analysis: Arc<Analysis>,
}

impl Document {
    /// The source text of a span, or "" when the span is not on character boundaries.
    pub fn slice(&self, span: vnet_grammar::Span) -> &str {
        self.text.get(span.start()..span.end()).unwrap_or("")
    }
}

/// Applies LSP content changes in order (a change without a range replaces the whole text).
/// Fails without touching `text` when a range is outside the text it applies to.
pub fn apply_changes(
    text: &mut String,
    index: &mut LineIndex,
    changes: &[TextDocumentContentChangeEvent],
) -> Result<(), String> {
    let mut next = text.clone();
    let mut next_index: Option<LineIndex> = None;
    for change in changes {
        let Some(range) = change.range else {
            next.clone_from(&change.text);
            next_index = Some(LineIndex::new(&next));
            continue;
        };
        let current = next_index.as_ref().unwrap_or(index);
        let start = convert::offset_in(&next, current, range.start)?;
        let end = convert::offset_in(&next, current, range.end)?;
        if start > end {
            return Err(format!(
                "change range ends before it starts ({}:{} .. {}:{})",
                range.start.line, range.start.character, range.end.line, range.end.character
            ));
        }
        next.replace_range(start..end, &change.text);
        next_index = Some(LineIndex::new(&next));
    }
    *text = next;
    if let Some(next_index) = next_index {
        *index = next_index;
    }
    Ok(())
}

/// An open file: its latest text and, once it is there, that text's analysis.
#[derive(Debug)]
struct Entry {
    version: i32,
    text: String,
    index: LineIndex,
    analyzed: Option<Arc<Document>>,
    /// The version whose analysis panicked, if the latest one did.
    failed: Option<i32>,
    /// Whether an analysis task is running for this file.
    running: bool,
    /// Woken whenever an analysis of this file finishes.
    done: Arc<Notify>,
}

/// What an analysis that just finished is good for.
pub enum Finished {
    /// It is of the current text: publish it.
    Current(Arc<Document>),
    /// The text changed meanwhile: analyse again.
    Stale,
    /// The file was closed.
    Gone,
}

/// Every open document by URI.
#[derive(Debug, Default)]
pub struct Store {
    entries: Mutex<HashMap<Uri, Entry>>,
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uri, Entry>> {
        // Each operation leaves the map consistent before it could panic, so a poisoned lock
        // is still safe to use.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Opens (or reopens) a file; true when an analysis task must be started for it.
    pub fn open(&self, uri: Uri, version: i32, text: String) -> bool {
        let mut entries = self.lock();
        let index = LineIndex::new(&text);
        let running = entries.get(&uri).is_some_and(|e| e.running);
        let done = entries
            .get(&uri)
            .map_or_else(|| Arc::new(Notify::new()), |e| Arc::clone(&e.done));
        entries.insert(
            uri,
            Entry {
                version,
                text,
                index,
                analyzed: None,
                failed: None,
                running: true,
                done,
            },
        );
        !running
    }

    /// Applies a change; true when an analysis task must be started for it.
    pub fn change(
        &self,
        uri: &Uri,
        version: i32,
        changes: &[TextDocumentContentChangeEvent],
    ) -> Result<bool, String> {
        let mut entries = self.lock();
        let entry = entries
            .get_mut(uri)
            .ok_or_else(|| format!("change to a document that is not open: {}", uri.as_str()))?;
        apply_changes(&mut entry.text, &mut entry.index, changes)?;
        entry.version = version;
        // No request is answered from an older version; letting it go now leaves the file's
        // incremental analysis the only holder, so it moves that analysis instead of copying.
        entry.analyzed = None;
        entry.failed = None;
        let start = !entry.running;
        entry.running = true;
        Ok(start)
    }

    /// Closes a file; false when it was not open.
    pub fn close(&self, uri: &Uri) -> bool {
        let removed = self.lock().remove(uri);
        if let Some(entry) = &removed {
            entry.done.notify_waiters();
        }
        removed.is_some()
    }

    /// The version to analyse next; `None` once the file is closed.
    pub fn snapshot(&self, uri: &Uri) -> Option<worker::Version> {
        self.lock().get(uri).map(|e| worker::Version {
            uri: uri.clone(),
            version: e.version,
            text: e.text.clone(),
            index: e.index.clone(),
        })
    }

    /// Records an analysis (`None`: it panicked) of `version`.
    pub fn finish(&self, uri: &Uri, version: i32, analysed: Option<Document>) -> Finished {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(uri) else {
            return Finished::Gone;
        };
        let result = match analysed {
            Some(doc) if entry.version == version => {
                let doc = Arc::new(doc);
                entry.analyzed = Some(Arc::clone(&doc));
                entry.running = false;
                Finished::Current(doc)
            }
            Some(_) => Finished::Stale,
            None if entry.version == version => {
                entry.failed = Some(version);
                entry.running = false;
                Finished::Gone
            }
            None => Finished::Stale,
        };
        entry.done.notify_waiters();
        result
    }

    /// Whether `version` is still the file's latest.
    pub fn is_current(&self, uri: &Uri, version: i32) -> bool {
        self.lock().get(uri).is_some_and(|e| e.version == version)
    }

    /// The analysis of the file's current text, once it is there.
    pub async fn current(&self, uri: &Uri) -> Result<Arc<Document>, String> {
        loop {
            let done = {
                let entries = self.lock();
                let entry = entries
                    .get(uri)
                    .ok_or_else(|| format!("document is not open: {}", uri.as_str()))?;
                match &entry.analyzed {
                    Some(doc) if doc.version == entry.version => return Ok(Arc::clone(doc)),
                    _ if entry.failed == Some(entry.version) => {
                        return Err(format!("the analysis of {} failed", uri.as_str()));
                    }
                    _ => Arc::clone(&entry.done),
                }
            };
            let notified = done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // The analysis may have finished between the check and `enable`: check again.
            {
                let entries = self.lock();
                match entries.get(uri) {
                    None => continue,
                    Some(entry) => {
                        if entry
                            .analyzed
                            .as_ref()
                            .is_some_and(|d| d.version == entry.version)
                            || entry.failed == Some(entry.version)
                        {
                            continue;
                        }
                    }
                }
            }
            notified.await;
        }
    }
}
