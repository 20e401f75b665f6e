//! The text cut into statements: each starts at a statement keyword (BEGIN, HOST, ADD, DELETE,
//! LINK, FORWARD, END) and runs to the next, and is lexed and parsed on its own.
//!
//! Why that is exact: a token never crosses whitespace, so lexing may start at any token; a
//! statement keyword is never inside a statement, so the grammar starts a statement at each
//! one, and its error recovery resynchronises there. What a statement alone cannot know is
//! the token that follows it, which a syntax error at its end names; that error is kept
//! unresolved ([`SyntaxError::AtEnd`]) until the statements are put together.

use super::spans::MapSpans;
use crate::ast::Stmt;
use crate::diag::Diagnostic;
use crate::lexer::{Comment, Lexer, Tok};
use crate::parse::{parse_statements, syntax_error};
use crate::span::Span;
use lalrpop_util::ParseError;

/// One statement (or the text before the first one), with positions relative to its start.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    /// Where it starts in the text: its keyword, or 0 for the text before the first keyword.
    pub start: usize,
    /// The statement keyword it starts with, `None` for the text before the first keyword.
    pub keyword: Option<(Tok<'static>, Span)>,
    /// What the grammar reduced (one statement, or none for empty text before the first).
    pub stmts: Vec<Stmt>,
    pub errors: Vec<SyntaxError>,
    /// The lexer's diagnostics (V002–V004), in text order.
    pub lexical: Vec<Diagnostic>,
    pub comments: Vec<Comment>,
}

/// A syntax error of a statement parsed on its own.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SyntaxError {
    /// It names a token of the statement: complete.
    Here(Diagnostic),
    /// The statement ended early: the error names whatever follows it (the next statement's
    /// keyword, or the end of the text), with these expectations.
    AtEnd {
        location: usize,
        expected: Vec<String>,
    },
    /// The grammar's own error value (never made: the tokens carry no errors), which is
    /// reported at the end of the text.
    User,
}

impl SyntaxError {
    /// The diagnostic, given the chunk's start, what follows the chunk (the next keyword in
    /// absolute positions, or `None` at the end of the text) and the text's length.
    pub fn resolve(
        &self,
        start: usize,
        next: Option<(Tok<'static>, Span)>,
        len: usize,
    ) -> Diagnostic {
        match self {
            SyntaxError::Here(d) => super::spans::shifted(d, start),
            SyntaxError::AtEnd { location, expected } => {
                let error = match next {
                    Some((tok, span)) => ParseError::UnrecognizedToken {
                        token: (span.start(), tok, span.end()),
                        expected: expected.clone(),
                    },
                    None => ParseError::UnrecognizedEof {
                        location: start + location,
                        expected: expected.clone(),
                    },
                };
                syntax_error(error, len)
            }
            SyntaxError::User => syntax_error(ParseError::User { error: () }, len),
        }
    }
}

impl Chunk {
    /// Whether two chunks read the same, wherever they are (and whatever their comments say).
    pub fn same_as(&self, other: &Chunk) -> bool {
        self.keyword == other.keyword
            && self.errors == other.errors
            && self.lexical == other.lexical
            && self.stmts.len() == other.stmts.len()
            && self
                .stmts
                .iter()
                .zip(&other.stmts)
                .all(|(a, b)| same_stmt(a, b))
    }
}

fn same_stmt(a: &Stmt, b: &Stmt) -> bool {
    match (a, b) {
        (Stmt::Begin(a), Stmt::Begin(b)) | (Stmt::End(a), Stmt::End(b)) => a == b,
        (Stmt::Block(ka, a), Stmt::Block(kb, b)) => ka == kb && a == b,
        (Stmt::Host(a), Stmt::Host(b)) => a == b,
        (Stmt::Link(a), Stmt::Link(b)) => a == b,
        (Stmt::Rule(a), Stmt::Rule(b)) => a == b,
        (Stmt::Error, Stmt::Error) => true,
        _ => false,
    }
}

/// The keyword tokens that start a statement, without the text's lifetime.
fn statement_keyword(tok: &Tok) -> Option<Tok<'static>> {
    Some(match tok {
        Tok::Begin => Tok::Begin,
        Tok::End => Tok::End,
        Tok::Host => Tok::Host,
        Tok::Add => Tok::Add,
        Tok::Delete => Tok::Delete,
        Tok::Link => Tok::Link,
        Tok::Forward => Tok::Forward,
        _ => return None,
    })
}

/// A chunk being read: its tokens so far, relative to its start.
struct Pending<'t> {
    start: usize,
    keyword: Option<(Tok<'static>, Span)>,
    tokens: Vec<(usize, Tok<'t>, usize)>,
    lexical: Vec<Diagnostic>,
    comments: Vec<Comment>,
}

impl<'t> Pending<'t> {
    fn new(start: usize, keyword: Option<(Tok<'static>, Span)>) -> Pending<'t> {
        Pending {
            start,
            keyword,
            tokens: Vec::new(),
            lexical: Vec::new(),
            comments: Vec::new(),
        }
    }

    fn parse(self) -> Chunk {
        let parsed = parse_statements(self.tokens);
        let errors = parsed
            .errors
            .into_iter()
            .map(|error| match error {
                ParseError::UnrecognizedEof { location, expected } => {
                    SyntaxError::AtEnd { location, expected }
                }
                ParseError::User { error: () } => SyntaxError::User,
                // Positions are relative, so is the diagnostic; the length is not used.
                other => SyntaxError::Here(syntax_error(other, 0)),
            })
            .collect();
        Chunk {
            start: self.start,
            keyword: self.keyword,
            stmts: parsed.stmts,
            errors,
            lexical: self.lexical,
            comments: self.comments,
        }
    }
}

/// Lexes and parses `text` from `from` into chunks. `from` must be the start of a chunk of
/// the whole text: 0 (`prefix`: the first chunk is the text before any keyword) or a
/// statement keyword. Stops before a keyword at which `resume` says the old chunks take over,
/// and returns where; `None` when `from` was not a keyword after all.
pub(crate) fn read(
    text: &str,
    from: usize,
    prefix: bool,
    mut resume: impl FnMut(usize) -> bool,
) -> Option<(Vec<Chunk>, Option<usize>)> {
    let mut lexer = Lexer::new(text.get(from..)?);
    let mut chunks = Vec::new();
    let mut pending = prefix.then(|| Pending::new(from, None));
    loop {
        let next = lexer.next();
        if let Some(pending) = &mut pending {
            // Comments come out of the lexer ahead of the token after them.
            for mut comment in lexer.comments.drain(..) {
                comment.span.map_spans(&|p| p + from - pending.start);
                pending.comments.push(comment);
            }
        }
        let Some((l, tok, r)) = next else { break };
        let (l, r) = (l + from, r + from);
        if let Some(keyword) = statement_keyword(&tok) {
            if l > from && resume(l) {
                chunks.extend(pending.map(Pending::parse));
                return Some((chunks, Some(l)));
            }
            chunks.extend(pending.take().map(Pending::parse));
            pending = Some(Pending::new(l, Some((keyword, Span::new(0, r - l)))));
        }
        let pending = pending.as_mut()?;
        pending
            .tokens
            .push((l - pending.start, tok, r - pending.start));
        // Taken after each token, so the lexer never reaches its cap and gives up: whether
        // the whole text would have is decided when the chunks are put together.
        for mut d in lexer.diagnostics.drain(..) {
            d.map_spans(&|p| p + from - pending.start);
            pending.lexical.push(d);
        }
    }
    chunks.extend(pending.map(Pending::parse));
    Some((chunks, None))
}
