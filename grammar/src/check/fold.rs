//! Folding blocks onto a state, with the diagnostics that come from doing it in order.

use super::named::{Interner, Named, RuleNames};
use crate::ast::{
    Block, BlockKind, Host, Ident, Link, MatchKind, Rule, RuleKind, SourceFile, Transport,
};
use crate::diag::{Code, Diagnostic};
use crate::model::{HostDef, LinkDef, LinkKey, Match, RuleDef, State, Target};
use crate::span::Span;
use rustc_hash::{FxBuildHasher, FxHashMap as HashMap, FxHashSet as HashSet};

/// The fold's links and rules: an index map keeps the entries in a list, in the order they
/// were added, and only their positions in the hash table. Most statements add something
/// new, and a probe for a new key reads the table alone: small enough to stay in the cache on
/// a large file, where a table of whole entries would cost a cache miss per statement.
type IndexMap<K, V> = indexmap::IndexMap<K, V, FxBuildHasher>;

/// Where the elements of the folded state were written; elements that came from a base state
/// (a patch's `--base`) have none.
///
/// Links and rules are found by their position in the state (`State::links` and `State::rules`
/// iteration order), not keyed by value: a map keyed by rule would hold every rule a second
/// time, and rules are most of a large file.
#[derive(Clone, Debug, Default)]
pub struct Origins {
    /// Where each host of the state was declared, in the order of `State::hosts`.
    pub hosts: Vec<Option<Span>>,
    /// Where each link of the state was added, in the order of `State::links`.
    pub links: Vec<Option<Span>>,
    /// Where each rule of the state was written, in the order of `State::rules`.
    pub rules: Vec<Option<RuleOrigin>>,
}

impl Origins {
    /// The origin of the state's `index`th host.
    pub fn host(&self, index: usize) -> Option<Span> {
        self.hosts.get(index).copied().flatten()
    }

    /// The origin of the state's `index`th link.
    pub fn link(&self, index: usize) -> Option<Span> {
        self.links.get(index).copied().flatten()
    }

    /// The origin of the state's `index`th rule.
    pub fn rule(&self, index: usize) -> Option<RuleOrigin> {
        self.rules.get(index).copied().flatten()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleOrigin {
    /// The whole FORWARD statement.
    pub span: Span,
    /// The destination: the two machines of an EDGE rule or the interface.
    pub dest: Span,
}

/// A machine or interface name, interned: the fold hashes and compares numbers, and the
/// state's strings are made once, at the end, for what is left.
type Name = u32;

#[derive(Default)]
struct Names<'a> {
    names: Interner<'a>,
}

impl<'a> Names<'a> {
    fn with_capacity(names: usize) -> Names<'a> {
        Names {
            names: Interner::with_capacity(names),
        }
    }

    fn intern(&mut self, name: &'a str) -> Name {
        self.names.intern(name)
    }

    /// [`Names::intern`] for a name that is often `known`, numbered `id`: a comparison of
    /// two names at hand then saves a look-up in the table.
    fn intern_beside(&mut self, name: &'a str, known: &str, id: Name) -> Name {
        match name == known {
            true => id,
            false => self.intern(name),
        }
    }

    fn text(&self, id: Name) -> &'a str {
        self.names.text(id)
    }

    /// Each name's place in bytewise order: sorting by rank sorts as the strings would.
    /// The names are sorted by their first eight bytes as a number, and only ties read the
    /// strings: those lie all over the text, a cache miss per comparison on a large file.
    fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<(u64, Name)> = self
            .names
            .names()
            .iter()
            .enumerate()
            .map(|(id, name)| (prefix(name), id as Name))
            .collect();
        order.sort_unstable_by(|a, b| {
            (a.0.cmp(&b.0)).then_with(|| self.text(a.1).cmp(self.text(b.1)))
        });
        let mut rank = vec![0; order.len()];
        for (place, (_, id)) in order.into_iter().enumerate() {
            rank[id as usize] = place as u32;
        }
        rank
    }

    fn rule_def(&self, key: RuleKey) -> RuleDef {
        RuleDef {
            daemon: self.text(key.daemon).into(),
            src: key.src,
            dst: key.dst,
            target: match key.target {
                To::Peer(peer) => Target::Link {
                    peer: self.text(peer).into(),
                },
                To::Iface(name) => Target::Interface {
                    name: self.text(name).into(),
                },
            },
        }
    }

    /// The two ends of a pair as [`LinkKey`] orders them, bytewise.
    fn ends(&self, (a, b): Pair) -> (&'a str, &'a str) {
        let (a, b) = (self.text(a), self.text(b));
        if a <= b {
            (a, b)
        } else {
            (b, a)
        }
    }
}

