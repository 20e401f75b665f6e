//! The Proxy's view: the global traffic matrix as a short history, built from the daemons'
//! reports, and the answers of SPEC 5.1 (rates, intensities, topology, settling).
//!
//! Every table is capped, so a flood of new MAC pairs or daemons costs a bounded amount of
//! memory: pairs beyond [`Limits::max_pairs`] are dropped and counted, and the answer says it
//! is capped. With the default caps the history takes at most 16,384 pairs × 1.7 KiB = 28 MiB.

use crate::history::{bucket_of, History, COARSE, PER_COARSE};
use crate::report::Report;
use crate::tracker::{Topology, Tracker};
use crate::{Millis, BUCKET_MS, MAX_WINDOW_MS};
use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use vnet_grammar::Mac;

/// How long the view remembers anything: the coarse history's span.
const MEMORY_MS: Millis = COARSE * PER_COARSE * BUCKET_MS;
/// At most this many (window, threshold) trackers; an unasked one goes after a minute.
const MAX_TRACKERS: usize = 16;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Pairs with a history.
    pub max_pairs: usize,
    /// Daemons reporting.
    pub max_daemons: usize,
    /// Last-known counters, over all daemons.
    pub max_known: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pairs: 16_384,
            max_daemons: 1024,
            max_known: 65_536,
        }
    }
}

/// Why a report was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Malformed(String),
    TooManyDaemons,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(why) => write!(f, "malformed report: {why}"),
            Refusal::TooManyDaemons => write!(f, "too many reporting daemons"),
        }
    }
}

/// What the Proxy knows of one reporting daemon.
#[derive(Debug)]
struct Reporting {
    name: Arc<str>,
    instance: u64,
    /// Until a full report of this instance arrives, counters are baselines, not traffic.
    synced: bool,
    last_seen: Millis,
    /// Every pair this daemon reported, in the order first reported, and where each is.
    rows: Vec<Row>,
    index: FxHashMap<(Mac, Mac), u32>,
}

/// A pair as one daemon last reported it. A daemon lists its pairs in the same order report
/// after report, so the row after the last one matched is usually the next pair's: found
/// without hashing. `slot` and `seen` are hints, checked before use, to the pair's history
/// slot and its source MAC's entry; each saves a hash-table probe (a cache miss at 16k pairs)
/// per pair per report.
#[derive(Debug)]
struct Row {
    key: (Mac, Mac),
    frames: u64,
    bytes: u64,
    slot: u32,
    seen: u32,
}

/// A hint that points nowhere.
const NO_HINT: u32 = u32::MAX;

/// One pair's bytes and frames over a window.
type Sum<'v> = (&'v Held, f64, f64);

/// The pair in each history slot, so that per-slot sums can be read back as pairs.
type Slots = Vec<Option<Held>>;

/// A pair with a history slot, and the daemon it last entered the overlay from.
#[derive(Clone, Debug)]
struct Held {
    key: (Mac, Mac),
    src_daemon: Arc<str>,
}

/// Where a MAC was last seen entering the overlay, and when.
#[derive(Debug)]
struct Seen {
    mac: Mac,
    daemon: Arc<str>,
    at: Millis,
}

/// One pair's rates over a window (SPEC 5.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PairRate {
    pub src: Mac,
    pub dst: Mac,
    pub src_daemon: String,
    pub dst_daemon: Option<String>,
    pub bytes_per_s: f64,
    pub frames_per_s: f64,
    pub intensity: f64,
}

/// The answer to an inference query: SPEC 5.1's JSON less `proxy`, which the caller knows,
/// plus what capping cost. It reads back SPEC 5.1's JSON (`vnetc adapt --infer`), whose
/// `proxy` it ignores and whose lack of the capping fields means nothing was capped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub window_ms: Millis,
    pub threshold: f64,
    pub settled: bool,
    /// How long the topology has held unchanged; settled once it reaches `window_ms`.
    pub settled_for_ms: Millis,
    /// Topology changes reported since this (window, threshold) was first asked for.
    #[serde(default)]
    pub changes: u64,
    pub pairs: Vec<PairRate>,
    pub topology: Vec<PairRate>,
    /// Some pair was dropped by the pair cap within the window: the answer may miss pairs.
    #[serde(default)]
    pub capped: bool,
    /// Pair updates dropped by the caps since the Proxy started.
    #[serde(default)]
    pub dropped: u64,
}

