//! Semantic tokens: keywords, comments, machines, interfaces, users, ports and MACs, with the
//! roles the tree gives them (a machine's declaration is marked).

use crate::document::Document;
use crate::lookup::{self, Role};
use std::collections::HashMap;
use tower_lsp_server::ls_types::{
    SemanticToken, SemanticTokenModifier, SemanticTokenType, SemanticTokensLegend,
};
use vnet_grammar::lexer::{self, Tok};
use vnet_grammar::Span;

/// The legend's token types, indexed by the constants below.
pub const TYPES: &[SemanticTokenType] = &[
    SemanticTokenType::KEYWORD,
    SemanticTokenType::COMMENT,
    SemanticTokenType::NUMBER,
    SemanticTokenType::VARIABLE,
    SemanticTokenType::PROPERTY,
    SemanticTokenType::PARAMETER,
    SemanticTokenType::ENUM_MEMBER,
];
const KEYWORD: u32 = 0;
const COMMENT: u32 = 1;
const NUMBER: u32 = 2;
const MACHINE: u32 = 3;
const INTERFACE: u32 = 4;
const USER: u32 = 5;
const MAC: u32 = 6;

pub const MODIFIERS: &[SemanticTokenModifier] = &[SemanticTokenModifier::DECLARATION];
const DECLARATION: u32 = 1;

pub fn legend() -> SemanticTokensLegend {
    SemanticTokensLegend {
        token_types: TYPES.to_vec(),
        token_modifiers: MODIFIERS.to_vec(),
    }
}

/// The tokens whose start lies in `within` (the whole text when `None`), encoded relative to
/// each other as LSP asks.
pub fn tokens(doc: &Document, within: Option<Span>) -> Vec<SemanticToken> {
    let roles: HashMap<usize, (u32, u32)> = lookup::items(&doc.analysis.file)
        .into_iter()
        .map(|item| {
            let kind = match item.role {
                Role::Machine { declaration } => {
                    (MACHINE, if declaration { DECLARATION } else { 0 })
                }
                Role::Interface { declaration, .. } => {
                    (INTERFACE, if declaration { DECLARATION } else { 0 })
                }
                Role::User { .. } => (USER, 0),
                Role::Port { .. } => (NUMBER, 0),
                Role::Mac(_) => (MAC, 0),
            };
            (item.span.start(), kind)
        })
        .collect();
    let lexed = lexer::lex(&doc.text);
    let mut spans: Vec<(Span, u32, u32)> =
        Vec::with_capacity(lexed.tokens.len() + lexed.comments.len());
    for (start, tok, end) in &lexed.tokens {
        let span = Span::new(*start, *end);
        let kind = match tok {
            Tok::Mac(Some(_)) => Some((MAC, 0)),
            Tok::Number(_) => Some((NUMBER, 0)),
            Tok::Mac(None) | Tok::Name(_) => roles.get(start).copied(),
            keyword => lookup::keyword_text(keyword).map(|_| (KEYWORD, 0)),
        };
        if let Some((ty, modifiers)) = kind.map(|k| roles.get(start).copied().unwrap_or(k)) {
            spans.push((span, ty, modifiers));
        }
    }
    spans.extend(lexed.comments.iter().map(|c| (c.span, COMMENT, 0)));
    spans.sort_by_key(|(span, _, _)| span.start());
    if let Some(within) = within {
        spans.retain(|(span, _, _)| {
            within.start() <= span.start() && span.start() < within.end().max(within.start() + 1)
        });
    }
    let mut out = Vec::with_capacity(spans.len());
    let (mut last_line, mut last_start) = (0u32, 0u32);
    for (span, token_type, modifiers) in spans {
        let (line, start) = doc.index.utf16_position(&doc.text, span.start());
        let (end_line, end) = doc.index.utf16_position(&doc.text, span.end());
        if end_line != line {
            continue; // Tokens never span lines; a stale span would.
        }
        out.push(SemanticToken {
            delta_line: line - last_line,
            delta_start: if line == last_line {
                start - last_start
            } else {
                start
            },
            length: end - start,
            token_type,
            token_modifiers_bitset: modifiers,
        });
        last_line = line;
        last_start = start;
    }
    out
}