/// The first eight bytes of a name, big-endian and padded with zeros: strings in different
/// order by these are in that order bytewise (equal ones may still differ further on).
fn prefix(name: &str) -> u64 {
    let mut bytes = [0u8; 8];
    let head = &name.as_bytes()[..name.len().min(8)];
    bytes[..head.len()].copy_from_slice(head);
    u64::from_be_bytes(bytes)
}

/// A link's unordered pair of machines, the smaller name id first.
type Pair = (Name, Name);

fn pair(a: Name, b: Name) -> Pair {
    (a.min(b), a.max(b))
}

/// A link as the fold keeps it, keyed by its [`Pair`].
#[derive(Clone, Copy, PartialEq, Eq)]
struct LinkVal {
    transport: Transport,
    dialer: Name,
    /// Where it was added; `None` for a link of the base state.
    origin: Option<Span>,
}

impl LinkVal {
    fn same_link(&self, other: &LinkVal) -> bool {
        self.transport == other.transport && self.dialer == other.dialer
    }
}

/// A rule as the fold keeps it: [`RuleDef`] with interned names.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct RuleKey {
    daemon: Name,
    src: Match,
    dst: Match,
    target: To,
}

/// [`Target`] with an interned name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum To {
    Peer(Name),
    Iface(Name),
}

/// What a fold gives: the state, where its parts were written, the diagnostics, and the
/// state's names as the fold interned them (for the flow analysis).
pub(super) type Folded = (State, Origins, Vec<Diagnostic>, Named);

pub(super) fn fold<'a>(file: &'a SourceFile, base: &'a State) -> Folded {
    // Sized once for the most they can hold (every ADD statement adding something new, every
    // host a name of its own), so a large file is neither rehashed nor copied as they grow.
    let hosts = base.hosts.len() + file.hosts.len();
    let mut names = Names::with_capacity(hosts);
    let added = |count: fn(&Block) -> usize| -> usize {
        file.blocks
            .iter()
            .filter(|b| b.kind == BlockKind::Add)
            .map(count)
            .sum()
    };
    let mut links = IndexMap::with_capacity_and_hasher(
        base.links.len() + added(|b| b.links.len()),
        Default::default(),
    );
    let mut rules = IndexMap::with_capacity_and_hasher(
        base.rules.len() + added(|b| b.rules.len()),
        Default::default(),
    );
    links.extend(base.links.values().map(|l| {
        let (a, b) = (names.intern(&l.a), names.intern(&l.b));
        let dialer = names.intern(&l.dialer);
        let val = LinkVal {
            transport: l.transport,
            dialer,
            origin: None,
        };
        (pair(a, b), val)
    }));
    rules.extend(base.rules.iter().map(|r| {
        let daemon = names.intern(&r.daemon);
        let target = match &r.target {
            Target::Link { peer } => To::Peer(names.intern(peer)),
            Target::Interface { name } => To::Iface(names.intern(name)),
        };
        let key = RuleKey {
            daemon,
            src: r.src,
            dst: r.dst,
            target,
        };
        (key, None)
    }));
    let mut folder = Folder {
        names,
        links,
        rules,
        state: State {
            hosts: Vec::with_capacity(hosts),
            ..State::default()
        },
        host_at: Vec::with_capacity(hosts),
        host_spans: Vec::with_capacity(hosts),
        host_names: Vec::with_capacity(hosts),
        ..Folder::default()
    };
    folder.state.hosts.extend_from_slice(&base.hosts);
    folder.host_spans.resize(base.hosts.len(), None);
    for (i, host) in base.hosts.iter().enumerate() {
        let name = folder.names.intern(&host.machine);
        folder.set_host(name, i);
        folder.host_names.push(name);
    }
    for host in &file.hosts {
        folder.declare(host);
    }
    for block in &file.blocks {
        folder.apply_block(block);
    }
    folder.report_dangling_rules();
    folder.finish()
}

