//! Moving every span of an analysis value through a map of positions: statements parsed on
//! their own are placed at their offset in the text, and an analysis whose statements did not
//! change follows the text around them.

use crate::ast::{Block, Dest, Host, Ident, Link, MatchExpr, Port, Rule, SourceFile, Stmt};
use crate::check::{Origins, RuleOrigin};
use crate::diag::{Diagnostic, Related};
use crate::lexer::Comment;
use crate::span::Span;
use crate::Analysis;

/// A value holding spans, every one of which `map` moves.
pub(crate) trait MapSpans {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize);
}

/// The spans moved by `offset` bytes: a statement parsed on its own, put in its place.
pub(crate) fn shifted<T: MapSpans + Clone>(value: &T, offset: usize) -> T {
    let mut value = value.clone();
    if offset != 0 {
        value.map_spans(&|p| p + offset);
    }
    value
}

impl MapSpans for Span {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        *self = Span::new(map(self.start()), map(self.end()));
    }
}

impl<T: MapSpans> MapSpans for Option<T> {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        if let Some(value) = self {
            value.map_spans(map);
        }
    }
}

impl<T: MapSpans> MapSpans for Vec<T> {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        for value in self {
            value.map_spans(map);
        }
    }
}

impl MapSpans for Ident {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.span.map_spans(map);
    }
}

impl MapSpans for Port {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.span.map_spans(map);
    }
}

impl MapSpans for MatchExpr {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.span.map_spans(map);
    }
}

impl MapSpans for Host {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.span.map_spans(map);
        self.user.map_spans(map);
        self.machine.map_spans(map);
        self.port.map_spans(map);
        self.iface.map_spans(map);
    }
}

impl MapSpans for Link {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.span.map_spans(map);
        self.transport_span.map_spans(map);
        self.dialer.map_spans(map);
        self.a.map_spans(map);
        self.b.map_spans(map);
    }
}

impl MapSpans for Rule {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.span.map_spans(map);
        self.kind_span.map_spans(map);
        self.daemon.map_spans(map);
        self.src.map_spans(map);
        self.dst.map_spans(map);
        let moved = |name: &Ident| {
            let mut name = name.clone();
            name.map_spans(map);
            name
        };
        // `Dest` hands out its names read-only: build it again.
        self.dest = match self.dest.as_slice() {
            [one] => Dest::one(moved(one)),
            [first, second] => Dest::two(moved(first), moved(second)),
            _ => self.dest.clone(),
        };
    }
}

impl MapSpans for Stmt {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        match self {
            Stmt::Begin(span) | Stmt::End(span) | Stmt::Block(_, span) => span.map_spans(map),
            Stmt::Host(host) => host.map_spans(map),
            Stmt::Link(link) => link.map_spans(map),
            Stmt::Rule(rule) => rule.map_spans(map),
            Stmt::Error => {}
        }
    }
}

impl MapSpans for Block {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.keyword.map_spans(map);
        self.links.map_spans(map);
        self.rules.map_spans(map);
    }
}

impl MapSpans for Comment {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.span.map_spans(map);
    }
}

impl MapSpans for SourceFile {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.begin.map_spans(map);
        self.hosts.map_spans(map);
        self.blocks.map_spans(map);
        self.end.map_spans(map);
        self.comments.map_spans(map);
    }
}

impl MapSpans for Related {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.span.map_spans(map);
    }
}

impl MapSpans for Diagnostic {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.span.map_spans(map);
        self.related.map_spans(map);
    }
}

impl MapSpans for RuleOrigin {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.span.map_spans(map);
        self.dest.map_spans(map);
    }
}

impl MapSpans for Origins {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.hosts.map_spans(map);
        self.links.map_spans(map);
        self.rules.map_spans(map);
    }
}

impl MapSpans for Analysis {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.file.map_spans(map);
        self.origins.map_spans(map);
        self.diagnostics.map_spans(map);
    }
}

impl MapSpans for super::Parts {
    fn map_spans(&mut self, map: &impl Fn(usize) -> usize) {
        self.structure.map_spans(map);
        self.fold.map_spans(map);
        self.flow.map_spans(map);
    }
}
