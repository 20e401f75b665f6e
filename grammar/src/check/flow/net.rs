//! The network as the flow analysis sees it: one forwarding table per daemon, the classes of
//! frames each daemon can tell apart, and a cache of the decisions for those classes.
//!
//! Matching only compares a frame's addresses with the MACs written in rules, so a daemon
//! cannot tell apart two source addresses its rules do not name (nor two such destinations).
//! A *local class* is therefore either a MAC the daemon's rules name, or `None`: every other
//! address, stood for by [`Net::other`], a MAC no rule anywhere names. Every decision goes
//! through [`Table::decide_into`], the one implementation of SPEC 2.4.

use crate::check::named::{Named, RuleNames};
use crate::mac::Mac;
use crate::model::{Decision, Match, Priority, RuleDef, State, Table, Target};
use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

pub(super) type NodeId = u32;

/// A daemon-local class of addresses: a MAC the daemon's rules name, or `None` for all others.
pub(super) type Local = Option<Mac>;

/// Where a rule sends frames, as the analysis needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Tgt {
    /// Over an existing link to this daemon.
    Link(NodeId),
    /// Over a link to this daemon that is not in the state (V106): the frame goes nowhere.
    Missing(NodeId),
    /// Into a local interface (its name interned per daemon, so that a daemon's targets do
    /// not change when another daemon's rules do: the next analysis compares them).
    Iface(u32),
}

/// One daemon: its table, and the MACs its rules name.
pub(super) struct Node<'s> {
    pub name: &'s str,
    pub table: Table<Tgt>,
    /// The rules of a daemon are a run of the state's (sorted by daemon): table index `i` is
    /// the rule at position `first + i`, for `count` of them.
    first: u32,
    count: u32,
    /// MACs named in source fields (exact or `NOT`), sorted.
    pub srcs: Box<[Mac]>,
    /// MACs named in destination fields (exact or `NOT`), sorted.
    pub dsts: Box<[Mac]>,
    /// Where each of `dsts` is in [`Net::dsts`].
    dst_at: Box<[u32]>,
    /// The peers that rules whose destination is `NOT`, `ANY` or `NONE` (generic) send to
    /// over a link, each with the best priority among those rules, sorted by peer: such a rule
    /// matches every address but at most one, so the peers bound where any destination goes
    /// without the rules being read (a daemon may have thousands of them and few peers).
    generic_peers: Box<[(NodeId, Priority)]>,
    /// Sources named by the generic rules, sorted.
    generic_srcs: Box<[Mac]>,
    /// The generic rules that name a source, as (priority, source), best first.
    generic_named: Box<[(Priority, Mac)]>,
    /// The generic rules whose source is `ANY`.
    generic_any: Box<[u32]>,
}

impl Node<'_> {
    pub fn names_src(&self, mac: Mac) -> bool {
        contains(&self.srcs, mac)
    }

    pub fn names_dst(&self, mac: Mac) -> bool {
        contains(&self.dsts, mac)
    }

    /// The local class of a global source class (`None` = an address no rule names).
    pub fn local_src(&self, src: Local) -> Local {
        src.filter(|m| self.names_src(*m))
    }

    pub fn local_dst(&self, dst: Local) -> Local {
        dst.filter(|m| self.names_dst(*m))
    }

    /// The sources that can change this daemon's decision for destination class `dst`
    /// (standing for the address `rep`); any other source decides as the class `None` does.
    /// A source matters only through a rule that names it and matches `dst`, and only if that
    /// rule is not below the best rule with source `ANY` (the floor), which matches every
    /// source: rules below the floor never fire for `dst`, whatever the source.
    pub fn relevant_srcs(&self, dst: Local, rep: Mac) -> Cow<'_, [Mac]> {
        let exact = self.exact_for(dst);
        let floor = self.any_src_floor(dst, rep);
        let above = |p: Priority| floor.is_none_or(|f| p >= f);
        let mut out: Vec<Mac> = exact
            .map(|i| self.table.rule(i))
            .filter(|(s, d, _)| above(Priority::of(*s, *d)))
            .filter_map(|(s, _, _)| s.mac())
            .collect();
        if out.is_empty() && floor.is_none() {
            return Cow::Borrowed(&self.generic_srcs);
        }
        let generic = self.generic_named.iter().take_while(|(p, _)| above(*p));
        out.extend(generic.map(|(_, mac)| *mac));
        sort_macs(&mut out);
        Cow::Owned(out)
    }

    /// The priority of the best rule with source `ANY` matching destination `rep` (of class
    /// `dst`): every source matches it, so no rule below it ever fires for `dst`. An exact
    /// destination outranks every generic one, so the generic rules are read only when no
    /// exact rule has source `ANY`: a daemon with thousands of generic rules is not read
    /// through for each destination it knows.
    fn any_src_floor(&self, dst: Local, rep: Mac) -> Option<Priority> {
        let any_src = |i: &u32| self.table.rule(*i).0 == Match::Any;
        if let Some(i) = self.exact_for(dst).find(any_src) {
            let (src, dst, _) = self.table.rule(i);
            return Some(Priority::of(src, dst));
        }
        self.generic_any
            .iter()
            .map(|i| self.table.rule(*i))
            .filter(|(_, d, _)| d.matches(rep))
            .map(|(s, d, _)| Priority::of(s, d))
            .max()
    }

    /// The table indices of the rules whose destination is exactly the class's MAC (none for
    /// the class of unnamed addresses).
    fn exact_for(&self, dst: Local) -> impl Iterator<Item = u32> + Clone + '_ {
        dst.into_iter().flat_map(|mac| self.table.exact_rules(mac))
    }
}

