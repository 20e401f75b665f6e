//! The problem of SPEC 5.3 (thesis 7.1 and 8.2, GAPVEE): its JSON form, and the validated,
//! index-based form every solver works on.

use crate::Error;
use serde::Deserialize;

/// A daemon's host; capacities omitted in the JSON are unbounded (infinite).
#[derive(Clone, Debug, PartialEq)]
pub struct Host {
    pub name: String,
    pub compute: f64,
    pub size: f64,
}

/// A possible directed overlay link.
#[derive(Clone, Debug, PartialEq)]
pub struct Link {
    pub from: usize,
    pub to: usize,
    pub bw: f64,
    pub lat: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Vm {
    pub name: String,
    pub mac: Option<String>,
    /// Where the VM runs now, if anywhere.
    pub host: Option<usize>,
    pub compute: f64,
    pub size: f64,
    pub pinned: bool,
}

/// A traffic demand from one VM to another; `lat` is its latency bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Demand {
    pub src: usize,
    pub dst: usize,
    pub bw: f64,
    pub lat: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub hosts: Vec<Host>,
    pub links: Vec<Link>,
    pub vms: Vec<Vm>,
    pub demands: Vec<Demand>,
    /// The hop limit actually in force: `max_hops`, or the longest simple path.
    pub max_hops: usize,
    /// The bottleneck of a demand between VMs on one host.
    pub local_bw: f64,
    /// Per host, the links leaving it.
    pub out: Vec<Vec<usize>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProblem {
    hosts: Vec<RawHost>,
    #[serde(default)]
    links: Vec<RawLink>,
    vms: Vec<RawVm>,
    #[serde(default)]
    demands: Vec<RawDemand>,
    #[serde(default)]
    max_hops: Option<usize>,
    #[serde(default)]
    local_bw: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    #[serde(default)]
    compute: Option<f64>,
    #[serde(default)]
    size: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    from: String,
    to: String,
    bw: f64,
    lat: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    compute: Option<f64>,
    #[serde(default)]
    size: Option<f64>,
    #[serde(default)]
    pinned: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDemand {
    src: String,
    dst: String,
    bw: f64,
    #[serde(default)]
    lat: Option<f64>,
}

fn malformed(path: String, message: impl Into<String>) -> Error {
    Error::Malformed {
        path,
        message: message.into(),
    }
}

/// A quantity that must be a finite number at least zero.
fn quantity(value: f64, path: impl FnOnce() -> String) -> Result<f64, Error> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(malformed(
            path(),
            format!("must be a finite number >= 0, not {value}"),
        ))
    }
}

fn capacity(value: Option<f64>, path: impl FnOnce() -> String) -> Result<f64, Error> {
    value.map_or(Ok(f64::INFINITY), |v| quantity(v, path))
}

fn lookup(names: &[String], name: &str, path: impl FnOnce() -> String) -> Result<usize, Error> {
    names
        .iter()
        .position(|n| n == name)
        .ok_or_else(|| malformed(path(), format!("no such name `{name}`")))
}

fn unique(names: &[String], kind: &str) -> Result<(), Error> {
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(malformed(format!("{kind}[{i}].name"), "must not be empty"));
        }
        if names[..i].contains(name) {
            return Err(malformed(
                format!("{kind}[{i}].name"),
                format!("`{name}` is declared twice"),
            ));
        }
    }
    Ok(())
}

