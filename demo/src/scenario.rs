//! A demo scenario (TOML) in the thesis's terms: sites with their hosts, the delay and
//! bandwidth within and between sites, the VMs and where they start, and the Patterns
//! workload. `examples/wide-area.toml` is the default, documented field by field.
//!
//! Parsing checks everything a run would trip over later and names the place: an unknown
//! host, a host in two sites, a site pair with no link, a VM on a host that does not exist.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{HostDef, LinkDef, Match, RuleDef, State, Target};
use vnet_grammar::Mac;
use vnet_underlay::shaper::Shape;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One line saying what the scenario shows.
    #[serde(default)]
    pub description: String,
    /// The Proxy's host: the centre of the resilient star and VTTIF's aggregator.
    pub proxy: String,
    pub workload: Workload,
    #[serde(rename = "site")]
    pub sites: Vec<Site>,
    /// The wide area between sites: one entry per pair of sites.
    #[serde(rename = "link", default)]
    pub links: Vec<SiteLink>,
    #[serde(rename = "vm")]
    pub vms: Vec<Vm>,
}

/// The Patterns program every VM runs (thesis section 9.1).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// bus, ring, mesh, torus, hypercube, tree, all-to-all.
    pub topology: String,
    /// exchange, reduce, all-to-all.
    pub operation: String,
    /// Bytes each message carries.
    pub message_size: usize,
    /// Compute time over communication time of a superstep.
    pub compute_ratio: f64,
    /// How long each measured run lasts, in seconds.
    pub seconds: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub name: String,
    pub hosts: Vec<String>,
    /// One-way delay between two hosts of the site, in ms.
    pub delay_ms: f64,
    /// Bandwidth between two hosts of the site, in Mbit/s.
    pub bandwidth: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteLink {
    pub sites: [String; 2],
    pub delay_ms: f64,
    pub bandwidth: f64,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vm {
    pub name: String,
    /// Where the VM starts.
    pub host: String,
    /// Its MAC; by default 52:54:00:00:00:NN, NN its position among the VMs from 1.
    pub mac: Option<Mac>,
}

/// A scenario that parsed and holds together.
#[derive(Clone, Debug)]
pub struct Checked {
    pub scenario: Scenario,
    /// Each host's site, by name.
    site_of: BTreeMap<String, usize>,
    /// The wide-area link of each pair of sites (`a <= b`).
    between: BTreeMap<(usize, usize), Shape>,
}

impl Scenario {
    /// Parses and checks a scenario; errors say where (a TOML line and column, or the field).
    pub fn parse(text: &str) -> Result<Checked, String> {
        let scenario: Scenario = toml::from_str(text).map_err(|e| e.to_string())?;
        scenario.check().map_err(|e| match line_of(text, &e) {
            Some(line) => format!("line {line}: {e}"),
            None => e,
        })
    }

    fn check(self) -> Result<Checked, String> {
        let mut site_of = BTreeMap::new();
        let mut site_names = BTreeMap::new();
        for (i, site) in self.sites.iter().enumerate() {
            if site_names.insert(site.name.as_str(), i).is_some() {
                return Err(format!("site[{i}]: a second site named `{}`", site.name));
            }
            shape(site.delay_ms, site.bandwidth)
                .map_err(|e| format!("site[{i}] `{}`: {e}", site.name))?;
            for (j, host) in site.hosts.iter().enumerate() {
                if !is_name(host) {
                    return Err(format!("site[{i}].hosts[{j}]: `{host}` is not a host name (letters, digits, - and _)"));
                }
                if site_of.insert(host.clone(), i).is_some() {
                    return Err(format!(
                        "site[{i}].hosts[{j}]: host `{host}` is in two sites"
                    ));
                }
            }
        }
        if !site_of.contains_key(&self.proxy) {
            return Err(format!("proxy: `{}` is not a host of any site", self.proxy));
        }
        let mut between = BTreeMap::new();
        for (i, link) in self.links.iter().enumerate() {
            let ends: Vec<usize> = link
                .sites
                .iter()
                .map(|s| {
                    site_names
                        .get(s.as_str())
                        .copied()
                        .ok_or(format!("link[{i}]: no site named `{s}`"))
                })
                .collect::<Result<_, _>>()?;
            let key = (ends[0].min(ends[1]), ends[0].max(ends[1]));
            if key.0 == key.1 {
                return Err(format!("link[{i}]: joins site `{}` to itself (a site's own delay and bandwidth are in its [[site]])", link.sites[0]));
            }
            let s = shape(link.delay_ms, link.bandwidth).map_err(|e| format!("link[{i}]: {e}"))?;
            if between.insert(key, s).is_some() {
                return Err(format!(
                    "link[{i}]: a second link between `{}` and `{}`",
                    link.sites[0], link.sites[1]
                ));
            }
        }
        for a in 0..self.sites.len() {
            for b in a + 1..self.sites.len() {
                if !between.contains_key(&(a, b)) {
                    return Err(format!(
                        "no [[link]] between sites `{}` and `{}`: every pair of sites needs one",
                        self.sites[a].name, self.sites[b].name
                    ));
                }
            }
        }
        self.check_vms(&site_of)?;
        self.check_workload()?;
        Ok(Checked {
            scenario: self,
            site_of,
            between,
        })
    }

    fn check_vms(&self, site_of: &BTreeMap<String, usize>) -> Result<(), String> {
        if self.vms.is_empty() {
            return Err("no [[vm]]: the workload needs at least two VMs".into());
        }
        let mut names = BTreeSet::new();
        let mut macs = BTreeSet::new();
        for (i, vm) in self.vms.iter().enumerate() {
            if !names.insert(vm.name.as_str()) {
                return Err(format!("vm[{i}]: a second VM named `{}`", vm.name));
            }
            if !site_of.contains_key(&vm.host) {
                return Err(format!(
                    "vm[{i}] `{}`: host `{}` is not a host of any site",
                    vm.name, vm.host
                ));
            }
            let mac = self.mac_of(i);
            if mac.is_group() || !macs.insert(mac) {
                return Err(format!(
                    "vm[{i}] `{}`: MAC {mac} is a group address or another VM's",
                    vm.name
                ));
            }
        }
        Ok(())
    }

    fn check_workload(&self) -> Result<(), String> {
        let w = &self.workload;
        if w.message_size == 0 || w.message_size > 16 << 20 {
            return Err(format!(
                "workload.message_size {}: between 1 byte and 16 MiB",
                w.message_size
            ));
        }
        if !(w.compute_ratio.is_finite() && w.compute_ratio >= 0.0) {
            return Err(format!(
                "workload.compute_ratio {}: a number from 0",
                w.compute_ratio
            ));
        }
        let program = vnet_patterns::Program {
            topology: w
                .topology
                .parse()
                .map_err(|e| format!("workload.topology `{}`: {e}", w.topology))?,
            operation: w
                .operation
                .parse()
                .map_err(|e| format!("workload.operation `{}`: {e}", w.operation))?,
            ranks: self.vms.len(),
            message_size: w.message_size,
            compute_ratio: w.compute_ratio,
            length: vnet_patterns::Length::Supersteps(1),
        };
        if let Err(e) = program.plan() {
            return Err(format!(
                "workload: Patterns cannot run it on {} VMs: {e}",
                self.vms.len()
            ));
        }
        if !(w.seconds.is_finite() && (0.5..=600.0).contains(&w.seconds)) {
            return Err(format!(
                "workload.seconds {}: between 0.5 and 600",
                w.seconds
            ));
        }
        Ok(())
    }

    fn mac_of(&self, i: usize) -> Mac {
        self.vms[i]
            .mac
            .unwrap_or(Mac([0x52, 0x54, 0, 0, ((i + 1) >> 8) as u8, (i + 1) as u8]))
    }
}

/// The line of the place a check error names (`vm[2]`: the third `[[vm]]` header;
/// `workload.seconds`: the `seconds =` line of `[workload]`; `proxy`: its line).
fn line_of(text: &str, error: &str) -> Option<usize> {
    let head = error.split([':', ' ']).next()?;
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let find =
        |from: usize, pred: &dyn Fn(&str) -> bool| (from..lines.len()).find(|&i| pred(lines[i]));
    let key = |line: &str, k: &str| {
        line.strip_prefix(k)
            .is_some_and(|rest| rest.trim_start().starts_with('='))
    };
    if let Some((table, rest)) = head.split_once('[') {
        let n: usize = rest.split(']').next()?.parse().ok()?;
        let header = format!("[[{table}]]");
        let at = (0..lines.len()).filter(|&i| lines[i] == header).nth(n)?;
        // `site[0].hosts[1]` or a field of the table: its own line when it has one.
        let field = rest
            .split_once("].")
            .map(|(_, f)| f.split('[').next().unwrap_or(f));
        let end = find(at + 1, &|l| l.starts_with('[')).unwrap_or(lines.len());
        let own = field.and_then(|f| (at + 1..end).find(|&i| key(lines[i], f)));
        return Some(own.unwrap_or(at) + 1);
    }
    if let Some(field) = head.strip_prefix("workload.") {
        let at = find(0, &|l| l == "[workload]")?;
        return find(at + 1, &|l| key(l, field)).map(|i| i + 1);
    }
    find(0, &|l| key(l, head)).map(|i| i + 1)
}

fn shape(delay_ms: f64, bandwidth: f64) -> Result<Shape, String> {
    let s = Shape {
        delay_ms,
        rate_mbps: Some(bandwidth),
    };
    s.check().map(|()| s)
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Where each VM runs: VM index → host name.
pub type Placement = Vec<String>;

impl Checked {
    /// The hosts, the Proxy first (it is the first HOST line), then in site order.
    pub fn hosts(&self) -> Vec<&str> {
        let s = &self.scenario;
        let mut out = vec![s.proxy.as_str()];
        out.extend(
            s.sites
                .iter()
                .flat_map(|site| site.hosts.iter().map(String::as_str))
                .filter(|h| *h != s.proxy),
        );
        out
    }

    pub fn site_of(&self, host: &str) -> Option<&str> {
        self.site_of
            .get(host)
            .map(|&i| self.scenario.sites[i].name.as_str())
    }

    /// The emulated link from host `a` to host `b` (the same both ways).
    pub fn shape(&self, a: &str, b: &str) -> Option<Shape> {
        let (sa, sb) = (*self.site_of.get(a)?, *self.site_of.get(b)?);
        if sa == sb {
            let site = &self.scenario.sites[sa];
            return Some(Shape {
                delay_ms: site.delay_ms,
                rate_mbps: Some(site.bandwidth),
            });
        }
        self.between.get(&(sa.min(sb), sa.max(sb))).copied()
    }

    /// The VMs' MACs, in file order.
    pub fn macs(&self) -> Vec<Mac> {
        (0..self.scenario.vms.len())
            .map(|i| self.scenario.mac_of(i))
            .collect()
    }

    /// Where the VMs start.
    pub fn start(&self) -> Placement {
        self.scenario.vms.iter().map(|vm| vm.host.clone()).collect()
    }

    /// The resilient star (thesis section 3) for a placement: every host dials a TCP link to
    /// the Proxy; each host delivers its VMs' frames and broadcasts to its interface `iface`
    /// and sends everything else to the Proxy; the Proxy sends each VM's frames to its host
    /// and broadcasts to every host with a VM. `machine` gives each host's HOST machine (its
    /// address) and `port` the daemons' port.
    pub fn star(
        &self,
        placement: &Placement,
        machine: &dyn Fn(&str) -> String,
        port: u16,
        iface: &str,
    ) -> State {
        let proxy = machine(&self.scenario.proxy);
        let mut state = State {
            hosts: self
                .hosts()
                .iter()
                .map(|h| HostDef {
                    user: "vnet".into(),
                    machine: machine(h).into(),
                    port,
                    iface: iface.into(),
                })
                .collect(),
            ..State::default()
        };
        let macs = self.macs();
        for host in self.hosts() {
            let m = machine(host);
            let local: Vec<Mac> = placement
                .iter()
                .zip(&macs)
                .filter(|(h, _)| *h == host)
                .map(|(_, mac)| *mac)
                .collect();
            if m != proxy {
                let link = LinkDef::new(Transport::Tcp, &m, &m, &proxy);
                state.links.insert(link.key(), link);
            }
            for &mac in &local {
                rule(
                    &mut state,
                    &m,
                    Match::Any,
                    Match::Exact(mac),
                    Target::Interface { name: iface.into() },
                );
                if m != proxy {
                    rule(
                        &mut state,
                        &m,
                        Match::Exact(mac),
                        Match::None,
                        Target::Link {
                            peer: proxy.clone().into(),
                        },
                    );
                    rule(
                        &mut state,
                        &proxy,
                        Match::Any,
                        Match::Exact(mac),
                        Target::Link {
                            peer: m.clone().into(),
                        },
                    );
                }
            }
            if !local.is_empty() {
                // Broadcasts from elsewhere reach this host's VMs; a lone VM's own never
                // comes back to it.
                let src = if local.len() == 1 {
                    Match::Not(local[0])
                } else {
                    Match::Any
                };
                rule(
                    &mut state,
                    &m,
                    src,
                    Match::Exact(Mac::BROADCAST),
                    Target::Interface { name: iface.into() },
                );
                if m != proxy {
                    rule(
                        &mut state,
                        &proxy,
                        Match::Any,
                        Match::Exact(Mac::BROADCAST),
                        Target::Link {
                            peer: m.clone().into(),
                        },
                    );
                }
            }
        }
        state
    }
}

fn rule(state: &mut State, daemon: &str, src: Match, dst: Match, target: Target) {
    state.rules.insert(RuleDef {
        daemon: daemon.into(),
        src,
        dst,
        target,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/wide-area.toml");

    #[test]
    fn the_shipped_scenario_holds_together() {
        let s = Scenario::parse(EXAMPLE).expect("examples/wide-area.toml");
        assert_eq!(s.hosts()[0], s.scenario.proxy);
        assert_eq!(s.scenario.vms.len(), 8);
        let start = s.start();
        let machine = |h: &str| {
            format!(
                "127.9.0.{}",
                s.hosts().iter().position(|x| *x == h).unwrap_or(0) + 1
            )
        };
        let state = s.star(&start, &machine, 7000, "vms");
        let text = state.to_program();
        let analysis = vnet_grammar::analyze(&text);
        assert!(!analysis.has_errors(), "{text}\n{:?}", analysis.diagnostics);
        assert_eq!(analysis.state, state);
        // Every pair of hosts has an emulated link, the same both ways.
        for a in s.hosts() {
            for b in s.hosts() {
                assert_eq!(s.shape(a, b), s.shape(b, a));
                assert!(s.shape(a, b).is_some(), "{a} {b}");
            }
        }
    }

    #[test]
    fn frames_between_any_two_vms_reach_them_over_the_star() {
        let s = Scenario::parse(EXAMPLE).expect("examples/wide-area.toml");
        let machine = |h: &str| h.to_string();
        let start = s.start();
        let state = s.star(&start, &machine, 7000, "vms");
        let macs = s.macs();
        for (i, &src) in macs.iter().enumerate() {
            for (j, &dst) in macs.iter().enumerate() {
                if i == j {
                    continue;
                }
                let from = &start[i];
                let route = vnet_grammar::route::route(&state, from, src, dst);
                let mut delivered = Vec::new();
                delivered_at(&route.entry, &mut delivered);
                assert_eq!(
                    delivered,
                    vec![start[j].clone()],
                    "{src} -> {dst}: {}",
                    route.render()
                );
                assert_eq!(route.summary.loops + route.summary.black_holes, 0);
            }
        }
    }

    /// The daemons where a simulated frame reaches an interface.
    fn delivered_at(visit: &vnet_grammar::route::Visit, out: &mut Vec<String>) {
        for step in &visit.steps {
            match step {
                vnet_grammar::route::Step::Deliver { .. } => out.push(visit.daemon.clone()),
                vnet_grammar::route::Step::Hop { visit, .. } => delivered_at(visit, out),
                _ => {}
            }
        }
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("proxy = \"nowhere\"", "proxy: `nowhere`"),
            ("hosts = [\"f1\", \"f1\"]", "in two sites"),
            ("host = \"mars\"", "host `mars` is not a host"),
            ("delay_ms = 15.0", "a second link"),
        ];
        for (needle, want) in cases {
            let broken = match needle {
                "proxy = \"nowhere\"" => EXAMPLE.replacen("proxy = \"proxy\"", needle, 1),
                "hosts = [\"f1\", \"f1\"]" => EXAMPLE.replacen("hosts = [\"f1\",", "hosts = [\"f1\", \"f1\",", 1),
                "host = \"mars\"" => EXAMPLE.replacen("host = \"f1\"", needle, 1),
                _ => format!("{EXAMPLE}\n[[link]]\nsites = [\"fast\", \"slow\"]\ndelay_ms = 15.0\nbandwidth = 10\n"),
            };
            let err = Scenario::parse(&broken).expect_err(want);
            assert!(err.contains(want), "{err}");
        }
        let err = Scenario::parse("proxy = 3").expect_err("a type error");
        assert!(err.contains("line 1"), "{err}");
        let err = Scenario::parse(&EXAMPLE.replacen("bandwidth = 1000", "bandwidth = -1", 1))
            .expect_err("negative");
        assert!(err.contains("site[0]"), "{err}");
        let line = |needle: &str| {
            1 + EXAMPLE
                .lines()
                .position(|l| l.contains(needle))
                .expect(needle)
        };
        // Semantic errors name the line too: the VM's table, the field.
        let err = Scenario::parse(&EXAMPLE.replacen("host = \"cmu\"", "host = \"mars\"", 1))
            .expect_err("mars");
        assert!(
            err.starts_with(&format!("line {}: vm[7]", line("host = \"cmu\"") - 2)),
            "{err}"
        );
        let err = Scenario::parse(&EXAMPLE.replacen("seconds = 8", "seconds = 0.1", 1))
            .expect_err("short");
        assert!(
            err.starts_with(&format!("line {}: workload.seconds", line("seconds = 8"))),
            "{err}"
        );
        let err = Scenario::parse(&EXAMPLE.replacen(
            "topology = \"all-to-all\"",
            "topology = \"blob\"",
            1,
        ))
        .expect_err("blob");
        assert!(err.contains("workload.topology `blob`"), "{err}");
    }
}
