//! Folding blocks onto a state, with the diagnostics that come from doing it in order.

use crate::ast::{Block, BlockKind, Host, Ident, Link, MatchKind, Rule, RuleKind, SourceFile};
use crate::diag::{Code, Diagnostic};
use crate::model::{HostDef, LinkDef, LinkKey, Match, RuleDef, State, Target};
use crate::span::Span;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

/// Where the elements of the folded state were written; elements that came from a base state
/// (a patch's `--base`) have none.
#[derive(Clone, Debug, Default)]
pub struct Origins {
    pub hosts: HashMap<String, Span>,
    pub links: HashMap<LinkKey, Span>,
    pub rules: HashMap<RuleDef, RuleOrigin>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RuleOrigin {
    /// The whole FORWARD statement.
    pub span: Span,
    /// The destination: the two machines of an EDGE rule or the interface.
    pub dest: Span,
}

pub(super) fn fold(file: &SourceFile, base: &State) -> (State, Origins, Vec<Diagnostic>) {
    let mut folder = Folder {
        hosts: base
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.machine.clone(), i))
            .collect(),
        links: base
            .links
            .iter()
            .map(|(k, l)| (k.clone(), l.clone()))
            .collect(),
        rules: base.rules.iter().cloned().collect(),
        state: State {
            hosts: base.hosts.clone(),
            ..State::default()
        },
        origins: Origins::default(),
        diagnostics: Vec::new(),
        orphaned: HashSet::default(),
        broken_links: HashSet::default(),
    };
    for host in &file.hosts {
        folder.declare(host);
    }
    for block in &file.blocks {
        folder.apply_block(block);
    }
    folder.report_dangling_rules();
    let mut state = folder.state;
    state.links = sorted(folder.links.into_iter().collect())
        .into_iter()
        .collect();
    state.rules = sorted(folder.rules.into_iter().collect())
        .into_iter()
        .collect();
    (state, folder.origins, folder.diagnostics)
}

/// Sorting first lets the ordered collections of [`State`] be built in one linear pass; folding
/// into hash sets and ordering once is several times cheaper than keeping them ordered.
fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
    items.sort_unstable();
    items
}

struct Folder {
    /// The hosts; links and rules are kept in the hash sets below until the end.
    state: State,
    links: HashMap<LinkKey, LinkDef>,
    rules: HashSet<RuleDef>,
    /// Index of `state.hosts` by machine: names are looked up for every statement.
    hosts: HashMap<String, usize>,
    origins: Origins,
    diagnostics: Vec<Diagnostic>,
    /// Rules whose link a DELETE removed (reported as V110, so not again as V106).
    orphaned: HashSet<RuleDef>,
    /// Pairs named by links that were themselves wrong (V103, V104): rules over them are not
    /// reported again as V106.
    broken_links: HashSet<LinkKey>,
}

impl Folder {
    fn host(&self, machine: &str) -> Option<&HostDef> {
        self.hosts.get(machine).map(|&i| &self.state.hosts[i])
    }

    fn report(&mut self, diagnostic: Diagnostic) {
        self.diagnostics.push(diagnostic);
    }

    fn declare(&mut self, host: &Host) {
        let def = HostDef {
            user: host.user.text.to_string(),
            machine: host.machine.text.to_string(),
            port: u16::try_from(host.port.value).unwrap_or(0),
            iface: host.iface.text.to_string(),
        };
        match self.host(&def.machine) {
            Some(existing) if *existing == def => {}
            Some(existing) => {
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
                if let Some(first) = self.origins.hosts.get(&def.machine) {
                    d = d.with_related(*first, "first declared here");
                }
                self.report(d);
            }
            None => {
                self.origins.hosts.insert(def.machine.clone(), host.span);
                self.hosts
                    .insert(def.machine.clone(), self.state.hosts.len());
                self.state.hosts.push(def);
            }
        }
    }