#[derive(Debug)]
pub struct View {
    limits: Limits,
    daemons: FxHashMap<Arc<str>, Reporting>,
    known_total: usize,
    /// The history slot of each pair.
    pairs: FxHashMap<(Mac, Mac), usize>,
    history: History,
    slots: Slots,
    /// The daemon each MAC was last seen entering the overlay from, and when.
    seen: Vec<Seen>,
    seen_index: FxHashMap<Mac, u32>,
    trackers: Vec<Tracker>,
    dropped: u64,
    last_drop: Option<Millis>,
    refused: u64,
    last_sweep: Millis,
    /// The configuration-time bound: no topology change is reported sooner after the last.
    min_change_ms: Millis,
}

impl View {
    pub fn new(limits: Limits) -> View {
        View {
            limits,
            daemons: FxHashMap::default(),
            known_total: 0,
            pairs: FxHashMap::default(),
            history: History::new(limits.max_pairs),
            slots: vec![None; limits.max_pairs],
            seen: Vec::new(),
            seen_index: FxHashMap::default(),
            trackers: Vec::new(),
            dropped: 0,
            last_drop: None,
            refused: 0,
            last_sweep: 0,
            min_change_ms: 0,
        }
    }

    pub fn set_min_change(&mut self, ms: Millis) {
        self.min_change_ms = ms;
    }

    /// Reports refused since the Proxy started.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Pair updates dropped by the caps since the Proxy started.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Every pair with traffic in the window, heaviest first, without tracking a topology
    /// (for metrics). The window is clamped to what the history holds.
    pub fn pairs_now(&mut self, now: Millis, window_ms: Millis) -> Vec<PairRate> {
        self.rates(now, window_ms.clamp(BUCKET_MS, MAX_WINDOW_MS))
    }

    /// Pairs with a history now.
    pub fn pair_count(&self) -> usize {
        self.pairs.len()
    }

    /// Takes one report received at `now`.
    pub fn ingest(&mut self, now: Millis, report: &Report) -> Result<(), Refusal> {
        if let Err(why) = report.check() {
            self.refused += 1;
            return Err(Refusal::Malformed(why));
        }
        let name = match self.daemons.get_key_value(report.daemon.as_str()) {
            Some((name, _)) => name.clone(),
            None if self.daemons.len() >= self.limits.max_daemons => {
                self.refused += 1;
                return Err(Refusal::TooManyDaemons);
            }
            None => Arc::from(report.daemon.as_str()),
        };
        let mut daemon = self.daemons.remove(&name).unwrap_or_else(|| Reporting {
            name: name.clone(),
            instance: report.instance,
            synced: false,
            last_seen: now,
            rows: Vec::new(),
            index: FxHashMap::default(),
        });
        if daemon.instance != report.instance {
            // Restarted: its counters began again, and the next full report is a baseline.
            self.known_total -= daemon.rows.len();
            daemon.rows.clear();
            daemon.index.clear();
            daemon.instance = report.instance;
            daemon.synced = false;
        }
        let mut next = 0;
        for count in &report.pairs {
            let Some(row) = self.row(&mut daemon, next, (count.src, count.dst)) else {
                continue;
            };
            next = row + 1;
            let row = &mut daemon.rows[row];
            let before = (row.frames, row.bytes);
            (row.frames, row.bytes) = (count.frames, count.bytes);
            // Traffic counts after the daemon's baseline, and only for counters that grew.
            if !daemon.synced || count.frames < before.0 || count.bytes < before.1 {
                continue;
            }
            let (frames, bytes) = (count.frames - before.0, count.bytes - before.1);
            if bytes > 0 || frames > 0 {
                self.attribute(now, &daemon.name, row, bytes, frames);
            }
        }
        daemon.synced |= report.full;
        daemon.last_seen = now;
        self.daemons.insert(name, daemon);
        Ok(())
    }