fn valid_mac(mac: &str) -> bool {
    let parts: Vec<&str> = mac.split(':').collect();
    parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl Problem {
    /// Parses and validates SPEC 5.3's JSON; a malformed document names the field at fault.
    pub fn from_json(text: &str) -> Result<Problem, Error> {
        let mut de = serde_json::Deserializer::from_str(text);
        let raw: RawProblem = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." {
                "(document)".into()
            } else {
                path
            };
            malformed(path, e.into_inner().to_string())
        })?;
        Problem::validate(raw)
    }

    fn validate(raw: RawProblem) -> Result<Problem, Error> {
        let host_names: Vec<String> = raw.hosts.iter().map(|h| h.name.clone()).collect();
        unique(&host_names, "hosts")?;
        if raw.hosts.is_empty() {
            return Err(malformed("hosts".into(), "at least one host is needed"));
        }
        let hosts = raw
            .hosts
            .into_iter()
            .enumerate()
            .map(|(i, h)| {
                Ok(Host {
                    compute: capacity(h.compute, || format!("hosts[{i}].compute"))?,
                    size: capacity(h.size, || format!("hosts[{i}].size"))?,
                    name: h.name,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let links = validate_links(raw.links, &host_names)?;
        let vm_names: Vec<String> = raw.vms.iter().map(|v| v.name.clone()).collect();
        unique(&vm_names, "vms")?;
        let vms = raw
            .vms
            .into_iter()
            .enumerate()
            .map(|(i, v)| validate_vm(i, v, &host_names))
            .collect::<Result<Vec<_>, Error>>()?;
        let demands = raw
            .demands
            .into_iter()
            .enumerate()
            .map(|(i, d)| validate_demand(i, d, &vm_names))
            .collect::<Result<Vec<_>, Error>>()?;
        let longest = hosts.len().saturating_sub(1);
        let max_bw = links.iter().map(|l| l.bw).fold(0.0, f64::max);
        let local_bw = match raw.local_bw {
            Some(v) => quantity(v, || "local_bw".into())?,
            None => max_bw,
        };
        let mut out = vec![Vec::new(); hosts.len()];
        for (e, link) in links.iter().enumerate() {
            out[link.from].push(e);
        }
        Ok(Problem {
            max_hops: raw.max_hops.map_or(longest, |h| h.min(longest)),
            hosts,
            links,
            vms,
            demands,
            local_bw,
            out,
        })
    }

    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    pub fn vm_index(&self, name: &str) -> Option<usize> {
        self.vms.iter().position(|v| v.name == name)
    }

    /// The current placement, if every VM has one.
    pub fn current_mapping(&self) -> Option<Vec<usize>> {
        self.vms.iter().map(|v| v.host).collect()
    }

    /// `src->dst` of a demand, for messages.
    pub fn demand_label(&self, d: usize) -> String {
        let demand = &self.demands[d];
        format!(
            "{}->{}",
            self.vms[demand.src].name, self.vms[demand.dst].name
        )
    }

    pub fn link_label(&self, e: usize) -> String {
        let link = &self.links[e];
        format!(
            "{}->{}",
            self.hosts[link.from].name, self.hosts[link.to].name
        )
    }
}

fn validate_links(raw: Vec<RawLink>, hosts: &[String]) -> Result<Vec<Link>, Error> {
    let mut links: Vec<Link> = Vec::with_capacity(raw.len());
    for (i, l) in raw.into_iter().enumerate() {
        let link = Link {
            from: lookup(hosts, &l.from, || format!("links[{i}].from"))?,
            to: lookup(hosts, &l.to, || format!("links[{i}].to"))?,
            bw: quantity(l.bw, || format!("links[{i}].bw"))?,
            lat: quantity(l.lat, || format!("links[{i}].lat"))?,
        };
        if link.from == link.to {
            return Err(malformed(
                format!("links[{i}].to"),
                "a link joins two different hosts",
            ));
        }
        if links.iter().any(|o| o.from == link.from && o.to == link.to) {
            return Err(malformed(
                format!("links[{i}]"),
                format!("a second link {}->{}", l.from, l.to),
            ));
        }
        links.push(link);
    }
    Ok(links)
}

fn validate_vm(i: usize, v: RawVm, hosts: &[String]) -> Result<Vm, Error> {
    if let Some(mac) = &v.mac {
        if !valid_mac(mac) {
            return Err(malformed(
                format!("vms[{i}].mac"),
                format!("`{mac}` is not a MAC address"),
            ));
        }
    }
    let host = match &v.host {
        Some(name) => Some(lookup(hosts, name, || format!("vms[{i}].host"))?),
        None => None,
    };
    if v.pinned && host.is_none() {
        return Err(malformed(
            format!("vms[{i}].pinned"),
            "a pinned VM needs a host",
        ));
    }
    Ok(Vm {
        compute: quantity(v.compute.unwrap_or(0.0), || format!("vms[{i}].compute"))?,
        size: quantity(v.size.unwrap_or(0.0), || format!("vms[{i}].size"))?,
        mac: v.mac.map(|m| m.to_ascii_lowercase()),
        name: v.name,
        host,
        pinned: v.pinned,
    })
}

fn validate_demand(i: usize, d: RawDemand, vms: &[String]) -> Result<Demand, Error> {
    let demand = Demand {
        src: lookup(vms, &d.src, || format!("demands[{i}].src"))?,
        dst: lookup(vms, &d.dst, || format!("demands[{i}].dst"))?,
        bw: quantity(d.bw, || format!("demands[{i}].bw"))?,
        lat: match d.lat {
            Some(l) => Some(quantity(l, || format!("demands[{i}].lat"))?),
            None => None,
        },
    };
    if demand.src == demand.dst {
        return Err(malformed(format!("demands[{i}].dst"), "the same VM as src"));
    }
    Ok(demand)
}