/// One decision, as the graph analyses need it.
#[derive(Debug, Default)]
pub(super) struct Dec {
    /// The daemons the frame is sent to over existing links, sorted, each with the first rule
    /// (table index) that sends it there.
    pub links: Vec<(NodeId, u32)>,
}

impl Dec {
    pub fn rule_to(&self, peer: NodeId) -> Option<u32> {
        self.links
            .binary_search_by_key(&peer, |(p, _)| *p)
            .ok()
            .map(|at| self.links[at].1)
    }
}

/// Decisions by (daemon, local source class, local destination class), as where their links
/// are in one array.
type DecCache = HashMap<(NodeId, Local, Local), (u32, u32), FxBuild>;

/// Daemons with at most this many rules decide afresh each time: that reads no more than a
/// look-up in the cache would, and keeps the cache (and its misses) for the large tables.
const DECIDE_AFRESH: u32 = 16;

pub(super) struct Net<'s> {
    pub nodes: Vec<Node<'s>>,
    /// The state's rules in order: a rule's position is how its origin is found.
    pub rules: Vec<&'s RuleDef>,
    /// Each daemon's place in `State::hosts` ([`NO_HOST`] for none): how its origin is found.
    hosts: Vec<u32>,
    /// A MAC that no rule names: the representative of every unnamed address.
    pub other: Mac,
    /// Every MAC named in some destination field, sorted.
    pub dsts: Vec<Mac>,
    /// For each named destination (by position in `dsts`), the daemons whose rules name it,
    /// in order: [`Net::namers`]. One array for all rather than a vector per destination.
    namers: Vec<NodeId>,
    namers_at: Vec<u32>,
    cache: RefCell<DecCache>,
    /// The links of the cached decisions.
    cached_links: RefCell<Vec<(NodeId, u32)>>,
    /// [`Net::unnamed_by_both`] by pair of daemons.
    unnamed: RefCell<HashMap<(NodeId, NodeId), Option<Mac>, FxBuild>>,
    scratch: RefCell<Decision>,
}

