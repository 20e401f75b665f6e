//! Formatting: the grammar's formatter (the code behind `vnetc fmt`), sent as the smallest
//! single edit that turns the text into its formatted form.

use crate::convert;
use crate::document::Document;
use tower_lsp_server::jsonrpc;
use tower_lsp_server::ls_types::TextEdit;
use vnet_grammar::Span;

/// The edits that format the document; none when it is formatted already. A file with
/// syntax errors is not formatted (as `vnetc fmt` refuses it): that is a failed request
/// naming the first error.
pub fn format(doc: &Document) -> jsonrpc::Result<Vec<TextEdit>> {
    let formatted = match vnet_grammar::format(&doc.text) {
        Ok(formatted) => formatted,
        Err(errors) => {
            let first = errors.first().map_or(String::new(), |d| {
                let at = doc.index.line_col(&doc.text, d.span.start());
                format!(": {} at {}:{}: {}", d.code, at.line, at.column, d.message)
            });
            return Err(convert::request_failed(format!(
                "cannot format a file with {} syntax error{}{first}",
                errors.len(),
                if errors.len() == 1 { "" } else { "s" }
            )));
        }
    };
    Ok(minimal_edit(doc, &formatted).into_iter().collect())
}

/// One edit replacing only the part between the common prefix and the common suffix.
pub fn minimal_edit(doc: &Document, formatted: &str) -> Option<TextEdit> {
    let old = doc.text.as_str();
    if old == formatted {
        return None;
    }
    let mut prefix = old
        .bytes()
        .zip(formatted.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    while !old.is_char_boundary(prefix) || !formatted.is_char_boundary(prefix) {
        prefix -= 1;
    }
    let max_suffix = old.len().min(formatted.len()) - prefix;
    let mut suffix = old
        .bytes()
        .rev()
        .zip(formatted.bytes().rev())
        .take(max_suffix)
        .take_while(|(a, b)| a == b)
        .count();
    while !old.is_char_boundary(old.len() - suffix)
        || !formatted.is_char_boundary(formatted.len() - suffix)
    {
        suffix -= 1;
    }
    let span = Span::new(prefix, old.len() - suffix);
    let new_text = formatted[prefix..formatted.len() - suffix].to_string();
    Some(TextEdit::new(convert::range(doc, span), new_text))
}
