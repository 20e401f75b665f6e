//! From a solver's answer to desired states (pure): the new state that routes every demand on
//! its path and follows every migrated VM, and the two intermediate states of the
//! make-before-break order of `crate::vm` (relay at the old daemon, migrate, repoint, remove).
//!
//! Following a VM with MAC `m` from daemon A to daemon C rewrites the rules that name `m`
//! exactly:
//! - at A, the rules delivering `m` (`INTERFACE A … m …`) move to C's interface, and the rules
//!   for `m`'s own frames (`EDGE A m … A P`) move to C (`EDGE C m … C P`, none when P is C);
//! - elsewhere, a rule sending `m`'s frames to A sends them to C; C's own rules sending `m`'s
//!   frames away are dropped (C delivers them now);
//! - everything else stays.
//!
//! Then every demand gets exact-source, exact-destination EDGE rules along its path (replacing
//! any earlier exact rules of that pair), and a UDP link for each hop that has none.

use super::problem::Assembled;
use vnet_adapt::Answer;
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{LinkDef, LinkKey, Match, RuleDef, State, Target};
use vnet_grammar::Mac;

/// One VM to move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Move {
    pub vm: String,
    pub mac: Mac,
    pub from: String,
    pub to: String,
}

/// The proposal and the states that lead to it.
#[derive(Clone, Debug)]
pub struct Proposal {
    pub moves: Vec<Move>,
    /// The new desired state.
    pub state: State,
    /// Before the migrations: the VMs' rules at their new daemons (on the old routes), and
    /// each old daemon relaying the VM's frames to the new one beside its own delivery.
    pub prepare: State,
    /// After them: the new state, with the relays still in place.
    pub switched: State,
}

pub fn propose(base: &State, a: &Assembled, answer: &Answer) -> Proposal {
    let p = &a.problem;
    let moves: Vec<Move> = vnet_adapt::answer::migrations(p, answer)
        .into_iter()
        .filter_map(|(v, from, to)| {
            Some(Move {
                vm: p.vms[v].name.clone(),
                mac: a.macs[v],
                from: p.hosts[from?].name.clone(),
                to: p.hosts[to].name.clone(),
            })
        })
        .collect();
    let moves = vacate_first(moves);
    let mut followed = base.clone();
    for m in &moves {
        followed = follow(&followed, m);
    }
    let mut state = followed.clone();
    for (d, path) in p.demands.iter().zip(&answer.solution.paths) {
        let (src, dst) = (Match::Exact(a.macs[d.src]), Match::Exact(a.macs[d.dst]));
        state.rules.retain(|r| (r.src, r.dst) != (src, dst));
        for &e in path {
            let (from, to) = (&p.hosts[p.links[e].from].name, &p.hosts[p.links[e].to].name);
            ensure_link(&mut state, from, to);
            state.rules.insert(edge(from, src, dst, to));
        }
    }
    let mut prepare = base.clone();
    let mut switched = state.clone();
    for m in &moves {
        // The VM's rules at its new place as the old routes would have them (not yet the
        // demands' paths): its frames then travel routes every daemon on the way knows
        // until `switched` puts the new paths in, all at once.
        let mac = Match::Exact(m.mac);
        for r in followed
            .rules_of(&m.to)
            .filter(|r| r.src == mac || r.dst == mac)
        {
            if let Some(key) = r.link() {
                if let Some(link) = followed.links.get(&key) {
                    prepare.links.insert(key, link.clone());
                }
            }
            prepare.rules.insert(r.clone());
        }
        for s in [&mut prepare, &mut switched] {
            ensure_link(s, &m.from, &m.to);
            s.rules.insert(edge(&m.from, Match::Any, mac, &m.to));
        }
    }
    Proposal {
        moves,
        state,
        prepare,
        switched,
    }
}

