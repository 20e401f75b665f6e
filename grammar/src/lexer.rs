//! The lexer: a logos scanner whose tokens feed the LALRPOP parser (its external lexer).
//!
//! Lexing never fails. A word that breaks a lexical rule is reported (V002, V003, V004) and
//! still handed to the parser as the token it most resembles, so one mistake costs one
//! diagnostic and parsing goes on.

use crate::diag::{Code, Diagnostic, MAX_DIAGNOSTICS};
use crate::mac::Mac;
use crate::span::Span;
use logos::Logos;
use std::fmt;

/// What logos recognises. A token runs to the next whitespace or `#` (SPEC 2.1): the
/// catch-all `Word` is the longest match for anything that is not a well-formed token.
#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq)]
// A byte-order mark (as some Windows editors write) counts as whitespace.
#[logos(skip r"[ \t\r\n\x0B\x0C\u{FEFF}]+")]
enum Raw {
    #[token("BEGIN", priority = 20, ignore(case))]
    Begin,
    #[token("END", priority = 20, ignore(case))]
    End,
    #[token("HOST", priority = 20, ignore(case))]
    Host,
    #[token("AT", priority = 20, ignore(case))]
    At,
    #[token("ADD", priority = 20, ignore(case))]
    Add,
    #[token("DELETE", priority = 20, ignore(case))]
    Delete,
    #[token("LINK", priority = 20, ignore(case))]
    Link,
    #[token("TCP", priority = 20, ignore(case))]
    Tcp,
    #[token("UDP", priority = 20, ignore(case))]
    Udp,
    #[token("FORWARD", priority = 20, ignore(case))]
    Forward,
    #[token("EDGE", priority = 20, ignore(case))]
    Edge,
    #[token("INTERFACE", priority = 20, ignore(case))]
    Interface,
    #[token("NOT", priority = 20, ignore(case))]
    Not,
    #[token("ANY", priority = 20, ignore(case))]
    Any,
    #[token("NONE", priority = 20, ignore(case))]
    None,
    #[regex(r"#[^\n]*", allow_greedy = true)]
    Comment,
    #[regex(r"[0-9A-Fa-f][0-9A-Fa-f](:[0-9A-Fa-f][0-9A-Fa-f]){5}", priority = 15)]
    Mac,
    #[regex(r"[0-9]+", priority = 12)]
    Number,
    #[regex(r"[A-Za-z0-9_.\-]+", priority = 10)]
    Name,
    #[regex(r"[^ \t\r\n\x0B\x0C\u{FEFF}#]+", priority = 1)]
    Word,
}

/// A token as the parser sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tok<'input> {
    Begin,
    End,
    Host,
    At,
    Add,
    Delete,
    Link,
    Tcp,
    Udp,
    Forward,
    Edge,
    Interface,
    Not,
    Any,
    None,
    /// A MAC address; `None` when it was malformed (already reported as V002).
    Mac(Option<Mac>),
    /// A decimal number (a port); the value saturates at `u32::MAX`.
    Number(u32),
    /// A name: machine, user or interface.
    Name(&'input str),
}

impl Tok<'_> {
    /// How a token is named in "expected …" messages and in V001's "unexpected …".
    pub fn describe(&self) -> String {
        match self {
            Tok::Mac(_) => "MAC address".to_string(),
            Tok::Number(n) => format!("number `{n}`"),
            Tok::Name(name) => format!("name `{name}`"),
            keyword => format!("`{}`", keyword_text(keyword).unwrap_or("?")),
        }
    }
}

/// The upper-case spelling of a keyword token; `None` for MACs, numbers and names.
pub fn keyword_text(tok: &Tok) -> Option<&'static str> {
    Some(match tok {
        Tok::Begin => "BEGIN",
        Tok::End => "END",
        Tok::Host => "HOST",
        Tok::At => "AT",
        Tok::Add => "ADD",
        Tok::Delete => "DELETE",
        Tok::Link => "LINK",
        Tok::Tcp => "TCP",
        Tok::Udp => "UDP",
        Tok::Forward => "FORWARD",
        Tok::Edge => "EDGE",
        Tok::Interface => "INTERFACE",
        Tok::Not => "NOT",
        Tok::Any => "ANY",
        Tok::None => "NONE",
        _ => return None,
    })
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Every keyword of the language in upper case (SPEC 2.1).
pub const KEYWORDS: &[&str] = &[
    "BEGIN",
    "END",
    "HOST",
    "AT",
    "ADD",
    "DELETE",
    "LINK",
    "TCP",
    "UDP",
    "FORWARD",
    "EDGE",
    "INTERFACE",
    "NOT",
    "ANY",
    "NONE",
];

