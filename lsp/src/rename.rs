//! Rename: a machine everywhere it is named, or an interface of one daemon; refused for a
//! name that is taken, a keyword, or not a name at all.

use crate::convert;
use crate::document::Document;
use crate::lookup::{self, Item, Role};
use std::collections::HashMap;
use tower_lsp_server::jsonrpc;
use tower_lsp_server::ls_types::{PrepareRenameResponse, TextEdit, WorkspaceEdit};
use vnet_grammar::lexer;

/// The machine or interface under the cursor, or why there is nothing to rename there.
fn target(items: &[Item], offset: usize) -> jsonrpc::Result<Item> {
    match lookup::item_at(items, offset) {
        Some(item) if matches!(item.role, Role::Machine { .. } | Role::Interface { .. }) => {
            Ok(item.clone())
        }
        _ => Err(convert::request_failed(
            "only a machine or an interface can be renamed",
        )),
    }
}

pub fn prepare(doc: &Document, offset: usize) -> jsonrpc::Result<PrepareRenameResponse> {
    let items = lookup::items(&doc.analysis.file);
    let item = target(&items, offset)?;
    Ok(PrepareRenameResponse::RangeWithPlaceholder {
        range: convert::range(doc, item.span),
        placeholder: item.text,
    })
}

/// Why `name` cannot be a machine or interface name, if it cannot (SPEC 2.1).
pub fn invalid_name(name: &str) -> Option<String> {
    if lexer::is_keyword(name) {
        return Some(format!("`{name}` is a keyword"));
    }
    if !lexer::is_valid_name(name) {
        return Some(format!(
            "`{name}` is not a valid name: names use ASCII letters, digits, `_`, `-` and `.`, and are not all digits"
        ));
    }
    None
}

pub fn rename(doc: &Document, offset: usize, new_name: &str) -> jsonrpc::Result<WorkspaceEdit> {
    let items = lookup::items(&doc.analysis.file);
    let item = target(&items, offset)?;
    if let Some(why) = invalid_name(new_name) {
        return Err(convert::request_failed(why));
    }
    let found: Vec<&Item> = match &item.role {
        Role::Machine { .. } => {
            if new_name != item.text {
                if let Some(taken) = lookup::machine_occurrences(&items, new_name).next() {
                    let line = doc.index.line_of(taken.span.start()) + 1;
                    return Err(convert::request_failed(format!(
                        "a machine named `{new_name}` already exists (line {line})"
                    )));
                }
            }
            lookup::machine_occurrences(&items, &item.text).collect()
        }
        Role::Interface { daemon, .. } => {
            lookup::interface_occurrences(&items, daemon, &item.text).collect()
        }
        _ => Vec::new(),
    };
    let edits: Vec<TextEdit> = if new_name == item.text {
        Vec::new()
    } else {
        found
            .iter()
            .map(|i| TextEdit::new(convert::range(doc, i.span), new_name.to_string()))
            .collect()
    };
    Ok(WorkspaceEdit {
        changes: Some(HashMap::from([(doc.uri.clone(), edits)])),
        ..WorkspaceEdit::default()
    })
}
