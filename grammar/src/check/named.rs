//! The names of a state's parts as dense numbers, in the state's order. The fold interns each
//! name once and hands these numbers to the flow analysis, which then numbers its daemons
//! through an array instead of hashing the state's strings again: on a large file those
//! strings lie all over the heap, and comparing a probe with one is a cache miss.

use crate::model::{State, Target};
use hashbrown::hash_table::{Entry, HashTable};
use rustc_hash::FxBuildHasher;
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
    /// The daemon and the target (peer or interface) of each rule of `State::rules`, in order.
    pub rules: Vec<[u32; 2]>,
}

impl Named {
    /// The names of a state that comes from no fold at hand (an editor's patched state),
    /// interned by hashing them.
    pub fn of(state: &State) -> Named {
        let mut names = Interner::with_capacity(state.hosts.len());
        let mut id = |name| names.intern(name);
        let hosts = state.hosts.iter().map(|h| id(&h.machine)).collect();
        let links = state.links.values().map(|l| [id(&l.a), id(&l.b)]).collect();
        let rules = state
            .rules
            .iter()
            .map(|r| {
                let target = match &r.target {
                    Target::Link { peer } => peer,
                    Target::Interface { name } => name,
                };
                [id(&r.daemon), id(target)]
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
/// bytes each, so a large file's table stays in the cache) and a probe compares the name with
/// those of its bucket in `text`, by number: names met together (a statement's, or a host's
/// and its rules') are near each other there.
#[derive(Default)]
pub(crate) struct Interner<'a> {
    table: HashTable<u32>,
    text: Vec<&'a str>,
}

impl<'a> Interner<'a> {
    pub fn with_capacity(names: usize) -> Interner<'a> {
        Interner {
            table: HashTable::with_capacity(names),
            text: Vec::with_capacity(names),
        }
    }

    pub fn intern(&mut self, name: &'a str) -> u32 {
        let text = &self.text;
        let hash = FxBuildHasher.hash_one(name);
        let entry = self.table.entry(
            hash,
            |&id| text[id as usize] == name,
            |&id| FxBuildHasher.hash_one(text[id as usize]),
        );
        match entry {
            Entry::Occupied(found) => *found.get(),
            Entry::Vacant(room) => {
                // At most one name per byte of a text under 4 GiB, so the count fits.
                let id = self.text.len() as u32;
                room.insert(id);
                self.text.push(name);
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
