//! The forwarding engine: the grammar crate's [`Table`] (SPEC 2.4, the same code `vnetc route`
//! runs) plus a per-receiver lookup cache, the hop limit, and the counters.
//!
//! Each receiving task owns a [`Lookup`]: a map from (source MAC, destination MAC) to the
//! resolved [`Route`] (the ports to send to, the rules that fired). It is cleared whenever
//! the table's version changes, so a steady-state lookup is one hash probe and never
//! allocates; the table itself is consulted only on a miss.

use crate::stats::{Counter, DropReason, PortStats};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use vnet_grammar::model::{Decision, RuleDef, Table, Target};
use vnet_grammar::Mac;

pub use crate::wire::HOP_LIMIT;

/// Frames and bytes one rule fired for.
#[derive(Debug, Default)]
pub struct RuleCounters {
    pub frames: Counter,
    pub bytes: Counter,
}

/// The table and the ports its targets resolve to. `P` is the port handle (an `Arc` of a
/// link or interface in the daemon).
pub struct Engine<P> {
    table: Table<Target>,
    index: HashMap<RuleDef, u32>,
    counters: HashMap<u32, Arc<RuleCounters>>,
    ports: HashMap<Target, P>,
}

impl<P: Clone> Default for Engine<P> {
    fn default() -> Self {
        Engine {
            table: Table::new(),
            index: HashMap::new(),
            counters: HashMap::new(),
            ports: HashMap::new(),
        }
    }
}

/// One port a frame goes out of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Out<P> {
    pub port: P,
    /// Whether the port is an overlay link (a hop, so the hop limit applies).
    pub over_link: bool,
}

/// Where one frame goes, resolved once per (source, destination) and cached.
pub struct Route<P> {
    /// The ports to send to (deduplicated, split horizon applied).
    pub outs: Vec<Out<P>>,
    /// The rules that fired (the top-priority matches).
    pub rules: Vec<Arc<RuleCounters>>,
    /// Destinations named by firing rules that do not exist here (no such link or interface).
    pub missing: u32,
    /// Traffic-matrix cell, for frames entering from a local interface.
    pub pair: Option<Arc<PairCounters>>,
}

impl<P: Clone> Engine<P> {
    pub fn new() -> Engine<P> {
        Engine::default()
    }

    /// Adds a rule; false if it was there.
    pub fn add_rule(&mut self, rule: &RuleDef) -> bool {
        if self.index.contains_key(rule) {
            return false;
        }
        let i = self.table.insert(rule.src, rule.dst, rule.target.clone());
        self.index.insert(rule.clone(), i);
        self.counters.insert(i, Arc::default());
        true
    }

    /// Removes a rule; false if it was not there.
    pub fn remove_rule(&mut self, rule: &RuleDef) -> bool {
        let Some(i) = self.index.remove(rule) else {
            return false;
        };
        self.table.remove(rule.src, rule.dst, &rule.target);
        self.counters.remove(&i);
        true
    }

    pub fn rule_counters(&self, rule: &RuleDef) -> Option<&Arc<RuleCounters>> {
        self.counters.get(self.index.get(rule)?)
    }

    pub fn rule_count(&self) -> usize {
        self.index.len()
    }

    pub fn set_port(&mut self, target: Target, port: P) {
        self.ports.insert(target, port);
    }

    pub fn remove_port(&mut self, target: &Target) -> Option<P> {
        self.ports.remove(target)
    }

    pub fn port(&self, target: &Target) -> Option<&P> {
        self.ports.get(target)
    }

    pub fn ports(&self) -> impl Iterator<Item = &P> {
        self.ports.values()
    }