impl<'s> Net<'s> {
    pub fn new(state: &'s State) -> Net<'s> {
        Net::named(state, &Named::of(state))
    }

    /// The net of a state whose names are numbered by `named`: daemons are numbered through
    /// an array by those numbers, no name is hashed or compared. Daemons are numbered in the
    /// order they are first met: the hosts, then the links' ends, then the rules'.
    pub fn named(state: &'s State, named: &Named) -> Net<'s> {
        debug_assert!(named.fits(state));
        let mut builder = Builder {
            names: Vec::with_capacity(state.hosts.len()),
            ids: vec![NO_NODE; named.names as usize],
            runs: Vec::with_capacity(state.hosts.len()),
            iface_count: Vec::with_capacity(state.hosts.len()),
            rules: Vec::with_capacity(state.rules.len()),
            fields: Vec::with_capacity(state.rules.len()),
            ..Builder::default()
        };
        for (at, (host, &id)) in state.hosts.iter().zip(&named.hosts).enumerate() {
            let n = builder.intern(id, &host.machine) as usize;
            if builder.hosts[n] == NO_HOST {
                // Hosts are one per HOST line, far fewer than 2^32.
                builder.hosts[n] = at as u32;
            }
        }
        for (link, &[a, b]) in state.links.values().zip(&named.links) {
            builder.intern(a, &link.a);
            builder.intern(b, &link.b);
        }
        for (id, (rule, names)) in state.rules.iter().zip(&named.rules).enumerate() {
            let daemon = builder.intern(names.daemon, &rule.daemon);
            let target = builder.target(daemon, rule, names);
            // Positions fit: a rule takes tens of bytes of a text under 4 GiB.
            let run = &mut builder.runs[daemon as usize];
            if run.1 == 0 {
                run.0 = id as u32;
            }
            run.1 += 1;
            builder.fields.push((rule.src, rule.dst, target));
            builder.rules.push(rule);
        }
        builder.finish()
    }

    pub fn node(&self, id: NodeId) -> &Node<'s> {
        &self.nodes[id as usize]
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The concrete MAC that stands for a local class.
    pub fn rep(&self, class: Local) -> Mac {
        class.unwrap_or(self.other)
    }

    /// The daemons a decision of daemon `n` sends to over existing links, each with the
    /// first rule (table index) that sends it there; a peer may repeat when rules tie.
    pub fn links_of<'d>(
        &'d self,
        n: NodeId,
        decision: &'d Decision,
    ) -> impl Iterator<Item = (NodeId, u32)> + 'd {
        let table = &self.node(n).table;
        decision
            .rules
            .iter()
            .filter_map(move |&index| match table.target(index) {
                Tgt::Link(peer) => Some((*peer, index)),
                _ => None,
            })
    }

    /// The decision of daemon `n` for a frame of local classes (`src`, `dst`), into `out`;
    /// cached for a daemon with many rules.
    pub fn dec(&self, n: NodeId, src: Local, dst: Local, out: &mut Dec) {
        out.links.clear();
        if self.node(n).count <= DECIDE_AFRESH {
            return self.decide(n, src, dst, out);
        }
        if let Some(&(at, len)) = self.cache.borrow().get(&(n, src, dst)) {
            let cached = self.cached_links.borrow();
            out.links
                .extend_from_slice(&cached[at as usize..(at + len) as usize]);
            return;
        }
        self.decide(n, src, dst, out);
        let mut cached = self.cached_links.borrow_mut();
        // Links are at most one per rule of a daemon, and decisions cached far fewer than
        // 2^32 / rules (the searches that ask are bounded).
        let at = cached.len() as u32;
        cached.extend_from_slice(&out.links);
        self.cache
            .borrow_mut()
            .insert((n, src, dst), (at, out.links.len() as u32));
    }

    fn decide(&self, n: NodeId, src: Local, dst: Local, out: &mut Dec) {
        let mut scratch = self.scratch.borrow_mut();
        self.node(n)
            .table
            .decide_into(self.rep(src), self.rep(dst), &mut scratch);
        for (peer, index) in self.links_of(n, &scratch) {
            if !out.links.iter().any(|(p, _)| *p == peer) {
                out.links.push((peer, index));
            }
        }
        out.links.sort_unstable();
    }

    /// The decision of daemon `n` for a frame of global classes (`src`, `dst`), into `out`.
    pub fn dec_global(&self, n: NodeId, src: Local, dst: Local, out: &mut Dec) {
        let node = self.node(n);
        self.dec(n, node.local_src(src), node.local_dst(dst), out);
    }

    /// A superset of the daemons that `n` sends frames of destination class `dst` to, whatever
    /// their source: the links of the rules that match `dst` and are not beaten for every
    /// source by a rule with source `ANY` (which matches them all), where a generic rule is
    /// taken to match (it fails at most the one address it excludes). It bounds the search for
    /// loops cheaply; the loops themselves are then confirmed with exact decisions. Appended
    /// to `out`, sorted and without repeats, so that the bounds of many daemons share one array.
    /// Returns how many entries it read (the loop search counts them as work).
    pub fn bound_into(&self, n: NodeId, dst: Local, out: &mut Vec<NodeId>) -> usize {
        let node = self.node(n);
        let rep = self.rep(dst);
        let floor = node.any_src_floor(dst, rep);
        let above = |p: Priority| floor.is_none_or(|f| p >= f);
        // Generic rules are all below an exact destination's floor: skip them.
        let generic: &[(NodeId, Priority)] = match floor {
            Some(f) if f.dst == Match::Exact(rep).score() => &[],
            _ => &node.generic_peers,
        };
        let start = out.len();
        let mut read = generic.len();
        out.extend(node.exact_for(dst).inspect(|_| read += 1).filter_map(|i| {
            match node.table.rule(i) {
                (src, dst, Tgt::Link(peer)) if above(Priority::of(src, dst)) => Some(*peer),
                _ => None,
            }
        }));
        out.extend(
            generic
                .iter()
                .filter(|(_, p)| above(*p))
                .map(|(peer, _)| *peer),
        );
        let mine = &mut out[start..];
        mine.sort_unstable();
        let mut kept = 0;
        for i in 0..mine.len() {
            if i == 0 || mine[i] != mine[kept - 1] {
                mine[kept] = mine[i];
                kept += 1;
            }
        }
        out.truncate(start + kept);
        read
    }

