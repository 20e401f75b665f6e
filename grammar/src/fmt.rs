//! The formatter: the canonical layout of SPEC 3 (`vnetc fmt`).
//!
//! Built on the one parser; like rustfmt it never reformats broken input: a file with a
//! syntax or lexical error (V001–V004) is refused with those diagnostics. Semantic errors
//! (V1xx) do not stop it, since they do not change what the tokens are.
//!
//! # The layout
//! - One statement per line. `BEGIN`, `END`, HOST lines and `ADD`/`DELETE` at column 0; LINK
//!   and FORWARD lines indented four spaces. A statement written across several lines
//!   becomes one line.
//! - Single spaces between tokens; keywords upper case; MAC addresses lower case; ports as
//!   their decimal value (`08080` becomes `8080`); names as written.
//! - Lines end in `\n` (also when the input used CRLF, as gofmt and Prettier do) and the file
//!   ends with exactly one.
//!
//! # Comments
//! Comments are never lost and never reordered; trailing whitespace in them is dropped.
//! - A comment on the line where a statement ends stays there, after one space.
//! - A comment on its own line goes on its own line before the next statement, indented
//!   like it. Comments before `BEGIN` stay at the top and comments after `END` at the bottom,
//!   at column 0.
//! - A comment inside a statement written across lines moves to its own line just before
//!   that statement.
//! - One exception keeps end-of-block notes in their block: own-line comments after the
//!   last statement of a block (or after its keyword, for an empty block) that are indented
//!   in the source stay in that block, indented, up to the first comment at column 0.
//!
//! # Blank lines
//! Exactly one blank line before each block (before the comments that lead it). Elsewhere
//! a blank line the user wrote between two lines is kept, several collapsing into one, as
//! rustfmt does: between HOST lines, between the statements of a block, around comments,
//! before `BEGIN` and after `END`. Never right after `BEGIN` or a block keyword, and never
//! right before `END`.

use crate::ast::{Block, Host, Link, MatchExpr, MatchKind, Rule, SourceFile};
use crate::diag::{Code, Diagnostic};
use crate::lexer::Comment;
use crate::span::Span;

const INDENT: &str = "    ";

/// Formats a `.vnet` text, or returns its syntax and lexical errors (V001–V004) untouched.
pub fn format(text: &str) -> Result<String, Vec<Diagnostic>> {
    let parsed = crate::parse(text);
    let refused: Vec<Diagnostic> = parsed
        .diagnostics
        .into_iter()
        .filter(|d| is_syntax_error(d.code))
        .collect();
    if !refused.is_empty() {
        return Err(refused);
    }
    Ok(format_file(&parsed.file, text))
}

/// The codes that make the formatter refuse: the token stream or its order is in doubt.
pub fn is_syntax_error(code: Code) -> bool {
    matches!(code, Code::V001 | Code::V002 | Code::V003 | Code::V004)
}

/// Lays out a parsed file; `text` is the source it was parsed from (for comments and blank
/// lines). Meant for a file without V001–V004 errors, as [`format`] ensures; on any other
/// tree it still terminates without panicking and prints the statements in source order.
pub fn format_file(file: &SourceFile, text: &str) -> String {
    let statements = statements(file, text);
    let anchors = anchor_comments(&statements, &file.comments, text);
    let mut printer = Printer::new(text);
    for (i, statement) in statements.iter().enumerate() {
        print_statement(&mut printer, statement, &anchors, i);
    }
    for comment in &anchors.footer {
        printer.line(
            false,
            comment_text(comment),
            comment.span,
            Break::Keep,
            false,
        );
    }
    printer.out
}

/// What a statement is, for its indentation and the blank lines around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Begin,
    End,
    Host,
    /// An `ADD` or `DELETE` keyword.
    Block,
    /// A LINK or FORWARD inside a block.
    Body,
}

impl Role {
    fn indented(self) -> bool {
        self == Role::Body
    }

    /// A line after which no blank line is kept.
    fn opens(self) -> bool {
        matches!(self, Role::Begin | Role::Block)
    }
}

struct Statement {
    span: Span,
    role: Role,
    text: String,
}

/// Every statement of the tree with its canonical text, in source order.
fn statements(file: &SourceFile, text: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut push = |span, role, text| out.push(Statement { span, role, text });
    if let Some(span) = file.begin {
        push(span, Role::Begin, "BEGIN".to_string());
    }
    for host in &file.hosts {
        push(host.span, Role::Host, host_text(host));
    }
    for block in &file.blocks {
        push_block(&mut push, block, text);
    }
    if let Some(span) = file.end {
        push(span, Role::End, "END".to_string());
    }
    // The tree groups statements by kind; after a V001 that may differ from the source
    // order, which is the one comments and blank lines refer to. The sort is stable, so a
    // block made up before its first statement (an empty keyword span) stays before it.
    out.sort_by_key(|s| s.span.start());
    out
}

