//! Parsing: lexer → LALRPOP statements → the structure pass that builds the [`SourceFile`].
//!
//! Parsing never fails: it returns the tree and the diagnostics (V001–V004).

use crate::ast::{Block, BlockKind, SourceFile, Stmt};
use crate::diag::{Code, Diagnostic};
use crate::lexer::{self, Tok};
use crate::span::{Span, MAX_TEXT_LEN};
use lalrpop_util::{lalrpop_mod, ErrorRecovery, ParseError};

lalrpop_mod!(
    #[allow(clippy::all, clippy::pedantic, unused_parens)]
    grammar,
    "/parser.rs"
);

#[derive(Clone, Debug, Default)]
pub struct Parsed {
    pub file: SourceFile,
    pub diagnostics: Vec<Diagnostic>,
    /// Errors counted but not kept: the input was junk, and parsing stopped early.
    pub dropped: usize,
}

pub fn parse(text: &str) -> Parsed {
    if let Some(refused) = refuse_oversized(text.len()) {
        return refused;
    }
    let mut lexer = lexer::Lexer::new(text);
    let mut recovered = Vec::new();
    let mut structure = Structure::default();
    // Each statement goes to the structure pass as it is reduced, so no vector of statements
    // is ever built: on a large file that vector would double the peak memory.
    let result = grammar::StatementsParser::new().parse(&mut recovered, &mut structure, &mut lexer);
    let dropped = if lexer.gave_up() {
        lexer.count_rest()
    } else {
        0
    };
    let mut diagnostics = std::mem::take(&mut lexer.diagnostics);
    let comments = std::mem::take(&mut lexer.comments);
    let mut eof_reported = false;
    for recovery in recovered {
        let d = syntax_error(recovery.error, text.len());
        eof_reported |= d.span.start() == text.len();
        diagnostics.push(d);
    }
    // Recovery at the statement level accepts every input, so this is only a safety net.
    if let Err(error) = result {
        diagnostics.push(syntax_error(error, text.len()));
    }
    let mut file = structure.finish(text.len(), eof_reported || dropped > 0, &mut diagnostics);
    file.comments = comments;
    Parsed {
        file,
        diagnostics,
        dropped,
    }
}

/// Spans hold 32-bit offsets, so a text longer than [`MAX_TEXT_LEN`] is not read at all: one
/// V001 says why. The front ends refuse such files long before (vnetc reads at most 256 MiB).
fn refuse_oversized(len: usize) -> Option<Parsed> {
    (len > MAX_TEXT_LEN).then(|| Parsed {
        diagnostics: vec![Diagnostic::new(
            Code::V001,
            Span::new(0, 0),
            format!("the text is {len} bytes long; the language reads at most {MAX_TEXT_LEN}"),
        )],
        ..Parsed::default()
    })
}

/// The structure pass: puts statements in place as the parser reduces them: BEGIN, HOST
/// lines, blocks (links before rules), END. Each misplaced statement is one V001 and is kept
/// where it most plausibly belongs.
#[derive(Default)]
pub struct Structure {
    file: SourceFile,
    seen_any: bool,
    diagnostics: Vec<Diagnostic>,
    /// Set for [`parse_statements`]: statements are kept as the grammar reduced them.
    recorded: Option<Vec<Stmt>>,
}

/// What the grammar makes of a run of tokens on its own (the incremental analysis parses one
/// statement at a time): the statements and the syntax errors it recovered from, in order.
pub(crate) struct Statements<'t> {
    pub stmts: Vec<Stmt>,
    pub errors: Vec<ParseError<usize, Tok<'t>, ()>>,
}

/// Parses `tokens` as [`parse`] would parse them within a whole text, without the structure
/// pass. A statement's syntax error at its end is reported as `UnrecognizedEof`; within a text
/// it is `UnrecognizedToken` at the next statement keyword, with the same expectations.
pub(crate) fn parse_statements<'t>(
    tokens: impl IntoIterator<Item = (usize, Tok<'t>, usize)>,
) -> Statements<'t> {
    let mut recovered: Vec<ErrorRecovery<usize, Tok<'t>, ()>> = Vec::new();
    let mut structure = Structure {
        recorded: Some(Vec::new()),
        ..Structure::default()
    };
    let result = grammar::StatementsParser::new().parse(&mut recovered, &mut structure, tokens);
    let mut errors: Vec<_> = recovered.into_iter().map(|r| r.error).collect();
    errors.extend(result.err());
    Statements {
        stmts: structure.recorded.unwrap_or_default(),
        errors,
    }
}

