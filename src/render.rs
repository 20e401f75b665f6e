//! Rendering diagnostics: source snippets for people (ariadne, coloured on a terminal) and the
//! JSON schema of SPEC 3 for machines.

use crate::source::Source;
use ariadne::{Color, Config, IndexType, Label, Report, ReportKind};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use vnet_grammar::{Diagnostic, LineIndex, Severity, Span};

/// A diagnostic together with the file it belongs to.
pub struct FileDiagnostics<'a> {
    pub source: &'a Source,
    pub diagnostics: &'a [Diagnostic],
}

/// Whether to colour output written to this stream: a terminal, and `NO_COLOR` unset.
pub fn use_color(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub fn stdout_color() -> bool {
    use_color(std::io::stdout().is_terminal())
}

/// Writes each diagnostic as a report with its source snippet, then a one-line summary.
pub fn write_human(
    out: &mut dyn Write,
    files: &[FileDiagnostics<'_>],
    color: bool,
) -> std::io::Result<()> {
    let (mut errors, mut warnings) = (0usize, 0usize);
    for file in files.iter().filter(|f| !f.diagnostics.is_empty()) {
        let mut cache = (
            file.source.name.clone(),
            ariadne::Source::from(file.source.text.as_str()),
        );
        let index = LineIndex::new(&file.source.text);
        for d in file.diagnostics {
            match d.severity() {
                Severity::Error => errors += 1,
                Severity::Warning => warnings += 1,
            }
            if touches_long_line(&file.source.text, &index, d) {
                write_plain(out, file.source, &index, d)?;
            } else {
                report(file.source, d, color).write(&mut cache, &mut *out)?;
            }
        }
    }
    if errors + warnings > 0 {
        writeln!(out, "{}", summary(errors, warnings))?;
    }
    Ok(())
}

/// Lines longer than this are not drawn as snippets: drawing repeats the whole line for every
/// diagnostic on it, which on a one-line binary file is quadratic.
const MAX_SNIPPET_LINE: usize = 400;

fn touches_long_line(text: &str, index: &LineIndex, d: &Diagnostic) -> bool {
    let long = |offset: usize| {
        let line = index.line_of(offset.min(text.len()));
        let start = index.line_start(line);
        let end = if line + 1 < index.line_count() {
            index.line_start(line + 1)
        } else {
            text.len()
        };
        end - start > MAX_SNIPPET_LINE
    };
    long(d.span.start()) || d.related.iter().any(|r| long(r.span.start()))
}

/// `file:line:column: error[V003]: message`, with the related places and help indented below.
fn write_plain(
    out: &mut dyn Write,
    source: &Source,
    index: &LineIndex,
    d: &Diagnostic,
) -> std::io::Result<()> {
    let at = |offset: usize| {
        let lc = index.line_col(&source.text, offset);
        format!("{}:{}:{}", source.name, lc.line, lc.column)
    };
    let severity = match d.severity() {
        Severity::Error => "error",
        Severity::Warning => "warning",
    };
    writeln!(
        out,
        "{}: {severity}[{}]: {}",
        at(d.span.start()),
        d.code,
        d.message
    )?;
    for related in &d.related {
        writeln!(out, "    {}: {}", at(related.span.start()), related.message)?;
    }
    if let Some(help) = &d.help {
        writeln!(out, "    help: {help}")?;
    }
    Ok(())
}

pub fn summary(errors: usize, warnings: usize) -> String {
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("1 {word}")
        } else {
            format!("{n} {word}s")
        }
    };
    match (errors, warnings) {
        (0, w) => plural(w, "warning"),
        (e, 0) => plural(e, "error"),
        (e, w) => format!("{}, {}", plural(e, "error"), plural(w, "warning")),
    }
}

fn report<'a>(
    source: &'a Source,
    d: &Diagnostic,
    color: bool,
) -> Report<'a, (String, std::ops::Range<usize>)> {
    let name = source.name.clone();
    let (kind, tint) = match d.severity() {
        Severity::Error => (ReportKind::Error, Color::Red),
        Severity::Warning => (ReportKind::Warning, Color::Yellow),
    };
    let range = |span: Span| (name.clone(), visible(span, source.text.len()));
    let mut builder = Report::build(kind, range(d.span))
        .with_config(
            Config::default()
                .with_color(color)
                .with_index_type(IndexType::Byte),
        )
        .with_code(d.code.as_str())
        .with_message(&d.message)
        .with_label(
            Label::new(range(d.span))
                .with_message(d.code.summary())
                .with_color(tint),
        );
    for (i, related) in d.related.iter().enumerate() {
        builder = builder.with_label(
            Label::new(range(related.span))
                .with_message(&related.message)
                .with_color(Color::Blue)
                .with_order(i as i32 + 1),
        );
    }
    if let Some(help) = &d.help {
        builder = builder.with_help(help);
    }
    builder.finish()
}

/// ariadne draws nothing for an empty range; widen a point (such as the end of the file) to
/// the character before it so the snippet still shows where.
fn visible(span: Span, len: usize) -> std::ops::Range<usize> {
    if span.is_empty() {
        if span.start() >= len {
            return len.saturating_sub(1)..len;
        }
        return span.start()..span.start() + 1;
    }
    span.start()..span.end()
}

#[derive(Serialize)]
pub struct JsonReport {
    pub diagnostics: Vec<JsonDiagnostic>,
}

#[derive(Serialize)]
pub struct JsonDiagnostic {
    pub file: String,
    pub code: &'static str,
    pub severity: Severity,
    pub message: String,
    pub span: JsonSpan,
    pub related: Vec<JsonRelated>,
    pub help: Option<String>,
}

#[derive(Serialize)]
pub struct JsonRelated {
    pub file: String,
    pub message: String,
    pub span: JsonSpan,
}

#[derive(Serialize)]
pub struct JsonSpan {
    pub start: vnet_grammar::LineCol,
    pub end: vnet_grammar::LineCol,
}

/// The `--format json` document of SPEC 3: 1-based lines and columns (in characters),
/// half-open spans.
pub fn json_report(files: &[FileDiagnostics<'_>]) -> JsonReport {
    let mut diagnostics = Vec::new();
    for file in files {
        let text = &file.source.text;
        let index = LineIndex::new(text);
        let span = |s: Span| JsonSpan {
            start: index.line_col(text, s.start()),
            end: index.line_col(text, s.end()),
        };
        for d in file.diagnostics {
            diagnostics.push(JsonDiagnostic {
                file: file.source.name.clone(),
                code: d.code.as_str(),
                severity: d.severity(),
                message: d.message.clone(),
                span: span(d.span),
                related: d
                    .related
                    .iter()
                    .map(|r| JsonRelated {
                        file: file.source.name.clone(),
                        message: r.message.to_string(),
                        span: span(r.span),
                    })
                    .collect(),
                help: d.help.as_ref().map(|h| h.to_string()),
            });
        }
    }
    JsonReport { diagnostics }
}
