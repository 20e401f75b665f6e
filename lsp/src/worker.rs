//! The analysis thread: one long-lived thread runs every analysis, off the event loop.
//!
//! One thread rather than a pool keeps the allocator's memory in one arena (a pool's
//! threads each keep their own, which tripled the resident memory on a 10,000-line file),
//! and a panic in the grammar crate is caught here and becomes a failed analysis.

use crate::document::Document;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use tokio::sync::oneshot;
use tower_lsp_server::ls_types::Uri;

type Job = Box<dyn FnOnce() + Send>;

fn queue() -> Option<mpsc::Sender<Job>> {
    static QUEUE: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let sender = QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        // Without a thread, `rx` is dropped, sending fails, and each analysis reports failure.
        let _ = std::thread::Builder::new()
            .name("vnet-analysis".to_string())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    job();
                }
            });
        Mutex::new(tx)
    });
    sender.lock().ok().map(|tx| tx.clone())
}

/// Analyses `text` on the analysis thread; `None` when the analysis panicked.
pub async fn analyse(uri: Uri, version: i32, text: String) -> Option<Document> {
    let (reply, answer) = oneshot::channel();
    let job: Job = Box::new(move || {
        let result = panic::catch_unwind(AssertUnwindSafe(|| Document::new(uri, version, text)));
        let _ = reply.send(result.ok());
    });
    queue()?.send(job).ok()?;
    answer.await.ok().flatten()
}