    /// Resolves where a frame from `src` to `dst` that came from `came_from` goes: the rules of
    /// the top priority fire ([`Table::decide_into`]), their destinations deduplicated minus
    /// `came_from` ([`Table::forward`]), mapped to this daemon's ports.
    pub fn route(
        &self,
        src: Mac,
        dst: Mac,
        came_from: &Target,
        scratch: &mut Decision,
    ) -> Route<P> {
        self.table.decide_into(src, dst, scratch);
        let rules = scratch
            .rules
            .iter()
            .filter_map(|i| self.counters.get(i).cloned())
            .collect();
        let mut missing = 0;
        let mut outs = Vec::new();
        for target in self.table.forward(src, dst, Some(came_from)) {
            match self.ports.get(target) {
                Some(p) => outs.push(Out {
                    port: p.clone(),
                    over_link: matches!(target, Target::Link { .. }),
                }),
                None => missing += 1,
            }
        }
        Route {
            outs,
            rules,
            missing,
            pair: None,
        }
    }
}

/// The engine shared by the control plane (writer) and the receiving tasks (readers).
pub struct EngineCell<P> {
    version: AtomicU64,
    inner: RwLock<Engine<P>>,
}

impl<P: Clone> Default for EngineCell<P> {
    fn default() -> Self {
        EngineCell {
            version: AtomicU64::new(1),
            inner: RwLock::new(Engine::new()),
        }
    }
}

impl<P: Clone> EngineCell<P> {
    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Engine<P>> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the engine; every lookup cache is invalidated afterwards (and the data plane,
    /// which calls this, voids the kernel fast path's copies).
    pub fn update<R>(&self, f: impl FnOnce(&mut Engine<P>) -> R) -> R {
        let mut guard = self.inner.write().unwrap_or_else(|e| e.into_inner());
        let r = f(&mut guard);
        self.version.fetch_add(1, Ordering::Release);
        drop(guard);
        r
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

/// One cell of the traffic matrix.
#[derive(Debug, Default)]
pub struct PairCounters {
    pub frames: Counter,
    pub bytes: Counter,
}

/// The raw traffic matrix VTTIF builds on: frames that entered from local interfaces and
/// matched a rule, by (source MAC, destination MAC).
pub struct Matrix {
    cells: Mutex<HashMap<(Mac, Mac), Arc<PairCounters>>>,
    pub since: Mutex<Instant>,
}

/// At most this many matrix cells are kept (a flood of random MACs cannot exhaust memory).
pub const MATRIX_CAP: usize = 1 << 16;

impl Default for Matrix {
    fn default() -> Self {
        Matrix {
            cells: Mutex::new(HashMap::new()),
            since: Mutex::new(Instant::now()),
        }
    }
}

impl Matrix {
    pub fn cell(&self, src: Mac, dst: Mac) -> Option<Arc<PairCounters>> {
        let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cells.get(&(src, dst)) {
            return Some(c.clone());
        }
        if cells.len() >= MATRIX_CAP {
            return None;
        }
        let c = Arc::new(PairCounters::default());
        cells.insert((src, dst), c.clone());
        Some(c)
    }

    /// The non-zero cells; `reset` zeroes them.
    pub fn snapshot(&self, reset: bool) -> (u64, Vec<(Mac, Mac, u64, u64)>) {
        let cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        let window = since.elapsed().as_millis() as u64;
        let mut out: Vec<_> = cells
            .iter()
            .map(|((s, d), c)| {
                if reset {
                    (*s, *d, c.frames.take(), c.bytes.take())
                } else {
                    (*s, *d, c.frames.get(), c.bytes.get())
                }
            })
            .filter(|e| e.2 > 0)
            .collect();
        out.sort();
        if reset {
            *since = Instant::now();
        }
        (window, out)
    }
}

/// A multiply-shift hasher for the 96-bit (src, dst) keys of the lookup cache.
#[derive(Default)]
pub struct PairHasher(u64);

impl Hasher for PairHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(5) ^ *b as u64).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = (self.0 ^ x).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        self.0 ^= self.0 >> 29;
    }
}

/// At most this many cached routes per receiver; the cache is cleared when it fills.
pub const CACHE_CAP: usize = 1 << 16;

/// A receiver's lookup cache.
pub struct Lookup<P> {
    came_from: Target,
    matrix: Option<Arc<Matrix>>,
    version: u64,
    map: HashMap<u128, Route<P>, BuildHasherDefault<PairHasher>>,
    scratch: Decision,
    pub hits: u64,
    pub misses: u64,
}