#[derive(Default)]
struct Folder<'a> {
    /// The hosts; links and rules are kept in the hash maps below until the end.
    state: State,
    names: Names<'a>,
    links: IndexMap<Pair, LinkVal>,
    /// Each rule with where it was written (`None` for a rule of the base state).
    rules: IndexMap<RuleKey, Option<RuleOrigin>>,
    /// For each of `rules` by position, once all blocks are folded: whether it is an EDGE
    /// rule whose link is in the state.
    linked: Vec<bool>,
    /// Index of `state.hosts` by interned machine name ([`NO_HOST`] for a name no HOST line
    /// declares): every statement looks its names up, densely rather than by hashing strings.
    host_at: Vec<u32>,
    /// Where each host of `state.hosts` was declared (`None` for a host of the base state).
    host_spans: Vec<Option<Span>>,
    /// The interned machine of each host of `state.hosts`.
    host_names: Vec<Name>,
    diagnostics: Vec<Diagnostic>,
    /// Rules whose link a DELETE removed (reported as V110, so not again as V106).
    orphaned: HashSet<RuleKey>,
    /// Pairs named by links that were themselves wrong (V103, V104): rules over them are not
    /// reported again as V106.
    broken_links: HashSet<Pair>,
    /// The EDGE rules by the pair of their link, built at the first DELETE of a link and kept
    /// up from then on (see [`Folder::users_of`]); it may still list deleted rules.
    by_pair: Option<PairIndex>,
}

impl<'a> Folder<'a> {
    /// The place in `state.hosts` of the host a name declares.
    fn host_index(&self, machine: Name) -> Option<usize> {
        let at = *self.host_at.get(machine as usize)?;
        (at != NO_HOST).then_some(at as usize)
    }

    fn set_host(&mut self, machine: Name, index: usize) {
        let at = machine as usize;
        if self.host_at.len() <= at {
            self.host_at.resize(at + 1, NO_HOST);
        }
        // Hosts are one per HOST line, so far fewer than 2^32.
        self.host_at[at] = index as u32;
    }

    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    /// The state, sorted: ordering interned names by rank orders them as the strings would,
    /// so the sorted runs are what `State`'s ordered collections hold, and the origins line
    /// up with them.
    fn finish(self) -> Folded {
        let rank = self.names.ranks();
        let names = &self.names;
        let mut state = self.state;
        // Each element's sort key is computed once, beside it: a key made per comparison
        // looks ranks up at random, a cache miss each on a large file.
        let mut links: Vec<(u64, Pair, LinkVal)> = self
            .links
            .into_iter()
            .map(|(ends, link)| {
                let (a, b) = (rank[ends.0 as usize], rank[ends.1 as usize]);
                (u64::from(a.min(b)) << 32 | u64::from(a.max(b)), ends, link)
            })
            .collect();
        links.sort_unstable_by_key(|(key, ..)| *key);
        // `report_dangling_rules` found which rules have their link, after the last block.
        debug_assert_eq!(self.linked.len(), self.rules.len());
        let mut rules: Vec<([u64; 4], RuleKey, Option<RuleOrigin>, bool)> = self
            .rules
            .into_iter()
            .zip(self.linked)
            .map(|((key, origin), linked)| (rule_sort_key(&key, &rank), key, origin, linked))
            .collect();
        rules.sort_unstable_by_key(|(order, ..)| *order);
        let named = Named {
            names: names.names.len() as u32,
            hosts: self.host_names,
            // The ends as `LinkDef` holds them, bytewise: by rank.
            links: links
                .iter()
                .map(
                    |&(_, (a, b), _)| match rank[a as usize] <= rank[b as usize] {
                        true => [a, b],
                        false => [b, a],
                    },
                )
                .collect(),
            rules: rules
                .iter()
                .map(|&(_, key, _, linked)| match key.target {
                    To::Peer(name) | To::Iface(name) => RuleNames {
                        daemon: key.daemon,
                        target: name,
                        linked,
                    },
                })
                .collect(),
        };
        let origins = Origins {
            hosts: self.host_spans,
            links: links.iter().map(|(_, _, link)| link.origin).collect(),
            rules: rules.iter().map(|(_, _, origin, _)| *origin).collect(),
        };
        state.links = links
            .into_iter()
            .map(|(_, ends, link)| {
                let (a, b) = names.ends(ends);
                let def = LinkDef {
                    transport: link.transport,
                    dialer: names.text(link.dialer).into(),
                    a: a.into(),
                    b: b.into(),
                };
                (def.key(), def)
            })
            .collect();
        state.rules = rules
            .into_iter()
            .map(|(_, key, ..)| names.rule_def(key))
            .collect();
        (state, origins, self.diagnostics, named)
    }

