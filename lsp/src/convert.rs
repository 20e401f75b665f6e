//! Conversions between the grammar's byte spans and LSP's UTF-16 positions, and of the
//! grammar's diagnostics into LSP diagnostics.

use crate::document::Document;
use tower_lsp_server::jsonrpc;
use tower_lsp_server::ls_types::{
    Diagnostic, DiagnosticRelatedInformation, DiagnosticSeverity, DiagnosticTag, Location,
    NumberOrString, Position, Range,
};
use vnet_grammar::{Code, LineIndex, Severity, Span};

/// The `source` of every diagnostic this server publishes.
pub const SOURCE: &str = "vnet";

pub fn position(doc: &Document, offset: usize) -> Position {
    let (line, character) = doc.index.utf16_position(&doc.text, offset);
    Position::new(line, character)
}

pub fn range(doc: &Document, span: Span) -> Range {
    Range::new(position(doc, span.start()), position(doc, span.end()))
}

/// The byte offset of an LSP position in `text`. A line past the end is an error; a column
/// past the end of its line means the line's end, as the protocol asks.
pub fn offset_in(text: &str, index: &LineIndex, position: Position) -> Result<usize, String> {
    index
        .offset_of_utf16(text, position.line, position.character)
        .ok_or_else(|| {
            format!(
                "position {}:{} is outside the document, which has {} line{}",
                position.line,
                position.character,
                index.line_count(),
                if index.line_count() == 1 { "" } else { "s" }
            )
        })
}

/// The byte offset of a request's position, or the `InvalidParams` error the request answers.
pub fn offset(doc: &Document, position: Position) -> jsonrpc::Result<usize> {
    offset_in(&doc.text, &doc.index, position).map_err(jsonrpc::Error::invalid_params)
}

/// A requested range as a span (see [`offset`]).
pub fn span(doc: &Document, range: Range) -> jsonrpc::Result<Span> {
    let start = offset(doc, range.start)?;
    let end = offset(doc, range.end)?;
    Ok(Span::new(start.min(end), start.max(end)))
}

pub fn severity(severity: Severity) -> DiagnosticSeverity {
    match severity {
        Severity::Error => DiagnosticSeverity::ERROR,
        Severity::Warning => DiagnosticSeverity::WARNING,
    }
}

/// One grammar diagnostic as LSP sees it: code, severity, range, related locations in the same
/// file, and the help (LSP has no field for it) as a last line of the message.
pub fn diagnostic(doc: &Document, d: &vnet_grammar::Diagnostic) -> Diagnostic {
    let mut message = d.message.clone();
    if let Some(help) = &d.help {
        message.push_str("\nhelp: ");
        message.push_str(help);
    }
    let related: Vec<DiagnosticRelatedInformation> = d
        .related
        .iter()
        .map(|r| DiagnosticRelatedInformation {
            location: Location::new(doc.uri.clone(), range(doc, r.span)),
            message: r.message.to_string(),
        })
        .collect();
    // Statements that change nothing are shown faded, as editors do for unused code.
    let tags = matches!(d.code, Code::V201 | Code::V205).then(|| vec![DiagnosticTag::UNNECESSARY]);
    Diagnostic {
        range: range(doc, d.span),
        severity: Some(severity(d.severity())),
        code: Some(NumberOrString::String(d.code.as_str().to_string())),
        code_description: None,
        source: Some(SOURCE.to_string()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        tags,
        data: None,
    }
}

pub fn diagnostics(doc: &Document) -> Vec<Diagnostic> {
    doc.analysis
        .diagnostics
        .iter()
        .map(|d| diagnostic(doc, d))
        .collect()
}

/// LSP's `RequestFailed` (-32803): the request was well-formed but cannot be carried out
/// (a rename to a taken name, formatting a file with syntax errors).
pub fn request_failed(message: impl Into<String>) -> jsonrpc::Error {
    jsonrpc::Error {
        code: jsonrpc::ErrorCode::ServerError(-32803),
        message: message.into().into(),
        data: None,
    }
}