    /// A named destination that neither `a`'s nor `b`'s rules name, if any. The destinations
    /// the busier daemon does not name are enumerated in order, by rank, until one the other
    /// does not name either: at most as many steps as the quieter daemon names MACs, so a
    /// Proxy that names every VM costs nothing per host linked to it.
    pub fn unnamed_by_both(&self, a: NodeId, b: NodeId) -> Option<Mac> {
        if let Some(found) = self.unnamed.borrow().get(&(a, b)) {
            return *found;
        }
        let (busy, quiet) = match self.node(a).dsts.len() >= self.node(b).dsts.len() {
            true => (self.node(a), self.node(b)),
            false => (self.node(b), self.node(a)),
        };
        let found = (0..=quiet.dsts.len())
            .map_while(|k| self.dsts.get(nth_gap(&busy.dst_at, k)).copied())
            .find(|d| !quiet.names_dst(*d));
        self.unnamed.borrow_mut().insert((a, b), found);
        found
    }

    /// How many (daemon, destination it names) pairs there are.
    pub fn namings(&self) -> usize {
        self.namers.len()
    }

    /// The daemons whose rules name the destination at position `k` of [`Net::dsts`].
    pub fn namers(&self, k: usize) -> &[NodeId] {
        &self.namers[self.namers_at[k] as usize..self.namers_at[k + 1] as usize]
    }

    /// The place in `State::hosts` of the host that declares daemon `n`, if one does.
    pub fn host(&self, n: NodeId) -> Option<usize> {
        let at = self.hosts[n as usize];
        (at != NO_HOST).then_some(at as usize)
    }

    /// The rule behind a table index of daemon `n`, as its position in the state.
    pub fn rule_id(&self, n: NodeId, index: u32) -> u32 {
        self.node(n).first + index
    }

    /// The rule behind a table index of daemon `n`.
    pub fn rule(&self, n: NodeId, index: u32) -> &'s RuleDef {
        self.rules[self.rule_id(n, index) as usize]
    }
}

/// Marks a name not yet numbered as a daemon in `Builder::ids`.
const NO_NODE: NodeId = NodeId::MAX;

/// Marks a daemon that no host of the state declares in `Net::hosts`.
const NO_HOST: u32 = u32::MAX;

#[derive(Default)]
struct Builder<'s> {
    names: Vec<&'s str>,
    /// The daemon of each name number ([`Named`]), or [`NO_NODE`].
    ids: Vec<NodeId>,
    /// Interface names per daemon (by name number), and how many each daemon has.
    ifaces: HashMap<(NodeId, u32), u32, FxBuild>,
    iface_count: Vec<u32>,
    /// Each daemon's place in `State::hosts` (the first that declares it), or [`NO_HOST`].
    hosts: Vec<u32>,
    /// Each daemon's run of the state's rules: (first position, count).
    runs: Vec<(u32, u32)>,
    /// The fields and target of each rule of the state, by position: the nodes are built
    /// from this copy, read in the state's order, rather than from the rules, which are
    /// visited daemon by daemon and so out of the order they lie in memory.
    fields: Vec<(Match, Match, Tgt)>,
    rules: Vec<&'s RuleDef>,
}

impl<'s> Builder<'s> {
    /// The daemon named `name`, numbered `id`.
    fn intern(&mut self, id: u32, name: &'s str) -> NodeId {
        let slot = &mut self.ids[id as usize];
        if *slot == NO_NODE {
            *slot = self.names.len() as NodeId;
            self.names.push(name);
            self.runs.push((0, 0));
            self.iface_count.push(0);
            self.hosts.push(NO_HOST);
        }
        *slot
    }

