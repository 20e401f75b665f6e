//! The common edit made cheap: a change to FORWARD statements only, inside an ADD block of a
//! program with no DELETE block. The previous tree is patched in place (the statements
//! replaced, the rest moved), only the rules the change names are folded again
//! ([`refold_rules`]), and the previous diagnostics of everything else are moved. Anything
//! else (or anything unexpected on the way) gives `None`, and the caller analyses the
//! statements whole.

use super::chunks::Chunk;
use super::spans::shifted;
use super::{Parts, PosMap};
use crate::ast::{Block, BlockKind, Rule, Stmt};
use crate::check::{refold_rules, Origins, RuleOrigin};
use crate::diag::Diagnostic;
use crate::lexer::Tok;
use crate::model::{RuleDef, State};
use crate::span::Span;
use crate::Analysis;

/// What an edit of FORWARD statements changed: the statements it replaced (old positions)
/// and the chunks now in their place.
pub(super) struct RuleEdit<'c> {
    pub old: &'c [Chunk],
    pub fresh: &'c [Chunk],
    /// Every chunk of the new text, to recompute which blocks failed to parse.
    pub chunks: &'c [Chunk],
}

/// Whether every chunk is a FORWARD statement (or a FORWARD that failed to parse).
pub(super) fn only_rules(chunks: &[Chunk]) -> bool {
    chunks.iter().all(|c| {
        matches!(c.keyword, Some((Tok::Forward, _)))
            && c.stmts
                .iter()
                .all(|s| matches!(s, Stmt::Rule(_) | Stmt::Error))
    })
}

/// `analysis` patched for `edit` (positions moved per `map`): its tree, state and origins,
/// and the structure's and fold's diagnostics (the flow's are left to the caller, with
/// whether the state or its origins changed, which decides whether the flow runs again).
/// The analysis's own `diagnostics` are left for the caller to put together.
pub(super) fn patch(
    mut analysis: Analysis,
    parts: &Parts,
    edit: &RuleEdit,
    map: &PosMap,
) -> Option<(Analysis, Parts, bool)> {
    let file = &mut analysis.file;
    let (begin, end) = (file.begin?, file.end?);
    let (from, resume) = (map.from, map.resume);
    if begin.start() >= from
        || end.start() < resume
        || file.blocks.first().is_none_or(|b| b.keyword.is_empty())
        || file.blocks.iter().any(|b| b.kind == BlockKind::Delete)
    {
        return None;
    }
    let b = file
        .blocks
        .partition_point(|b| b.keyword.start() < from)
        .checked_sub(1)?;
    // A LINK after the edit would come after the rules put before it, and the structure
    // pass says so of a LINK after the block's first rule: that is not patched.
    if file.blocks[b].links.iter().any(|l| l.span.start() >= from) {
        return None;
    }
    let removed = cut(&mut file.blocks[b], from, resume);
    // The caller reads the comments again; those in the region have no new place.
    file.comments.clear();
    map.apply(file)?;
    let block = &mut file.blocks[b];
    // Nothing before `from` moved.
    let at = block.rules.partition_point(|r| r.span.start() < from);
    let added = edit.fresh.iter().flat_map(|c| {
        c.stmts.iter().filter_map(move |s| match s {
            Stmt::Rule(rule) => Some(shifted(rule, c.start)),
            _ => None,
        })
    });
    block.rules.splice(at..at, added);
    mark_recovered(&mut file.blocks, edit.chunks);
    if file.blocks.iter().any(|b| b.is_empty() && !b.recovered) {
        return None;
    }
    let region = from..map.new_resume();
    let refolded = refold_rules(&analysis.file, &removed, region)?;
    let fold = moved_fold(&parts.fold, map, &refolded.statements, refolded.diagnostics)?;
    let changed = patch_state(
        &mut analysis.state,
        &mut analysis.origins,
        refolded.rules,
        map,
    )?;
    let mut structure = parts.structure.clone();
    map.apply(&mut structure)?;
    let parts = Parts {
        structure,
        fold,
        flow: Vec::new(),
    };
    Some((analysis, parts, changed))
}

/// Takes out of `block` the rules that start in `from..resume`.
fn cut(block: &mut Block, from: usize, resume: usize) -> Vec<Rule> {
    let first = block.rules.partition_point(|r| r.span.start() < from);
    let last = block.rules.partition_point(|r| r.span.start() < resume);
    block.rules.drain(first..last).collect()
}

/// Each block failed to parse somewhere exactly when a statement after its keyword (and
/// before the next block's) did: what [`crate::parse::Structure`] records while it reads.
fn mark_recovered(blocks: &mut [Block], chunks: &[Chunk]) {
    for block in blocks.iter_mut() {
        block.recovered = false;
    }
    let mut current: Option<usize> = None;
    for stmt in chunks.iter().flat_map(|c| &c.stmts) {
        match stmt {
            Stmt::Block(..) => current = Some(current.map_or(0, |i| i + 1)),
            Stmt::Error => {
                if let Some(block) = current.and_then(|i| blocks.get_mut(i)) {
                    block.recovered = true;
                }
            }
            _ => {}
        }
    }
}

/// The fold's diagnostics: the previous ones moved, except those about the statements folded
/// again (`statements`, new positions) or that were in the replaced region, then the new
/// ones. `None` when one that stays cannot be moved.
fn moved_fold(
    old: &[Diagnostic],
    map: &PosMap,
    statements: &[Span],
    fresh: Vec<Diagnostic>,
) -> Option<Vec<Diagnostic>> {
    let within = |p: usize| {
        let i = statements.partition_point(|s| s.start() <= p);
        i > 0 && p < statements[i - 1].end()
    };
    let mut out = Vec::with_capacity(old.len() + fresh.len());
    for d in old {
        if (map.from..map.resume).contains(&d.span.start()) {
            continue;
        }
        let start = map.get(d.span.start())?;
        if within(start) {
            continue;
        }
        let mut d = d.clone();
        map.apply(&mut d)?;
        out.push(d);
    }
    out.extend(fresh);
    Some(out)
}

/// The state with the touched rules replaced by what the fold now makes of them, and every
/// origin moved; whether a rule or its origin changed.
fn patch_state(
    state: &mut State,
    origins: &mut Origins,
    rules: Vec<(RuleDef, Option<RuleOrigin>)>,
    map: &PosMap,
) -> Option<bool> {
    let mut changed = false;
    for (rule, origin) in &rules {
        if !state.rules.contains(rule) {
            changed |= origin.is_some();
            continue;
        }
        let at = state.rules.range(..rule).count();
        state.rules.remove(rule);
        let mut old = origins.rules.remove(at);
        // An origin in the replaced region has no new place: that rule changed.
        changed |= map.apply(&mut old).is_none() || old != *origin;
    }
    map.apply(origins)?;
    for (rule, origin) in rules {
        let Some(origin) = origin else { continue };
        let at = state.rules.range(..&rule).count();
        state.rules.insert(rule);
        origins.rules.insert(at, Some(origin));
    }
    Some(changed)
}