fn push_block(push: &mut impl FnMut(Span, Role, String), block: &Block, text: &str) {
    push(block.keyword, Role::Block, block.kind.keyword().to_string());
    for link in &block.links {
        push(link.span, Role::Body, link_text(link));
    }
    for rule in &block.rules {
        push(rule.span, Role::Body, rule_text(rule, text));
    }
}

fn host_text(host: &Host) -> String {
    format!(
        "HOST {} AT {} {} {}",
        host.user.as_str(),
        host.machine.as_str(),
        host.port.value,
        host.iface.as_str()
    )
}

fn link_text(link: &Link) -> String {
    format!(
        "LINK {} {} {} {}",
        link.transport.keyword(),
        link.dialer.as_str(),
        link.a.as_str(),
        link.b.as_str()
    )
}

fn rule_text(rule: &Rule, text: &str) -> String {
    let mut out = format!(
        "FORWARD {} {} {} {}",
        rule.kind.keyword(),
        rule.daemon.as_str(),
        match_text(&rule.src, text),
        match_text(&rule.dst, text)
    );
    for dest in &rule.dest {
        out.push(' ');
        out.push_str(dest.as_str());
    }
    out
}

fn match_text(expr: &MatchExpr, text: &str) -> String {
    match expr.kind {
        MatchKind::Exact(mac) => mac.to_string(),
        MatchKind::Not(mac) => format!("NOT {mac}"),
        MatchKind::Any => "ANY".to_string(),
        MatchKind::None => "NONE".to_string(),
        // Only in a tree with a V002, which `format` refuses: keep the words as written.
        MatchKind::Malformed => source_words(text, expr.span),
    }
}

/// The source text of a span with its whitespace collapsed to single spaces.
fn source_words(text: &str, span: Span) -> String {
    let slice = text.get(span.start()..span.end()).unwrap_or("");
    slice.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where each comment goes, by statement index.
struct Anchors<'c> {
    /// Own-line comments (and those from inside a multi-line statement) printed before it.
    leading: Vec<Vec<&'c Comment>>,
    /// The comment on the line where the statement ends (at most one, by construction).
    trailing: Vec<Vec<&'c Comment>>,
    /// Indented comments kept at the end of a block, after its last line.
    tail: Vec<Vec<&'c Comment>>,
    /// Comments after the last statement.
    footer: Vec<&'c Comment>,
}

/// Attaches each comment to a statement (see the module documentation for the rules).
fn anchor_comments<'c>(
    statements: &[Statement],
    comments: &'c [Comment],
    text: &str,
) -> Anchors<'c> {
    let n = statements.len();
    let mut anchors = Anchors {
        leading: vec![Vec::new(); n],
        trailing: vec![Vec::new(); n],
        tail: vec![Vec::new(); n],
        footer: Vec::new(),
    };
    // The statement after which a comment at column 0 was seen: the comments after that
    // one lead the next statement, so the tail never takes a comment out of order.
    let mut tail_closed: Option<usize> = None;
    for comment in comments {
        let at = comment.span.start();
        // Statements do not overlap, so their ends are sorted too.
        let next = statements.partition_point(|s| s.span.end() <= at);
        let prev = next.checked_sub(1);
        if next < n && statements[next].span.start() < at {
            anchors.leading[next].push(comment);
        } else if let Some(p) = prev.filter(|&p| same_line(text, statements[p].span.end(), at)) {
            anchors.trailing[p].push(comment);
        } else if next == n {
            anchors.footer.push(comment);
        } else {
            let tail = prev
                .and_then(|p| tail_candidate(statements, p))
                .filter(|&p| tail_closed != Some(p) && is_indented(text, at));
            match tail {
                Some(p) => anchors.tail[p].push(comment),
                None => {
                    tail_closed = prev;
                    anchors.leading[next].push(comment);
                }
            }
        }
    }
    anchors
}

/// The statement `p` may keep the own-line comments after it when it ends a block: it is a
/// block keyword or a block's statement, and the next statement opens a block or is END.
fn tail_candidate(statements: &[Statement], p: usize) -> Option<usize> {
    let ends_block = match statements.get(p + 1) {
        Some(next) => matches!(next.role, Role::Block | Role::End),
        None => false,
    };
    (ends_block && matches!(statements[p].role, Role::Block | Role::Body)).then_some(p)
}