pub fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Whether `word` is a valid machine, user or interface name (SPEC 2.1).
pub fn is_valid_name(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !word.bytes().all(|b| b.is_ascii_digit())
        && !is_keyword(word)
}

/// A comment and where it is; the formatter and the LSP keep them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub span: Span,
    pub text: String,
}

pub struct Lexed<'input> {
    pub tokens: Vec<(usize, Tok<'input>, usize)>,
    pub comments: Vec<Comment>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Splits `text` into tokens and comments, reporting lexical errors on the side.
pub fn lex(text: &str) -> Lexed<'_> {
    let mut lexer = Lexer::new(text);
    let tokens = lexer.by_ref().collect();
    Lexed {
        tokens,
        comments: lexer.comments,
        diagnostics: lexer.diagnostics,
    }
}

/// The token stream the parser pulls from, so a large file is never held as a token vector.
///
/// After [`MAX_DIAGNOSTICS`] lexical errors the input is junk: the lexer stops yielding tokens
/// (so parsing ends quickly) and [`Lexer::count_rest`] counts the errors it did not report.
pub struct Lexer<'input> {
    raw: logos::Lexer<'input, Raw>,
    pub comments: Vec<Comment>,
    pub diagnostics: Vec<Diagnostic>,
    gave_up: bool,
}

impl<'input> Lexer<'input> {
    pub fn new(text: &'input str) -> Lexer<'input> {
        Lexer {
            raw: Raw::lexer(text),
            comments: Vec::new(),
            diagnostics: Vec::new(),
            gave_up: false,
        }
    }

    /// Whether the lexer stopped early because of too many errors.
    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// After giving up: how many more lexical errors the rest of the input holds.
    pub fn count_rest(&mut self) -> usize {
        let mut count = 0;
        while let Some(raw) = self.raw.next() {
            count += match raw {
                Err(()) | Ok(Raw::Word) => 1,
                Ok(Raw::Number) => usize::from(!port_in_range(self.raw.slice())),
                _ => 0,
            };
        }
        count
    }
}

fn port_in_range(digits: &str) -> bool {
    digits
        .parse::<u32>()
        .is_ok_and(|v| (1..=65535).contains(&v))
}

impl<'input> Iterator for Lexer<'input> {
    type Item = (usize, Tok<'input>, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.gave_up {
            return None;
        }
        loop {
            let raw = self.raw.next()?;
            let range = self.raw.span();
            let slice = self.raw.slice();
            let span = Span::new(range.start, range.end);
            let tok = match raw {
                // The catch-all `Word` covers every byte sequence, so logos cannot fail here;
                // should it ever, the slice is treated as a word all the same.
                Err(()) | Ok(Raw::Word) => classify_word(slice, span, &mut self.diagnostics),
                Ok(Raw::Comment) => {
                    self.comments.push(Comment {
                        span,
                        text: slice.to_string(),
                    });
                    continue;
                }
                Ok(Raw::Mac) => Tok::Mac(Mac::parse(slice)),
                Ok(Raw::Number) => {
                    if !port_in_range(slice) {
                        self.diagnostics.push(
                            Diagnostic::new(
                                Code::V004,
                                span,
                                format!("port `{slice}` is out of range"),
                            )
                            .with_help("a port is a decimal number from 1 to 65535"),
                        );
                    }
                    Tok::Number(slice.parse::<u32>().unwrap_or(u32::MAX))
                }
                Ok(Raw::Name) => Tok::Name(slice),
                Ok(Raw::Begin) => Tok::Begin,
                Ok(Raw::End) => Tok::End,
                Ok(Raw::Host) => Tok::Host,
                Ok(Raw::At) => Tok::At,
                Ok(Raw::Add) => Tok::Add,
                Ok(Raw::Delete) => Tok::Delete,
                Ok(Raw::Link) => Tok::Link,
                Ok(Raw::Tcp) => Tok::Tcp,
                Ok(Raw::Udp) => Tok::Udp,
                Ok(Raw::Forward) => Tok::Forward,
                Ok(Raw::Edge) => Tok::Edge,
                Ok(Raw::Interface) => Tok::Interface,
                Ok(Raw::Not) => Tok::Not,
                Ok(Raw::Any) => Tok::Any,
                Ok(Raw::None) => Tok::None,
            };
            if self.diagnostics.len() >= MAX_DIAGNOSTICS {
                self.gave_up = true;
            }
            return Some((span.start(), tok, span.end()));
        }
    }
}

