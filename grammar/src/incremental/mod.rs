//! Incremental analysis for editors: the same [`Analysis`] as [`analyze`](crate::analyze) of
//! each new text, from the work done on the previous one.
//!
//! An edit re-lexes and re-parses only the statements it touches (see [`chunks`]). When those
//! read the same as before (an edit in a comment or in the spaces between statements) the
//! previous analysis is reused with its spans moved. Otherwise the statements are put
//! together and folded again, and the flow analysis is reused when the folded state and where
//! each of its parts was written did not change. Work for a text that a newer one replaced is
//! abandoned between phases.
//!
//! Where the edit is is found by comparing the texts, so the caller may skip versions.

mod chunks;
mod rules;
mod spans;

use crate::ast::SourceFile;
use crate::check::{self, FlowMemo, Origins};
use crate::diag::{self, Diagnostic, MAX_DIAGNOSTICS};
use crate::model::State;
use crate::parse::Structure;
use crate::span::MAX_TEXT_LEN;
use crate::Analysis;
use chunks::Chunk;
use spans::{shifted, MapSpans};
use std::sync::Arc;

/// The analysis of the text an editor holds, kept up to date one text at a time.
#[derive(Default)]
pub struct Incremental {
    /// The text `chunks` were read from.
    text: String,
    /// Its statements in order; the first is the text before the first statement keyword.
    chunks: Vec<Chunk>,
    /// The analysis of `text`, unless the last one was abandoned.
    last: Option<Last>,
    /// Analyses replaced by newer ones, freed by [`Incremental::tidy`] rather than while an
    /// editor waits.
    retired: Vec<Arc<Analysis>>,
}

struct Last {
    analysis: Arc<Analysis>,
    /// Where `analysis.diagnostics` came from, before they were sorted and capped; `None`
    /// when the analysis came from [`crate::analyze`] whole.
    parts: Option<Parts>,
    /// What its flow analysis found, for the next one to re-run only what an edit touches.
    memo: Option<FlowMemo>,
}

/// An analysis's diagnostics by the phase that found them (the parse's other diagnostics
/// are the statements' own, kept with them).
#[derive(Clone, Default)]
struct Parts {
    /// The structure pass's: statements out of place, a missing END.
    structure: Vec<Diagnostic>,
    fold: Vec<Diagnostic>,
    flow: Vec<Diagnostic>,
}

/// How an analysis ended.
pub enum Outcome {
    Done(Arc<Analysis>),
    /// `cancelled` said so: a newer text is waiting.
    Cancelled,
}

impl Incremental {
    pub fn new() -> Incremental {
        Incremental::default()
    }

    /// The analysis of `text`, equal to `analyze(text)`. `cancelled` is asked between phases;
    /// when it says yes the work stops and the next call starts from what was finished.
    pub fn update(&mut self, text: &str, cancelled: &dyn Fn() -> bool) -> Outcome {
        if text.len() > MAX_TEXT_LEN {
            return self.whole(text);
        }
        if let Some(last) = &self.last {
            if text == self.text {
                return Outcome::Done(Arc::clone(&last.analysis));
            }
        }
        let Some(moved) = self.read(text) else {
            return self.whole(text);
        };
        let mut last = self.last.take();
        if let Some(map) = moved.same() {
            if let Some((analysis, parts, memo)) =
                last.take().and_then(|last| self.moved(last, map))
            {
                return self.done(analysis, parts, memo);
            }
        }
        if let Moved::Edited {
            map,
            same: false,
            old,
            fresh,
        } = &moved
        {
            if let Some(outcome) = self.rule_edit(&mut last, map, old, fresh.clone(), cancelled) {
                return outcome;
            }
        }
        self.retired
            .extend(last.as_ref().map(|last| Arc::clone(&last.analysis)));
        if cancelled() {
            return Outcome::Cancelled;
        }
        let (file, parse_diagnostics, structure, lexical) = self.assemble();
        if lexical >= MAX_DIAGNOSTICS {
            // The whole text's lexer gives up here; let `analyze` say how.
            let analysis = crate::analyze(text);
            return self.done(analysis, None, None);
        }
        let folded = check::fold_onto(&file, &State::default());
        if cancelled() {
            return Outcome::Cancelled;
        }
        let (flow, memo) = self.flow(&mut last, moved.map(), &folded.state, &folded.origins);
        let mut diagnostics = parse_diagnostics;
        diagnostics.extend(structure.iter().cloned());
        diagnostics.extend(folded.diagnostics.iter().cloned());
        diagnostics.extend(flow.iter().cloned());
        let analysis = Analysis {
            file,
            state: folded.state,
            origins: folded.origins,
            diagnostics: diag::finish(diagnostics, 0),
        };
        let parts = Parts {
            structure,
            fold: folded.diagnostics,
            flow,
        };
        self.done(analysis, Some(parts), memo)
    }

