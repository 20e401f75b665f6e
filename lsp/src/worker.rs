//! The analysis thread: one long-lived thread runs every analysis, off the event loop, and
//! keeps each open file's incremental analysis ([`vnet_grammar::Incremental`]), so an edit
//! costs the statements it touches rather than the whole file.
//!
//! One thread rather than a pool keeps the allocator's memory in one arena (a pool's
//! threads each keep their own, which tripled the resident memory on a 10,000-line file),
//! and a panic in the grammar crate is caught here and becomes a failed analysis (the file's
//! incremental state is dropped with it, so the next analysis starts afresh).

use crate::document::Document;
use std::collections::HashMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use tokio::sync::oneshot;
use tower_lsp_server::ls_types::Uri;
use vnet_grammar::incremental::{Incremental, Outcome};
use vnet_grammar::LineIndex;

/// Each open file's incremental analysis, owned by the analysis thread.
type Engines = HashMap<Uri, Incremental>;

type Job = Box<dyn FnOnce(&mut Engines) + Send>;

fn queue() -> Option<mpsc::Sender<Job>> {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let sender = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        // Without a thread, `rx` is dropped, sending fails, and each analysis reports failure.
        let _ = std::thread::Builder::new()
            .name("vnet-analysis".to_string())
            .spawn(move || {
                let mut engines = Engines::new();
                while let Ok(job) = rx.recv() {
                    job(&mut engines);
                }
            });
        Mutex::new(tx)
    });
    sender.lock().ok().map(|tx| tx.clone())
}

/// How an analysis on the analysis thread ended.
pub enum Analysed {
    Done(Document),
    /// `cancelled` said a newer text is waiting.
    Cancelled,
    /// The analysis panicked.
    Failed,
}

/// A version of a file to analyse.
pub struct Version {
    pub uri: Uri,
    pub version: i32,
    pub text: String,
    pub index: LineIndex,
}

/// Analyses a version of a file on the analysis thread, from the file's previous analysis.
/// `cancelled` is asked between phases: whether a newer version replaced this one.
pub async fn analyse(job: Version, cancelled: Box<dyn Fn() -> bool + Send>) -> Analysed {
    let (reply, answer) = oneshot::channel();
    let run: Job = Box::new(move |engines: &mut Engines| {
        let uri = job.uri.clone();
        let engine = engines.entry(uri.clone()).or_default();
        let result =
            panic::catch_unwind(AssertUnwindSafe(|| engine.update(&job.text, &*cancelled)));
        let analysed = match result {
            Ok(Outcome::Done(analysis)) => Analysed::Done(Document {
                uri: job.uri,
                version: job.version,
                text: job.text,
                index: job.index,
                analysis,
            }),
            Ok(Outcome::Cancelled) => Analysed::Cancelled,
            Err(_) => {
                engines.remove(&job.uri);
                Analysed::Failed
            }
        };
        let _ = reply.send(analysed);
        // Freeing the analysis this one replaced waits until the editor has its answer.
        if let Some(engine) = engines.get_mut(&uri) {
            engine.tidy();
        }
    });
    let Some(queue) = queue() else {
        return Analysed::Failed;
    };
    if queue.send(run).is_err() {
        return Analysed::Failed;
    }
    answer.await.unwrap_or(Analysed::Failed)
}

/// Drops a closed file's incremental analysis.
pub fn forget(uri: Uri) {
    if let Some(queue) = queue() {
        let _ = queue.send(Box::new(move |engines: &mut Engines| {
            engines.remove(&uri);
        }));
    }
}