    /// The daemon's row of `key`: `guess` if it holds it, else found or added (within the
    /// cap on known pairs; `None`, counted as dropped, beyond it).
    fn row(&mut self, daemon: &mut Reporting, guess: usize, key: (Mac, Mac)) -> Option<usize> {
        if daemon.rows.get(guess).is_some_and(|r| r.key == key) {
            return Some(guess);
        }
        if let Some(&at) = daemon.index.get(&key) {
            return Some(at as usize);
        }
        if self.known_total >= self.limits.max_known {
            self.note_drop(None);
            return None;
        }
        let at = daemon.rows.len();
        daemon.rows.push(Row {
            key,
            frames: 0,
            bytes: 0,
            slot: NO_HINT,
            seen: NO_HINT,
        });
        daemon.index.insert(key, at as u32);
        self.known_total += 1;
        Some(at)
    }

    /// Adds a pair's new traffic to its history, and notes where its source MAC entered.
    fn attribute(
        &mut self,
        now: Millis,
        daemon: &Arc<str>,
        row: &mut Row,
        bytes: u64,
        frames: u64,
    ) {
        let key = row.key;
        let seen = self.seen_entry(row.seen, key.0, daemon, now);
        row.seen = seen as u32;
        let seen = &mut self.seen[seen];
        set_daemon(&mut seen.daemon, daemon);
        seen.at = now;
        let hinted = row.slot as usize;
        let slot = match self.slots.get(hinted) {
            Some(Some(held)) if held.key == key => Some(hinted),
            _ => self.pairs.get(&key).copied(),
        };
        match slot.or_else(|| self.history.open()) {
            Some(slot) => {
                self.history.add(slot, now, bytes, frames);
                row.slot = slot as u32;
                match &mut self.slots[slot] {
                    Some(held) => set_daemon(&mut held.src_daemon, daemon),
                    empty => {
                        let src_daemon = daemon.clone();
                        *empty = Some(Held { key, src_daemon });
                        self.pairs.insert(key, slot);
                    }
                }
            }
            None => self.note_drop(Some(now)),
        }
    }

    /// The index of `mac`'s entry: `hint` if it holds it, else found or added.
    fn seen_entry(&mut self, hint: u32, mac: Mac, daemon: &Arc<str>, now: Millis) -> usize {
        if self.seen.get(hint as usize).is_some_and(|s| s.mac == mac) {
            return hint as usize;
        }
        if let Some(&at) = self.seen_index.get(&mac) {
            return at as usize;
        }
        let at = self.seen.len();
        let daemon = daemon.clone();
        self.seen.push(Seen {
            mac,
            daemon,
            at: now,
        });
        self.seen_index.insert(mac, at as u32);
        at
    }

    fn note_drop(&mut self, now: Option<Millis>) {
        self.dropped += 1;
        if now.is_some() {
            self.last_drop = now;
        }
    }

    /// Advances time: re-evaluates the trackers and forgets what is older than the history.
    /// Call it at least once per bucket (50 ms).
    pub fn tick(&mut self, now: Millis) {
        let mut trackers = std::mem::take(&mut self.trackers);
        trackers.retain(|t| t.pinned || now.saturating_sub(t.last_asked) < MEMORY_MS);
        for t in &mut trackers {
            // A window's answer moves by a twentieth of the window at most per twentieth:
            // evaluating it more often only costs (and a 2 s window is then read at 10 Hz).
            if now.saturating_sub(t.last_tick) >= (t.window_ms / 20).max(BUCKET_MS) {
                let raw = self.topology_now(now, t.window_ms, t.threshold_ppm);
                // Only an unsettled answer that matches the traffic needs the halves read.
                let steady = !t.settled()
                    && raw == *t.topology()
                    && self.steady(now, t.window_ms, t.threshold_ppm, &raw);
                t.observe(now, raw, steady, self.min_change_ms);
            }
        }
        self.trackers = trackers;
        if now.saturating_sub(self.last_sweep) >= 1000 {
            self.sweep(now);
        }
    }

    fn sweep(&mut self, now: Millis) {
        self.last_sweep = now;
        let oldest = bucket_of(now.saturating_sub(MEMORY_MS));
        let (history, slots) = (&mut self.history, &mut self.slots);
        self.pairs.retain(|_, &mut slot| {
            let keep = history.last_active(slot) >= oldest;
            if !keep {
                history.close(slot);
                slots[slot] = None;
            }
            keep
        });
        let mut freed = 0;
        self.daemons.retain(|_, d| {
            let keep = now.saturating_sub(d.last_seen) < MEMORY_MS;
            if !keep {
                freed += d.rows.len();
            }
            keep
        });
        self.known_total -= freed;
        let before = self.seen.len();
        self.seen.retain(|s| now.saturating_sub(s.at) < MEMORY_MS);
        if self.seen.len() < before {
            // Entries moved: the index is rebuilt, and rows' hints fail their check once.
            self.seen_index = (self.seen.iter().enumerate())
                .map(|(at, s)| (s.mac, at as u32))
                .collect();
        }
    }

