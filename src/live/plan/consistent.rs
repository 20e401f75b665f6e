//! Consistent updates across daemons: while a plan moves a pair's frames from one path to
//! another, no daemon on the way should be without a rule for them. Each daemon's change is
//! atomic, but daemons change in parallel, so without an order an upstream daemon may start
//! sending a pair over a link before the daemon at the other end knows the pair (a host knows
//! only its own VMs' frames: `no_rule` drops while `adapt --apply` puts new paths in), or
//! still send it to a daemon that has already let go of its rule. So:
//! - a daemon starts sending a class of frames over a link only after the daemon at the
//!   other end has added its rules for that class (new paths are built from their end);
//! - a daemon lets go of a rule only after the daemons sending it that class have let go of
//!   theirs (old paths are taken down from their start), and not before its own new rules
//!   for that class can go in with it.
//!
//! Only rules with an exact destination take part (VADAPT's per-pair rules, a moved VM's
//! relay): they are found by destination, so the edges stay linear in the plan. If the edges
//! would form a cycle (paths that swap direction), none is added and the plan keeps its
//! per-daemon order.

use super::{is_acyclic, Op, Step};
use std::collections::HashMap;
use vnet_grammar::model::{Match, RuleDef, Target};
use vnet_grammar::Mac;

/// The rule steps with an exact destination: adds by (daemon, destination), deletes by
/// (the peer they send to, destination).
struct Index<'a> {
    adds: HashMap<(&'a str, Mac), Vec<(usize, &'a RuleDef)>>,
    deletes_to: HashMap<(&'a str, Mac), Vec<(usize, &'a RuleDef)>>,
}

fn exact_dst(rule: &RuleDef) -> Option<Mac> {
    match rule.dst {
        Match::Exact(m) => Some(m),
        _ => None,
    }
}

fn overlap(a: &RuleDef, b: &RuleDef) -> bool {
    a.src.overlaps(b.src) && a.dst.overlaps(b.dst)
}

fn peer(rule: &RuleDef) -> Option<&str> {
    match &rule.target {
        Target::Link { peer } => Some(peer),
        Target::Interface { .. } => None,
    }
}

