//! The VNET language library: lexer, parser, syntax tree, model, checker, formatter and
//! forwarding simulation. Pure: no IO, no async, no terminal output (see ARCHITECTURE.md).

pub mod ast;
pub mod check;
pub mod diag;
pub mod fmt;
#[doc(hidden)]
pub mod gen;
pub mod incremental;
pub mod lexer;
pub mod mac;
pub mod model;
pub mod parse;
pub mod route;
pub mod span;

pub use diag::{Code, Diagnostic, Related, Severity};
pub use fmt::format;
pub use incremental::Incremental;
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

/// Everything the front ends need from one text: the tree, the state and every diagnostic,
/// sorted by position and capped (SPEC 3). vnetc, vnetd and vnet-lsp all go through here.
#[derive(Clone, Debug, Default)]
pub struct Analysis {
    pub file: ast::SourceFile,
    pub state: model::State,
    pub origins: check::Origins,
    pub diagnostics: Vec<Diagnostic>,
}

impl Analysis {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// Reports the first byte that was not UTF-8 (see [`decode`]) as V003, unless the lexer
    /// already did (it does when the byte is inside a token, not when it is in a comment).
    pub fn report_invalid_utf8(&mut self, offset: usize) {
        if self
            .diagnostics
            .iter()
            .any(|d| d.code == Code::V003 && d.span.start() == offset)
        {
            return;
        }
        self.diagnostics.push(invalid_utf8(offset));
        self.diagnostics
            .sort_by_key(|d| (d.span.start(), d.code, d.span.end()));
    }
}

/// V003 at the first byte of a file that is not UTF-8.
pub fn invalid_utf8(offset: usize) -> Diagnostic {
    Diagnostic::new(
        Code::V003,
        Span::new(offset, offset + char::REPLACEMENT_CHARACTER.len_utf8()),
        "unexpected byte: the file is not valid UTF-8 here",
    )
    .with_help("save the file as UTF-8")
}

/// Parses and checks a whole program.
pub fn analyze(text: &str) -> Analysis {
    analyze_onto(text, &model::State::default())
}

/// Parses and checks a patch whose blocks fold onto `base` (`vnetc check --base`).
pub fn analyze_onto(text: &str, base: &model::State) -> Analysis {
    let parsed = parse(text);
    let checked = check::check_onto(&parsed.file, base);
    let mut diagnostics = parsed.diagnostics;
    diagnostics.extend(checked.diagnostics);
    Analysis {
        file: parsed.file,
        state: checked.state,
        origins: checked.origins,
        diagnostics: diag::finish(diagnostics, parsed.dropped),
    }
}
