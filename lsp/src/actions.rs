//! Quick fixes: declare a missing HOST (V101), add the missing LINK (V106), remove a
//! duplicate (V201).

use crate::convert;
use crate::document::Document;
use crate::lookup::{self, Role};
use std::collections::HashMap;
use tower_lsp_server::ls_types::{CodeAction, CodeActionKind, Range, TextEdit, WorkspaceEdit};
use vnet_grammar::ast::{RuleKind, SourceFile};
use vnet_grammar::{lexer, Code, Span};

/// The quick fixes for the diagnostics that overlap `span`.
pub fn quick_fixes(doc: &Document, span: Span) -> Vec<CodeAction> {
    let mut out = Vec::new();
    for d in &doc.analysis.diagnostics {
        let overlaps = d.span.start() <= span.end() && span.start() <= d.span.end();
        if !overlaps {
            continue;
        }
        let fix = match d.code {
            Code::V101 => declare_host(doc, doc.slice(d.span)),
            Code::V106 => add_link(doc, d.span),
            Code::V201 => remove_duplicate(doc, d.span),
            _ => None,
        };
        if let Some((title, edits)) = fix {
            out.push(CodeAction {
                title,
                kind: Some(CodeActionKind::QUICKFIX),
                diagnostics: Some(vec![convert::diagnostic(doc, d)]),
                edit: Some(WorkspaceEdit {
                    changes: Some(HashMap::from([(doc.uri.clone(), edits)])),
                    ..WorkspaceEdit::default()
                }),
                is_preferred: Some(true),
                ..CodeAction::default()
            });
        }
    }
    out
}

fn insert(doc: &Document, offset: usize, text: String) -> TextEdit {
    let at = convert::position(doc, offset);
    TextEdit::new(Range::new(at, at), text)
}

/// Whether the rest of the line after `offset` holds nothing but blanks and a comment.
fn rest_of_line_is_free(doc: &Document, offset: usize) -> bool {
    let rest = doc.text.get(offset..).unwrap_or("");
    let line = rest.split('\n').next().unwrap_or("");
    let code = line.split('#').next().unwrap_or("");
    code.trim().is_empty()
}

/// Where a new line goes after the statement ending at `end`: the next line's start when the
/// statement ends its line, else right after it (the new text then starts with a newline).
fn after_statement(doc: &Document, end: usize, line: &str) -> (usize, String) {
    if rest_of_line_is_free(doc, end) {
        let next = doc.index.line_of(end) + 1;
        if next < doc.index.line_count() {
            return (doc.index.line_start(next), format!("{line}\n"));
        }
        return (doc.text.len(), format!("\n{line}"));
    }
    (end, format!("\n{line}"))
}

fn declare_host(doc: &Document, machine: &str) -> Option<(String, Vec<TextEdit>)> {
    if machine.is_empty() {
        return None;
    }
    let file = &doc.analysis.file;
    // The user and port of the last well-formed HOST line, as the new daemon likely shares them.
    let (user, port) = file
        .hosts
        .iter()
        .rev()
        .find(|h| lexer::is_valid_name(h.user.as_str()) && (1..=65535).contains(&h.port.value))
        .map_or(("vnet".to_string(), 5000), |h| {
            (h.user.as_str().to_string(), h.port.value)
        });
    let iface = interface_named_for(file, machine).unwrap_or_else(|| "tap0".to_string());
    let line = format!("HOST {user} AT {machine} {port} {iface}");
    let (offset, text) = match (file.hosts.last(), file.begin) {
        (Some(last), _) => after_statement(doc, last.span.end(), &line),
        (None, Some(begin)) => after_statement(doc, begin.end(), &line),
        (None, None) => (0, format!("{line}\n")),
    };
    Some((
        format!("Declare `{machine}`: {line}"),
        vec![insert(doc, offset, text)],
    ))
}

/// The interface the file's INTERFACE rules name for `machine`, if any.
fn interface_named_for(file: &SourceFile, machine: &str) -> Option<String> {
    lookup::items(file)
        .into_iter()
        .find_map(|item| match item.role {
            Role::Interface { daemon, .. } if daemon == machine => Some(item.text),
            _ => None,
        })
}

fn add_link(doc: &Document, dest: Span) -> Option<(String, Vec<TextEdit>)> {
    let file = &doc.analysis.file;
    let (block, rule) = file.blocks.iter().find_map(|block| {
        block
            .rules
            .iter()
            .find(|r| {
                r.kind == RuleKind::Edge
                    && r.dest.first().map(|n| n.span.start()) == Some(dest.start())
            })
            .map(|rule| (block, rule))
    })?;
    let peer = rule.dest.get(1)?;
    let daemon = rule.daemon.as_str();
    let line = format!("LINK TCP {daemon} {daemon} {}", peer.as_str());
    // Links come before the rules of their block: the new one goes above the block's first rule.
    let first = block.rules.first()?;
    let line_start = doc.index.line_start(doc.index.line_of(first.span.start()));
    let indent = doc.text.get(line_start..first.span.start()).unwrap_or("");
    let edit = if indent.trim().is_empty() {
        insert(doc, line_start, format!("{indent}{line}\n"))
    } else {
        insert(doc, first.span.start(), format!("{line} "))
    };
    Some((format!("Add the link: {line}"), vec![edit]))
}

fn remove_duplicate(doc: &Document, statement: Span) -> Option<(String, Vec<TextEdit>)> {
    let what = doc
        .slice(statement)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if what.is_empty() {
        return None;
    }
    // A block left empty would be V204: the block goes with its only statement.
    let block = doc.analysis.file.blocks.iter().find(|b| {
        let statements = b.links.len() + b.rules.len();
        statements == 1
            && (b.links.iter().any(|l| l.span == statement)
                || b.rules.iter().any(|r| r.span == statement))
    });
    let from = match block {
        Some(block) if !block.keyword.is_empty() => block.keyword.start(),
        _ => statement.start(),
    };
    let line_start = doc.index.line_start(doc.index.line_of(from));
    let end_line = doc.index.line_of(statement.end());
    let rest_of_line = doc
        .text
        .get(statement.end()..)
        .unwrap_or("")
        .split('\n')
        .next()
        .unwrap_or("");
    let alone = doc
        .text
        .get(line_start..from)
        .is_some_and(|s| s.trim().is_empty())
        && rest_of_line_is_free(doc, statement.end());
    let span = if alone {
        // The whole lines go, with their line break and a comment at their end.
        let end = if end_line + 1 < doc.index.line_count() {
            doc.index.line_start(end_line + 1)
        } else {
            doc.text.len()
        };
        Span::new(line_start, end)
    } else {
        // Only the statement and the blanks after it.
        let blanks = rest_of_line.len() - rest_of_line.trim_start_matches([' ', '\t']).len();
        Span::new(from, statement.end() + blanks)
    };
    Some((
        format!("Remove the duplicate `{what}`"),
        vec![TextEdit::new(convert::range(doc, span), String::new())],
    ))
}