impl<P: Clone> Lookup<P> {
    /// A cache for frames arriving from `came_from`; with `matrix`, frames are counted in it.
    pub fn new(came_from: Target, matrix: Option<Arc<Matrix>>) -> Lookup<P> {
        Lookup {
            came_from,
            matrix,
            version: 0,
            map: HashMap::default(),
            scratch: Decision::default(),
            hits: 0,
            misses: 0,
        }
    }

    /// The route of a frame: one hash probe when cached.
    pub fn get(&mut self, cell: &EngineCell<P>, src: Mac, dst: Mac) -> &Route<P> {
        self.resolve(cell, src, dst).0
    }

    /// [`Lookup::get`], and the engine version when the route was just computed (a miss).
    pub fn resolve(
        &mut self,
        cell: &EngineCell<P>,
        src: Mac,
        dst: Mac,
    ) -> (&Route<P>, Option<u64>) {
        let v = cell.version();
        if v != self.version {
            self.map.clear();
            self.version = v;
        }
        let key = (src.to_u64() as u128) << 48 | dst.to_u64() as u128;
        let mut fresh = None;
        if self.map.contains_key(&key) {
            self.hits += 1;
        } else {
            fresh = Some(v);
            self.misses += 1;
            if self.map.len() >= CACHE_CAP {
                self.map.clear();
            }
            let mut route = cell
                .read()
                .route(src, dst, &self.came_from, &mut self.scratch);
            if !route.rules.is_empty() {
                route.pair = self.matrix.as_ref().and_then(|m| m.cell(src, dst));
            }
            self.map.insert(key, route);
        }
        // Present: either found or just inserted.
        (&self.map[&key], fresh)
    }
}

/// What to do with a frame for one output, given its hop limit (SPEC 2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Deliver into a local interface.
    Deliver,
    /// Send over a link with this hop limit.
    Send(u8),
    /// Dropped: no hop left for a link.
    HopLimit,
}

/// A frame with `hop` left may always be delivered locally; sending it over a link needs a
/// hop limit above 0 and decrements it.
pub fn action(is_link: bool, hop: u8) -> Action {
    if !is_link {
        Action::Deliver
    } else if hop == 0 {
        Action::HopLimit
    } else {
        Action::Send(hop - 1)
    }
}

/// Counts a frame against the route's rules and matrix cell, and the drops that the route
/// alone decides (no rule, missing destinations, split horizon). Returns false when the
/// frame goes nowhere.
/// Counts `frames` frames of `bytes` bytes in all against the rules that fired for them and
/// their traffic-matrix cell.
pub fn count_fired(
    rules: &[Arc<RuleCounters>],
    pair: Option<&Arc<PairCounters>>,
    frames: u64,
    bytes: u64,
) {
    for r in rules {
        r.frames.add(frames);
        r.bytes.add(bytes);
    }
    if let Some(p) = pair {
        p.frames.add(frames);
        p.bytes.add(bytes);
    }
}

