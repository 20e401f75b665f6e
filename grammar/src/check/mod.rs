//! The checker: folds a parsed file into its state (SPEC 2.3) while reporting the semantic
//! diagnostics (V101–V112, V201–V204), then analyses forwarding over the result (V111, V205,
//! V206). It runs on whatever parsed, so a syntax error elsewhere does not hide these.

mod flow;
mod fold;

pub use fold::{Origins, RuleOrigin};

use crate::ast::SourceFile;
use crate::diag::Diagnostic;
use crate::model::State;

/// What the checker learned from a file.
#[derive(Clone, Debug, Default)]
pub struct Checked {
    /// The desired state (the base's state with the file's blocks folded on, for a patch).
    pub state: State,
    /// Where each host, link and rule of the state was last written in the file.
    pub origins: Origins,
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks a whole program: its blocks fold onto an empty state.
pub fn check(file: &SourceFile) -> Checked {
    check_onto(file, &State::default())
}

/// Checks a patch: its blocks fold onto `base` (`vnetc check --base`, `apply --patch`).
pub fn check_onto(file: &SourceFile, base: &State) -> Checked {
    let (state, origins, mut diagnostics) = fold::fold(file, base);
    diagnostics.extend(flow::check_flow(&state, &origins));
    Checked {
        state,
        origins,
        diagnostics,
    }
}