    /// Tracks a (window, threshold) from `now` on whether asked or not: the Proxy's default
    /// query, so that its first answer is already settled when the traffic is.
    pub fn keep_tracking(&mut self, now: Millis, window_ms: Millis, threshold: f64) {
        if self.query(now, window_ms, threshold).is_ok() {
            let ppm = (threshold * 1e6).round() as u32;
            if let Some(t) = self
                .trackers
                .iter_mut()
                .find(|t| t.window_ms == window_ms && t.threshold_ppm == ppm)
            {
                t.pinned = true;
            }
        }
    }

    /// The answer for a window and threshold at `now` (SPEC 5.1). A first question for a
    /// (window, threshold) starts tracking it: its answer settles one window later.
    pub fn query(
        &mut self,
        now: Millis,
        window_ms: Millis,
        threshold: f64,
    ) -> Result<Answer, String> {
        if !(BUCKET_MS..=MAX_WINDOW_MS).contains(&window_ms) {
            return Err(format!(
                "window of {window_ms} ms: it must be between {BUCKET_MS} ms and {} s",
                MAX_WINDOW_MS / 1000
            ));
        }
        if !(0.0..=1.0).contains(&threshold) {
            return Err(format!("threshold {threshold}: it must be between 0 and 1"));
        }
        let ppm = (threshold * 1e6).round() as u32;
        let pairs = self.rates(now, window_ms);
        let topology: Vec<PairRate> = pairs
            .iter()
            .filter(|p| meets(p.intensity, ppm))
            .cloned()
            .collect();
        let tracker = self.tracker(now, window_ms, ppm, &topology);
        tracker.last_asked = now;
        let (settled, held, changes) =
            (tracker.settled(), tracker.held_for(now), tracker.changes());
        let reported = tracker.topology().clone();
        // The topology answered is the tracker's (held back by the configuration-time bound),
        // with the rates of now.
        let topology = pairs
            .iter()
            .filter(|p| reported.binary_search(&(p.src, p.dst)).is_ok())
            .cloned()
            .collect();
        let window_start = now.saturating_sub(window_ms);
        Ok(Answer {
            window_ms,
            threshold,
            settled,
            settled_for_ms: held,
            changes,
            pairs,
            topology,
            capped: self.last_drop.is_some_and(|at| at >= window_start),
            dropped: self.dropped,
        })
    }

    fn tracker(
        &mut self,
        now: Millis,
        window_ms: Millis,
        ppm: u32,
        topology: &[PairRate],
    ) -> &mut Tracker {
        let at = self
            .trackers
            .iter()
            .position(|t| t.window_ms == window_ms && t.threshold_ppm == ppm);
        let at = match at {
            Some(at) => at,
            None => {
                if self.trackers.len() >= MAX_TRACKERS {
                    // The least recently asked goes (never a pinned one).
                    let oldest = (0..self.trackers.len())
                        .filter(|&i| !self.trackers[i].pinned)
                        .min_by_key(|&i| self.trackers[i].last_asked);
                    if let Some(oldest) = oldest {
                        self.trackers.swap_remove(oldest);
                    }
                }
                let first = sorted_pairs(topology);
                // A first question about traffic that has kept one pattern for the window
                // is answered settled at once.
                let steady = self.steady(now, window_ms, ppm, &first);
                let mut t = Tracker::new(now, window_ms, ppm, first.clone());
                t.observe(now, first, steady, self.min_change_ms);
                self.trackers.push(t);
                self.trackers.len() - 1
            }
        };
        &mut self.trackers[at]
    }

    /// Bytes and frames of every pair with traffic in the window ending at the last complete
    /// bucket, and the window's length in seconds.
    fn sums(&mut self, now: Millis, window_ms: Millis) -> (Vec<Sum<'_>>, f64) {
        self.history.advance(now);
        let (first, last) = window_buckets(now, window_ms);
        let per_slot = self.history.sums(first, last, true);
        let sums = per_slot
            .bytes
            .iter()
            .zip(&per_slot.frames)
            .zip(&self.slots)
            .filter(|((bytes, _), _)| **bytes > 0.0)
            .filter_map(|((&bytes, &frames), held)| Some((held.as_ref()?, bytes, frames)))
            .collect();
        (
            sums,
            window_ms.div_ceil(BUCKET_MS) as f64 * BUCKET_MS as f64 / 1000.0,
        )
    }

