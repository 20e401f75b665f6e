//! Forwarding analysis over the folded state: loops (V111), rules that never fire (V205) and
//! black holes (V206).

use super::fold::Origins;
use crate::diag::Diagnostic;
use crate::model::State;

pub(super) fn check_flow(_state: &State, _origins: &Origins) -> Vec<Diagnostic> {
    Vec::new()
}
