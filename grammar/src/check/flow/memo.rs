//! The flow analysis of an edited text, re-run only for the daemons and classes of frames the
//! edit touched.
//!
//! Every result the analysis keeps is a function of few tables: a daemon's walk of one of its
//! destination classes reads that daemon's table alone, and the loop search for a destination
//! reads the bounds of `U(other)`, the tables of the daemons that name the destination and
//! those of the daemons in the components it confirmed (see `loops.rs`). So the tables of the
//! last analysis are kept, each daemon's is compared with its new one, and:
//! - a daemon whose table is the same keeps its walk;
//! - a daemon whose changed rules all have an exact destination, and which names the same
//!   sources, walks again only those destinations' classes (no other class matches those
//!   rules) and keeps the others, their rule numbers renamed;
//! - any other changed daemon walks again whole;
//! - a destination is searched for loops again when a daemon that named it, before or after,
//!   changed a rule of its class, or a daemon changed whole is in a component its search
//!   confirmed; `U(other)` is kept when the daemons changed whole have the same bounds there
//!   and none of them is in a component it confirmed, else every destination is searched.
//!
//! The node ids must be the same (the same daemons in the same order), else all runs again.
//! The diagnostics themselves are made afresh each time from the kept results: they hold
//! spans, which move with every edit.

use super::holes::{self, Classes, Walk};
use super::loops::{self, Found, Loops};
use super::net::{contains, sort_macs, FxBuild, Net, Node, NodeId, Tgt};
use crate::mac::Mac;
use crate::model::{Decision, Match};
use std::collections::HashMap;

/// What one flow analysis found, kept so that the next one re-runs only what an edit touched.
pub struct FlowMemo {
    /// The daemons by node id.
    names: Vec<String>,
    /// Each daemon's table: its rules by table index.
    tables: Vec<Vec<(Match, Match, Tgt)>>,
    /// The sources and destinations each daemon names.
    srcs: Vec<Vec<Mac>>,
    dsts: Vec<Vec<Mac>>,
    walk: Walk,
    loops: Loops,
}

impl FlowMemo {
    /// `None` when something was left out for the work limits: the next analysis runs whole.
    pub(super) fn new(net: &Net, walk: Walk, loops: Loops) -> Option<FlowMemo> {
        if !walk.complete(net) || loops.exhausted(net) {
            return None;
        }
        let nodes = || (0..net.len() as NodeId).map(|n| net.node(n));
        Some(FlowMemo {
            names: nodes().map(|n| n.name.to_string()).collect(),
            tables: nodes().map(|n| table(n).collect()).collect(),
            srcs: nodes().map(|n| n.srcs.to_vec()).collect(),
            dsts: nodes().map(|n| n.dsts.to_vec()).collect(),
            walk,
            loops,
        })
    }
}

fn table<'n>(node: &'n Node) -> impl Iterator<Item = (Match, Match, Tgt)> + 'n {
    node.table
        .iter()
        .map(|(_, src, dst, target)| (src, dst, *target))
}

/// How one daemon's table changed since the last analysis.
enum Change {
    Same,
    /// Only rules with an exact destination changed (`dsts`, sorted), and the daemon names
    /// the same sources. `renamed` gives each old table index its new one (`u32::MAX`: gone).
    Classes {
        dsts: Vec<Mac>,
        renamed: Vec<u32>,
    },
    Whole,
}

fn change(old: &[(Match, Match, Tgt)], old_srcs: &[Mac], node: &Node) -> Change {
    let new: Vec<(Match, Match, Tgt)> = table(node).collect();
    if old == new {
        return Change::Same;
    }
    if *old_srcs != *node.srcs {
        return Change::Whole;
    }
    let (renamed, kept) = matched(old, &new);
    let gone = old
        .iter()
        .zip(&renamed)
        .filter(|(_, i)| **i == u32::MAX)
        .map(|(rule, _)| rule.1);
    let added = new
        .iter()
        .zip(&kept)
        .filter(|(_, kept)| !**kept)
        .map(|(rule, _)| rule.1);
    let mut dsts = Vec::new();
    for dst in gone.chain(added) {
        match dst {
            Match::Exact(mac) => dsts.push(mac),
            _ => return Change::Whole,
        }
    }
    sort_macs(&mut dsts);
    Change::Classes { dsts, renamed }
}

