//! A forwarding table and its decision for a frame (SPEC 2.4). The daemon, `vnetc route` and
//! the checker's flow analysis all decide through [`Table::decide`], so they cannot disagree.

use super::matching::{Match, Priority};
use crate::mac::Mac;
// FxHash: the keys are the rules' MACs, written by the operator (frames only look them up), and
// a table is consulted for every decision and built per daemon by the checker.
use rustc_hash::FxHashMap as HashMap;
use std::hash::Hash;

/// Rules indexed so that a lookup only reads rules that can match, in four disjoint lists by
/// which fields are exact MACs. Each is a chain per key: the latest rule by its key, the others
/// chained through `next`. Chains rather than a list per key: the checker builds a table per
/// daemon, and a large file names a MAC per rule or two.
#[derive(Clone, Debug)]
pub struct Table<T> {
    entries: Vec<Entry<T>>,
    /// Exact source and destination, by (source, destination): a daemon with a broadcast rule
    /// per VM decides a VM's broadcast without reading the others'.
    by_pair: HashMap<(Mac, Mac), u32>,
    /// Exact destination, source `NOT` or `ANY`, by destination.
    by_dst: HashMap<Mac, u32>,
    /// Destination `NOT`, `ANY` or `NONE`, exact source, by source: a daemon with a default per
    /// VM (thesis Figure 2) decides without reading every VM's default.
    by_src: HashMap<Mac, u32>,
    /// The rest: neither field exact.
    generic: Vec<u32>,
    /// For each entry, the next live rule of its chain ([`KEY`]) and, for a rule of `by_pair`,
    /// of its chain in `pairs_by_dst` ([`DST`]), or [`END`]. Beside the entries rather than in
    /// them, so that scanning the generic rules reads no more; both in one array, so that a
    /// table costs one allocation for them (the checker builds a table per daemon).
    next: Vec<[u32; 2]>,
    /// The rules of `by_pair` again, by destination alone (chained through `next[DST]`), so
    /// that every rule of an exact destination can be listed.
    pairs_by_dst: HashMap<Mac, u32>,
}

/// Which list holds a rule, from its fields.
#[derive(Clone, Copy)]
enum Home {
    Pair(Mac, Mac),
    Dst(Mac),
    Src(Mac),
    Generic,
}

impl Home {
    fn of(src: Match, dst: Match) -> Home {
        match (src, dst) {
            (Match::Exact(s), Match::Exact(d)) => Home::Pair(s, d),
            (_, Match::Exact(d)) => Home::Dst(d),
            (Match::Exact(s), _) => Home::Src(s),
            _ => Home::Generic,
        }
    }

    /// The best priority a rule of this list can have: the lists are read best first.
    fn best(self) -> Priority {
        let (exact, not) = (Match::Exact(Mac::BROADCAST), Match::Not(Mac::BROADCAST));
        match self {
            Home::Pair(..) => Priority::of(exact, exact),
            Home::Dst(_) => Priority::of(not, exact),
            Home::Src(_) => Priority::of(exact, not),
            Home::Generic => Priority::of(not, not),
        }
    }
}

/// Ends a chain of `Table::next`.
const END: u32 = u32::MAX;

/// Which of an entry's two `next` links a chain follows.
const KEY: usize = 0;
const DST: usize = 1;

/// The chain of rules starting at `heads[key]`, latest first, following link `slot`.
fn chain<'t, K: Hash + Eq>(
    heads: &'t HashMap<K, u32>,
    next: &'t [[u32; 2]],
    slot: usize,
    key: &K,
) -> impl Iterator<Item = u32> + Clone + 't {
    let mut at = heads.get(key).copied().unwrap_or(END);
    std::iter::from_fn(move || {
        let index = (at != END).then_some(at)?;
        at = next[index as usize][slot];
        Some(index)
    })
}

/// Takes rule `index` out of the chain of `key` (links `slot`).
fn unlink<K: Hash + Eq>(
    heads: &mut HashMap<K, u32>,
    next: &mut [[u32; 2]],
    slot: usize,
    key: K,
    index: u32,
) {
    let after = std::mem::replace(&mut next[index as usize][slot], END);
    let before = chain(heads, next, slot, &key).find(|&i| next[i as usize][slot] == index);
    match before {
        Some(before) => next[before as usize][slot] = after,
        None if after == END => {
            heads.remove(&key);
        }
        None => {
            heads.insert(key, after);
        }
    }
}