pub fn account<P>(route: &Route<P>, bytes: u64, drops: &PortStats) -> bool {
    if route.rules.is_empty() {
        drops.drop(DropReason::NoRule);
        return false;
    }
    count_fired(&route.rules, route.pair.as_ref(), 1, bytes);
    if route.missing > 0 {
        drops.drop_many(DropReason::NoTarget, route.missing as u64);
    }
    if route.outs.is_empty() && route.missing == 0 {
        // Every top-priority destination was the one it came from.
        drops.drop(DropReason::SplitHorizon);
    }
    !route.outs.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnet_grammar::model::Match;

    fn mac(last: u8) -> Mac {
        Mac([0, 0x50, 0x56, 0, 0x21, last])
    }
    fn link(p: &str) -> Target {
        Target::Link { peer: p.into() }
    }
    fn iface(n: &str) -> Target {
        Target::Interface { name: n.into() }
    }
    fn rule(src: Match, dst: Match, target: Target) -> RuleDef {
        RuleDef {
            daemon: "host1".into(),
            src,
            dst,
            target,
        }
    }

    /// An engine whose ports are named by their targets, so routes read as names.
    fn engine(rules: &[RuleDef]) -> EngineCell<String> {
        let cell = EngineCell::default();
        cell.update(|e| {
            for r in rules {
                e.add_rule(r);
            }
            for t in [
                link("proxy"),
                link("host2"),
                link("host3"),
                iface("vmnet1"),
                iface("vmnet2"),
            ] {
                let name = match &t {
                    Target::Link { peer } => format!("link:{peer}"),
                    Target::Interface { name } => name.to_string(),
                };
                e.set_port(t, name);
            }
        });
        cell
    }

    fn outs(cell: &EngineCell<String>, from: Target, src: Mac, dst: Mac) -> Vec<String> {
        let mut l = Lookup::new(from, None);
        l.get(cell, src, dst)
            .outs
            .iter()
            .map(|o| o.port.clone())
            .collect()
    }

    /// Thesis Figure 2, on Host1.
    #[test]
    fn figure2_table() {
        let cell = engine(&[
            rule(
                Match::Not(mac(1)),
                Match::Exact(Mac::BROADCAST),
                iface("vmnet1"),
            ),
            rule(Match::Any, Match::Exact(mac(1)), iface("vmnet1")),
            rule(Match::Exact(mac(1)), Match::None, link("proxy")),
        ]);
        let from_proxy = link("proxy");
        let from_vm = iface("vmnet1");
        assert_eq!(
            outs(&cell, from_proxy.clone(), mac(9), Mac::BROADCAST),
            ["vmnet1"]
        );
        assert_eq!(outs(&cell, from_proxy.clone(), mac(9), mac(1)), ["vmnet1"]);
        assert_eq!(
            outs(&cell, from_vm.clone(), mac(1), Mac::BROADCAST),
            ["link:proxy"]
        );
        assert_eq!(outs(&cell, from_vm.clone(), mac(1), mac(7)), ["link:proxy"]);
        assert!(outs(&cell, from_proxy, mac(9), mac(7)).is_empty());
    }

    /// Every priority case of SPEC 2.4: destination score first (exact 2 > NOT 1 > ANY 0 >
    /// NONE −1), then source score, and the default rule only when nothing else matches.
    #[test]
    fn every_priority_case() {
        let dsts = [
            Match::Exact(mac(2)),
            Match::Not(mac(3)),
            Match::Any,
            Match::None,
        ];
        let srcs = [Match::Exact(mac(1)), Match::Not(mac(3)), Match::Any];
        let mut rules = Vec::new();
        let mut names = Vec::new();
        for (i, d) in dsts.iter().enumerate() {
            for (j, s) in srcs.iter().enumerate() {
                let name = format!("d{i}s{j}");
                rules.push(rule(*s, *d, iface(&name)));
                names.push(name);
            }
        }
        // Every (dst, src) combination is present: the frame 1→2 matches all of them, and the
        // winner is exact dst, exact src.
        let ports: Vec<Target> = names.iter().map(|n| iface(n)).collect();
        let build = |rules: &[RuleDef]| {
            let cell: EngineCell<String> = EngineCell::default();
            cell.update(|e| {
                for r in rules {
                    e.add_rule(r);
                }
                for (t, n) in ports.iter().zip(&names) {
                    e.set_port(t.clone(), n.clone());
                }
            });
            cell
        };
        // Remove the winner one by one: the next one in (dst, src) order must win each time.
        let mut remaining = rules.clone();
        let from = link("elsewhere");
        while !remaining.is_empty() {
            let cell = build(&remaining);
            let got = outs(&cell, from.clone(), mac(1), mac(2));
            let expected = {
                let r = &remaining[0];
                match &r.target {
                    Target::Interface { name } => name.clone(),
                    _ => unreachable!(),
                }
            };
            assert_eq!(got, [expected], "with {} rules left", remaining.len());
            remaining.remove(0);
        }
        // A NOT that excludes the address does not match; a frame from 3 to 3 matches only
        // ANY/exact-free rules.
        let cell = build(&rules);
        assert_eq!(outs(&cell, from.clone(), mac(3), mac(3)), ["d2s2"]);
        // Destination outranks source: exact dst with ANY src beats NOT dst with exact src.
        let cell = build(&[
            rule(Match::Any, Match::Exact(mac(2)), iface("d0s2")),
            rule(Match::Exact(mac(1)), Match::Not(mac(3)), iface("d1s0")),
        ]);
        assert_eq!(outs(&cell, from.clone(), mac(1), mac(2)), ["d0s2"]);
        // NONE is the default: it fires only when nothing else matches.
        let cell = build(&[
            rule(Match::Any, Match::None, iface("d3s2")),
            rule(Match::Any, Match::Exact(mac(2)), iface("d0s2")),
        ]);
        assert_eq!(outs(&cell, from.clone(), mac(1), mac(2)), ["d0s2"]);
        assert_eq!(outs(&cell, from, mac(1), mac(5)), ["d3s2"]);
    }

    #[test]
    fn ties_fan_out_deduplicated_and_split_horizon_never_promotes() {
        let cell = engine(&[
            rule(Match::Any, Match::Exact(Mac::BROADCAST), link("host2")),
            rule(Match::Any, Match::Exact(Mac::BROADCAST), link("host3")),
            rule(Match::Any, Match::Exact(Mac::BROADCAST), iface("vmnet1")),
            rule(
                Match::Exact(mac(1)),
                Match::Exact(Mac::BROADCAST),
                iface("vmnet1"),
            ),
            rule(Match::Any, Match::None, link("proxy")),
        ]);
        // From mac 9 the three ANY rules tie: fan-out to all three.
        assert_eq!(
            outs(&cell, iface("vmnet2"), mac(9), Mac::BROADCAST),
            ["link:host2", "link:host3", "vmnet1"]
        );
        // From host2: not back to host2.
        assert_eq!(
            outs(&cell, link("host2"), mac(9), Mac::BROADCAST),
            ["link:host3", "vmnet1"]
        );
        // From mac 1 the exact-source rule alone is top priority; coming from vmnet1, split
        // horizon removes it and nothing lower (not the ANY rules, not the default) fires.
        let mut l: Lookup<String> = Lookup::new(iface("vmnet1"), None);
        let r = l.get(&cell, mac(1), Mac::BROADCAST);
        assert!(r.outs.is_empty());
        assert_eq!(r.rules.len(), 1);
        let stats = PortStats::default();
        assert!(!account(r, 60, &stats));
        assert_eq!(stats.drops(DropReason::SplitHorizon), 1);
    }

    #[test]
    fn hop_limit_expiry() {
        // A frame enters with 16; each link send decrements; at 0 it can still be delivered
        // locally but not sent over a link.
        let mut hop = HOP_LIMIT;
        let mut links = 0;
        while let Action::Send(next) = action(true, hop) {
            hop = next;
            links += 1;
        }
        assert_eq!(links, 16);
        assert_eq!(hop, 0);
        assert_eq!(action(true, 0), Action::HopLimit);
        assert_eq!(action(false, 0), Action::Deliver);
    }

    #[test]
    fn the_cache_is_invalidated_by_every_change() {
        let cell = engine(&[rule(Match::Any, Match::Exact(mac(2)), link("host2"))]);
        let mut l: Lookup<String> = Lookup::new(iface("vmnet1"), None);
        assert_eq!(l.get(&cell, mac(1), mac(2)).outs.len(), 1);
        assert_eq!(l.get(&cell, mac(1), mac(2)).outs.len(), 1);
        assert_eq!((l.hits, l.misses), (1, 1));
        cell.update(|e| e.remove_rule(&rule(Match::Any, Match::Exact(mac(2)), link("host2"))));
        assert!(l.get(&cell, mac(1), mac(2)).outs.is_empty());
        cell.update(|e| e.add_rule(&rule(Match::Any, Match::Exact(mac(2)), link("host3"))));
        let outs: Vec<_> = l
            .get(&cell, mac(1), mac(2))
            .outs
            .iter()
            .map(|o| o.port.clone())
            .collect();
        assert_eq!(outs, ["link:host3"]);
        // A destination without a port is counted as missing, not sent.
        cell.update(|e| e.remove_port(&link("host3")));
        let r = l.get(&cell, mac(1), mac(2));
        assert_eq!((r.outs.len(), r.missing), (0, 1));
    }
}
