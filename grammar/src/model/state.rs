//! The folded state a program denotes: HOST lines, links and rules (SPEC 2.3).

use super::matching::Match;
use crate::ast::{RuleKind, Transport};
use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostDef {
    pub user: SmolStr,
    pub machine: SmolStr,
    pub port: u16,
    pub iface: SmolStr,
}

impl fmt::Display for HostDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HOST {} AT {} {} {}",
            self.user, self.machine, self.port, self.iface
        )
    }
}

/// A link is identified by its unordered pair of daemons; the key holds them sorted.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkKey(pub SmolStr, pub SmolStr);

impl LinkKey {
    pub fn new(a: &str, b: &str) -> LinkKey {
        if a <= b {
            LinkKey(a.into(), b.into())
        } else {
            LinkKey(b.into(), a.into())
        }
    }

    pub fn has(&self, machine: &str) -> bool {
        self.0 == machine || self.1 == machine
    }

    /// The other end, seen from `machine`.
    pub fn peer_of(&self, machine: &str) -> Option<&str> {
        if self.0 == machine {
            Some(&self.1)
        } else if self.1 == machine {
            Some(&self.0)
        } else {
            None
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LinkDef {
    pub transport: Transport,
    /// The daemon that dials; one of the two ends.
    pub dialer: SmolStr,
    /// The two ends, sorted bytewise so that equal links print equally.
    pub a: SmolStr,
    pub b: SmolStr,
}

impl LinkDef {
    pub fn new(transport: Transport, dialer: &str, a: &str, b: &str) -> LinkDef {
        let key = LinkKey::new(a, b);
        LinkDef {
            transport,
            dialer: dialer.into(),
            a: key.0,
            b: key.1,
        }
    }

    pub fn key(&self) -> LinkKey {
        LinkKey(self.a.clone(), self.b.clone())
    }
}

impl fmt::Display for LinkDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "LINK {} {} {} {}",
            self.transport.keyword(),
            self.dialer,
            self.a,
            self.b
        )
    }
}

/// Where a rule sends the frames it matches.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Target {
    /// Over the link from the rule's daemon to `peer` (an EDGE rule).
    Link { peer: SmolStr },
    /// Into the daemon's local interface (an INTERFACE rule).
    Interface { name: SmolStr },
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RuleDef {
    pub daemon: SmolStr,
    pub src: Match,
    pub dst: Match,
    pub target: Target,
}

impl RuleDef {
    pub fn kind(&self) -> RuleKind {
        match self.target {
            Target::Link { .. } => RuleKind::Edge,
            Target::Interface { .. } => RuleKind::Interface,
        }
    }

    /// The link the rule uses, if it is an EDGE rule.
    pub fn link(&self) -> Option<LinkKey> {
        match &self.target {
            Target::Link { peer } => Some(LinkKey::new(&self.daemon, peer)),
            Target::Interface { .. } => None,
        }
    }
}

impl fmt::Display for RuleDef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::Link { peer } => write!(
                f,
                "FORWARD EDGE {} {} {} {} {}",
                self.daemon, self.src, self.dst, self.daemon, peer
            ),
            Target::Interface { name } => {
                write!(
                    f,
                    "FORWARD INTERFACE {} {} {} {}",
                    self.daemon, self.src, self.dst, name
                )
            }
        }
    }
}

/// The desired state: HOST lines in file order, the links by pair, the rules.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub hosts: Vec<HostDef>,
    /// Keyed by pair; serialised as a list of links, since JSON keys must be strings.
    #[serde(with = "links_as_list")]
    pub links: BTreeMap<LinkKey, LinkDef>,
    pub rules: BTreeSet<RuleDef>,
}

impl State {
    pub fn host(&self, machine: &str) -> Option<&HostDef> {
        self.hosts.iter().find(|h| h.machine == machine)
    }

    /// The rules installed on one daemon. Rules are ordered by daemon first, so they are one
    /// range of the set: asking for each daemon's rules reads each rule once, not every rule
    /// per daemon.
    pub fn rules_of<'s>(&'s self, daemon: &'s str) -> impl Iterator<Item = &'s RuleDef> + 's {
        // The least rule of the daemon: every field at its least value.
        let first = RuleDef {
            daemon: daemon.into(),
            src: Match::None,
            dst: Match::None,
            target: Target::Link {
                peer: SmolStr::default(),
            },
        };
        self.rules
            .range(first..)
            .take_while(move |r| r.daemon == daemon)
    }

    /// The links with one end at `machine`.
    pub fn links_of<'s>(&'s self, machine: &'s str) -> impl Iterator<Item = &'s LinkDef> + 's {
        self.links
            .values()
            .filter(move |l| l.a == machine || l.b == machine)
    }

    /// The canonical program of SPEC 3 (`vnetc state`): HOST lines in file order, then one ADD
    /// block of links, then rules, each group sorted bytewise by its formatted text.
    pub fn to_program(&self) -> String {
        let mut out = String::from("BEGIN\n");
        for host in &self.hosts {
            out.push_str(&host.to_string());
            out.push('\n');
        }
        if !self.links.is_empty() || !self.rules.is_empty() {
            let mut links: Vec<String> = self.links.values().map(|l| l.to_string()).collect();
            let mut rules: Vec<String> = self.rules.iter().map(|r| r.to_string()).collect();
            links.sort();
            rules.sort();
            out.push_str("\nADD\n");
            for line in links.iter().chain(&rules) {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str("END\n");
        out
    }
}

mod links_as_list {
    use super::{LinkDef, LinkKey};
    use serde::{Deserialize, Deserializer, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        links: &BTreeMap<LinkKey, LinkDef>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(links.values())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<LinkKey, LinkDef>, D::Error> {
        let list = Vec::<LinkDef>::deserialize(d)?;
        Ok(list.into_iter().map(|l| (l.key(), l)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mac::Mac;

    /// `rules_of` reads a range of the set; it must give exactly the rules a filter gives,
    /// whatever their fields, for daemons whose names prefix one another and for none.
    #[test]
    fn a_daemons_rules_are_its_range_of_the_set() {
        let mac = Mac::parse("00:00:00:00:00:01").expect("mac");
        let fields = [Match::None, Match::Any, Match::Not(mac), Match::Exact(mac)];
        let targets = [
            Target::Link { peer: "".into() },
            Target::Link { peer: "z".into() },
            Target::Interface { name: "".into() },
            Target::Interface {
                name: "eth0".into(),
            },
        ];
        let mut state = State::default();
        for daemon in ["", "a", "ab", "b"] {
            for (i, target) in targets.iter().enumerate() {
                state.rules.insert(RuleDef {
                    daemon: daemon.into(),
                    src: fields[i],
                    dst: fields[3 - i],
                    target: target.clone(),
                });
            }
        }
        for daemon in ["", "a", "ab", "b", "c", "aa"] {
            let by_range: Vec<&RuleDef> = state.rules_of(daemon).collect();
            let by_filter: Vec<&RuleDef> =
                state.rules.iter().filter(|r| r.daemon == daemon).collect();
            assert_eq!(by_range, by_filter, "{daemon:?}");
        }
        assert_eq!(state.rules_of("ab").count(), 4);
    }
}
