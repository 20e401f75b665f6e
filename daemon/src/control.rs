//! The control tables, the daemon's ground state: links, rules, the configuration bound and
//! the generation. [`Control::apply`] is the one function that changes them: synchronous, no
//! IO, so it is tested without sockets; what it returns ([`Applied`]) says which links to
//! close and open, which the daemon does afterwards (with the engine, the dialers and the
//! store; DNS and closing happen outside every lock).

use crate::proto::{Change, Changed, ErrorBody, ErrorCode, Expect, LinkSpec};
use crate::store::{self, Persisted};
use std::collections::{BTreeMap, BTreeSet};
use vnet_grammar::model::{LinkKey, Match, RuleDef, Target};

pub(crate) struct Control {
    me: String,
    instance: String,
    generation: u64,
    bound: Option<u64>,
    links: BTreeMap<LinkKey, LinkSpec>,
    rules: BTreeSet<RuleDef>,
}

/// What a batch of changes did (or, staged, will do).
#[derive(Debug)]
pub(crate) struct Applied {
    pub generation: u64,
    /// For each change: whether it changed the tables.
    pub effective: Vec<bool>,
    /// Links to close (deleted, or replaced by another spec), by key.
    pub close: Vec<LinkKey>,
    /// Links to open (added or replaced).
    pub open: Vec<LinkSpec>,
}

/// A batch checked against the tables and not yet made (see [`Control::stage`]).
#[derive(Debug)]
pub(crate) struct Staged {
    pub applied: Applied,
    /// The generation it was staged at.
    base: u64,
    bound: Option<u64>,
    /// Each link the batch changed, as it ends up (`None`: deleted), in the order changed.
    links: Vec<(LinkKey, Option<LinkSpec>)>,
    /// Each rule the batch changed: whether it ends up in the tables.
    rules: BTreeMap<RuleDef, bool>,
}

impl Applied {
    /// Whether anything changed (then the generation went up by one).
    pub fn changed(&self) -> bool {
        self.effective.iter().any(|e| *e)
    }

    pub fn reply(&self, instance: &str) -> Changed {
        Changed {
            instance: instance.to_string(),
            generation: self.generation,
            effective: self.effective.clone(),
        }
    }
}