/// Each old rule's new table index (`u32::MAX`: gone), and which new rules were there
/// before. The common start and end are matched in place, and so is a middle of the same
/// length (a retargeted rule keeps its place; a rule matched as changed when it only moved
/// is walked again, which costs time, not exactness); only a middle whose length changed is
/// matched by value.
fn matched(old: &[(Match, Match, Tgt)], new: &[(Match, Match, Tgt)]) -> (Vec<u32>, Vec<bool>) {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let (old_mid, new_mid) = (prefix..old.len() - suffix, prefix..new.len() - suffix);
    let mut renamed: Vec<u32> = (0..prefix as u32).collect();
    let mut kept = vec![true; new.len()];
    if old_mid.len() == new_mid.len() {
        for i in old_mid {
            let same = old[i] == new[i];
            kept[i] = same;
            renamed.push(if same { i as u32 } else { u32::MAX });
        }
    } else {
        let at: HashMap<(Match, Match, Tgt), u32, FxBuild> =
            new_mid.clone().map(|i| (new[i], i as u32)).collect();
        kept[new_mid].fill(false);
        for rule in &old[old_mid] {
            let i = at.get(rule).copied().unwrap_or(u32::MAX);
            if let Some(kept) = kept.get_mut(i as usize) {
                *kept = true;
            }
            renamed.push(i);
        }
    }
    let shift = new.len() as u32;
    renamed.extend((0..suffix as u32).map(|k| shift - suffix as u32 + k));
    (renamed, kept)
}

/// The walk and loops of `net` from the last analysis's, re-run where its tables changed;
/// `None` when the daemons are not the same ones or the work limits come near.
pub(super) fn rerun(net: &Net, memo: FlowMemo) -> Option<(Walk, Loops)> {
    let same_daemons = memo.names.len() == net.len()
        && (0..net.len()).all(|n| memo.names[n] == net.node(n as NodeId).name);
    if !same_daemons {
        return None;
    }
    let changes: Vec<Change> = (0..net.len())
        .map(|n| change(&memo.tables[n], &memo.srcs[n], net.node(n as NodeId)))
        .collect();
    let mut decision = Decision::default();
    let (old, mut classes) = (memo.walk.classes(), Classes::with_capacity(net));
    let mut starts = Vec::with_capacity(net.len() + 1);
    starts.push(0);
    for (a, change) in changes.iter().enumerate() {
        let a = a as NodeId;
        let before = memo.walk.range(a);
        match change {
            Change::Same => classes.copy_classes(old, before),
            Change::Whole => {
                if !holes::walk_node(net, a, &mut classes, &mut decision) {
                    return None;
                }
            }
            Change::Classes { dsts, renamed } => {
                let was = (old, before, &memo.dsts[a as usize][..]);
                rewalk(net, a, was, (dsts, renamed), &mut classes, &mut decision);
            }
        }
        // Classes are one per rule or fewer, so fewer than 2^32.
        starts.push(classes.len() as u32);
    }
    if !holes::within_limit(net, &classes, &starts) {
        return None;
    }
    let walk = Walk::new(net, classes, starts);
    let loops = relooped(net, memo.loops, &changes, &memo.dsts);
    (!loops.exhausted(net)).then_some((walk, loops))
}

/// The loop search from the last one's, given how each daemon's table changed and which
/// destinations each named before (`old_dsts`).
fn relooped(net: &Net, old: Loops, changes: &[Change], old_dsts: &[Vec<Mac>]) -> Loops {
    let whole: Vec<NodeId> = (0..net.len() as NodeId)
        .filter(|n| matches!(changes[*n as usize], Change::Whole))
        .collect();
    if !old.base_holds(net, &whole) {
        return loops::find_loops(net, None, &mut |_, _| None);
    }
    let mut dirty = Vec::new();
    let mut whole_node = vec![false; net.len()];
    for (n, change) in changes.iter().enumerate() {
        match change {
            Change::Same => {}
            Change::Classes { dsts, .. } => dirty.extend_from_slice(dsts),
            Change::Whole => {
                whole_node[n] = true;
                dirty.extend_from_slice(&old_dsts[n]);
                dirty.extend_from_slice(&net.node(n as NodeId).dsts);
            }
        }
    }
    sort_macs(&mut dirty);
    let mut reuse = |old: &mut Loops, dst: Mac| -> Option<Found> {
        if contains(&dirty, dst) {
            return None;
        }
        let found = old.take(dst)?;
        let touched = found.members.iter().any(|m| whole_node[*m as usize]);
        (!touched).then_some(found)
    };
    loops::find_loops(net, Some(old), &mut reuse)
}

/// Daemon `a`'s walk with the classes of destinations `dirty` walked again and the others
/// copied from its old walk (classes `before` of `old`, whose destinations were `old_dsts`),
/// appended to `out`.
fn rewalk(
    net: &Net,
    a: NodeId,
    (old, before, old_dsts): (&Classes, std::ops::Range<usize>, &[Mac]),
    (dirty, renamed): (&[Mac], &[u32]),
    out: &mut Classes,
    decision: &mut Decision,
) {
    let renamed = |index: u32| {
        renamed
            .get(index as usize)
            .copied()
            .filter(|i| *i != u32::MAX)
    };
    for dst in holes::classes(net.node(a)) {
        let k = match dst {
            None => Some(0),
            Some(mac) if !contains(dirty, mac) => old_dsts
                .binary_search_by_key(&mac.to_u64(), |m| m.to_u64())
                .ok()
                .map(|i| i + 1),
            Some(_) => None,
        };
        if !k.is_some_and(|k| out.copy_class(old, before.start + k, renamed)) {
            holes::walk_class(net, a, dst, out, decision);
        }
    }
}
