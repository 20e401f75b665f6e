//! The syntax tree: every node keeps its span, and the file keeps its comments.
//!
//! The tree is tolerant: statements that were out of place are still here (after a V001), and a
//! malformed MAC is a node of its own, so the checker and the LSP see everything that parsed.

use crate::lexer::Comment;
use crate::mac::Mac;
use crate::span::Span;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ident {
    /// Names are short: kept inline, they cost no allocation of their own.
    pub text: smol_str::SmolStr,
    pub span: Span,
}

impl Ident {
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port {
    /// The number as written, saturated; out-of-range values were reported as V004.
    pub value: u32,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    pub span: Span,
    pub user: Ident,
    pub machine: Ident,
    pub port: Port,
    pub iface: Ident,
}

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    pub fn keyword(self) -> &'static str {
        match self {
            Transport::Tcp => "TCP",
            Transport::Udp => "UDP",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub span: Span,
    pub transport: Transport,
    pub transport_span: Span,
    pub dialer: Ident,
    pub a: Ident,
    pub b: Ident,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RuleKind {
    Edge,
    Interface,
}

impl RuleKind {
    pub fn keyword(self) -> &'static str {
        match self {
            RuleKind::Edge => "EDGE",
            RuleKind::Interface => "INTERFACE",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchKind {
    Exact(Mac),
    Not(Mac),
    Any,
    None,
    /// A MAC that did not lex (already reported as V002), alone or after `NOT`.
    Malformed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchExpr {
    pub kind: MatchKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub span: Span,
    pub kind: RuleKind,
    pub kind_span: Span,
    /// The daemon the rule is installed on.
    pub daemon: Ident,
    pub src: MatchExpr,
    pub dst: MatchExpr,
    /// Two machines for EDGE, one interface for INTERFACE; the other counts are V107.
    pub dest: Dest,
}

/// A rule's destination names: one or two, as the grammar reads them. Kept inline rather than
/// in a `Vec`: a file holds as many of these as rules, and an allocation each is both the
/// largest part of a rule and a good share of the parse time. Reads as a slice.
#[derive(Clone)]
pub struct Dest {
    names: [Ident; 2],
    len: u8,
}

impl Dest {
    pub fn one(name: Ident) -> Dest {
        Dest {
            names: [name, Ident::default()],
            len: 1,
        }
    }

    pub fn two(first: Ident, second: Ident) -> Dest {
        Dest {
            names: [first, second],
            len: 2,
        }
    }

    pub fn as_slice(&self) -> &[Ident] {
        &self.names[..usize::from(self.len)]
    }
}

impl std::ops::Deref for Dest {
    type Target = [Ident];

    fn deref(&self) -> &[Ident] {
        self.as_slice()
    }
}

impl<'a> IntoIterator for &'a Dest {
    type Item = &'a Ident;
    type IntoIter = std::slice::Iter<'a, Ident>;

    fn into_iter(self) -> Self::IntoIter {
        self.as_slice().iter()
    }
}

impl PartialEq for Dest {
    fn eq(&self, other: &Dest) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Dest {}

impl std::fmt::Debug for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BlockKind {
    Add,
    Delete,
}

impl BlockKind {
    pub fn keyword(self) -> &'static str {
        match self {
            BlockKind::Add => "ADD",
            BlockKind::Delete => "DELETE",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub kind: BlockKind,
    /// The ADD/DELETE keyword; empty for the block made up for statements that had none.
    pub keyword: Span,
    pub links: Vec<Link>,
    pub rules: Vec<Rule>,
    /// Whether a statement of the block failed to parse (or the file ended inside it), so
    /// that it is not reported as empty on top of the syntax error.
    pub recovered: bool,
}

impl Block {
    /// From the keyword to the end of the last statement.
    pub fn span(&self) -> Span {
        let mut span = self.keyword;
        if let Some(last) = self.links.last() {
            span = span.cover(last.span);
        }
        if let Some(last) = self.rules.last() {
            span = span.cover(last.span);
        }
        span
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty() && self.rules.is_empty()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceFile {
    pub begin: Option<Span>,
    pub hosts: Vec<Host>,
    pub blocks: Vec<Block>,
    pub end: Option<Span>,
    pub comments: Vec<Comment>,
}

/// A statement as the grammar sees it, before the structure pass puts it in place.
#[derive(Clone, Debug)]
pub enum Stmt {
    Begin(Span),
    End(Span),
    Block(BlockKind, Span),
    Host(Host),
    Link(Link),
    Rule(Rule),
    Error,
}