    fn declare(&mut self, host: &'a Host) {
        let name = self.names.intern(&host.machine.text);
        let def = HostDef {
            user: host.user.text.clone(),
            machine: host.machine.text.clone(),
            port: u16::try_from(host.port.value).unwrap_or(0),
            iface: host.iface.text.clone(),
        };
        match self.host_index(name) {
            Some(i) if self.state.hosts[i] == def => {}
            Some(i) => {
                let existing = &self.state.hosts[i];
                let what = differing_fields(existing, &def);
                let mut d = Diagnostic::new(
                    Code::V102,
                    host.machine.span,
                    format!(
                        "machine `{}` is declared again with a different {what}",
                        def.machine
                    ),
                )
                .with_help(format!("the first declaration says `{existing}`"));
                if let Some(first) = self.host_spans[i] {
                    d = d.with_related(first, "first declared here");
                }
                self.report(d);
            }
            None => {
                self.set_host(name, self.state.hosts.len());
                self.host_spans.push(Some(host.span));
                self.host_names.push(name);
                self.state.hosts.push(def);
            }
        }
    }

    /// V101 for each machine in `names` (interned, as written) that no HOST line declares
    /// (each name once).
    fn require_declared(&mut self, names: &[(Name, &Ident)]) {
        for (k, &(id, name)) in names.iter().enumerate() {
            if self.host_index(id).is_some() || names[..k].iter().any(|(seen, _)| *seen == id) {
                continue;
            }
            self.report(
                Diagnostic::new(
                    Code::V101,
                    name.span,
                    format!("machine `{}` is not declared by a HOST line", name.text),
                )
                .with_help(format!(
                    "declare it: HOST user AT {} port interface",
                    name.text
                )),
            );
        }
    }

    fn apply_block(&mut self, block: &'a Block) {
        if block.is_empty() && !block.recovered {
            self.report(Diagnostic::new(
                Code::V204,
                block.keyword,
                format!("empty {} block", block.kind.keyword()),
            ));
            return;
        }
        match block.kind {
            BlockKind::Add => {
                for link in &block.links {
                    if let Some((ends, def)) = self.link_def(link) {
                        self.add_link(link, ends, def);
                    }
                }
                for rule in &block.rules {
                    if let Some(def) = self.rule_def(rule) {
                        self.add_rule(rule, def);
                    }
                }
            }
            // A DELETE block removes its rules before its links (SPEC 2.3).
            BlockKind::Delete => {
                for rule in &block.rules {
                    if let Some(def) = self.rule_def(rule) {
                        self.delete_rule(rule, def);
                    }
                }
                for link in &block.links {
                    if let Some((ends, def)) = self.link_def(link) {
                        self.delete_link(link, ends, def);
                    }
                }
            }
        }
    }

    /// The link a LINK statement means, or `None` (after a diagnostic) when it means none.
    fn link_def(&mut self, link: &'a Link) -> Option<(Pair, LinkVal)> {
        let (a, b) = (
            self.names.intern(&link.a.text),
            self.names.intern(&link.b.text),
        );
        // The dialer is one of the ends, whose numbers are known.
        let dialer = match *link.dialer.text == *link.b.text {
            true => b,
            false => self.names.intern_beside(&link.dialer.text, &link.a.text, a),
        };
        self.require_declared(&[(dialer, &link.dialer), (a, &link.a), (b, &link.b)]);
        if a == b {
            self.broken_links.insert(pair(a, b));
            self.report(Diagnostic::new(
                Code::V103,
                link.a.span.cover(link.b.span),
                format!("link from `{}` to itself", link.a.text),
            ));
            return None;
        }
        if dialer != a && dialer != b {
            self.broken_links.insert(pair(a, b));
            self.report(
                Diagnostic::new(
                    Code::V104,
                    link.dialer.span,
                    format!(
                        "dialing machine `{}` is not an end of the link between `{}` and `{}`",
                        link.dialer.text, link.a.text, link.b.text
                    ),
                )
                .with_help("the dialer is one of the two machines the link joins"),
            );
            return None;
        }
        let val = LinkVal {
            transport: link.transport,
            dialer,
            origin: Some(link.span),
        };
        Some((pair(a, b), val))
    }

    /// The model's link, for messages.
    fn link_model(&self, ends: Pair, link: &LinkVal) -> LinkDef {
        let (a, b) = self.names.ends(ends);
        LinkDef::new(link.transport, self.names.text(link.dialer), a, b)
    }