/// Puts rule `index` at the head of the chain of `key`; returns the rule it now leads to.
fn link<K: Hash + Eq>(heads: &mut HashMap<K, u32>, key: K, index: u32) -> u32 {
    heads.insert(key, index).unwrap_or(END)
}

#[derive(Clone, Debug)]
struct Entry<T> {
    src: Match,
    dst: Match,
    target: T,
    live: bool,
}

/// The rules that fire for a frame: all the matching rules of the highest priority.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub priority: Option<Priority>,
    /// Indices of the firing rules, in insertion order.
    pub rules: Vec<u32>,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            entries: Vec::new(),
            by_pair: HashMap::default(),
            by_dst: HashMap::default(),
            by_src: HashMap::default(),
            generic: Vec::new(),
            next: Vec::new(),
            pairs_by_dst: HashMap::default(),
        }
    }
}

impl<T: PartialEq> Table<T> {
    pub fn new() -> Table<T> {
        Table::default()
    }

    /// A table with room for `rules` rules, for a caller that knows how many it will insert.
    pub fn with_capacity(rules: usize) -> Table<T> {
        Table {
            entries: Vec::with_capacity(rules),
            next: Vec::with_capacity(rules),
            ..Table::default()
        }
    }

    pub fn from_rules(rules: impl IntoIterator<Item = (Match, Match, T)>) -> Table<T> {
        let mut table = Table::new();
        for (src, dst, target) in rules {
            table.insert(src, dst, target);
        }
        table
    }

    /// Adds a rule and returns its index; an identical rule is not added twice.
    pub fn insert(&mut self, src: Match, dst: Match, target: T) -> u32 {
        match self.find(src, dst, &target) {
            Some(existing) => existing,
            None => self.insert_new(src, dst, target),
        }
    }

    /// Adds a rule the caller knows is not in the table, without looking for it: the checker
    /// builds a table per daemon from the rules of a state, which are a set (and looking
    /// would read every rule with neither field exact, once per such rule).
    pub fn insert_new(&mut self, src: Match, dst: Match, target: T) -> u32 {
        debug_assert!(self.find(src, dst, &target).is_none());
        let index = self.entries.len() as u32;
        let (next, pair_next) = match Home::of(src, dst) {
            Home::Pair(s, d) => (
                link(&mut self.by_pair, (s, d), index),
                link(&mut self.pairs_by_dst, d, index),
            ),
            Home::Dst(d) => (link(&mut self.by_dst, d, index), END),
            Home::Src(s) => (link(&mut self.by_src, s, index), END),
            Home::Generic => {
                self.generic.push(index);
                (END, END)
            }
        };
        self.entries.push(Entry {
            src,
            dst,
            target,
            live: true,
        });
        self.next.push([next, pair_next]);
        index
    }

    /// Removes a rule; returns whether it was there.
    pub fn remove(&mut self, src: Match, dst: Match, target: &T) -> bool {
        let Some(index) = self.find(src, dst, target) else {
            return false;
        };
        self.entries[index as usize].live = false;
        match Home::of(src, dst) {
            Home::Pair(s, d) => {
                unlink(&mut self.by_pair, &mut self.next, KEY, (s, d), index);
                unlink(&mut self.pairs_by_dst, &mut self.next, DST, d, index);
            }
            Home::Dst(d) => unlink(&mut self.by_dst, &mut self.next, KEY, d, index),
            Home::Src(s) => unlink(&mut self.by_src, &mut self.next, KEY, s, index),
            Home::Generic => self.generic.retain(|i| *i != index),
        }
        true
    }

