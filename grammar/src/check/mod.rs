//! The checker: folds a parsed file into its state (SPEC 2.3) while reporting the semantic
//! diagnostics (V101–V112, V201–V204), then analyses forwarding over the result (V111, V205,
//! V206). It runs on whatever parsed, so a syntax error elsewhere does not hide these.

mod flow;
mod fold;
mod named;

pub use flow::FlowMemo;
pub(crate) use fold::refold_rules;
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
    let (state, origins, mut diagnostics, named) = fold::fold(file, base);
    diagnostics.extend(flow::check_flow(&state, &origins, &named));
    Checked {
        state,
        origins,
        diagnostics,
    }
}

/// The first half of [`check_onto`]: the fold, with its diagnostics but no flow analysis.
/// The incremental analysis calls the halves apart so that it can skip the second.
pub fn fold_onto(file: &SourceFile, base: &State) -> Checked {
    let (state, origins, diagnostics, _) = fold::fold(file, base);
    Checked {
        state,
        origins,
        diagnostics,
    }
}

/// The second half of [`check_onto`]: the flow analysis (V111, V205, V206) of a folded state.
pub fn check_flow(state: &State, origins: &Origins) -> Vec<Diagnostic> {
    flow::check_flow(state, origins, &named::Named::of(state))
}

/// [`check_flow`] again after an edit, re-run only for the daemons and classes of frames that
/// changed since the analysis `previous` was kept from; with what to keep for the next one.
pub fn check_flow_again(
    state: &State,
    origins: &Origins,
    previous: Option<FlowMemo>,
) -> (Vec<Diagnostic>, Option<FlowMemo>) {
    flow::check_flow_again(state, origins, previous, true)
}