/// Orders the moves so that a VM leaves a daemon before another arrives there: VMs attach to
/// a daemon's `dgram` interface, and two VMs on one interface would take turns being its
/// peer until one leaves. Moves that wait on each other in a cycle (a swap) cannot all wait;
/// the cycle is broken at the first move another waits on, and the overlap lasts that one
/// migration.
pub fn vacate_first(mut waiting: Vec<Move>) -> Vec<Move> {
    let mut order = Vec::with_capacity(waiting.len());
    while !waiting.is_empty() {
        let free = waiting
            .iter()
            .position(|m| !waiting.iter().any(|o| o.from == m.to))
            .or_else(|| {
                // Every move waits: the first one another waits on sits on a cycle's way.
                waiting
                    .iter()
                    .position(|m| waiting.iter().any(|o| o.to == m.from))
            })
            .unwrap_or(0);
        order.push(waiting.remove(free));
    }
    order
}

fn edge(daemon: &str, src: Match, dst: Match, peer: &str) -> RuleDef {
    RuleDef {
        daemon: daemon.to_string().into(),
        src,
        dst,
        target: Target::Link {
            peer: peer.to_string().into(),
        },
    }
}

/// A UDP link between `a` and `b` unless there is one (`a` dials).
fn ensure_link(s: &mut State, a: &str, b: &str) {
    s.links
        .entry(LinkKey::new(a, b))
        .or_insert_with(|| LinkDef::new(Transport::Udp, a, a, b));
}

/// A rule at the VM's old place that carried its frames among others' (`ANY`, `NOT` another
/// source): at the new place, the same route for the VM's frames alone, so that whatever
/// they reached from the old place they reach from the new one (a delivery there becomes a
/// hop back to it).
fn carry_from_old_place(r: &RuleDef, m: &Move) -> Option<RuleDef> {
    if r.daemon != m.from || !r.src.matches(m.mac) || r.dst.matches(m.mac) && r.dst.mac().is_some()
    {
        return None;
    }
    let src = Match::Exact(m.mac);
    match &r.target {
        Target::Link { peer } if *peer != m.to => Some(edge(&m.to, src, r.dst, peer)),
        Target::Interface { .. } => Some(edge(&m.to, src, r.dst, &m.from)),
        Target::Link { .. } => None,
    }
}

/// The state with the rules naming `m.mac` rewritten for its move (see the module's comment).
fn follow(s: &State, m: &Move) -> State {
    let mac = Match::Exact(m.mac);
    let iface = s.host(&m.to).map(|h| h.iface.clone()).unwrap_or_default();
    let mut out = State {
        hosts: s.hosts.clone(),
        links: s.links.clone(),
        rules: Default::default(),
    };
    for r in &s.rules {
        let (names_src, names_dst) = (r.src == mac, r.dst == mac);
        if !names_src && !names_dst {
            if let Some(copy) = carry_from_old_place(r, m) {
                if let Target::Link { peer } = &copy.target {
                    ensure_link(&mut out, &m.to, peer);
                }
                out.rules.insert(copy);
            }
            out.rules.insert(r.clone());
            continue;
        }
        let moved = match (&r.target, r.daemon == m.from, r.daemon == m.to) {
            (Target::Interface { .. }, true, _) if names_dst => Some(RuleDef {
                daemon: m.to.clone().into(),
                target: Target::Interface {
                    name: iface.clone(),
                },
                ..r.clone()
            }),
            (Target::Interface { .. }, true, _) => Some(r.clone()),
            (Target::Interface { .. }, false, _) if names_dst => None,
            (Target::Link { peer }, true, _) if names_src && !names_dst && *peer != m.to => {
                Some(edge(&m.to, r.src, r.dst, peer))
            }
            (Target::Link { .. }, true, _) => None,
            (Target::Link { .. }, false, true) if names_dst => None,
            (Target::Link { peer }, false, false) if names_dst && *peer == m.from => {
                Some(edge(&r.daemon, r.src, r.dst, &m.to))
            }
            _ => Some(r.clone()),
        };
        if let Some(rule) = moved {
            if let Target::Link { peer } = &rule.target {
                ensure_link(&mut out, &rule.daemon, peer);
            }
            out.rules.insert(rule);
        }
    }
    out
}