    /// V101 for each machine in `names` that no HOST line declares (each name once).
    fn require_declared<'a>(&mut self, names: impl IntoIterator<Item = &'a Ident>) {
        let mut seen: Vec<&str> = Vec::new();
        for name in names {
            if self.hosts.contains_key(&*name.text) || seen.contains(&name.as_str()) {
                continue;
            }
            seen.push(name.as_str());
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

    fn apply_block(&mut self, block: &Block) {
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
                    if let Some(def) = self.link_def(link) {
                        self.add_link(link, def);
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
                    if let Some(def) = self.link_def(link) {
                        self.delete_link(link, def);
                    }
                }
            }
        }
    }

    /// The link a LINK statement means, or `None` (after a diagnostic) when it means none.
    fn link_def(&mut self, link: &Link) -> Option<LinkDef> {
        self.require_declared([&link.dialer, &link.a, &link.b]);
        let key = LinkKey::new(&link.a.text, &link.b.text);
        if link.a.text == link.b.text {
            self.broken_links.insert(key);
            self.report(Diagnostic::new(
                Code::V103,
                link.a.span.cover(link.b.span),
                format!("link from `{}` to itself", link.a.text),
            ));
            return None;
        }
        if link.dialer.text != link.a.text && link.dialer.text != link.b.text {
            self.broken_links.insert(key);
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
        Some(LinkDef::new(
            link.transport,
            &link.dialer.text,
            &link.a.text,
            &link.b.text,
        ))
    }

    fn add_link(&mut self, link: &Link, def: LinkDef) {
        let key = def.key();
        if let Some(existing) = self.links.get(&key) {
            let (code, message) = if *existing == def {
                (
                    Code::V201,
                    format!(
                        "link between `{}` and `{}` is already present",
                        def.a, def.b
                    ),
                )
            } else {
                (
                    Code::V112,
                    format!(
                        "link between `{}` and `{}` is added again with a different {} (it is `{existing}`)",
                        def.a,
                        def.b,
                        link_difference(existing, &def)
                    ),
                )
            };
            let mut d = Diagnostic::new(code, link.span, message);
            if let Some(first) = self.origins.links.get(&key) {
                d = d.with_related(*first, "added here");
            }
            self.report(d);
            return;
        }
        self.origins.links.insert(key.clone(), link.span);
        self.links.insert(key, def);
    }

    fn delete_link(&mut self, link: &Link, def: LinkDef) {
        let key = def.key();
        let Some(existing) = self.links.get(&key) else {
            self.report(Diagnostic::new(
                Code::V202,
                link.span,
                format!(
                    "DELETE of a link between `{}` and `{}` that is not present",
                    def.a, def.b
                ),
            ));
            return;
        };
        if *existing != def {
            let mut d = Diagnostic::new(
                Code::V112,
                link.span,
                format!(
                    "DELETE names the link between `{}` and `{}` with a different {} (it is `{existing}`)",
                    def.a,
                    def.b,
                    link_difference(existing, &def)
                ),
            );
            if let Some(first) = self.origins.links.get(&key) {
                d = d.with_related(*first, "added here");
            }
            self.report(d);
            return;
        }
        self.links.remove(&key);
        self.origins.links.remove(&key);
        let mut users: Vec<RuleDef> = self
            .rules
            .iter()
            .filter(|r| r.link().as_ref() == Some(&key))
            .cloned()
            .collect();
        // Hash order is arbitrary; report the rules in file order.
        users.sort_by_key(|r| {
            self.origins
                .rules
                .get(r)
                .map_or(usize::MAX, |o| o.span.start())
        });
        if users.is_empty() {
            return;
        }
        let mut d = Diagnostic::new(
            Code::V110,
            link.span,
            format!(
                "DELETE of the link between `{}` and `{}`, which {} still use{}",
                def.a,
                def.b,
                plural(users.len(), "rule"),
                if users.len() == 1 { "s" } else { "" }
            ),
        )
        .with_help("delete those rules in this block too, or keep the link");
        for rule in &users {
            if let Some(origin) = self.origins.rules.get(rule) {
                d = d.with_related(origin.span, "this rule still uses it");
            }
        }
        self.report(d);
        self.orphaned.extend(users);
    }

    /// The rule a FORWARD statement means, or `None` (after a diagnostic) when it means none.
    fn rule_def(&mut self, rule: &Rule) -> Option<RuleDef> {
        let machines: Vec<&Ident> = match rule.kind {
            RuleKind::Edge => std::iter::once(&rule.daemon)
                .chain(rule.dest.iter())
                .collect(),
            RuleKind::Interface => vec![&rule.daemon],
        };
        self.require_declared(machines);
        let src = self.field(rule, true)?;
        let dst = self.field(rule, false)?;
        let dest_span = rule_origin(rule).dest;
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
                Target::Link {
                    peer: b.text.to_string(),
                }
            }
            (RuleKind::Interface, [iface]) => {
                if let Some(host) = self.host(&rule.daemon.text) {
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
                        if let Some(decl) = self.origins.hosts.get(&*rule.daemon.text) {
                            d = d.with_related(*decl, "declared here");
                        }
                        self.report(d);
                        return None;
                    }
                }
                Target::Interface {
                    name: iface.text.to_string(),
                }
            }
            (kind, dest) => {
                let expected = match kind {
                    RuleKind::Edge => "an EDGE rule forwards over a hop: two machines, the rule's daemon and its peer",
                    RuleKind::Interface => "an INTERFACE rule names one local interface",
                };
                self.report(
                    Diagnostic::new(
                        Code::V107,
                        dest_span,
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
        Some(RuleDef {
            daemon: rule.daemon.text.to_string(),
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

    fn add_rule(&mut self, rule: &Rule, def: RuleDef) {
        if self.rules.contains(&def) {
            let mut d = Diagnostic::new(Code::V201, rule.span, "rule is already present");
            if let Some(first) = self.origins.rules.get(&def) {
                d = d.with_related(first.span, "added here");
            }
            self.report(d);
            return;
        }
        if !self.orphaned.is_empty() {
            self.orphaned.remove(&def);
        }
        self.origins.rules.insert(def.clone(), rule_origin(rule));
        self.rules.insert(def);
    }

    fn delete_rule(&mut self, rule: &Rule, def: RuleDef) {
        if !self.rules.remove(&def) {
            self.report(Diagnostic::new(
                Code::V202,
                rule.span,
                "DELETE of a rule that is not present",
            ));
            return;
        }
        self.origins.rules.remove(&def);
        self.orphaned.remove(&def);
    }

    /// V106: an EDGE rule of the resulting state whose link is not in it.
    fn report_dangling_rules(&mut self) {
        // Pairs as borrowed, sorted name pairs, so the check allocates nothing per rule.
        let pairs: HashSet<(&str, &str)> = self
            .links
            .keys()
            .chain(&self.broken_links)
            .map(|k| (k.0.as_str(), k.1.as_str()))
            .collect();
        let mut dangling: Vec<(RuleOrigin, LinkKey)> = Vec::new();
        for rule in &self.rules {
            let Target::Link { peer } = &rule.target else {
                continue;
            };
            let (a, b) = if rule.daemon <= *peer {
                (rule.daemon.as_str(), peer.as_str())
            } else {
                (peer.as_str(), rule.daemon.as_str())
            };
            if pairs.contains(&(a, b)) || self.orphaned.contains(rule) {
                continue;
            }
            if let Some(origin) = self.origins.rules.get(rule) {
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