impl<'a> Index<'a> {
    fn new(steps: &'a [Step]) -> Index<'a> {
        let mut ix = Index {
            adds: HashMap::new(),
            deletes_to: HashMap::new(),
        };
        for s in steps {
            match &s.op {
                Op::AddRule { rule } => {
                    if let Some(d) = exact_dst(rule) {
                        let key = (s.daemon.as_str(), d);
                        ix.adds.entry(key).or_default().push((s.id, rule));
                    }
                }
                Op::DeleteRule { rule } => {
                    if let (Some(d), Some(p)) = (exact_dst(rule), peer(rule)) {
                        ix.deletes_to.entry((p, d)).or_default().push((s.id, rule));
                    }
                }
                _ => {}
            }
        }
        ix
    }

    /// The adds at `daemon` of rules whose frames overlap `rule`'s.
    fn adds_at(&self, daemon: &str, rule: &RuleDef) -> Vec<usize> {
        overlapping(&self.adds, daemon, rule)
    }

    /// The deletes, at other daemons, of rules sending `daemon` frames that overlap `rule`'s.
    fn deletes_sending_to(&self, daemon: &str, rule: &RuleDef) -> Vec<usize> {
        overlapping(&self.deletes_to, daemon, rule)
    }
}

/// The steps listed under (`daemon`, `rule`'s exact destination) whose rules' frames overlap
/// `rule`'s; none when `rule` has no exact destination.
fn overlapping(
    by: &HashMap<(&str, Mac), Vec<(usize, &RuleDef)>>,
    daemon: &str,
    rule: &RuleDef,
) -> Vec<usize> {
    let Some(d) = exact_dst(rule) else {
        return Vec::new();
    };
    let found = by.get(&(daemon, d)).into_iter().flatten();
    found
        .filter(|(_, r)| overlap(r, rule))
        .map(|&(id, _)| id)
        .collect()
}

/// The consistency edges of `steps` (for each step, the steps it must also wait for).
fn edges(steps: &[Step]) -> Vec<Vec<usize>> {
    let ix = Index::new(steps);
    // What each add waits for: the adds downstream, over its link.
    let downstream: Vec<Vec<usize>> = steps
        .iter()
        .map(|s| match &s.op {
            Op::AddRule { rule } => peer(rule).map_or_else(Vec::new, |p| ix.adds_at(p, rule)),
            _ => Vec::new(),
        })
        .collect();
    steps
        .iter()
        .map(|s| match &s.op {
            Op::AddRule { .. } => downstream[s.id].clone(),
            Op::DeleteRule { rule } => {
                let mut after = ix.deletes_sending_to(&s.daemon, rule);
                for own in ix.adds_at(&s.daemon, rule) {
                    after.extend(&downstream[own]);
                }
                after
            }
            _ => Vec::new(),
        })
        .collect()
}

/// Adds the consistency edges to `steps`, unless they would make a cycle.
pub fn add_edges(steps: &mut [Step]) {
    let extra = edges(steps);
    if extra.iter().all(Vec::is_empty) {
        return;
    }
    let with: Vec<Vec<usize>> = steps
        .iter()
        .zip(&extra)
        .map(|(s, e)| {
            let mut all = s.after.clone();
            all.extend(e.iter().filter(|&&id| id != s.id));
            all.sort_unstable();
            all.dedup();
            all
        })
        .collect();
    if is_acyclic(&with) {
        for (s, after) in steps.iter_mut().zip(with) {
            s.after = after;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::plan::order::order;

    fn mac(n: u8) -> Mac {
        Mac([0x52, 0x54, 0, 0, 0, n])
    }

    fn to(daemon: &str, peer: &str, dst: u8) -> RuleDef {
        RuleDef {
            daemon: daemon.into(),
            src: Match::Any,
            dst: Match::Exact(mac(dst)),
            target: Target::Link { peer: peer.into() },
        }
    }

    fn deliver(daemon: &str, dst: u8) -> RuleDef {
        RuleDef {
            daemon: daemon.into(),
            src: Match::Any,
            dst: Match::Exact(mac(dst)),
            target: Target::Interface { name: "vm".into() },
        }
    }

    /// The plan of adding rule `a` on daemon a and rule `b` on daemon b.
    fn one_add_each(a: RuleDef, b: RuleDef) -> Vec<Step> {
        order(vec![
            ("a".into(), vec![Op::AddRule { rule: a }]),
            ("b".into(), vec![Op::AddRule { rule: b }]),
        ])
    }

    fn id(steps: &[Step], daemon: &str, add: bool) -> usize {
        steps
            .iter()
            .find(|s| {
                s.daemon == daemon
                    && matches!(
                        (&s.op, add),
                        (Op::AddRule { .. }, true) | (Op::DeleteRule { .. }, false)
                    )
            })
            .map(|s| s.id)
            .expect("step")
    }

    #[test]
    fn a_path_is_built_from_its_end_and_taken_down_from_its_start() {
        // VM 5 moves from c to b: a sent its frames to c, now sends them to b.
        let steps = order(vec![
            (
                "a".into(),
                vec![
                    Op::DeleteRule {
                        rule: to("a", "c", 5),
                    },
                    Op::AddRule {
                        rule: to("a", "b", 5),
                    },
                ],
            ),
            (
                "b".into(),
                vec![Op::AddRule {
                    rule: deliver("b", 5),
                }],
            ),
            (
                "c".into(),
                vec![Op::DeleteRule {
                    rule: deliver("c", 5),
                }],
            ),
        ]);
        let (a_del, a_add) = (id(&steps, "a", false), id(&steps, "a", true));
        let (b_add, c_del) = (id(&steps, "b", true), id(&steps, "c", false));
        assert_eq!(
            steps[a_add].after,
            vec![b_add],
            "b delivers before a sends to it"
        );
        assert_eq!(
            steps[a_del].after,
            vec![b_add],
            "a's delete goes with its add"
        );
        assert_eq!(
            steps[c_del].after,
            vec![a_del],
            "c lets go after a stops sending"
        );
    }

    #[test]
    fn other_destinations_do_not_wait() {
        let steps = one_add_each(to("a", "b", 5), deliver("b", 6));
        assert!(steps.iter().all(|s| s.after.is_empty()));
    }

    #[test]
    fn edges_that_would_cycle_are_left_out() {
        // a and b each start sending 5 to the other: each add would wait for the other.
        let steps = one_add_each(to("a", "b", 5), to("b", "a", 5));
        assert!(steps.iter().all(|s| s.after.is_empty()));
        assert!(!is_acyclic(&[vec![1], vec![0]]));
        assert!(is_acyclic(&[vec![], vec![0]]));
    }
}
