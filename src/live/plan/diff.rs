//! The difference between the live state and the desired one, twice: as a patch on the model
//! (what `vnetc diff` prints, SPEC 3) and as each daemon's table changes (what `plan` orders
//! and `apply` sends).

use super::Op;
use crate::live::fetch::Live;
use crate::live::hosts;
use std::collections::{BTreeMap, BTreeSet};
use vnet_grammar::model::{HostDef, LinkDef, LinkKey, RuleDef, State};
use vnet_proto::control::LinkSpec;

/// What a patch deletes from the live state and adds to it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StateDiff {
    pub delete_links: BTreeSet<LinkDef>,
    pub delete_rules: BTreeSet<RuleDef>,
    pub add_links: BTreeSet<LinkDef>,
    pub add_rules: BTreeSet<RuleDef>,
}

impl StateDiff {
    pub fn is_empty(&self) -> bool {
        self.delete_links.is_empty()
            && self.delete_rules.is_empty()
            && self.add_links.is_empty()
            && self.add_rules.is_empty()
    }
}

/// The patch that turns `live` into `desired` when folded onto it (SPEC 2.3: a DELETE block
/// removes its rules, then its links; an ADD block adds links, then rules). A link whose
/// transport or dialer changes is deleted and added again, and so are the rules over it, so
/// that no DELETE leaves a rule on a missing link (V110). `half_links` (drift: configured on
/// one end only) are not in `live`; the ones `desired` does not want are deleted anyway,
/// which the checker notes as V202, a warning.
pub fn state_diff(live: &State, desired: &State, half_links: &[LinkDef]) -> StateDiff {
    let mut diff = StateDiff::default();
    let mut replaced: BTreeSet<&LinkKey> = BTreeSet::new();
    for (key, def) in &live.links {
        match desired.links.get(key) {
            Some(want) if want == def => {}
            Some(_) => {
                replaced.insert(key);
                diff.delete_links.insert(def.clone());
            }
            None => {
                diff.delete_links.insert(def.clone());
            }
        }
    }
    for (key, def) in &desired.links {
        if live.links.get(key) != Some(def) {
            diff.add_links.insert(def.clone());
        }
    }
    for def in half_links {
        if !desired.links.contains_key(&def.key()) && !live.links.contains_key(&def.key()) {
            diff.delete_links.insert(def.clone());
        }
    }
    let over_replaced = |r: &RuleDef| r.link().is_some_and(|k| replaced.contains(&k));
    for rule in &live.rules {
        if !desired.rules.contains(rule) || over_replaced(rule) {
            diff.delete_rules.insert(rule.clone());
        }
    }
    for rule in &desired.rules {
        if !live.rules.contains(rule) || over_replaced(rule) {
            diff.add_rules.insert(rule.clone());
        }
    }
    diff
}

