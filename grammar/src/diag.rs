//! Diagnostics: the stable codes of SPEC 2.5 and the values every front end renders.

use crate::span::Span;
use serde::Serialize;
use std::borrow::Cow;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

macro_rules! codes {
    ($($name:ident = $text:literal, $sev:ident, $summary:literal;)*) => {
        /// A stable diagnostic code (SPEC 2.5).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code { $($name),* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$name),*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$name => $text),* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Code::$name => Severity::$sev),* }
            }

            /// One line saying when the code fires, as in SPEC 2.5.
            pub fn summary(self) -> &'static str {
                match self { $(Code::$name => $summary),* }
            }

            /// The code spelled `text` (`"V101"`), if there is one.
            pub fn parse(text: &str) -> Option<Code> {
                match text { $($text => Some(Code::$name),)* _ => None }
            }
        }
    };
}

codes! {
    V001 = "V001", Error, "syntax error";
    V002 = "V002", Error, "malformed MAC address";
    V003 = "V003", Error, "character outside every token's alphabet";
    V004 = "V004", Error, "port out of range";
    V101 = "V101", Error, "machine used but not declared by a HOST line";
    V102 = "V102", Error, "machine declared twice with a different user, port or interface";
    V103 = "V103", Error, "link from a machine to itself";
    V104 = "V104", Error, "link's dialing machine is not one of its endpoints";
    V105 = "V105", Error, "EDGE rule whose hop does not start at the rule's own daemon";
    V106 = "V106", Error, "rule forwards over a link that does not exist in the resulting state";
    V107 = "V107", Error, "rule type and destination disagree";
    V108 = "V108", Error, "NONE used as a source";
    V109 = "V109", Error, "INTERFACE rule names an interface its daemon does not serve";
    V110 = "V110", Error, "DELETE of a link that rules still use";
    V111 = "V111", Error, "forwarding loop";
    V112 = "V112", Error, "the same pair linked, or deleted, with a different transport or dialer";
    V201 = "V201", Warning, "ADD of a link or rule already present";
    V202 = "V202", Warning, "DELETE of a link or rule not present";
    V203 = "V203", Warning, "multicast or broadcast MAC used as a source";
    V204 = "V204", Warning, "empty block";
    V205 = "V205", Warning, "rule that can never fire";
    V206 = "V206", Warning, "black hole";
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A secondary location: the first declaration, the rule that outranks, a hop of a loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Related {
    pub span: Span,
    /// Most are fixed text: borrowed, a diagnostic costs fewer allocations (a large file
    /// may make tens of thousands of diagnostics before the cap).
    pub message: Cow<'static, str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub message: String,
    pub span: Span,
    pub related: Vec<Related>,
    pub help: Option<Cow<'static, str>>,
}

impl Diagnostic {
    pub fn new(code: Code, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            message: message.into(),
            span,
            related: Vec::new(),
            help: None,
        }
    }

    pub fn with_related(mut self, span: Span, message: impl Into<Cow<'static, str>>) -> Diagnostic {
        self.related.push(Related {
            span,
            message: message.into(),
        });
        self
    }

    pub fn with_help(mut self, help: impl Into<Cow<'static, str>>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    pub fn severity(&self) -> Severity {
        self.code.severity()
    }

    pub fn is_error(&self) -> bool {
        self.severity() == Severity::Error
    }
}

/// The most diagnostics a file reports before one that says how many more there were (SPEC 3).
pub const MAX_DIAGNOSTICS: usize = 1000;

/// Sorts diagnostics by position (then code) and caps the list at [`MAX_DIAGNOSTICS`], ending
/// it with one that counts the rest: those cut here and the `dropped` ones counted but never
/// kept (the lexer stops keeping them on junk input).
pub fn finish(mut diagnostics: Vec<Diagnostic>, dropped: usize) -> Vec<Diagnostic> {
    diagnostics.sort_by_key(|d| (d.span.start(), d.code, d.span.end()));
    diagnostics.dedup();
    let cut = diagnostics.len().saturating_sub(MAX_DIAGNOSTICS);
    if cut + dropped == 0 {
        return diagnostics;
    }
    let (code, span) = match diagnostics.get(MAX_DIAGNOSTICS).or(diagnostics.last()) {
        Some(d) => (d.code, d.span),
        None => (Code::V003, crate::span::Span::default()),
    };
    diagnostics.truncate(MAX_DIAGNOSTICS);
    let mut note = format!("{} more diagnostics not shown", cut + dropped);
    if dropped > 0 {
        note.push_str("; the input looks like junk, so checking stopped early");
    }
    diagnostics.push(Diagnostic::new(code, span, note));
    diagnostics
}
