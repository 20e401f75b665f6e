//! Forwarding analysis over the folded state: loops (V111), rules that never fire (V205) and
//! black holes (V206).
//!
//! Every decision comes from the model's [`Table`](crate::model::Table), the same code the
//! daemon and `vnetc route` forward with. Rules whose link is missing (V106) stay in the tables
//! (they still outrank other rules on the daemon) but send nothing and are not reported again.

mod holes;
mod loops;
mod net;
mod outranked;
mod scc;

use super::fold::Origins;
use crate::diag::{Diagnostic, MAX_DIAGNOSTICS};
use crate::model::{RuleDef, State};
use crate::span::Span;
use net::{Local, Net};

pub(super) fn check_flow(state: &State, origins: &Origins) -> Vec<Diagnostic> {
    if state.rules.is_empty() {
        return Vec::new();
    }
    let net = Net::new(state);
    let mut report = Reporter {
        origins,
        diagnostics: Vec::new(),
    };
    loops::find_loops(&net, &mut report);
    outranked::find_outranked(&net, &mut report);
    holes::find_black_holes(&net, &mut report);
    report.diagnostics
}

/// Collects the flow diagnostics and knows where things were written.
struct Reporter<'o> {
    origins: &'o Origins,
    diagnostics: Vec<Diagnostic>,
}

impl Reporter<'_> {
    fn push(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// Enough found: the front ends show the first [`MAX_DIAGNOSTICS`] and a note counting the
    /// rest, so keep counting well past the cap (the note stays exact up to ten times it) but
    /// not forever: a file with a black hole per rule would otherwise format every one.
    fn full(&self) -> bool {
        self.diagnostics.len() >= 10 * MAX_DIAGNOSTICS
    }

    fn rule_span(&self, rule: &RuleDef) -> Option<Span> {
        self.origins.rules.get(rule).map(|o| o.span)
    }

    fn host_span(&self, machine: &str) -> Option<Span> {
        self.origins.hosts.get(machine).copied()
    }
}

/// A class of addresses in a message: a MAC, or every address no rule names.
fn describe(class: Local) -> String {
    match class {
        Some(mac) => mac.to_string(),
        None => "any other MAC".to_string(),
    }
}
