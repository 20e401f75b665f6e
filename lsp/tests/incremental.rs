//! The server's incremental analysis against the whole one, through the real binary: random
//! edit sequences sent as an editor sends them (UTF-16 ranges, sometimes in bursts), and every
//! published set of diagnostics must be exactly what a fresh `vnet_grammar::analyze` of that
//! version's text gives, converted as the server converts it.

mod common;

use common::{range, Lsp, URI};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::sync::Arc;
use vnet_grammar::{analyze, LineIndex};
use vnet_lsp::{convert, document::Document};

/// What the server must publish for `text`: the whole analysis, converted.
fn expected(text: &str, version: i32) -> Value {
    let doc = Document {
        uri: URI.parse().expect("a URI"),
        version,
        text: text.to_string(),
        index: LineIndex::new(text),
        analysis: Arc::new(analyze(text)),
    };
    serde_json::to_value(convert::diagnostics(&doc)).expect("JSON")
}

const STATEMENTS: &[&str] = &[
    "LINK TCP h1 h1 h2",
    "LINK UDP h2 h2 h3",
    "LINK TCP h3 h1 h3",
    "FORWARD EDGE h1 ANY 02:00:00:00:00:02 h1 h2",
    "FORWARD EDGE h2 ANY 02:00:00:00:00:01 h2 h1",
    "FORWARD EDGE h2 ANY NONE h2 h3",
    "FORWARD EDGE h3 NOT 02:00:00:00:00:01 ANY h3 h2",
    "FORWARD INTERFACE h1 ANY 02:00:00:00:00:01 tap-h1",
    "FORWARD INTERFACE h2 ANY 02:00:00:00:00:02 tap-h2",
    "FORWARD INTERFACE h3 ANY FF:FF:FF:FF:FF:FF tap-h3",
    "DELETE",
    "ADD",
    "# ünïcode 😀 comment",
];

fn program() -> impl Strategy<Value = String> {
    proptest::collection::vec(proptest::sample::select(STATEMENTS), 0..20).prop_map(|lines| {
        let mut text = String::from("BEGIN\n");
        for m in ["h1", "h2", "h3"] {
            text.push_str(&format!("HOST u AT {m} 7000 tap-{m}\n"));
        }
        text.push_str("ADD\n");
        for line in lines {
            text.push_str(&format!("    {line}\n"));
        }
        text.push_str("END\n");
        text
    })
}

fn insertion() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z0-9:#]",
        2 => proptest::sample::select(STATEMENTS).prop_map(|s| format!("{s}\n")),
        2 => proptest::sample::select(&[" ", "\n", "", "é", "😀", "END ", "HOST "][..]).prop_map(str::to_string),
    ]
}

/// An edit: where (a fraction of the text), how many bytes to delete, what to insert, and
/// whether the next edit follows without waiting for this one's diagnostics.
fn edit() -> impl Strategy<Value = (f64, usize, String, bool)> {
    (
        0.0..=1.0f64,
        prop_oneof![2 => Just(0usize), 1 => 1..30usize],
        insertion(),
        proptest::bool::weighted(0.3),
    )
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Applies an edit to `text` and returns the LSP change event an editor would send for it.
fn change(text: &mut String, (place, delete, insert, _): &(f64, usize, String, bool)) -> Value {
    let start = floor_char_boundary(text, (*place * text.len() as f64) as usize);
    let end = floor_char_boundary(text, (start + delete).min(text.len())).max(start);
    let index = LineIndex::new(text);
    let (l1, c1) = index.utf16_position(text, start);
    let (l2, c2) = index.utf16_position(text, end);
    text.replace_range(start..end, insert);
    json!({"range": range(l1, c1, l2, c2), "text": insert})
}

fn check(text: String, edits: Vec<(f64, usize, String, bool)>) -> Result<(), TestCaseError> {
    let (mut lsp, _) = Lsp::start();
    lsp.open(URI, &text);
    prop_assert_eq!(Value::Array(lsp.diagnostics(URI, 1)), expected(&text, 1));
    let mut text = text;
    let mut version = 1;
    for (i, edit) in edits.iter().enumerate() {
        let event = change(&mut text, edit);
        version += 1;
        lsp.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": version}, "contentChanges": [event]}),
        );
        // In a burst, only the last version is sure to be published.
        let burst = edit.3 && i + 1 < edits.len();
        if !burst {
            let published = Value::Array(lsp.diagnostics(URI, version as i64));
            prop_assert_eq!(published, expected(&text, version), "after {:?}", text);
        }
    }
    prop_assert!(lsp.shutdown().success());
    Ok(())
}

// Each case starts a server: 48 by default, `PROPTEST_CASES` for more.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48)
    ))]

    #[test]
    fn published_diagnostics_equal_a_fresh_analysis_after_every_edit(
        text in program(),
        edits in proptest::collection::vec(edit(), 1..16),
    ) {
        check(text, edits)?;
    }
}