    /// The flow diagnostics of a new state: the last ones moved when the state and where its
    /// parts were written did not change, else the flow analysis run again for what changed.
    fn flow(
        &mut self,
        last: &mut Option<Last>,
        map: Option<&PosMap>,
        state: &State,
        origins: &Origins,
    ) -> (Vec<Diagnostic>, Option<FlowMemo>) {
        let Some(last) = last else {
            return check::check_flow_again(state, origins, None);
        };
        let reused = map.and_then(|map| reused_flow(last, state, origins, map));
        match reused {
            Some(flow) => (flow, last.memo.take()),
            None => check::check_flow_again(state, origins, last.memo.take()),
        }
    }

    /// An edit of FORWARD statements only, from the previous analysis patched (see
    /// [`rules`]); `None` when the edit is not one, and the statements are analysed whole.
    fn rule_edit(
        &mut self,
        last: &mut Option<Last>,
        map: &PosMap,
        old: &[Chunk],
        fresh: std::ops::Range<usize>,
        cancelled: &dyn Fn() -> bool,
    ) -> Option<Outcome> {
        let edit = rules::RuleEdit {
            old,
            fresh: &self.chunks[fresh],
            chunks: &self.chunks,
        };
        if !rules::only_rules(edit.old) || !rules::only_rules(edit.fresh) {
            return None;
        }
        if last.as_ref().is_none_or(|last| last.parts.is_none()) {
            return None;
        }
        let (statements, lexical, _) = self.statement_diagnostics();
        if lexical >= MAX_DIAGNOSTICS {
            return None;
        }
        let Last {
            analysis,
            parts,
            memo,
        } = last.take()?;
        let parts = parts?;
        // Patched in place when no one else holds it (the editor lets go of it when a change
        // arrives); should the patch give up, the whole path runs without it.
        let analysis = Arc::try_unwrap(analysis).unwrap_or_else(|shared| {
            let copy = (*shared).clone();
            self.retired.push(shared);
            copy
        });
        let (mut analysis, mut new_parts, changed) = rules::patch(analysis, &parts, &edit, map)?;
        if cancelled() {
            return Some(Outcome::Cancelled);
        }
        analysis.file.comments = self.comments();
        let mut flow = parts.flow;
        let mut memo = memo;
        if changed || map.apply(&mut flow).is_none() {
            (flow, memo) = check::check_flow_again(&analysis.state, &analysis.origins, memo);
        }
        new_parts.flow = flow;
        let mut diagnostics = statements;
        diagnostics.extend(new_parts.structure.iter().cloned());
        diagnostics.extend(new_parts.fold.iter().cloned());
        diagnostics.extend(new_parts.flow.iter().cloned());
        analysis.diagnostics = diag::finish(diagnostics, 0);
        Some(self.done(analysis, Some(new_parts), memo))
    }

    fn done(
        &mut self,
        analysis: Analysis,
        parts: Option<Parts>,
        memo: Option<FlowMemo>,
    ) -> Outcome {
        let analysis = Arc::new(analysis);
        self.last = Some(Last {
            analysis: Arc::clone(&analysis),
            parts,
            memo,
        });
        Outcome::Done(analysis)
    }

    /// The whole text analysed at once; the statements are read again next time.
    fn whole(&mut self, text: &str) -> Outcome {
        self.text.clear();
        self.chunks.clear();
        let analysis = crate::analyze(text);
        self.last = None;
        Outcome::Done(Arc::new(analysis))
    }

    /// Reads the statements of `text` that differ from the previous text's, and says how
    /// positions moved; `None` when they could not be read (the caller analyses afresh).
    fn read(&mut self, text: &str) -> Option<Moved> {
        if self.chunks.is_empty() {
            let (chunks, _) = chunks::read(text, 0, true, |_| false)?;
            self.chunks = chunks;
            self.text = text.to_string();
            return Some(Moved::Fresh);
        }
        let edit = Edit::between(&self.text, text);
        let k = self.chunks.partition_point(|c| c.start <= edit.start) - 1;
        // The statement before the edit too: the edit may join the touched one to it.
        let first = k.saturating_sub(1);
        let from = self.chunks[first].start;
        let old = &self.chunks;
        let resume_at = |q: usize| -> Option<usize> {
            let old_q = q.checked_add_signed(-edit.delta)?;
            if q < edit.new_end {
                return None;
            }
            let j = old.partition_point(|c| c.start < old_q);
            (j > first && old.get(j).is_some_and(|c| c.start == old_q)).then_some(j)
        };
        let (fresh, resumed) = chunks::read(text, from, first == 0, |q| resume_at(q).is_some())?;
        let j = resumed.and_then(resume_at).unwrap_or(old.len());
        let map = PosMap::new(&self.chunks, first, j, &fresh, &edit, text.len());
        let same = fresh.len() == j - first
            && fresh
                .iter()
                .zip(&self.chunks[first..j])
                .all(|(a, b)| a.same_as(b));
        for chunk in &mut self.chunks[j..] {
            chunk.start = chunk.start.checked_add_signed(edit.delta)?;
        }
        let placed = first..first + fresh.len();
        let old = self.chunks.splice(first..j, fresh).collect();
        self.text.clear();
        self.text.push_str(text);
        Some(Moved::Edited {
            map,
            same,
            old,
            fresh: placed,
        })
    }

