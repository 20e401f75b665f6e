//! The VNET language library: lexer, parser, syntax tree, model, checker, formatter and
//! forwarding simulation. Pure: no IO, no async, no terminal output (see ARCHITECTURE.md).

pub mod ast;
pub mod diag;
pub mod lexer;
pub mod mac;
pub mod model;
pub mod parse;
pub mod span;

pub use diag::{Code, Diagnostic, Related, Severity};
pub use mac::Mac;
pub use parse::{parse, Parsed};
pub use span::{LineCol, LineIndex, Span};

use std::borrow::Cow;

/// Decodes a file's bytes for parsing. Invalid UTF-8 becomes U+FFFD, which the lexer then
/// reports as V003 at that place; the offset of the first bad byte is returned as well.
pub fn decode(bytes: &[u8]) -> (Cow<'_, str>, Option<usize>) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Cow::Borrowed(text), None),
        Err(error) => (String::from_utf8_lossy(bytes), Some(error.valid_up_to())),
    }
}
