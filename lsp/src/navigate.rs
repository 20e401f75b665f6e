//! Go to definition, find references and document highlights: machines and interfaces lead
//! to the HOST line that declares them.

use crate::convert;
use crate::document::Document;
use crate::lookup::{self, Item, Role};
use tower_lsp_server::ls_types::{DocumentHighlight, DocumentHighlightKind, Location};

/// The HOST line's name for the machine or interface under the cursor.
pub fn definition(doc: &Document, offset: usize) -> Option<Location> {
    let items = lookup::items(&doc.analysis.file);
    let item = lookup::item_at(&items, offset)?;
    let file = &doc.analysis.file;
    let span = match &item.role {
        Role::Machine { .. } => lookup::declaration(file, &item.text)?.machine.span,
        Role::Interface { daemon, .. } => lookup::declaration(file, daemon)?.iface.span,
        Role::User { .. } | Role::Port { .. } | Role::Mac(_) => return None,
    };
    Some(Location::new(doc.uri.clone(), convert::range(doc, span)))
}

/// The occurrences of what is under the cursor: a machine everywhere it is named, an interface
/// of one daemon, or a MAC address; `None` when the cursor is on nothing of the kind.
pub fn occurrences(doc: &Document, offset: usize) -> Option<Vec<Item>> {
    let items = lookup::items(&doc.analysis.file);
    let item = lookup::item_at(&items, offset)?.clone();
    let found: Vec<Item> = match &item.role {
        Role::Machine { .. } => lookup::machine_occurrences(&items, &item.text)
            .cloned()
            .collect(),
        Role::Interface { daemon, .. } => lookup::interface_occurrences(&items, daemon, &item.text)
            .cloned()
            .collect(),
        Role::Mac(mac) => items
            .iter()
            .filter(|i| i.role == Role::Mac(*mac))
            .cloned()
            .collect(),
        Role::User { .. } | Role::Port { .. } => vec![item],
    };
    Some(found)
}

fn is_declaration(item: &Item) -> bool {
    matches!(
        item.role,
        Role::Machine { declaration: true }
            | Role::Interface {
                declaration: true,
                ..
            }
    )
}

pub fn references(
    doc: &Document,
    offset: usize,
    include_declaration: bool,
) -> Option<Vec<Location>> {
    let found = occurrences(doc, offset)?;
    Some(
        found
            .iter()
            .filter(|i| include_declaration || !is_declaration(i))
            .map(|i| Location::new(doc.uri.clone(), convert::range(doc, i.span)))
            .collect(),
    )
}

pub fn highlights(doc: &Document, offset: usize) -> Option<Vec<DocumentHighlight>> {
    let found = occurrences(doc, offset)?;
    Some(
        found
            .iter()
            .map(|i| DocumentHighlight {
                range: convert::range(doc, i.span),
                kind: Some(if is_declaration(i) {
                    DocumentHighlightKind::WRITE
                } else {
                    DocumentHighlightKind::READ
                }),
            })
            .collect(),
    )
}