    /// The target of `rule` of `daemon`, whose names are `names`.
    fn target(&mut self, daemon: NodeId, rule: &'s RuleDef, names: &RuleNames) -> Tgt {
        match &rule.target {
            Target::Link { peer } => match (self.intern(names.target, peer), names.linked) {
                (peer, true) => Tgt::Link(peer),
                (peer, false) => Tgt::Missing(peer),
            },
            Target::Interface { .. } => {
                let count = &mut self.iface_count[daemon as usize];
                let key = (daemon, names.target);
                Tgt::Iface(*self.ifaces.entry(key).or_insert_with(|| {
                    *count += 1;
                    *count - 1
                }))
            }
        }
    }

    fn finish(self) -> Net<'s> {
        let mut all_srcs = Vec::new();
        let mut all_dsts = Vec::new();
        let mut nodes = Vec::with_capacity(self.names.len());
        let mut scratch = Lists::default();
        for (name, run) in self.names.into_iter().zip(self.runs) {
            let node = build_node(name, run, &self.fields, &mut scratch);
            all_srcs.extend_from_slice(&node.srcs);
            all_dsts.extend_from_slice(&node.dsts);
            nodes.push(node);
        }
        sort_macs(&mut all_dsts);
        sort_macs(&mut all_srcs);
        for node in &mut nodes {
            node.dst_at = node.dsts.iter().map(|m| position(&all_dsts, *m)).collect();
        }
        let (namers, namers_at) = namers_by_dst(&nodes, all_dsts.len());
        let other = unnamed_mac(&all_srcs, &all_dsts);
        Net {
            nodes,
            rules: self.rules,
            hosts: self.hosts,
            other,
            dsts: all_dsts,
            namers,
            namers_at,
            cache: RefCell::default(),
            cached_links: RefCell::default(),
            unnamed: RefCell::default(),
            scratch: RefCell::default(),
        }
    }
}

/// Lists of one daemon while its node is built, reused from daemon to daemon: each node then
/// gets copies of exactly the size it needs (none when empty), one allocation per list.
#[derive(Default)]
struct Lists {
    srcs: Vec<Mac>,
    dsts: Vec<Mac>,
    generic_peers: Vec<(NodeId, Priority)>,
    generic_srcs: Vec<Mac>,
    generic_named: Vec<(Priority, Mac)>,
    generic_any: Vec<u32>,
}

fn build_node<'s>(
    name: &'s str,
    (first, count): (u32, u32),
    fields: &[(Match, Match, Tgt)],
    lists: &mut Lists,
) -> Node<'s> {
    let mut table = Table::with_capacity(count as usize);
    for (id, &(src, dst, target)) in (first..).zip(&fields[first as usize..][..count as usize]) {
        // Distinct rules of a daemon differ in source, destination or target (peers and
        // interfaces are interned one to one), so each is new to the table, and table index
        // and place in the run agree.
        let index = table.insert_new(src, dst, target);
        debug_assert_eq!(index, id - first);
        lists.srcs.extend(src.mac());
        lists.dsts.extend(dst.mac());
        if let Match::Exact(_) = dst {
            continue;
        }
        lists.generic_srcs.extend(src.mac());
        let priority = Priority::of(src, dst);
        if let Tgt::Link(peer) = target {
            lists.generic_peers.push((peer, priority));
        }
        match src.mac() {
            Some(mac) => lists.generic_named.push((priority, mac)),
            None if src == Match::Any => lists.generic_any.push(index),
            None => {}
        }
    }
    for list in [&mut lists.srcs, &mut lists.dsts, &mut lists.generic_srcs] {
        sort_macs(list);
    }
    lists
        .generic_named
        .sort_unstable_by_key(|&(priority, _)| std::cmp::Reverse(priority));
    // One entry per peer, with its best priority (the first, sorted best first).
    lists
        .generic_peers
        .sort_unstable_by_key(|&(peer, priority)| (peer, std::cmp::Reverse(priority)));
    lists.generic_peers.dedup_by_key(|(peer, _)| *peer);
    // Boxed slices rather than vectors: exactly their size, and a smaller node.
    fn take<T: Copy>(list: &mut Vec<T>) -> Box<[T]> {
        let exact = list.as_slice().into();
        list.clear();
        exact
    }
    Node {
        name,
        table,
        first,
        count,
        srcs: take(&mut lists.srcs),
        dsts: take(&mut lists.dsts),
        dst_at: Box::default(),
        generic_peers: take(&mut lists.generic_peers),
        generic_srcs: take(&mut lists.generic_srcs),
        generic_named: take(&mut lists.generic_named),
        generic_any: take(&mut lists.generic_any),
    }
}