impl Structure {
    pub fn push(&mut self, stmt: Stmt) {
        if let Some(recorded) = &mut self.recorded {
            recorded.push(stmt);
            return;
        }
        let first = !self.seen_any;
        self.seen_any = true;
        let (file, diagnostics) = (&mut self.file, &mut self.diagnostics);
        if matches!(stmt, Stmt::Error) {
            if let Some(block) = file.blocks.last_mut() {
                block.recovered = true;
            }
            return;
        }
        let span = stmt_span(&stmt);
        if first && !matches!(stmt, Stmt::Begin(_)) {
            diagnostics.push(unexpected(
                span,
                &stmt,
                "expected `BEGIN`: a program starts with BEGIN",
            ));
        }
        if let Some(end) = file.end {
            if !matches!(stmt, Stmt::End(_)) {
                diagnostics.push(
                    unexpected(span, &stmt, "expected end of file: nothing may follow END")
                        .with_related(end, "the program ended here"),
                );
            }
        }
        match stmt {
            Stmt::Begin(span) => match file.begin {
                None if file.hosts.is_empty() && file.blocks.is_empty() => file.begin = Some(span),
                _ => diagnostics.push(Diagnostic::new(
                    Code::V001,
                    span,
                    "unexpected `BEGIN`: a program has one BEGIN, at its start",
                )),
            },
            Stmt::End(span) => match file.end {
                None => file.end = Some(span),
                Some(first_end) => diagnostics.push(
                    Diagnostic::new(
                        Code::V001,
                        span,
                        "unexpected `END`: the program already ended",
                    )
                    .with_related(first_end, "the program ended here"),
                ),
            },
            Stmt::Block(kind, keyword) => file.blocks.push(Block {
                kind,
                keyword,
                links: Vec::new(),
                rules: Vec::new(),
                recovered: false,
            }),
            Stmt::Host(host) => {
                if let Some(block) = file.blocks.first() {
                    diagnostics.push(
                        Diagnostic::new(
                            Code::V001,
                            host.span,
                            "unexpected `HOST` after a block: HOST lines come before the first ADD or DELETE",
                        )
                        .with_related(block.keyword, "the first block starts here"),
                    );
                }
                file.hosts.push(host);
            }
            Stmt::Link(link) => {
                let block = current_block(file, link.span, "LINK", diagnostics);
                if let Some(rule) = block.rules.first() {
                    diagnostics.push(
                        Diagnostic::new(
                            Code::V001,
                            link.span,
                            "unexpected `LINK` after FORWARD: within a block, links come before rules",
                        )
                        .with_related(rule.span, "the block's first rule"),
                    );
                }
                block.links.push(link);
            }
            Stmt::Rule(rule) => {
                current_block(file, rule.span, "FORWARD", diagnostics)
                    .rules
                    .push(rule);
            }
            Stmt::Error => {}
        }
    }

    pub(crate) fn finish(
        self,
        len: usize,
        eof_reported: bool,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> SourceFile {
        let mut file = self.file;
        // The lists grew by doubling, up to half of them spare; the tree lives as long as the
        // analysis, through its peak, so give the spare room back.
        for block in &mut file.blocks {
            block.links.shrink_to_fit();
            block.rules.shrink_to_fit();
        }
        diagnostics.extend(self.diagnostics);
        if file.end.is_none() {
            // The file was cut off: its last block may just have lost its statements.
            if let Some(block) = file.blocks.last_mut() {
                block.recovered = true;
            }
        }
        if file.end.is_none() && !eof_reported {
            let message = if file.begin.is_none() && file.hosts.is_empty() && file.blocks.is_empty()
            {
                "unexpected end of file: expected `BEGIN`"
            } else {
                "unexpected end of file: expected `END`"
            };
            diagnostics.push(Diagnostic::new(Code::V001, Span::new(len, len), message));
        }
        file
    }
}

/// The block a LINK or FORWARD belongs to; one is made up (after a V001) when none was opened.
fn current_block<'f>(
    file: &'f mut SourceFile,
    span: Span,
    keyword: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> &'f mut Block {
    if file.blocks.is_empty() {
        diagnostics.push(Diagnostic::new(
            Code::V001,
            span,
            format!("unexpected `{keyword}`: expected `ADD` or `DELETE` to open a block first"),
        ));
        file.blocks.push(Block {
            kind: BlockKind::Add,
            keyword: Span::new(span.start(), span.start()),
            links: Vec::new(),
            rules: Vec::new(),
            recovered: false,
        });
    }
    let last = file.blocks.len() - 1;
    &mut file.blocks[last]
}