/// The patch as a `.vnet` program: `notes` as comments, the HOST lines, a DELETE block and an
/// ADD block (each omitted when empty), statements sorted by their text like `vnetc state`.
pub fn patch_text(hosts: &[HostDef], diff: &StateDiff, notes: &[String]) -> String {
    let mut out = String::new();
    for note in notes {
        for line in note.lines() {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push_str("BEGIN\n");
    for host in hosts {
        out.push_str(&host.to_string());
        out.push('\n');
    }
    let block =
        |out: &mut String, keyword: &str, links: &BTreeSet<LinkDef>, rules: &BTreeSet<RuleDef>| {
            if links.is_empty() && rules.is_empty() {
                return;
            }
            let mut links: Vec<String> = links.iter().map(ToString::to_string).collect();
            let mut rules: Vec<String> = rules.iter().map(ToString::to_string).collect();
            links.sort();
            rules.sort();
            out.push('\n');
            out.push_str(keyword);
            out.push('\n');
            for line in links.iter().chain(&rules) {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
        };
    block(&mut out, "DELETE", &diff.delete_links, &diff.delete_rules);
    block(&mut out, "ADD", &diff.add_links, &diff.add_rules);
    out.push_str("END\n");
    out
}

/// One daemon's tables as the desired state wants them: its links with the peer's address,
/// its rules, and (for a patch, which leaves alone what it cannot name) its foreign entries.
fn wanted(
    desired: &State,
    live: &Live,
    daemon: &str,
    keep_foreign: bool,
) -> (BTreeMap<LinkKey, LinkSpec>, BTreeSet<RuleDef>) {
    let mut links = BTreeMap::new();
    for def in desired.links_of(daemon) {
        let peer = if def.a == daemon { &def.b } else { &def.a };
        let Some(peer_host) = desired.host(peer) else {
            continue;
        };
        links.insert(
            def.key(),
            LinkSpec {
                link: def.clone(),
                peer_addr: hosts::peer_addr(peer_host),
                // Pins the key the peer reported: its links accept no other.
                peer_key: live
                    .snapshots
                    .get(peer.as_str())
                    .and_then(|s| s.public_key.clone()),
            },
        );
    }
    let mut rules: BTreeSet<RuleDef> = desired.rules_of(daemon).cloned().collect();
    if keep_foreign {
        if let Some(f) = live.foreign.get(daemon) {
            for spec in &f.links {
                links.insert(spec.link.key(), spec.clone());
            }
            rules.extend(f.rules.iter().cloned());
        }
    }
    (links, rules)
}

/// Each daemon's table changes from its snapshot to the desired state, for the daemons of
/// `desired`'s HOST lines that were read. `keep_foreign`: leave links and rules naming
/// undeclared daemons in place (a patch) instead of removing them (a whole file).
pub fn daemon_ops(desired: &State, live: &Live, keep_foreign: bool) -> Vec<(String, Vec<Op>)> {
    let mut out = Vec::new();
    for host in &desired.hosts {
        let daemon = host.machine.as_str();
        let Some(snap) = live.snapshots.get(daemon) else {
            continue;
        };
        let (want_links, want_rules) = wanted(desired, live, daemon, keep_foreign);
        let have_links: BTreeMap<LinkKey, &LinkSpec> =
            snap.links.iter().map(|s| (s.link.key(), s)).collect();
        let have_rules: BTreeSet<&RuleDef> = snap.rules.iter().collect();
        let mut ops = Vec::new();
        for rule in &snap.rules {
            if !want_rules.contains(rule) {
                ops.push(Op::DeleteRule { rule: rule.clone() });
            }
        }
        for (key, spec) in &have_links {
            if !want_links.contains_key(key) {
                ops.push(Op::DeleteLink {
                    link: (*spec).clone(),
                });
            }
        }
        for (key, spec) in &want_links {
            match have_links.get(key) {
                Some(have) if *have == spec => {}
                Some(have) => ops.push(Op::ReplaceLink {
                    link: spec.clone(),
                    was: (*have).clone(),
                }),
                None => ops.push(Op::AddLink { link: spec.clone() }),
            }
        }
        for rule in &want_rules {
            if !have_rules.contains(rule) {
                ops.push(Op::AddRule { rule: rule.clone() });
            }
        }
        out.push((daemon.to_string(), ops));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use vnet_grammar::ast::Transport;
    use vnet_grammar::model::{Match, Target};
    use vnet_grammar::Mac;

    const MACHINES: [&str; 4] = ["m0", "m1", "m2", "m3"];

    fn hosts() -> Vec<HostDef> {
        MACHINES
            .iter()
            .map(|m| HostDef {
                user: "u".into(),
                machine: m.to_string().into(),
                port: 7000,
                iface: format!("if{m}").into(),
            })
            .collect()
    }

    fn field(n: u8) -> Match {
        match n % 4 {
            0 => Match::Any,
            1 => Match::Exact(Mac([2, 0, 0, 0, 0, n % 3])),
            2 => Match::Not(Mac([2, 0, 0, 0, 0, n % 3])),
            _ => Match::Exact(Mac::BROADCAST),
        }
    }

    /// A clean-enough state from numbers: links between the machines, rules only over links
    /// it has (so no V106), INTERFACE rules on each daemon's own interface.
    fn state(links: &[(u8, u8, bool, bool)], rules: &[(u8, u8, u8, u8, bool)]) -> State {
        let mut s = State {
            hosts: hosts(),
            ..State::default()
        };
        for &(a, b, udp, flip) in links {
            let (a, b) = (MACHINES[a as usize % 4], MACHINES[b as usize % 4]);
            if a == b {
                continue;
            }
            let transport = if udp { Transport::Udp } else { Transport::Tcp };
            let def = LinkDef::new(transport, if flip { b } else { a }, a, b);
            s.links.entry(def.key()).or_insert(def);
        }
        for &(d, src, dst, to, iface) in rules {
            let daemon = MACHINES[d as usize % 4];
            let target = if iface {
                Target::Interface {
                    name: format!("if{daemon}").into(),
                }
            } else {
                let peer = MACHINES[to as usize % 4];
                if !s.links.contains_key(&LinkKey::new(daemon, peer)) || peer == daemon {
                    continue;
                }
                Target::Link {
                    peer: peer.to_string().into(),
                }
            };
            let dst = if dst % 5 == 4 {
                Match::None
            } else {
                field(dst)
            };
            s.rules.insert(RuleDef {
                daemon: daemon.to_string().into(),
                src: field(src),
                dst,
                target,
            });
        }
        s
    }

    type Links = Vec<(u8, u8, bool, bool)>;
    type Rules = Vec<(u8, u8, u8, u8, bool)>;

    fn arb() -> impl Strategy<Value = (Links, Rules)> {
        (
            proptest::collection::vec((0u8..4, 0u8..4, any::<bool>(), any::<bool>()), 0..7),
            proptest::collection::vec((0u8..4, 0u8..12, 0u8..15, 0u8..4, any::<bool>()), 0..14),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        /// The patch folds onto the live state without errors and gives the desired state.
        /// The desired state is often the live one edited (links changed in transport or
        /// dialer under rules that stay, rules dropped, things added), since that is where a
        /// patch can go wrong.
        #[test]
        fn the_patch_folded_onto_live_gives_desired(
            (l1, r1) in arb(),
            (l2, r2) in arb(),
            edits in proptest::collection::vec((any::<bool>(), any::<bool>(), any::<bool>()), 7),
            keep in proptest::collection::vec(any::<bool>(), 14),
            related in any::<bool>(),
        ) {
            let live = state(&l1, &r1);
            let desired = if related {
                let mut links = l1.clone();
                for (link, (udp, flip, _)) in links.iter_mut().zip(&edits) {
                    link.2 ^= *udp;
                    link.3 ^= *flip;
                }
                links.extend(l2.iter().take(2));
                let mut rules: Vec<_> = r1.iter().zip(keep.iter().chain(std::iter::repeat(&true))).filter(|(_, k)| **k).map(|(r, _)| *r).collect();
                rules.extend(r2.iter().take(3));
                state(&links, &rules)
            } else {
                state(&l2, &r2)
            };
            let diff = state_diff(&live, &desired, &[]);
            let text = patch_text(&desired.hosts, &diff, &["a note".to_string()]);
            let analysis = vnet_grammar::analyze_onto(&text, &live);
            let errors: Vec<_> = analysis.diagnostics.iter().filter(|d| d.is_error()).filter(|d| {
                // Loops are a property of the desired state itself, not of the patch.
                !matches!(d.code, vnet_grammar::Code::V111)
            }).collect();
            prop_assert!(errors.is_empty(), "{text}\n{errors:?}");
            prop_assert_eq!(&analysis.state, &desired, "{}", text);
            prop_assert_eq!(diff.is_empty(), live == desired);
        }
    }

    #[test]
    fn half_links_not_wanted_are_deleted_with_a_warning_only() {
        let live = state(&[], &[]);
        let half = LinkDef::new(Transport::Tcp, "m0", "m0", "m1");
        let diff = state_diff(&live, &live, std::slice::from_ref(&half));
        assert_eq!(diff.delete_links, BTreeSet::from([half]));
        let text = patch_text(&live.hosts, &diff, &[]);
        let analysis = vnet_grammar::analyze_onto(&text, &live);
        assert!(!analysis.has_errors(), "{:?}", analysis.diagnostics);
        assert_eq!(analysis.state, live);
    }
}