    fn add_link(&mut self, link: &Link, ends: Pair, new: LinkVal) {
        if let Some(existing) = self.links.get(&ends).copied() {
            let (a, b) = self.names.ends(ends);
            let (code, message) = if existing.same_link(&new) {
                (
                    Code::V201,
                    format!("link between `{a}` and `{b}` is already present"),
                )
            } else {
                let (existing_def, def) = (
                    self.link_model(ends, &existing),
                    self.link_model(ends, &new),
                );
                (
                    Code::V112,
                    format!(
                        "link between `{a}` and `{b}` is added again with a different {} (it is `{existing_def}`)",
                        link_difference(&existing_def, &def)
                    ),
                )
            };
            let mut d = Diagnostic::new(code, link.span, message);
            if let Some(first) = existing.origin {
                d = d.with_related(first, "added here");
            }
            self.report(d);
            return;
        }
        self.links.insert(ends, new);
    }

    fn delete_link(&mut self, link: &Link, ends: Pair, named: LinkVal) {
        let (a, b) = self.names.ends(ends);
        let Some(existing) = self.links.get(&ends).copied() else {
            self.report(Diagnostic::new(
                Code::V202,
                link.span,
                format!("DELETE of a link between `{a}` and `{b}` that is not present"),
            ));
            return;
        };
        if !existing.same_link(&named) {
            let (existing_def, def) = (
                self.link_model(ends, &existing),
                self.link_model(ends, &named),
            );
            let mut d = Diagnostic::new(
                Code::V112,
                link.span,
                format!(
                    "DELETE names the link between `{a}` and `{b}` with a different {} (it is `{existing_def}`)",
                    link_difference(&existing_def, &def)
                ),
            );
            if let Some(first) = existing.origin {
                d = d.with_related(first, "added here");
            }
            self.report(d);
            return;
        }
        self.links.swap_remove(&ends);
        let users = self.users_of(ends);
        if users.is_empty() {
            return;
        }
        let mut d = Diagnostic::new(
            Code::V110,
            link.span,
            format!(
                "DELETE of the link between `{a}` and `{b}`, which {} still use{}",
                plural(users.len(), "rule"),
                if users.len() == 1 { "s" } else { "" }
            ),
        )
        .with_help("delete those rules in this block too, or keep the link");
        for origin in users.iter().filter_map(|(_, origin)| *origin) {
            d = d.with_related(origin.span, "this rule still uses it");
        }
        self.report(d);
        self.orphaned
            .extend(users.into_iter().map(|(rule, _)| rule));
    }

    /// The rules over the link `ends`, in file order. Found through an index by pair rather
    /// than by reading every rule: deleting a large file's links one by one read all its rules
    /// for each. Rules deleted since they were indexed are dropped from it here.
    fn users_of(&mut self, ends: Pair) -> Vec<(RuleKey, Option<RuleOrigin>)> {
        let rules = &self.rules;
        let index = self.by_pair.get_or_insert_with(|| {
            let mut index = PairIndex::default();
            for key in rules.keys() {
                index.insert(*key);
            }
            index
        });
        let mut users: Vec<_> = index
            .users(ends, |key| rules.contains_key(key))
            .into_iter()
            .map(|key| (key, rules.get(&key).copied().flatten()))
            .collect();
        users.sort_by_key(|(_, origin)| origin.map_or(usize::MAX, |o| o.span.start()));
        users
    }