fn stmt_span(stmt: &Stmt) -> Span {
    match stmt {
        Stmt::Begin(span) | Stmt::End(span) | Stmt::Block(_, span) => *span,
        Stmt::Host(host) => host.span,
        Stmt::Link(link) => link.span,
        Stmt::Rule(rule) => rule.span,
        Stmt::Error => Span::default(),
    }
}

fn stmt_keyword(stmt: &Stmt) -> &'static str {
    match stmt {
        Stmt::Begin(_) => "BEGIN",
        Stmt::End(_) => "END",
        Stmt::Block(kind, _) => kind.keyword(),
        Stmt::Host(_) => "HOST",
        Stmt::Link(_) => "LINK",
        Stmt::Rule(_) => "FORWARD",
        Stmt::Error => "",
    }
}

fn unexpected(span: Span, stmt: &Stmt, expected: &str) -> Diagnostic {
    // Point at the statement's keyword, not the whole statement.
    let keyword = stmt_keyword(stmt);
    let at = Span::new(span.start(), span.start() + keyword.len().min(span.len()));
    Diagnostic::new(
        Code::V001,
        at,
        format!("unexpected `{keyword}`; {expected}"),
    )
}

pub(crate) fn syntax_error(error: ParseError<usize, Tok<'_>, ()>, len: usize) -> Diagnostic {
    match error {
        ParseError::UnrecognizedToken {
            token: (l, tok, r),
            expected,
        } => Diagnostic::new(
            Code::V001,
            Span::new(l, r),
            format!(
                "unexpected {}; expected {}",
                tok.describe(),
                describe_expected(&expected)
            ),
        ),
        ParseError::UnrecognizedEof { location, expected } => Diagnostic::new(
            Code::V001,
            Span::new(location.min(len), len),
            format!(
                "unexpected end of file; expected {}",
                describe_expected(&expected)
            ),
        ),
        ParseError::ExtraToken { token: (l, tok, r) } => Diagnostic::new(
            Code::V001,
            Span::new(l, r),
            format!("unexpected {}", tok.describe()),
        ),
        ParseError::InvalidToken { location } => Diagnostic::new(
            Code::V001,
            Span::new(location, location + 1),
            "unexpected input",
        ),
        ParseError::User { error: () } => {
            Diagnostic::new(Code::V001, Span::new(len, len), "syntax error")
        }
    }
}

/// Turns LALRPOP's terminal names into words a user reads: `a port number`, `` `AT` ``.
fn describe_expected(expected: &[String]) -> String {
    let mut words: Vec<String> = expected
        .iter()
        .map(|terminal| {
            let bare = terminal.trim_matches('"');
            match bare {
                "MAC" => "a MAC address".to_string(),
                "NUMBER" => "a port number".to_string(),
                "NAME" => "a name".to_string(),
                keyword => format!("`{keyword}`"),
            }
        })
        .collect();
    words.dedup();
    match words.len() {
        0 => "nothing more".to_string(),
        1 => words.remove(0),
        n if n > 8 => {
            "the start of a statement (`HOST`, `ADD`, `DELETE`, `LINK`, `FORWARD` or `END`)"
                .to_string()
        }
        _ => {
            let last = words.pop().unwrap_or_default();
            format!("{} or {}", words.join(", "), last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_past_32_bit_offsets_is_refused_with_a_diagnostic() {
        assert!(refuse_oversized(MAX_TEXT_LEN).is_none());
        let refused = refuse_oversized(MAX_TEXT_LEN + 1).map(|p| p.diagnostics);
        let codes: Vec<Code> = refused.iter().flatten().map(|d| d.code).collect();
        assert_eq!(codes, [Code::V001]);
    }
}