fn same_line(text: &str, from: usize, to: usize) -> bool {
    text.get(from..to).is_some_and(|gap| !gap.contains('\n'))
}

/// Whether the line holding `at` starts with whitespace before it.
fn is_indented(text: &str, at: usize) -> bool {
    let before = text.get(..at).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    line_start < at
}

fn comment_text(comment: &Comment) -> &str {
    // CRLF files leave a `\r` in the comment; trailing blanks are never meaning.
    comment.text.trim_end()
}

fn print_statement(printer: &mut Printer, statement: &Statement, anchors: &Anchors, i: usize) {
    let indented = statement.role.indented();
    let mut block_start = statement.role == Role::Block;
    for comment in &anchors.leading[i] {
        let brk = if block_start {
            Break::Always
        } else {
            Break::Keep
        };
        printer.line(indented, comment_text(comment), comment.span, brk, false);
        block_start = false;
    }
    let mut line = statement.text.clone();
    for comment in &anchors.trailing[i] {
        line.push(' ');
        line.push_str(comment_text(comment));
    }
    let brk = match statement.role {
        _ if block_start => Break::Always,
        Role::End => Break::Never,
        _ => Break::Keep,
    };
    printer.line(indented, &line, statement.span, brk, statement.role.opens());
    for comment in &anchors.tail[i] {
        printer.line(
            true,
            comment_text(comment),
            comment.span,
            Break::Keep,
            false,
        );
    }
}

/// Whether a blank line goes before a line.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Break {
    /// Always one: the first line of a block.
    Always,
    /// Never: END.
    Never,
    /// One if the source had one between this line and the previous one.
    Keep,
}

struct Printer<'t> {
    text: &'t str,
    out: String,
    /// The source end of the previous line, and whether it opens a section.
    prev: Option<(usize, bool)>,
}

impl<'t> Printer<'t> {
    fn new(text: &'t str) -> Printer<'t> {
        Printer {
            text,
            out: String::with_capacity(text.len() + 16),
            prev: None,
        }
    }

    /// Writes one line; `span` is where it came from in the source, `opens` marks BEGIN and
    /// block keywords, after which no blank line is kept.
    fn line(&mut self, indented: bool, content: &str, span: Span, brk: Break, opens: bool) {
        if let Some((prev_end, prev_opens)) = self.prev {
            let blank = match brk {
                Break::Always => true,
                Break::Never => false,
                Break::Keep => !prev_opens && has_blank_line(self.text, prev_end, span.start()),
            };
            if blank {
                self.out.push('\n');
            }
        }
        if indented {
            self.out.push_str(INDENT);
        }
        self.out.push_str(content);
        self.out.push('\n');
        self.prev = Some((span.end(), opens));
    }
}

/// Whether the source between two offsets holds an empty (or whitespace-only) line. A line
/// moved out of order (a comment from inside a statement) compares with an earlier offset
/// and so never gets a blank line before its statement.
fn has_blank_line(text: &str, from: usize, to: usize) -> bool {
    let Some(gap) = text.get(from..to) else {
        return false;
    };
    let mut lines = gap.split('\n');
    lines.next();
    let mut inner: Vec<&str> = lines.collect();
    // The last piece is the start of the next line, not a whole line.
    inner.pop();
    inner.iter().any(|line| line.trim().is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(text: &str) -> String {
        match format(text) {
            Ok(out) => out,
            Err(diagnostics) => panic!("refused: {diagnostics:?}"),
        }
    }

    #[test]
    fn canonical_layout() {
        let text = "begin host u at m 80 eth0 add link tcp m m n forward edge m any 00:50:56:00:21:0A m n end";
        assert_eq!(
            fmt(text),
            "BEGIN\nHOST u AT m 80 eth0\n\nADD\n    LINK TCP m m n\n    FORWARD EDGE m ANY 00:50:56:00:21:0a m n\nEND\n"
        );
    }

    #[test]
    fn refuses_syntax_errors() {
        let errors = format("BEGIN HOST u AT m eth0 END").unwrap_err();
        assert!(errors.iter().all(|d| d.code == Code::V001));
    }

    #[test]
    fn blank_line_detection_ignores_partial_lines() {
        assert!(!has_blank_line("a\nb", 0, 3));
        assert!(has_blank_line("a\n\nb", 0, 3));
        assert!(has_blank_line("a\n \t\r\nb", 0, 6));
        assert!(!has_blank_line("a\nFORWARD x\n c", 0, 13));
    }
}