/// A word that is no well-formed token: a malformed MAC when it holds `:`, else a name with a
/// character outside the alphabets. It is passed on as a MAC or a name so parsing goes on.
fn classify_word<'input>(
    word: &'input str,
    span: Span,
    diagnostics: &mut Vec<Diagnostic>,
) -> Tok<'input> {
    if word.contains(':') {
        diagnostics.push(
            Diagnostic::new(
                Code::V002,
                span,
                format!("malformed MAC address `{}`", printable(word)),
            )
            .with_help(
                "a MAC address is six pairs of hex digits joined by `:`, e.g. 00:50:56:00:21:01",
            ),
        );
        return Tok::Mac(None);
    }
    let (offset, ch) = word
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
        .unwrap_or((0, '?'));
    let at = span.start() + offset;
    let message = if ch == char::REPLACEMENT_CHARACTER {
        "unexpected byte: the file is not valid UTF-8 here".to_string()
    } else if ch.is_control() || ch.is_whitespace() {
        format!("unexpected character U+{:04X}", ch as u32)
    } else {
        format!("unexpected character `{ch}`")
    };
    diagnostics.push(
        Diagnostic::new(Code::V003, Span::new(at, at + ch.len_utf8()), message)
            .with_help("names use ASCII letters, digits, `_`, `-` and `.`"),
    );
    Tok::Name(word)
}

/// Keeps a message readable when the offending word is binary junk.
fn printable(word: &str) -> String {
    let mut out: String = word
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if word.chars().count() > 40 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> Vec<Tok<'_>> {
        lex(text).tokens.into_iter().map(|t| t.1).collect()
    }

    #[test]
    fn keywords_are_case_insensitive_and_names_are_not_keywords() {
        assert_eq!(toks("begin At aT"), vec![Tok::Begin, Tok::At, Tok::At]);
        assert_eq!(
            toks("ATX 10.0.0.2 host-1"),
            vec![Tok::Name("ATX"), Tok::Name("10.0.0.2"), Tok::Name("host-1")]
        );
        assert_eq!(
            toks("8080 00:50:56:00:21:01"),
            vec![Tok::Number(8080), Tok::Mac(Mac::parse("00:50:56:00:21:01"))]
        );
    }

    #[test]
    fn a_word_with_a_colon_is_one_malformed_mac() {
        let lexed = lex("00:50:56:00:21:01x 00:50:@");
        assert_eq!(lexed.tokens.len(), 2);
        assert!(lexed.diagnostics.iter().all(|d| d.code == Code::V002));
        assert_eq!(lexed.diagnostics.len(), 2);
    }

    #[test]
    fn a_bad_character_is_v003_at_that_character() {
        let lexed = lex("host@1");
        assert_eq!(lexed.tokens, vec![(0, Tok::Name("host@1"), 6)]);
        assert_eq!(lexed.diagnostics[0].code, Code::V003);
        assert_eq!(lexed.diagnostics[0].span, Span::new(4, 5));
    }

    #[test]
    fn comments_end_words_and_lines() {
        let lexed = lex("host#c1\n# c2\nx");
        assert_eq!(lexed.tokens.len(), 2);
        assert_eq!(lexed.comments.len(), 2);
        assert_eq!(lexed.comments[0].text, "#c1");
    }

    #[test]
    fn ports_out_of_range_are_v004() {
        for text in ["0", "65536", "99999999999999"] {
            assert_eq!(lex(text).diagnostics[0].code, Code::V004, "{text}");
        }
        assert!(lex("65535").diagnostics.is_empty());
    }
}