    /// The previous analysis (and its flow diagnostics) for a text whose statements all read
    /// the same: spans moved, comments read again. Moved in place when no one else holds it.
    /// `None` when a position has no known place (what was half moved is dropped).
    fn moved(
        &mut self,
        last: Last,
        map: &PosMap,
    ) -> Option<(Analysis, Option<Parts>, Option<FlowMemo>)> {
        let mut parts = last.parts;
        if let Some(parts) = &mut parts {
            if map.apply(parts).is_none() {
                self.retired.push(last.analysis);
                return None;
            }
        }
        let mut analysis = Arc::try_unwrap(last.analysis).unwrap_or_else(|shared| {
            let copy = (*shared).clone();
            self.retired.push(shared);
            copy
        });
        if map.apply(&mut analysis).is_none() {
            self.retired.push(Arc::new(analysis));
            return None;
        }
        analysis.file.comments = self.comments();
        Some((analysis, parts, last.memo))
    }

    /// Frees what the last update replaced; call it when no one waits (after publishing).
    pub fn tidy(&mut self) {
        self.retired.clear();
    }

    fn comments(&self) -> Vec<crate::lexer::Comment> {
        self.chunks
            .iter()
            .flat_map(|c| c.comments.iter().map(|comment| shifted(comment, c.start)))
            .collect()
    }

    /// The statements put together as [`crate::parse`] does: the tree, the statements' own
    /// diagnostics and the structure pass's (together in the parse's order), and how many
    /// lexical diagnostics there were.
    fn assemble(&self) -> (SourceFile, Vec<Diagnostic>, Vec<Diagnostic>, usize) {
        let (diagnostics, lexical, eof_reported) = self.statement_diagnostics();
        let mut structure = Structure::default();
        for chunk in &self.chunks {
            for stmt in &chunk.stmts {
                structure.push(shifted(stmt, chunk.start));
            }
        }
        let mut structure_diagnostics = Vec::new();
        let mut file = structure.finish(self.text.len(), eof_reported, &mut structure_diagnostics);
        file.comments = self.comments();
        (file, diagnostics, structure_diagnostics, lexical)
    }

    /// The statements' own diagnostics: lexical, then syntax errors, in text order; how many
    /// were lexical; and whether a syntax error is at the end of the text.
    fn statement_diagnostics(&self) -> (Vec<Diagnostic>, usize, bool) {
        let len = self.text.len();
        let mut diagnostics: Vec<Diagnostic> = self
            .chunks
            .iter()
            .flat_map(|c| c.lexical.iter().map(|d| shifted(d, c.start)))
            .collect();
        let lexical = diagnostics.len();
        let mut eof_reported = false;
        for (i, chunk) in self.chunks.iter().enumerate() {
            if chunk.errors.is_empty() {
                continue;
            }
            let next = self.chunks.get(i + 1).and_then(|next| {
                let (tok, span) = next.keyword?;
                Some((tok, shifted(&span, next.start)))
            });
            for error in &chunk.errors {
                let d = error.resolve(chunk.start, next, len);
                eof_reported |= d.span.start() == len;
                diagnostics.push(d);
            }
        }
        (diagnostics, lexical, eof_reported)
    }
}

/// The flow diagnostics of the last analysis, moved, when the new fold is the same state
/// written in the same places: the flow analysis reads nothing else.
fn reused_flow(
    last: &mut Last,
    state: &State,
    origins: &Origins,
    map: &PosMap,
) -> Option<Vec<Diagnostic>> {
    let previous = &last.analysis;
    if previous.state != *state || !same_origins(&previous.origins, origins, map) {
        return None;
    }
    let mut flow = std::mem::take(&mut last.parts.as_mut()?.flow);
    map.apply(&mut flow)?;
    Some(flow)
}

fn same_origins(old: &Origins, new: &Origins, map: &PosMap) -> bool {
    let mut old = old.clone();
    map.apply(&mut old).is_some()
        && old.links == new.links
        && old.rules == new.rules
        && old.hosts == new.hosts
}