    /// The rule a FORWARD statement means, or `None` (after a diagnostic) when it means none.
    fn rule_def(&mut self, rule: &'a Rule) -> Option<RuleKey> {
        let hop: &[Ident] = match rule.kind {
            RuleKind::Edge => &rule.dest,
            RuleKind::Interface => &[],
        };
        let daemon = self.names.intern(&rule.daemon.text);
        // The daemon and the hop's (at most two) names, each interned once: the hop starts at
        // the daemon, whose number is known.
        let mut named = [(daemon, &rule.daemon); 3];
        for (slot, name) in named[1..].iter_mut().zip(hop) {
            *slot = (
                self.names
                    .intern_beside(&name.text, &rule.daemon.text, daemon),
                name,
            );
        }
        self.require_declared(&named[..1 + hop.len()]);
        let src = self.field(rule, true)?;
        let dst = self.field(rule, false)?;
        let target = match (rule.kind, rule.dest.as_slice()) {
            (RuleKind::Edge, [a, b]) => {
                if a.text != rule.daemon.text {
                    self.report(
                        Diagnostic::new(
                            Code::V105,
                            a.span,
                            format!(
                                "the hop starts at `{}`, but the rule is installed on `{}`",
                                a.text, rule.daemon.text
                            ),
                        )
                        .with_related(rule.daemon.span, "the rule's daemon")
                        .with_help(format!(
                            "write the hop as `{} {}`",
                            rule.daemon.text, b.text
                        )),
                    );
                    return None;
                }
                To::Peer(named[2].0)
            }
            (RuleKind::Interface, [iface]) => {
                if let Some(at) = self.host_index(daemon) {
                    let host = &self.state.hosts[at];
                    if host.iface != *iface.text {
                        let served = host.iface.clone();
                        let mut d = Diagnostic::new(
                            Code::V109,
                            iface.span,
                            format!(
                                "daemon `{}` does not serve interface `{}` (it serves `{served}`)",
                                rule.daemon.text, iface.text
                            ),
                        );
                        if let Some(decl) = self.host_spans[at] {
                            d = d.with_related(decl, "declared here");
                        }
                        self.report(d);
                        return None;
                    }
                }
                To::Iface(self.names.intern(&iface.text))
            }
            (kind, dest) => {
                let expected = match kind {
                    RuleKind::Edge => "an EDGE rule forwards over a hop: two machines, the rule's daemon and its peer",
                    RuleKind::Interface => "an INTERFACE rule names one local interface",
                };
                self.report(
                    Diagnostic::new(
                        Code::V107,
                        rule_origin(rule).dest,
                        format!(
                            "{} rule with {} destination name{}",
                            kind.keyword(),
                            dest.len(),
                            if dest.len() == 1 { "" } else { "s" }
                        ),
                    )
                    .with_related(rule.kind_span, "the rule type")
                    .with_help(expected),
                );
                return None;
            }
        };
        Some(RuleKey {
            daemon,
            src,
            dst,
            target,
        })
    }

    /// One MAC field as the model sees it; `None` for a malformed MAC (already V002) or a
    /// `NONE` source (V108).
    fn field(&mut self, rule: &Rule, source: bool) -> Option<Match> {
        let expr = if source { rule.src } else { rule.dst };
        match expr.kind {
            MatchKind::Malformed => None,
            MatchKind::None if source => {
                self.report(
                    Diagnostic::new(Code::V108, expr.span, "`NONE` used as a source")
                        .with_help("NONE marks the default rule and belongs in the destination; use ANY to match every source"),
                );
                None
            }
            MatchKind::Exact(mac) => {
                if source && mac.is_group() {
                    self.report(
                        Diagnostic::new(
                            Code::V203,
                            expr.span,
                            format!(
                                "{} address {mac} used as a source",
                                if mac == crate::Mac::BROADCAST {
                                    "broadcast"
                                } else {
                                    "multicast"
                                }
                            ),
                        )
                        .with_help("no frame is sent from a group address"),
                    );
                }
                Some(Match::Exact(mac))
            }
            MatchKind::Not(mac) => Some(Match::Not(mac)),
            MatchKind::Any => Some(Match::Any),
            MatchKind::None => Some(Match::None),
        }
    }

    fn add_rule(&mut self, rule: &Rule, key: RuleKey) {
        if let Some(first) = self.rules.get(&key).copied() {
            let mut d = Diagnostic::new(Code::V201, rule.span, "rule is already present");
            if let Some(first) = first {
                d = d.with_related(first.span, "added here");
            }
            self.report(d);
            return;
        }
        if !self.orphaned.is_empty() {
            self.orphaned.remove(&key);
        }
        self.rules.insert(key, Some(rule_origin(rule)));
        if let Some(index) = &mut self.by_pair {
            index.insert(key);
        }
    }

    fn delete_rule(&mut self, rule: &Rule, key: RuleKey) {
        if self.rules.swap_remove(&key).is_none() {
            self.report(Diagnostic::new(
                Code::V202,
                rule.span,
                "DELETE of a rule that is not present",
            ));
            return;
        }
        self.orphaned.remove(&key);
    }

