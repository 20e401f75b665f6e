//! The names of a state's parts as dense numbers, in the state's order. The fold interns each
//! name once and hands these numbers to the flow analysis, which then numbers its daemons
//! through an array instead of hashing the state's strings again: on a large file those
//! strings lie all over the heap, and comparing a probe with one is a cache miss.

use crate::model::{State, Target};
use hashbrown::hash_table::{Entry, HashTable};
use rustc_hash::{FxBuildHasher, FxHashSet as HashSet};
use std::hash::BuildHasher;

/// Names interned as numbers below [`Named::names`]; equal numbers are equal names.
#[derive(Clone, Debug, Default)]
pub(crate) struct Named {
    /// How many numbers there are: every one below is under it.
    pub names: u32,
    /// The machine of each host of `State::hosts`, in order.
    pub hosts: Vec<u32>,
    /// The two ends (`a`, `b`) of each link of `State::links`, in order.
    pub links: Vec<[u32; 2]>,
    /// Each rule of `State::rules`, in order.
    pub rules: Vec<RuleNames>,
}

/// A rule's names, and what the flow analysis needs to know of its link.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RuleNames {
    pub daemon: u32,
    /// The peer of an EDGE rule, the interface of an INTERFACE rule.
    pub target: u32,
    /// An EDGE rule whose link is in the state.
    pub linked: bool,
}

impl Named {
    /// The names of a state that comes from no fold at hand (an editor's patched state),
    /// interned by hashing them.
    pub fn of(state: &State) -> Named {
        let mut names = Interner::with_capacity(state.hosts.len());
        let mut id = |name| names.intern(name);
        let hosts = state.hosts.iter().map(|h| id(&h.machine)).collect();
        let links: Vec<[u32; 2]> = state.links.values().map(|l| [id(&l.a), id(&l.b)]).collect();
        let pairs: HashSet<[u32; 2]> = links.iter().map(|&[a, b]| [a.min(b), a.max(b)]).collect();
        let rules = state
            .rules
            .iter()
            .map(|r| {
                let daemon = id(&r.daemon);
                match &r.target {
                    Target::Link { peer } => {
                        let peer = id(peer);
                        RuleNames {
                            daemon,
                            target: peer,
                            linked: pairs.contains(&[daemon.min(peer), daemon.max(peer)]),
                        }
                    }
                    Target::Interface { name } => RuleNames {
                        daemon,
                        target: id(name),
                        linked: false,
                    },
                }
            })
            .collect();
        Named {
            names: names.len() as u32,
            hosts,
            links,
            rules,
        }
    }

    /// Whether the numbers can be those of `state`'s names (one per part of it).
    pub fn fits(&self, state: &State) -> bool {
        self.hosts.len() == state.hosts.len()
            && self.links.len() == state.links.len()
            && self.rules.len() == state.rules.len()
    }
}

/// Names numbered in the order they are first met. The table holds only the numbers (four
/// bytes each) and a probe compares the name with those of its bucket in `bytes`, a copy of
/// every name end to end: both stay in the cache on a large file, where the names themselves
/// lie all over the syntax tree.
#[derive(Default)]
pub(crate) struct Interner<'a> {
    table: HashTable<u32>,
    /// The names as given, by number.
    text: Vec<&'a str>,
    /// The names again, end to end; name `i` ends at `ends[i]`.
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl<'a> Interner<'a> {
    pub fn with_capacity(names: usize) -> Interner<'a> {
        Interner {
            table: HashTable::with_capacity(names),
            text: Vec::with_capacity(names),
            bytes: Vec::with_capacity(names * 8),
            ends: Vec::with_capacity(names),
        }
    }

    pub fn intern(&mut self, name: &'a str) -> u32 {
        let (bytes, ends) = (&self.bytes, &self.ends);
        let copy = |id: u32| {
            let start = id.checked_sub(1).map_or(0, |before| ends[before as usize]);
            &bytes[start as usize..ends[id as usize] as usize]
        };
        let hash = FxBuildHasher.hash_one(name.as_bytes());
        let entry = self.table.entry(
            hash,
            |&id| copy(id) == name.as_bytes(),
            |&id| FxBuildHasher.hash_one(copy(id)),
        );
        match entry {
            Entry::Occupied(found) => *found.get(),
            Entry::Vacant(room) => {
                // At most one name per byte of a text under 4 GiB, so the counts fit.
                let id = self.text.len() as u32;
                room.insert(id);
                self.text.push(name);
                self.bytes.extend_from_slice(name.as_bytes());
                self.ends.push(self.bytes.len() as u32);
                id
            }
        }
    }

    /// The name numbered `id`.
    pub fn text(&self, id: u32) -> &'a str {
        self.text[id as usize]
    }

    /// Every name, by number.
    pub fn names(&self) -> &[&'a str] {
        &self.text
    }

    pub fn len(&self) -> usize {
        self.text.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Interner;

    #[test]
    fn equal_names_get_equal_numbers_in_the_order_first_met() {
        let mut names = Interner::with_capacity(2);
        let words = ["b", "a", "b", "", "a-longer-name-than-sixteen", "a", ""];
        let ids: Vec<u32> = words.iter().map(|w| names.intern(w)).collect();
        assert_eq!(ids, [0, 1, 0, 2, 3, 1, 2]);
        assert_eq!(names.names(), ["b", "a", "", "a-longer-name-than-sixteen"]);
        // Past the capacity it was made with, the table grows and still finds every name.
        let many: Vec<String> = (0..1000).map(|i| format!("node{i}")).collect();
        for (i, name) in many.iter().enumerate() {
            assert_eq!(names.intern(name), 4 + i as u32);
        }
        for (i, name) in many.iter().enumerate() {
            assert_eq!(names.intern(name), 4 + i as u32);
            assert_eq!(names.text(4 + i as u32), name);
        }
    }
}
