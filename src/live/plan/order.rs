//! Dependency order of the primitive operations (SPEC 3, thesis 3.2): on each daemon, rules
//! leave before their link goes and arrive after their link came; across daemons, the
//! listener learns of a new link before the dialer dials it (so the first dial is accepted,
//! not refused and retried after a backoff), and the dialer lets go of a link before the
//! listener forgets it (so it does not redial a refusing peer); and paths change without a
//! daemon on the way being left without a rule ([`super::consistent`]).

use super::{Op, Step};
use std::collections::{BTreeMap, HashMap};
use vnet_grammar::model::LinkKey;

/// Numbers the operations and records what each must wait for. Within a daemon the steps
/// come in phase order (rules off, links off, links on, rules on), each phase sorted by text,
/// which is also an order the dependencies allow.
pub fn order(ops: Vec<(String, Vec<Op>)>) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for (daemon, mut ops) in ops {
        ops.sort_by_key(|op| (op.phase(), op.text()));
        for op in ops {
            steps.push(Step {
                id: steps.len(),
                daemon: daemon.clone(),
                op,
                after: Vec::new(),
            });
        }
    }
    // Link steps by (daemon, pair): at most one per daemon and pair.
    let mut link_step: HashMap<(&str, LinkKey), usize> = HashMap::new();
    for s in &steps {
        if let Some(key) = s.op.link_key() {
            link_step.insert((s.daemon.as_str(), key), s.id);
        }
    }
    let mut edges: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for s in &steps {
        let me = s.daemon.as_str();
        let mut after = Vec::new();
        match &s.op {
            Op::DeleteRule { .. } => {}
            Op::DeleteLink { link } => {
                let key = link.link.key();
                // Rules over the link leave first.
                for r in &steps {
                    if r.daemon == me
                        && matches!(&r.op, Op::DeleteRule { rule } if rule.link().as_ref() == Some(&key))
                    {
                        after.push(r.id);
                    }
                }
                // The listener waits for the dialer, when both let go and agree who dials.
                let dialer = link.link.dialer.as_str();
                if dialer != me {
                    if let Some(&d) = link_step.get(&(dialer, key.clone())) {
                        if matches!(&steps[d].op, Op::DeleteLink { link: l } if l.link.dialer == dialer)
                        {
                            after.push(d);
                        }
                    }
                }
            }
            Op::AddLink { link } | Op::ReplaceLink { link, .. } => {
                // The dialer waits for the listener to know the link.
                let key = link.link.key();
                if link.link.dialer == me {
                    let listener = key.peer_of(me).unwrap_or_default();
                    if let Some(&l) = link_step.get(&(listener, key.clone())) {
                        if matches!(&steps[l].op, Op::AddLink { .. } | Op::ReplaceLink { .. }) {
                            after.push(l);
                        }
                    }
                }
            }
            Op::AddRule { rule } => {
                if let Some(key) = rule.link() {
                    if let Some(&l) = link_step.get(&(me, key)) {
                        if matches!(&steps[l].op, Op::AddLink { .. } | Op::ReplaceLink { .. }) {
                            after.push(l);
                        }
                    }
                }
            }
        }
        after.sort_unstable();
        after.dedup();
        edges.insert(s.id, after);
    }
    for s in &mut steps {
        s.after = edges.remove(&s.id).unwrap_or_default();
    }
    super::consistent::add_edges(&mut steps);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnet_grammar::ast::Transport;
    use vnet_grammar::model::{LinkDef, Match, RuleDef, Target};
    use vnet_proto::control::LinkSpec;

    fn spec(def: &LinkDef, peer: &str) -> LinkSpec {
        LinkSpec {
            link: def.clone(),
            peer_addr: format!("{peer}:1"),
            peer_key: None,
        }
    }

    fn edge(on: &str, peer: &str) -> RuleDef {
        RuleDef {
            daemon: on.into(),
            src: Match::Any,
            dst: Match::None,
            target: Target::Link { peer: peer.into() },
        }
    }

    #[test]
    fn listener_before_dialer_and_links_before_their_rules() {
        let l = LinkDef::new(Transport::Tcp, "h", "h", "p");
        let steps = order(vec![
            (
                "p".into(),
                vec![Op::AddLink {
                    link: spec(&l, "h"),
                }],
            ),
            (
                "h".into(),
                vec![
                    Op::AddRule {
                        rule: edge("h", "p"),
                    },
                    Op::AddLink {
                        link: spec(&l, "p"),
                    },
                ],
            ),
        ]);
        assert_eq!(steps.len(), 3);
        assert_eq!(steps[0].daemon, "p");
        // h: the link (after p's), then the rule (after h's link).
        assert!(matches!(steps[1].op, Op::AddLink { .. }));
        assert_eq!(steps[1].after, vec![0]);
        assert_eq!(steps[2].after, vec![1]);
    }

    #[test]
    fn rules_off_before_their_link_and_dialer_lets_go_first() {
        let l = LinkDef::new(Transport::Udp, "h", "h", "p");
        let steps = order(vec![
            (
                "p".into(),
                vec![
                    Op::DeleteLink {
                        link: spec(&l, "h"),
                    },
                    Op::DeleteRule {
                        rule: edge("p", "h"),
                    },
                ],
            ),
            (
                "h".into(),
                vec![Op::DeleteLink {
                    link: spec(&l, "p"),
                }],
            ),
        ]);
        // p: rule (0), link (1) after its rule and after h's delete (2).
        assert!(matches!(steps[0].op, Op::DeleteRule { .. }));
        assert_eq!(steps[1].after, vec![0, 2]);
        assert!(steps[2].after.is_empty());
    }
}