    /// V106: an EDGE rule of the resulting state whose link is not in it.
    fn report_dangling_rules(&mut self) {
        self.linked = self
            .rules
            .keys()
            .map(|rule| match rule.target {
                To::Peer(peer) => self.links.contains_key(&pair(rule.daemon, peer)),
                To::Iface(_) => false,
            })
            .collect();
        let mut dangling: Vec<(RuleOrigin, LinkKey)> = Vec::new();
        for ((rule, origin), linked) in self.rules.iter().zip(&self.linked) {
            let To::Peer(peer) = rule.target else {
                continue;
            };
            let ends = pair(rule.daemon, peer);
            if *linked || self.broken_links.contains(&ends) || self.orphaned.contains(rule) {
                continue;
            }
            if let Some(origin) = origin {
                let (a, b) = self.names.ends(ends);
                dangling.push((*origin, LinkKey::new(a, b)));
            }
        }
        dangling.sort_by_key(|(origin, _)| origin.span);
        for (origin, key) in dangling {
            self.report(
                Diagnostic::new(
                    Code::V106,
                    origin.dest,
                    format!(
                        "rule forwards over a link between `{}` and `{}` that does not exist",
                        key.0, key.1
                    ),
                )
                .with_related(origin.span, "the rule")
                .with_help(format!("add it: LINK TCP {} {} {}", key.0, key.0, key.1)),
            );
        }
    }
}

/// What re-folding the rules an edit touched gives (see [`refold_rules`]).
pub(crate) struct Refolded {
    /// Each rule the edit touched, as the state now holds it: with where it is first added,
    /// or `None` when no statement adds it any more.
    pub rules: Vec<(RuleDef, Option<RuleOrigin>)>,
    /// The fold's diagnostics of the statements in `statements`, as a whole fold gives them.
    pub diagnostics: Vec<Diagnostic>,
    /// The spans of the statements those diagnostics are about, in file order: every FORWARD
    /// whose rule the edit touched, and every FORWARD in the edited region.
    pub statements: Vec<Span>,
}

/// The fold of `file` limited to the rules an edit touched, for a file whose only change is
/// a run of FORWARD statements (`removed` became the statements within `region`). A rule's
/// fold depends only on the hosts, the links and the statements naming the same rule, so
/// only those statements are folded: the rest are read for their rule alone. `None` when
/// the file has a DELETE block, whose rules and links fold in an order this does not keep.
pub(crate) fn refold_rules(
    file: &SourceFile,
    removed: &[Rule],
    region: std::ops::Range<usize>,
) -> Option<Refolded> {
    if file.blocks.iter().any(|b| b.kind == BlockKind::Delete) {
        return None;
    }
    let mut folder = Folder::default();
    for host in &file.hosts {
        folder.declare(host);
    }
    for link in file.blocks.iter().flat_map(|b| &b.links) {
        if let Some((ends, def)) = folder.link_def(link) {
            folder.add_link(link, ends, def);
        }
    }
    let rules = || file.blocks.iter().flat_map(|b| &b.rules);
    let inside = |rule: &Rule| region.start <= rule.span.start() && rule.span.end() <= region.end;
    let mut touched: HashSet<RuleKey> = HashSet::default();
    for rule in removed.iter().chain(rules().filter(|r| inside(r))) {
        touched.extend(folder.rule_def(rule));
    }
    folder.diagnostics.clear();
    // Only a rule on a touched rule's daemon can be that rule: skip the others unread.
    let daemons: HashSet<&str> = touched
        .iter()
        .map(|k| folder.names.text(k.daemon))
        .collect();
    let mut statements = Vec::new();
    for rule in rules() {
        if !daemons.contains(&*rule.daemon.text) && !inside(rule) {
            continue;
        }
        let mark = folder.diagnostics.len();
        match folder.rule_def(rule) {
            Some(key) if touched.contains(&key) => {
                folder.add_rule(rule, key);
                statements.push(rule.span);
            }
            _ if inside(rule) => statements.push(rule.span),
            _ => folder.diagnostics.truncate(mark),
        }
    }
    folder.report_dangling_rules();
    let rules = touched
        .into_iter()
        .map(|key| {
            let origin = folder.rules.get(&key).copied().flatten();
            (folder.names.rule_def(key), origin)
        })
        .collect();
    Some(Refolded {
        rules,
        diagnostics: folder.diagnostics,
        statements,
    })
}

/// The EDGE rules by the pair of their link ([`Folder::by_pair`]): a chain per pair through
/// one array, latest first, rather than a vector per pair (an allocation per link of a large
/// file).
#[derive(Default)]
struct PairIndex {
    heads: HashMap<Pair, u32>,
    /// Each rule indexed, with the next of its pair's chain ([`CHAIN_END`] at the end).
    entries: Vec<(RuleKey, u32)>,
}

/// Ends a chain of [`PairIndex`].
const CHAIN_END: u32 = u32::MAX;

