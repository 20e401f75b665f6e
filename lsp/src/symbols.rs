//! Document symbols (the HOST lines and the blocks with their statements) and folding ranges.

use crate::convert;
use crate::document::Document;
use tower_lsp_server::ls_types::{DocumentSymbol, FoldingRange, FoldingRangeKind, SymbolKind};
use vnet_grammar::Span;

/// A statement's text on one line, with single spaces.
fn one_line(doc: &Document, span: Span) -> String {
    doc.slice(span)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[allow(deprecated)] // `DocumentSymbol::deprecated` must be named to build the struct.
fn symbol(
    doc: &Document,
    name: String,
    detail: Option<String>,
    kind: SymbolKind,
    span: Span,
    selection: Span,
    children: Vec<DocumentSymbol>,
) -> DocumentSymbol {
    DocumentSymbol {
        name,
        detail,
        kind,
        tags: None,
        deprecated: None,
        range: convert::range(doc, span),
        selection_range: convert::range(doc, selection),
        children: (!children.is_empty()).then_some(children),
    }
}

pub fn document_symbols(doc: &Document) -> Vec<DocumentSymbol> {
    let file = &doc.analysis.file;
    let mut out = Vec::new();
    for host in &file.hosts {
        out.push(symbol(
            doc,
            host.machine.as_str().to_string(),
            Some(one_line(doc, host.span)),
            SymbolKind::OBJECT,
            host.span,
            host.machine.span,
            Vec::new(),
        ));
    }
    for block in &file.blocks {
        let mut children = Vec::new();
        for link in &block.links {
            children.push(symbol(
                doc,
                one_line(doc, link.span),
                None,
                SymbolKind::PROPERTY,
                link.span,
                link.span,
                Vec::new(),
            ));
        }
        for rule in &block.rules {
            children.push(symbol(
                doc,
                one_line(doc, rule.span),
                None,
                SymbolKind::METHOD,
                rule.span,
                rule.span,
                Vec::new(),
            ));
        }
        let detail = format!(
            "{} link{}, {} rule{}",
            block.links.len(),
            if block.links.len() == 1 { "" } else { "s" },
            block.rules.len(),
            if block.rules.len() == 1 { "" } else { "s" }
        );
        let span = block.span();
        out.push(symbol(
            doc,
            block.kind.keyword().to_string(),
            Some(detail),
            SymbolKind::NAMESPACE,
            span,
            block.keyword,
            children,
        ));
    }
    out
}

fn fold(doc: &Document, span: Span, kind: FoldingRangeKind) -> Option<FoldingRange> {
    let start_line = doc.index.line_of(span.start()) as u32;
    let end_line = doc.index.line_of(span.end()) as u32;
    (end_line > start_line).then(|| FoldingRange {
        start_line,
        end_line,
        kind: Some(kind),
        ..FoldingRange::default()
    })
}

/// The program, the run of HOST lines, each block, and each run of two or more own-line
/// comments.
pub fn folding_ranges(doc: &Document) -> Vec<FoldingRange> {
    let file = &doc.analysis.file;
    let mut out = Vec::new();
    if let (Some(begin), Some(end)) = (file.begin, file.end) {
        out.extend(fold(doc, begin.cover(end), FoldingRangeKind::Region));
    }
    if let (Some(first), Some(last)) = (file.hosts.first(), file.hosts.last()) {
        out.extend(fold(
            doc,
            first.span.cover(last.span),
            FoldingRangeKind::Region,
        ));
    }
    for block in &file.blocks {
        out.extend(fold(doc, block.span(), FoldingRangeKind::Region));
    }
    let mut run: Option<(Span, usize)> = None;
    for comment in &file.comments {
        let line = doc.index.line_of(comment.span.start());
        let own_line = doc
            .text
            .get(doc.index.line_start(line)..comment.span.start())
            .is_some_and(|before| before.trim().is_empty());
        if !own_line {
            continue; // A comment after a statement folds with it, not with its neighbours.
        }
        run = match run {
            Some((span, last)) if line == last + 1 => Some((span.cover(comment.span), line)),
            Some((span, _)) => {
                out.extend(fold(doc, span, FoldingRangeKind::Comment));
                Some((comment.span, line))
            }
            None => Some((comment.span, line)),
        };
    }
    if let Some((span, _)) = run {
        out.extend(fold(doc, span, FoldingRangeKind::Comment));
    }
    out.sort_by_key(|f| (f.start_line, std::cmp::Reverse(f.end_line)));
    out
}