    /// The live rules whose destination is exactly `mac` (indices, as [`Table::rule`] takes
    /// them): those with an exact source, then the others, each latest first.
    pub fn exact_rules(&self, mac: Mac) -> impl Iterator<Item = u32> + Clone + '_ {
        chain(&self.pairs_by_dst, &self.next, DST, &mac).chain(chain(
            &self.by_dst,
            &self.next,
            KEY,
            &mac,
        ))
    }

    /// The rules a frame from `src` to `dst` can match, each with its list, best list first.
    fn candidates(&self, src: Mac, dst: Mac) -> impl Iterator<Item = (Home, u32)> + '_ {
        let tag = |home: Home| move |i| (home, i);
        let pair =
            chain(&self.by_pair, &self.next, KEY, &(src, dst)).map(tag(Home::Pair(src, dst)));
        let by_dst = chain(&self.by_dst, &self.next, KEY, &dst).map(tag(Home::Dst(dst)));
        let by_src = chain(&self.by_src, &self.next, KEY, &src).map(tag(Home::Src(src)));
        let generic = self.generic.iter().map(|i| (Home::Generic, *i));
        pair.chain(by_dst).chain(by_src).chain(generic)
    }

    fn find(&self, src: Match, dst: Match, target: &T) -> Option<u32> {
        let same = |i: &u32| {
            let e = &self.entries[*i as usize];
            e.src == src && e.dst == dst && e.target == *target
        };
        match Home::of(src, dst) {
            Home::Pair(s, d) => chain(&self.by_pair, &self.next, KEY, &(s, d)).find(same),
            Home::Dst(d) => chain(&self.by_dst, &self.next, KEY, &d).find(same),
            Home::Src(s) => chain(&self.by_src, &self.next, KEY, &s).find(same),
            Home::Generic => self.generic.iter().copied().find(same),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.iter().filter(|e| e.live).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn target(&self, index: u32) -> &T {
        &self.entries[index as usize].target
    }

    pub fn rule(&self, index: u32) -> (Match, Match, &T) {
        let e = &self.entries[index as usize];
        (e.src, e.dst, &e.target)
    }

    /// The live rules in insertion order, with their indices.
    pub fn iter(&self) -> impl Iterator<Item = (u32, Match, Match, &T)> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live)
            .map(|(i, e)| (i as u32, e.src, e.dst, &e.target))
    }

    /// Every matching rule of the highest priority (SPEC 2.4). No rule matching: empty.
    pub fn decide(&self, src: Mac, dst: Mac) -> Decision {
        let mut decision = Decision::default();
        self.decide_into(src, dst, &mut decision);
        decision
    }

    /// [`Table::decide`] into a caller's buffer, so a hot loop does not allocate.
    pub fn decide_into(&self, src: Mac, dst: Mac, out: &mut Decision) {
        out.priority = None;
        out.rules.clear();
        for (home, index) in self.candidates(src, dst) {
            // The lists come best first: once a match beats everything a list can hold, no
            // later rule can fire.
            if out.priority.is_some_and(|p| p > home.best()) {
                break;
            }
            let e = &self.entries[index as usize];
            if !(e.src.matches(src) && e.dst.matches(dst)) {
                continue;
            }
            let priority = Priority::of(e.src, e.dst);
            match out.priority {
                Some(best) if priority < best => continue,
                Some(best) if priority == best => out.rules.push(index),
                _ => {
                    out.priority = Some(priority);
                    out.rules.clear();
                    out.rules.push(index);
                }
            }
        }
        // The scan is not in insertion order (by list, each latest first); keep
        // the reported order stable.
        out.rules.sort_unstable();
    }

    /// The destinations a frame goes to: the firing rules' targets, deduplicated, minus the one
    /// it came from (split horizon; a lower-priority rule never fires in its place).
    pub fn forward<'t>(&'t self, src: Mac, dst: Mac, came_from: Option<&T>) -> Vec<&'t T> {
        let decision = self.decide(src, dst);
        let mut out: Vec<&T> = Vec::with_capacity(decision.rules.len());
        for index in decision.rules {
            let target = self.target(index);
            if Some(target) == came_from || out.contains(&target) {
                continue;
            }
            out.push(target);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> Mac {
        Mac([0, 0x50, 0x56, 0, 0x21, last])
    }

    /// The table of thesis Figure 2, on Host1.
    fn figure2() -> Table<&'static str> {
        Table::from_rules([
            (Match::Not(mac(1)), Match::Exact(Mac::BROADCAST), "vmnet1"),
            (Match::Any, Match::Exact(mac(1)), "vmnet1"),
            (Match::Exact(mac(1)), Match::None, "link:Proxy"),
        ])
    }

    #[test]
    fn figure2_decisions() {
        let t = figure2();
        assert_eq!(t.forward(mac(9), Mac::BROADCAST, None), vec![&"vmnet1"]);
        assert_eq!(t.forward(mac(9), mac(1), None), vec![&"vmnet1"]);
        // The VM's own broadcast: only the default rule matches (NOT fails), so it goes to the Proxy.
        assert_eq!(t.forward(mac(1), Mac::BROADCAST, None), vec![&"link:Proxy"]);
        assert_eq!(t.forward(mac(1), mac(7), None), vec![&"link:Proxy"]);
        // A frame from someone else to an unknown MAC matches nothing and is dropped.
        assert!(t.forward(mac(9), mac(7), None).is_empty());
    }

    #[test]
    fn destination_score_outranks_source_score() {
        let t = Table::from_rules([
            (Match::Exact(mac(1)), Match::Any, "a"),
            (Match::Any, Match::Not(mac(3)), "b"),
        ]);
        assert_eq!(t.forward(mac(1), mac(2), None), vec![&"b"]);
        assert_eq!(t.forward(mac(1), mac(3), None), vec![&"a"]);
    }

    #[test]
    fn ties_fan_out_and_split_horizon_does_not_promote_lower_rules() {
        let t = Table::from_rules([
            (Match::Any, Match::Exact(Mac::BROADCAST), "x"),
            (Match::Any, Match::Exact(Mac::BROADCAST), "y"),
            (Match::Any, Match::Exact(Mac::BROADCAST), "x"),
            (Match::Any, Match::None, "z"),
        ]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.forward(mac(1), Mac::BROADCAST, None), vec![&"x", &"y"]);
        assert_eq!(t.forward(mac(1), Mac::BROADCAST, Some(&"x")), vec![&"y"]);
        let single = Table::from_rules([
            (Match::Any, Match::Exact(mac(2)), "x"),
            (Match::Any, Match::None, "z"),
        ]);
        assert!(single.forward(mac(1), mac(2), Some(&"x")).is_empty());
    }

    /// Inserts and removals in any order, against the definition: every live rule matching,
    /// of the highest priority, in insertion order.
    #[test]
    fn decisions_match_a_plain_scan_through_inserts_and_removals() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let macs = [mac(1), mac(2), mac(3), Mac::BROADCAST];
        let field = |n: u64, m: u64| match n {
            0 => Match::Exact(macs[m as usize]),
            1 => Match::Not(macs[m as usize]),
            2 => Match::Any,
            _ => Match::None,
        };
        let mut table = Table::new();
        let mut live: Vec<(u32, Match, Match, u8)> = Vec::new();
        for _ in 0..3000 {
            let (src, dst) = (field(next(3), next(4)), field(next(4), next(4)));
            let target = next(3) as u8;
            if next(3) == 0 {
                let removed = table.remove(src, dst, &target);
                let at = live
                    .iter()
                    .position(|r| (r.1, r.2, r.3) == (src, dst, target));
                assert_eq!(removed, at.is_some());
                if let Some(at) = at {
                    live.remove(at);
                }
            } else {
                let index = table.insert(src, dst, target);
                if !live.iter().any(|r| (r.1, r.2, r.3) == (src, dst, target)) {
                    live.push((index, src, dst, target));
                }
            }
            for (s, d) in macs.iter().flat_map(|s| macs.iter().map(move |d| (*s, *d))) {
                let matching = live.iter().filter(|r| r.1.matches(s) && r.2.matches(d));
                let best = matching.clone().map(|r| Priority::of(r.1, r.2)).max();
                let mut rules: Vec<u32> = matching
                    .filter(|r| Some(Priority::of(r.1, r.2)) == best)
                    .map(|r| r.0)
                    .collect();
                rules.sort_unstable();
                let expected = Decision {
                    priority: best,
                    rules,
                };
                assert_eq!(table.decide(s, d), expected);
            }
            assert_eq!(table.len(), live.len());
        }
    }

    #[test]
    fn removal_takes_the_rule_out_of_decisions() {
        let mut t = figure2();
        assert!(t.remove(Match::Any, Match::Exact(mac(1)), &"vmnet1"));
        assert!(!t.remove(Match::Any, Match::Exact(mac(1)), &"vmnet1"));
        assert!(t.forward(mac(9), mac(1), None).is_empty());
        assert_eq!(t.len(), 2);
    }
}