impl Control {
    pub fn new(me: &str, instance: &str, generation: u64, bound: Option<u64>) -> Control {
        Control {
            me: me.to_string(),
            instance: instance.to_string(),
            generation,
            bound,
            links: BTreeMap::new(),
            rules: BTreeSet::new(),
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Sets the generation (the saved tables' own, after they are reloaded).
    pub fn set_generation(&mut self, generation: u64) {
        self.generation = generation;
    }

    pub fn bound(&self) -> Option<u64> {
        self.bound
    }

    pub fn links(&self) -> impl Iterator<Item = &LinkSpec> {
        self.links.values()
    }

    pub fn rules(&self) -> &BTreeSet<RuleDef> {
        &self.rules
    }

    pub fn persisted(&self) -> Persisted {
        Persisted {
            format: store::FORMAT,
            daemon: self.me.clone(),
            generation: self.generation,
            config_bound_ms: self.bound,
            links: self.links.values().cloned().collect(),
            rules: self.rules.iter().cloned().collect(),
        }
    }

    /// Applies the changes in order, all or (on any error) none; the generation goes up by one
    /// if anything changed. With `expect`, refused unless this is that instance at that
    /// generation. (The daemon stages and commits, with the disk write in between.)
    #[cfg(test)]
    pub fn apply(
        &mut self,
        changes: &[Change],
        expect: Option<&Expect>,
    ) -> Result<Applied, ErrorBody> {
        let staged = self.stage(changes, expect)?;
        Ok(self.commit(staged))
    }

    /// What [`Control::apply`] would do, without doing it: the tables are unchanged until
    /// [`Control::commit`] (so the daemon can make a batch durable first, and nobody reads a
    /// change that might still be refused by the disk).
    pub fn stage(&self, changes: &[Change], expect: Option<&Expect>) -> Result<Staged, ErrorBody> {
        for c in changes {
            self.validate(c).map_err(|message| ErrorBody {
                code: ErrorCode::Invalid,
                message,
            })?;
        }
        if let Some(e) = expect {
            if e.instance != self.instance || e.generation != self.generation {
                return Err(ErrorBody {
                    code: ErrorCode::Conflict,
                    message: format!(
                        "daemon {} is instance {} at generation {}, not instance {} at generation {}",
                        self.me, self.instance, self.generation, e.instance, e.generation
                    ),
                });
            }
        }
        let mut staged = Staged {
            applied: Applied {
                generation: self.generation,
                effective: Vec::with_capacity(changes.len()),
                close: Vec::new(),
                open: Vec::new(),
            },
            base: self.generation,
            bound: self.bound,
            links: Vec::new(),
            rules: BTreeMap::new(),
        };
        for c in changes {
            let e = self.one(c, &mut staged);
            staged.applied.effective.push(e);
        }
        for (key, now) in &staged.links {
            if self.links.contains_key(key) {
                staged.applied.close.push(key.clone());
            }
            if let Some(now) = now {
                staged.applied.open.push(now.clone());
            }
        }
        if staged.applied.changed() {
            staged.applied.generation += 1;
        }
        Ok(staged)
    }

    /// One change staged on top of the earlier ones of its batch; whether it changes anything.
    fn one(&self, c: &Change, staged: &mut Staged) -> bool {
        match c {
            Change::AddLink { link } => {
                let key = link.link.key();
                if staged.link(self, &key) == Some(link) {
                    return false;
                }
                staged.set_link(key, Some(link.clone()));
                true
            }
            Change::DeleteLink { key } => {
                let key = LinkKey::new(&key.0, &key.1);
                if staged.link(self, &key).is_none() {
                    return false;
                }
                staged.set_link(key, None);
                true
            }
            Change::AddRule { rule } | Change::DeleteRule { rule } => {
                let add = matches!(c, Change::AddRule { .. });
                let now = staged
                    .rules
                    .get(rule)
                    .copied()
                    .unwrap_or_else(|| self.rules.contains(rule));
                if now == add {
                    return false;
                }
                staged.rules.insert(rule.clone(), add);
                true
            }
            Change::SetConfigBound { millis } => {
                let e = staged.bound != Some(*millis);
                staged.bound = Some(*millis);
                e
            }
        }
    }

    /// Makes a staged batch. Nothing may have changed the tables since it was staged (the
    /// daemon stages and commits changes one at a time).
    pub fn commit(&mut self, staged: Staged) -> Applied {
        debug_assert_eq!(staged.base, self.generation, "tables changed since staged");
        self.generation = staged.applied.generation;
        self.bound = staged.bound;
        for (key, now) in staged.links {
            match now {
                Some(spec) => self.links.insert(key, spec),
                None => self.links.remove(&key),
            };
        }
        for (rule, present) in staged.rules {
            if present {
                self.rules.insert(rule);
            } else {
                self.rules.remove(&rule);
            }
        }
        staged.applied
    }

    fn validate(&self, c: &Change) -> Result<(), String> {
        let me = &self.me;
        let not_mine =
            |a: &str, b: &str| format!("link {a}–{b} does not end at this daemon ({me})");
        match c {
            Change::AddLink { link } => {
                let l = &link.link;
                if l.a == l.b {
                    return Err(format!("link from {} to itself", l.a));
                }
                if l.a != *me && l.b != *me {
                    return Err(not_mine(&l.a, &l.b));
                }
                if l.dialer != l.a && l.dialer != l.b {
                    return Err(format!(
                        "dialer {} is not an end of link {}–{}",
                        l.dialer, l.a, l.b
                    ));
                }
                if l.a > l.b {
                    return Err("link ends must be sorted (use LinkDef::new)".into());
                }
                let ok = link
                    .peer_addr
                    .rsplit_once(':')
                    .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
                if !ok {
                    return Err(format!(
                        "peer address `{}` is not HOST:PORT",
                        link.peer_addr
                    ));
                }
                if let Some(Err(e)) = link.peer_key.as_deref().map(vnet_seal::PublicKey::parse) {
                    return Err(format!("peer key of link {}–{}: {e}", l.a, l.b));
                }
                Ok(())
            }
            Change::DeleteLink { key } if key.0 != *me && key.1 != *me => {
                Err(not_mine(&key.0, &key.1))
            }
            Change::AddRule { rule } | Change::DeleteRule { rule } => {
                if rule.daemon != *me {
                    return Err(format!("rule for daemon {} sent to {me}", rule.daemon));
                }
                if rule.src == Match::None {
                    return Err("NONE as a source (V108)".into());
                }
                if matches!(&rule.target, Target::Link { peer } if peer == me) {
                    return Err("an EDGE rule's hop must go to another daemon".into());
                }
                Ok(())
            }
            Change::DeleteLink { .. } | Change::SetConfigBound { .. } => Ok(()),
        }
    }
}

impl Staged {
    /// A link's spec as the batch has left it so far.
    fn link<'a>(&'a self, ctl: &'a Control, key: &LinkKey) -> Option<&'a LinkSpec> {
        match self.links.iter().find(|(k, _)| k == key) {
            Some((_, now)) => now.as_ref(),
            None => ctl.links.get(key),
        }
    }

    fn set_link(&mut self, key: LinkKey, now: Option<LinkSpec>) {
        match self.links.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = now,
            None => self.links.push((key, now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnet_grammar::ast::Transport;
    use vnet_grammar::model::LinkDef;
    use vnet_grammar::Mac;

    fn ctl() -> Control {
        Control::new("a", "inst", 0, None)
    }

    fn link(transport: Transport, peer: &str) -> LinkSpec {
        LinkSpec {
            link: LinkDef::new(transport, "a", "a", peer),
            peer_addr: "127.0.0.2:7000".into(),
            peer_key: None,
        }
    }

    fn rule(last: u8) -> RuleDef {
        RuleDef {
            daemon: "a".into(),
            src: Match::Any,
            dst: Match::Exact(Mac([2, 0, 0, 0, 0, last])),
            target: Target::Link { peer: "b".into() },
        }
    }

    fn add_link(l: LinkSpec) -> Change {
        Change::AddLink { link: l }
    }

    #[test]
    fn a_batch_applies_in_order_and_says_what_to_open_and_close() {
        let mut c = ctl();
        let batch = [
            add_link(link(Transport::Tcp, "b")),
            Change::AddRule { rule: rule(1) },
            Change::AddRule { rule: rule(1) },
            Change::SetConfigBound { millis: 5 },
        ];
        let a = c.apply(&batch, None).unwrap();
        assert_eq!(a.effective, [true, true, false, true]);
        assert_eq!((a.generation, c.generation()), (1, 1));
        assert_eq!(a.open, [link(Transport::Tcp, "b")]);
        assert!(a.close.is_empty());
        // Nothing new: no new generation, nothing to open.
        let a = c.apply(&batch, None).unwrap();
        assert_eq!(a.effective, [false, false, false, false]);
        assert!(!a.changed() && a.open.is_empty() && a.close.is_empty());
        assert_eq!(c.generation(), 1);
        // Replacing a link's spec closes the old one and opens the new one.
        let a = c
            .apply(&[add_link(link(Transport::Udp, "b"))], None)
            .unwrap();
        assert_eq!(a.close, [LinkKey::new("a", "b")]);
        assert_eq!(a.open, [link(Transport::Udp, "b")]);
        // Deleting closes; a link added and deleted in one batch is only closed if it was
        // there before.
        let batch = [
            Change::DeleteLink {
                key: LinkKey::new("b", "a"),
            },
            add_link(link(Transport::Tcp, "c")),
            Change::DeleteLink {
                key: LinkKey::new("a", "c"),
            },
        ];
        let a = c.apply(&batch, None).unwrap();
        assert_eq!(a.effective, [true, true, true]);
        assert_eq!(a.close, [LinkKey::new("a", "b")]);
        assert!(a.open.is_empty());
        assert_eq!(c.links().count(), 0);
        assert_eq!(c.generation(), 3);
    }

    #[test]
    fn an_invalid_change_refuses_the_whole_batch() {
        let mut c = ctl();
        let mut other = rule(1);
        other.daemon = "z".into();
        let mut bad_addr = link(Transport::Tcp, "b");
        bad_addr.peer_addr = "nowhere".into();
        let mut self_hop = rule(2);
        self_hop.target = Target::Link { peer: "a".into() };
        let mut none_src = rule(3);
        none_src.src = Match::None;
        let cases = [
            (
                Change::AddRule { rule: other },
                "rule for daemon z sent to a",
            ),
            (add_link(bad_addr), "is not HOST:PORT"),
            (Change::AddRule { rule: self_hop }, "another daemon"),
            (Change::AddRule { rule: none_src }, "V108"),
            (
                Change::DeleteLink {
                    key: LinkKey::new("x", "y"),
                },
                "does not end at this daemon",
            ),
        ];
        for (bad, why) in cases {
            let batch = [Change::AddRule { rule: rule(9) }, bad];
            let err = c.apply(&batch, None).unwrap_err();
            assert_eq!(err.code, ErrorCode::Invalid);
            assert!(err.message.contains(why), "{}", err.message);
            assert!(c.rules().is_empty() && c.generation() == 0);
        }
    }

    #[test]
    fn a_stale_expectation_is_a_conflict() {
        let mut c = ctl();
        c.apply(&[Change::SetConfigBound { millis: 1 }], None)
            .unwrap();
        let stale = [
            Expect {
                instance: "inst".into(),
                generation: 0,
            },
            Expect {
                instance: "other".into(),
                generation: 1,
            },
        ];
        for e in stale {
            let err = c
                .apply(&[Change::AddRule { rule: rule(1) }], Some(&e))
                .unwrap_err();
            assert_eq!(err.code, ErrorCode::Conflict);
            assert!(err.message.contains("at generation 1"), "{}", err.message);
        }
        assert!(c.rules().is_empty());
        let current = Expect {
            instance: "inst".into(),
            generation: 1,
        };
        let a = c
            .apply(&[Change::AddRule { rule: rule(1) }], Some(&current))
            .unwrap();
        assert_eq!(a.generation, 2);
    }

    #[test]
    fn a_staged_batch_changes_nothing_until_committed() {
        let setup = [
            add_link(link(Transport::Tcp, "b")),
            Change::AddRule { rule: rule(1) },
            Change::SetConfigBound { millis: 5 },
        ];
        let batch = [
            Change::DeleteRule { rule: rule(1) },
            Change::AddRule { rule: rule(2) },
            add_link(link(Transport::Udp, "b")),
            add_link(link(Transport::Tcp, "c")),
            Change::SetConfigBound { millis: 9 },
            Change::AddRule { rule: rule(1) },
        ];
        let (mut staging, mut applying) = (ctl(), ctl());
        staging.apply(&setup, None).unwrap();
        applying.apply(&setup, None).unwrap();
        let before = staging.persisted();
        let staged = staging.stage(&batch, None).unwrap();
        assert_eq!(staging.persisted(), before);
        assert_eq!(staged.applied.generation, 2);
        // A batch that is dropped (the disk refused it) leaves the tables as they were.
        drop(staging.stage(&batch, None).unwrap());
        assert_eq!(staging.persisted(), before);
        let committed = staging.commit(staged);
        let applied = applying.apply(&batch, None).unwrap();
        assert_eq!(staging.persisted(), applying.persisted());
        assert_ne!(staging.persisted(), before);
        assert_eq!(committed.effective, [true, true, true, true, true, true]);
        assert_eq!(committed.effective, applied.effective);
        assert_eq!(committed.close, [LinkKey::new("a", "b")]);
        assert_eq!(committed.open, applied.open);
        assert_eq!(staging.generation(), 2);
    }
}