impl PairIndex {
    fn insert(&mut self, key: RuleKey) {
        if let To::Peer(peer) = key.target {
            // Entries are one per rule added, far fewer than 2^32.
            let at = self.entries.len() as u32;
            let next = self.heads.insert(pair(key.daemon, peer), at);
            self.entries.push((key, next.unwrap_or(CHAIN_END)));
        }
    }

    /// The rules over `ends` that are `live`, each once. The others (deleted, or listed again
    /// when re-added) are taken out of the chain, so that a link deleted again is not read
    /// through them again.
    fn users(&mut self, ends: Pair, live: impl Fn(&RuleKey) -> bool) -> Vec<RuleKey> {
        let (mut users, mut seen) = (Vec::new(), HashSet::default());
        let mut before = CHAIN_END;
        let mut at = self.heads.get(&ends).copied().unwrap_or(CHAIN_END);
        while at != CHAIN_END {
            let (key, next) = self.entries[at as usize];
            if live(&key) && first_time(&users, &mut seen, key) {
                users.push(key);
                before = at;
            } else if before != CHAIN_END {
                self.entries[before as usize].1 = next;
            } else if next != CHAIN_END {
                self.heads.insert(ends, next);
            } else {
                self.heads.remove(&ends);
            }
            at = next;
        }
        users
    }
}

/// Whether `key` is not among `users`: read through while they are few (most links carry one
/// rule), then through a set of them.
fn first_time(users: &[RuleKey], seen: &mut HashSet<RuleKey>, key: RuleKey) -> bool {
    const FEW: usize = 16;
    if users.len() < FEW {
        return !users.contains(&key);
    }
    if seen.is_empty() {
        seen.extend(users.iter().copied());
    }
    seen.insert(key)
}

/// The order of `RuleDef` (daemon, source, destination, target) as numbers: names by rank,
/// each field as its `Match` variant above its MAC, a peer before an interface.
fn rule_sort_key(key: &RuleKey, rank: &[u32]) -> [u64; 4] {
    let field = |m: Match| -> u64 {
        let (variant, mac) = match m {
            Match::None => (0, 0),
            Match::Any => (1, 0),
            Match::Not(mac) => (2, mac.to_u64()),
            Match::Exact(mac) => (3, mac.to_u64()),
        };
        variant << 48 | mac
    };
    let target = match key.target {
        To::Peer(peer) => u64::from(rank[peer as usize]),
        To::Iface(name) => 1 << 32 | u64::from(rank[name as usize]),
    };
    let daemon = u64::from(rank[key.daemon as usize]);
    [daemon, field(key.src), field(key.dst), target]
}

/// Marks a name that no HOST line declares in `Folder::host_at`.
const NO_HOST: u32 = u32::MAX;

fn rule_origin(rule: &Rule) -> RuleOrigin {
    let dest = match (rule.dest.first(), rule.dest.last()) {
        (Some(first), Some(last)) => first.span.cover(last.span),
        _ => rule.span,
    };
    RuleOrigin {
        span: rule.span,
        dest,
    }
}

fn differing_fields(a: &HostDef, b: &HostDef) -> String {
    let mut fields = Vec::new();
    if a.user != b.user {
        fields.push("user");
    }
    if a.port != b.port {
        fields.push("port");
    }
    if a.iface != b.iface {
        fields.push("interface");
    }
    fields.join(" and ")
}

fn link_difference(a: &LinkDef, b: &LinkDef) -> &'static str {
    match (a.transport != b.transport, a.dialer != b.dialer) {
        (true, true) => "transport and dialer",
        (true, false) => "transport",
        _ => "dialer",
    }
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::Names;

    /// Ranks order names as their strings do, also where eight-byte prefixes tie or one name
    /// is a prefix of another.
    #[test]
    fn ranks_sort_names_bytewise() {
        let words = [
            "host0010",
            "host00100",
            "host0009",
            "h",
            "host",
            "host0010a",
            "Host",
            "a.b-c_d",
            "host00101",
            "",
            "zz",
            "host0010\u{1}",
            "host0010\u{0}x",
        ];
        let mut names = Names::default();
        for word in words {
            names.intern(word);
        }
        let rank = names.ranks();
        let mut by_rank: Vec<&str> = vec![""; words.len()];
        for (id, word) in words.iter().enumerate() {
            by_rank[rank[id] as usize] = word;
        }
        let mut sorted = words.to_vec();
        sorted.sort_unstable();
        assert_eq!(by_rank, sorted);
    }
}
