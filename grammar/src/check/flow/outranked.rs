//! V205: rules that can never fire. A rule fires for a frame when it is among the matching
//! rules of the highest priority; ties fire together, so only a strictly higher priority
//! outranks. A rule never fires when it is outranked on every class of frames it matches.
//!
//! The classes are the daemon's own (its named MACs and `None`), and for a destination class
//! only the sources named by the rules that can match it decide on their own. The black-hole
//! walk makes the decision of every such class once and records which rules fired, so here a
//! rule needs work only when it never fired (to find an example). Daemons beyond the walk's
//! work limit are checked rule by rule, trying the class most likely to let the rule fire
//! first (its own exact MACs, else the unnamed ones).

use super::holes::Walk;
use super::net::{Local, Net, NodeId, Tgt};
use super::{describe, Reporter};
use crate::diag::{Code, Diagnostic};
use crate::mac::Mac;
use crate::model::{Decision, Match};

/// Classes tried per rule before giving up (and not warning): bounds adversarial daemons that
/// name thousands of MACs on both sides.
const PAIR_LIMIT: usize = 4096;

/// Decisions beyond the first one per rule, over the whole file, before the remaining rules
/// are given the benefit of the doubt. Realistic files settle each rule with its first class.
const EXTRA_LIMIT: usize = 2_000_000;

pub(super) fn find_outranked(net: &Net, walk: &Walk, report: &mut Reporter) {
    let mut decision = Decision::default();
    let mut extra = 0usize;
    for n in 0..net.len() as NodeId {
        let node = net.node(n);
        for (index, src, dst, target) in node.table.iter() {
            if matches!(target, Tgt::Missing(_)) {
                continue; // V106 already; its priority is not the problem.
            }
            let found = match walk.fired(net, n, index) {
                Some(true) => None,
                Some(false) => example(net, n, index, (src, dst), &mut decision),
                None => outranked(net, n, index, (src, dst), &mut decision, &mut extra),
            };
            if let Some((s, d, winner)) = found {
                report_outranked(net, n, index, winner, s, d, report);
                if report.full() {
                    return;
                }
            }
        }
    }
}

/// For a rule the walk saw never fire: the class it was most likely written for, and the rule
/// that takes those frames instead.
fn example(
    net: &Net,
    n: NodeId,
    index: u32,
    (src, dst): (Match, Match),
    decision: &mut Decision,
) -> Option<(Local, Local, u32)> {
    let (s, d) = (exact(src), exact(dst));
    net.node(n)
        .table
        .decide_into(net.rep(s), net.rep(d), decision);
    let winner = decision.rules.iter().copied().find(|w| *w != index)?;
    Some((s, d, winner))
}

/// The classes a field matches among the daemon's `named` MACs and `None`, best guess first.
fn classes(field: Match, named: &[Mac]) -> Vec<Local> {
    match field {
        Match::Exact(mac) => vec![Some(mac)],
        Match::Not(mac) => std::iter::once(None)
            .chain(named.iter().copied().filter(|m| *m != mac).map(Some))
            .collect(),
        Match::Any | Match::None => std::iter::once(None)
            .chain(named.iter().copied().map(Some))
            .collect(),
    }
}

/// `Some((src, dst, winner))` when every class the rule matches has a strictly better rule;
/// the class and winner returned are the first ones found.
fn outranked(
    net: &Net,
    n: NodeId,
    index: u32,
    (src, dst): (Match, Match),
    decision: &mut Decision,
    extra: &mut usize,
) -> Option<(Local, Local, u32)> {
    let node = net.node(n);
    // The class the rule was most likely written for: its own MACs, else the unnamed ones.
    let (s0, d0) = (exact(src), exact(dst));
    node.table.decide_into(net.rep(s0), net.rep(d0), decision);
    if decision.rules.contains(&index) {
        return None;
    }
    let mut first: Option<(Local, Local, u32)> = decision.rules.first().map(|w| (s0, d0, *w));
    let mut tried = 0usize;
    for d in classes(dst, &node.dsts) {
        let relevant = node.relevant_srcs(d, net.rep(d));
        for s in classes(src, &relevant) {
            tried += 1;
            *extra += 1;
            if tried > PAIR_LIMIT || *extra > EXTRA_LIMIT {
                return None;
            }
            node.table.decide_into(net.rep(s), net.rep(d), decision);
            if decision.rules.contains(&index) {
                return None;
            }
            let winner = *decision.rules.first()?;
            first.get_or_insert((s, d, winner));
        }
    }
    first
}

fn exact(field: Match) -> Local {
    match field {
        Match::Exact(mac) => Some(mac),
        _ => None,
    }
}

fn report_outranked(
    net: &Net,
    n: NodeId,
    index: u32,
    winner: u32,
    src: Local,
    dst: Local,
    report: &mut Reporter,
) {
    let Some(span) = report.rule_span(net.rule_id(n, index)) else {
        return;
    };
    let better = net.rule(n, winner);
    let mut d = Diagnostic::new(
        Code::V205,
        span,
        format!(
            "rule can never fire: every frame it matches on `{}` is taken by a rule of higher priority (for example, frames from {} to {} take `{better}`)",
            net.node(n).name,
            describe(src),
            describe(dst)
        ),
    )
    .with_help("the most specific matching rules fire (exact > NOT > ANY > NONE, destination first); delete this rule or make it more specific");
    if let Some(better_span) = report.rule_span(net.rule_id(n, winner)) {
        d = d.with_related(better_span, "this rule outranks it");
    }
    report.push(d);
}