    /// Every pair with traffic in the window, heaviest first, with its intensity.
    fn rates(&mut self, now: Millis, window_ms: Millis) -> Vec<PairRate> {
        let (seen, seen_index) = (
            std::mem::take(&mut self.seen),
            std::mem::take(&mut self.seen_index),
        );
        let (sums, seconds) = self.sums(now, window_ms);
        let mut out: Vec<PairRate> = sums
            .into_iter()
            .map(|(held, bytes, frames)| PairRate {
                src: held.key.0,
                dst: held.key.1,
                src_daemon: held.src_daemon.to_string(),
                dst_daemon: (seen_index.get(&held.key.1))
                    .map(|&at| seen[at as usize].daemon.to_string()),
                bytes_per_s: bytes / seconds,
                frames_per_s: frames / seconds,
                intensity: 0.0,
            })
            .collect();
        out.sort_by(|a, b| {
            b.bytes_per_s
                .total_cmp(&a.bytes_per_s)
                .then((a.src, a.dst).cmp(&(b.src, b.dst)))
        });
        (self.seen, self.seen_index) = (seen, seen_index);
        let heaviest = out.first().map_or(0.0, |p| p.bytes_per_s);
        for p in &mut out {
            p.intensity = p.bytes_per_s / heaviest;
        }
        out
    }

    /// The pairs at or above the threshold now: what the trackers watch, 20 times a second,
    /// so it builds no rates.
    fn topology_now(&mut self, now: Millis, window_ms: Millis, ppm: u32) -> Topology {
        self.history.advance(now);
        let (first, last) = window_buckets(now, window_ms);
        self.topology_in(first, last, ppm)
    }

    /// Whether the traffic kept the pattern `whole` (the window's topology) through the
    /// window: each half of it, thresholded on its own, shows the same pairs. A switch of
    /// topology leaves the old pairs in the older half until a window has passed; topologies
    /// alternating faster than half a window show their union in both halves.
    fn steady(&mut self, now: Millis, window_ms: Millis, ppm: u32, whole: &Topology) -> bool {
        self.history.advance(now);
        let (first, last) = window_buckets(now, window_ms);
        let mid = first + (last - first) / 2;
        *whole == self.topology_in(first, mid, ppm)
            && *whole == self.topology_in(mid + 1, last, ppm)
    }

    /// The pairs at or above the threshold over the buckets `[first, last]`.
    fn topology_in(&mut self, first: u64, last: u64, ppm: u32) -> Topology {
        let bytes = self.history.sums(first, last, false).bytes;
        let heaviest = bytes.iter().copied().fold(0.0, f64::max);
        let mut pairs: Topology = bytes
            .iter()
            .zip(&self.slots)
            .filter(|(b, _)| **b > 0.0 && meets(**b / heaviest, ppm))
            .filter_map(|(_, held)| Some(held.as_ref()?.key))
            .collect();
        pairs.sort_unstable();
        pairs
    }
}

/// The buckets of a window that ends at the last complete bucket before `now`.
fn window_buckets(now: Millis, window_ms: Millis) -> (u64, u64) {
    let last = bucket_of(now).saturating_sub(1);
    (
        (last + 1).saturating_sub(window_ms.div_ceil(BUCKET_MS)),
        last,
    )
}

/// Points `slot` at `daemon` unless it already does (no reference-count traffic per update).
fn set_daemon(slot: &mut Arc<str>, daemon: &Arc<str>) {
    if !Arc::ptr_eq(slot, daemon) {
        *slot = daemon.clone();
    }
}

/// Whether an intensity is at or above a threshold given in millionths (so that a pair
/// exactly at the threshold is in, whatever the float rounding of the threshold).
fn meets(intensity: f64, ppm: u32) -> bool {
    (intensity * 1e6).round() >= ppm as f64
}

fn sorted_pairs(rates: &[PairRate]) -> Topology {
    let mut pairs: Topology = rates.iter().map(|p| (p.src, p.dst)).collect();
    pairs.sort();
    pairs
}