/// For each of `dsts` destinations, the nodes naming it (by their `dst_at`), in node order: a
/// counting sort into one array, and where each destination's run starts (`dsts + 1` of them).
fn namers_by_dst(nodes: &[Node], dsts: usize) -> (Vec<NodeId>, Vec<u32>) {
    let mut at = vec![0u32; dsts + 1];
    for node in nodes {
        for &k in &node.dst_at {
            at[k as usize + 1] += 1;
        }
    }
    for k in 0..dsts {
        at[k + 1] += at[k];
    }
    let mut next = at.clone();
    let mut namers = vec![0; at[dsts] as usize];
    for (id, node) in nodes.iter().enumerate() {
        for &k in &node.dst_at {
            namers[next[k as usize] as usize] = id as NodeId;
            next[k as usize] += 1;
        }
    }
    (namers, at)
}

/// The `k`-th position (from 0) not in `taken`, a strictly increasing list of positions: `k`
/// plus the taken positions before it, which are the `taken[j]` with `taken[j] − j ≤ k` (that
/// difference never decreases along the list).
fn nth_gap(taken: &[u32], k: usize) -> usize {
    let (mut lo, mut hi) = (0, taken.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if taken[mid] as usize - mid <= k {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    k + lo
}

/// Where `mac` is in a list sorted by [`sort_macs`] that holds it.
fn position(sorted: &[Mac], mac: Mac) -> u32 {
    let key = mac.to_u64();
    let at = sorted.binary_search_by_key(&key, |m| m.to_u64());
    at.unwrap_or_else(|at| at) as u32
}

/// A locally administered unicast MAC that no rule names: it stands for every unnamed address.
fn unnamed_mac(srcs: &[Mac], dsts: &[Mac]) -> Mac {
    // Only finitely many MACs are named, so the scan ends within srcs + dsts + 1 steps.
    let mut candidate = Mac([0x02, 0, 0, 0, 0, 0]).to_u64();
    loop {
        let mac = mac_from_u64(candidate);
        if !contains(srcs, mac) && !contains(dsts, mac) {
            return mac;
        }
        candidate += 1;
    }
}

/// Sorts and dedups MACs. Comparing them as numbers gives the same order as their derived
/// `Ord` (bytes, big-endian) and is much cheaper than a slice comparison.
pub(super) fn sort_macs(list: &mut Vec<Mac>) {
    list.sort_unstable_by_key(|m| m.to_u64());
    list.dedup();
}

/// Binary search in a list sorted by [`sort_macs`].
pub(super) fn contains(sorted: &[Mac], mac: Mac) -> bool {
    let key = mac.to_u64();
    sorted.binary_search_by_key(&key, |m| m.to_u64()).is_ok()
}

fn mac_from_u64(value: u64) -> Mac {
    let b = value.to_be_bytes();
    Mac([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// A small fast hasher (FxHash) for the analysis' integer and MAC keys; the keys come from the
/// analysed file, not from an adversary that could exploit collisions across runs.
#[derive(Default, Clone, Copy)]
pub(super) struct Fx(u64);

impl Hasher for Fx {
    fn finish(&self) -> u64 {
        // The multiply only carries entropy upwards, and hashbrown picks buckets with the low
        // bits: names like `host0001`…`host1999` differ in their high bytes. Mix (MurmurHash3's
        // finaliser) so every input bit reaches the low ones.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        h ^ h >> 33
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.add(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.add(rest.iter().rev().fold(0u64, |w, b| w << 8 | *b as u64));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(n as u64);
    }

    fn write_u32(&mut self, n: u32) {
        self.add(n as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

impl Fx {
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

pub(super) type FxBuild = BuildHasherDefault<Fx>;

#[cfg(test)]
mod tests {
    use super::nth_gap;

    #[test]
    fn gaps_are_counted_past_the_taken_positions() {
        let taken = [0, 1, 2, 5, 6, 9];
        let gaps: Vec<usize> = (0..5).map(|k| nth_gap(&taken, k)).collect();
        assert_eq!(gaps, [3, 4, 7, 8, 10]);
        assert_eq!(nth_gap(&[], 3), 3);
    }
}