/// What reading the new text's statements found.
enum Moved {
    /// Read from scratch: nothing is known of the previous text.
    Fresh,
    /// Some statements read again; `same` when they all read as before. `old` are the
    /// chunks replaced, `fresh` where the new ones are in [`Incremental::chunks`].
    Edited {
        map: PosMap,
        same: bool,
        old: Vec<Chunk>,
        fresh: std::ops::Range<usize>,
    },
}

impl Moved {
    fn map(&self) -> Option<&PosMap> {
        match self {
            Moved::Fresh => None,
            Moved::Edited { map, .. } => Some(map),
        }
    }

    fn same(&self) -> Option<&PosMap> {
        match self {
            Moved::Edited {
                map, same: true, ..
            } => Some(map),
            _ => None,
        }
    }
}

/// The one region where two texts differ: `start..old_end` of the old became
/// `start..new_end` of the new.
struct Edit {
    start: usize,
    new_end: usize,
    delta: isize,
}

impl Edit {
    fn between(old: &str, new: &str) -> Edit {
        let (old, new) = (old.as_bytes(), new.as_bytes());
        let start = common_prefix(old, new);
        let suffix = common_prefix_rev(&old[start..], &new[start..]);
        Edit {
            start,
            new_end: new.len() - suffix,
            delta: new.len() as isize - old.len() as isize,
        }
    }
}

/// Compared a block at a time: a 10,000-line text is compared in tens of microseconds.
const BLOCK: usize = 256;

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let max = a.len().min(b.len());
    let mut n = 0;
    while n + BLOCK <= max && a[n..n + BLOCK] == b[n..n + BLOCK] {
        n += BLOCK;
    }
    n + a[n..max]
        .iter()
        .zip(&b[n..max])
        .take_while(|(x, y)| x == y)
        .count()
}

fn common_prefix_rev(a: &[u8], b: &[u8]) -> usize {
    let max = a.len().min(b.len());
    let (a, b) = (&a[a.len() - max..], &b[b.len() - max..]);
    let mut n = 0;
    while n + BLOCK <= max && a[max - n - BLOCK..max - n] == b[max - n - BLOCK..max - n] {
        n += BLOCK;
    }
    n + a[..max - n]
        .iter()
        .rev()
        .zip(b[..max - n].iter().rev())
        .take_while(|(x, y)| x == y)
        .count()
}

/// Where positions of the previous text are in the new one, where that is known: before the
/// statements read again nothing moved, after them everything moved by the edit's change in
/// length, and within a statement read again that reads the same, with the statement.
struct PosMap {
    /// Where the statements read again start (in both texts).
    from: usize,
    /// Each statement read again: its old start, and its new start when it reads the same.
    replaced: Vec<(usize, Option<usize>)>,
    /// Where the statements that were not read again start, in the old text.
    resume: usize,
    delta: isize,
    old_len: usize,
    new_len: usize,
}

impl PosMap {
    fn new(
        old: &[Chunk],
        first: usize,
        j: usize,
        fresh: &[Chunk],
        edit: &Edit,
        new_len: usize,
    ) -> PosMap {
        let replaced = old[first..j]
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let same = fresh.get(i).filter(|f| f.same_as(chunk));
                (chunk.start, same.map(|f| f.start))
            })
            .collect();
        let old_len = new_len.checked_add_signed(-edit.delta).unwrap_or(0);
        PosMap {
            from: old[first].start,
            replaced,
            resume: old.get(j).map_or(usize::MAX, |c| c.start),
            delta: edit.delta,
            old_len,
            new_len,
        }
    }

    /// Where the statements that were not read again start in the new text (`usize::MAX`
    /// when none follow).
    fn new_resume(&self) -> usize {
        match self.resume {
            usize::MAX => usize::MAX,
            resume => resume.checked_add_signed(self.delta).unwrap_or(usize::MAX),
        }
    }

    fn get(&self, p: usize) -> Option<usize> {
        if p < self.from {
            return Some(p);
        }
        if p >= self.resume {
            return p.checked_add_signed(self.delta);
        }
        let i = self
            .replaced
            .partition_point(|(start, _)| *start <= p)
            .checked_sub(1)?;
        let (old_start, new_start) = self.replaced[i];
        let new = new_start? + (p - old_start);
        // The end of the text is where the text ends, whatever moved before it.
        (p != self.old_len || new == self.new_len).then_some(new)
    }

    /// Moves every span of `value`; `None` (and `value` half moved) when a position has no
    /// known place.
    fn apply<T: MapSpans>(&self, value: &mut T) -> Option<()> {
        let lost = std::cell::Cell::new(false);
        value.map_spans(&|p| {
            self.get(p).unwrap_or_else(|| {
                lost.set(true);
                p
            })
        });
        (!lost.get()).then_some(())
    }
}
