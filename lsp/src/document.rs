//! The document store: each open file's text, its line index and the grammar's analysis of it.
//!
//! A document is immutable once built; a change builds the next one, and readers hold an
//! `Arc` to the version they started with, so a long request never sees a half-applied edit.

use crate::convert;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tower_lsp_server::ls_types::{TextDocumentContentChangeEvent, Uri};
use vnet_grammar::{Analysis, LineIndex};

/// One version of an open file, analysed.
#[derive(Debug)]
pub struct Document {
    pub uri: Uri,
    pub version: i32,
    pub text: String,
    pub index: LineIndex,
    pub analysis: Analysis,
}

impl Document {
    pub fn new(uri: Uri, version: i32, text: String) -> Document {
        let index = LineIndex::new(&text);
        let analysis = vnet_grammar::analyze(&text);
        Document {
            uri,
            version,
            text,
            index,
            analysis,
        }
    }

    /// The next version: `changes` applied in order (LSP incremental sync; a change without a
    /// range replaces the whole text). Fails without touching anything when a range is outside
    /// the text it applies to.
    pub fn changed(
        &self,
        version: i32,
        changes: &[TextDocumentContentChangeEvent],
    ) -> Result<Document, String> {
        let mut text = self.text.clone();
        let mut edited = false;
        for change in changes {
            let Some(range) = change.range else {
                text.clone_from(&change.text);
                edited = true;
                continue;
            };
            // The stored index serves the first change; later ones need the edited text's.
            let rebuilt;
            let current = if edited {
                rebuilt = LineIndex::new(&text);
                &rebuilt
            } else {
                &self.index
            };
            let start = convert::offset_in(&text, current, range.start)?;
            let end = convert::offset_in(&text, current, range.end)?;
            if start > end {
                return Err(format!(
                    "change range ends before it starts ({}:{} .. {}:{})",
                    range.start.line, range.start.character, range.end.line, range.end.character
                ));
            }
            text.replace_range(start..end, &change.text);
            edited = true;
        }
        Ok(Document::new(self.uri.clone(), version, text))
    }

    /// The source text of a span, or "" when the span is not on character boundaries.
    pub fn slice(&self, span: vnet_grammar::Span) -> &str {
        self.text.get(span.start..span.end).unwrap_or("")
    }
}

/// Every open document by URI.
#[derive(Debug, Default)]
pub struct Store {
    documents: Mutex<HashMap<Uri, Arc<Document>>>,
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, HashMap<Uri, Arc<Document>>> {
        // A panic while holding the lock cannot leave the map half-updated (each operation is
        // one insert or remove), so a poisoned lock is still safe to use.
        self.documents
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, uri: &Uri) -> Option<Arc<Document>> {
        self.lock().get(uri).cloned()
    }

    pub fn insert(&self, document: Document) -> Arc<Document> {
        let document = Arc::new(document);
        self.lock()
            .insert(document.uri.clone(), Arc::clone(&document));
        document
    }

    pub fn remove(&self, uri: &Uri) -> Option<Arc<Document>> {
        self.lock().remove(uri)
    }

    /// Applies a change under the lock, so concurrent changes to one file stay in order.
    pub fn change(
        &self,
        uri: &Uri,
        version: i32,
        changes: &[TextDocumentContentChangeEvent],
    ) -> Result<Arc<Document>, String> {
        let mut documents = self.lock();
        let current = documents
            .get(uri)
            .ok_or_else(|| format!("change to a document that is not open: {}", uri.as_str()))?;
        let next = Arc::new(current.changed(version, changes)?);
        documents.insert(uri.clone(), Arc::clone(&next));
        Ok(next)
    }
}
