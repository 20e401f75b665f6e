//! Reading the live daemons into the model: one authenticated connection per HOST line, a
//! consistent snapshot of each daemon's tables with its instance and generation, and the
//! `State` they add up to, with what does not add up (drift) set apart.

use super::{hosts, parallel, DaemonError};
use std::collections::BTreeMap;
use std::time::Duration;
use vnet_grammar::model::{HostDef, LinkDef, LinkKey, RuleDef, State, Target};
use vnet_proto::control::{ErrorCode, LeaseInfo, LinkSecurity, LinkSpec, UnderlayState};
use vnet_proto::{Client, ClientError, Key};

/// An open control connection to the daemon of one HOST line.
pub struct Session {
    pub host: HostDef,
    pub client: Client,
}

/// One daemon's tables as read at one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    pub daemon: String,
    pub instance: String,
    pub generation: u64,
    pub links: Vec<LinkSpec>,
    /// Which of its links are up, by pair.
    pub up: BTreeMap<LinkKey, bool>,
    pub rules: Vec<RuleDef>,
    pub lease: Option<LeaseInfo>,
    /// The daemon's static link key (base64), which `apply` pins in its peers' links.
    pub public_key: Option<String>,
    /// Whether it runs with `--insecure-links`.
    pub insecure_links: bool,
    /// The security state of its links that are up, by pair.
    pub security: BTreeMap<LinkKey, LinkSecurity>,
    /// Its emulated underlay, when one is configured (for demos and experiments).
    pub underlay: Option<UnderlayState>,
}

/// The live daemons of a file's HOST lines, as the model sees them.
#[derive(Clone, Debug, Default)]
pub struct Live {
    /// HOST lines as given; the links configured consistently on both ends; every rule that
    /// names only declared daemons.
    pub state: State,
    pub snapshots: BTreeMap<String, Snapshot>,
    /// Links between declared daemons that are not links of `state`: configured on one end
    /// only, or the ends disagree (SPEC 4 drift). `apply` repairs them.
    pub half_links: Vec<LinkDef>,
    /// Links and rules naming daemons no HOST line declares, per daemon holding them.
    pub foreign: BTreeMap<String, Foreign>,
    /// One line per drifting item, for people.
    pub drift: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Foreign {
    pub links: Vec<LinkSpec>,
    pub rules: Vec<RuleDef>,
}

/// Describes a client error for a person, naming the daemon's address.
pub fn describe(error: &ClientError, addr: &str, timeout: Duration) -> String {
    match error {
        ClientError::Io(e) => match e.kind() {
            std::io::ErrorKind::ConnectionRefused => format!(
                "not running: nothing listens at {addr} (start it with `vnetc up FILE`, or `vnetc apply --up`)"
            ),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                format!("does not answer at {addr} (waited {timeout:?})")
            }
            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset => {
                format!("closed the connection at {addr} (it died, or it is not a vnetd)")
            }
            std::io::ErrorKind::InvalidData => {
                format!("sent something that is not the VNET control protocol at {addr}: {e}")
            }
            _ => format!("cannot talk to it at {addr}: {e}"),
        },
        ClientError::Daemon(body) if body.code == ErrorCode::Auth => {
            format!("refuses our control key at {addr} (authentication failed: is it the same key file?)")
        }
        ClientError::Daemon(body) if body.code == ErrorCode::Version => {
            format!("speaks another protocol version at {addr}: {}", body.message)
        }
        ClientError::Daemon(body) => format!("refused ({:?}): {}", body.code, body.message),
        ClientError::Protocol(m) => {
            format!("sent something that is not the VNET control protocol at {addr}: {m}")
        }
    }
}

/// Connects to and authenticates with the daemon of `host`, and checks it is that daemon.
pub fn connect(host: &HostDef, key: &Key, timeout: Duration) -> Result<Client, DaemonError> {
    let err = |m: String| DaemonError::new(&host.machine, m);
    let addr = hosts::resolve(host).map_err(err)?;
    let client = Client::connect_timeout(addr, key, timeout)
        .map_err(|e| err(describe(&e, &addr.to_string(), timeout)))?;
    if client.daemon() != host.machine {
        return Err(err(format!(
            "{addr} is served by daemon `{}`, not `{}`",
            client.daemon(),
            host.machine
        )));
    }
    Ok(client)
}

/// Connects to every HOST line's daemon at once. Returns the sessions (in HOST order) or
/// every daemon that could not be reached.
pub fn connect_all(
    hosts: &[HostDef],
    key: &Key,
    timeout: Duration,
) -> Result<Vec<Session>, Vec<DaemonError>> {
    let mut items: Vec<&HostDef> = hosts.iter().collect();
    let results = parallel(&mut items, |host| connect(host, key, timeout));
    let mut sessions = Vec::new();
    let mut errors = Vec::new();
    for (host, result) in hosts.iter().zip(results) {
        match result {
            Ok(client) => sessions.push(Session {
                host: host.clone(),
                client,
            }),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(sessions)
    } else {
        Err(errors)
    }
}

/// Reads one daemon's tables at one generation: status, links, rules, status again, retried
/// if a change slipped in between. Under our lease nobody else can change them, so the
/// second status is skipped (`leased`).
pub fn snapshot(
    session: &mut Session,
    timeout: Duration,
    leased: bool,
) -> Result<Snapshot, DaemonError> {
    let name = session.host.machine.clone();
    let addr = hosts::peer_addr(&session.host);
    let c = &mut session.client;
    let err = |e: ClientError| DaemonError::new(&name, describe(&e, &addr, timeout));
    for _ in 0..8 {
        let before = c.status().map_err(err)?;
        let links = c.list_links().map_err(err)?;
        let rules = c.list_rules().map_err(err)?;
        let after = if leased {
            before.clone()
        } else {
            c.status().map_err(err)?
        };
        if before.generation != after.generation || before.instance != after.instance {
            continue;
        }
        let mut rules: Vec<RuleDef> = rules.into_iter().map(|r| r.rule).collect();
        rules.sort();
        let up = links.iter().map(|l| (l.spec.link.key(), l.up)).collect();
        let security = links
            .iter()
            .filter_map(|l| Some((l.spec.link.key(), l.security.clone()?)))
            .collect();
        let mut links: Vec<LinkSpec> = links.into_iter().map(|l| l.spec).collect();
        links.sort();
        return Ok(Snapshot {
            daemon: name.to_string(),
            instance: after.instance,
            generation: after.generation,
            links,
            up,
            rules,
            lease: after.lease,
            public_key: after.public_key,
            insecure_links: after.insecure_links,
            security,
            underlay: after.underlay,
        });
    }
    Err(DaemonError::new(
        &name,
        "its tables kept changing while being read (another client is changing them)",
    ))
}

/// Snapshots every session at once.
pub fn snapshot_all(
    sessions: &mut [Session],
    timeout: Duration,
    leased: bool,
) -> Result<BTreeMap<String, Snapshot>, Vec<DaemonError>> {
    let results = parallel(sessions, |s| snapshot(s, timeout, leased));
    let mut out = BTreeMap::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(s) => {
                out.insert(s.daemon.clone(), s);
            }
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Connects to every daemon and reads the live state.
pub fn fetch(
    hosts: &[HostDef],
    key: &Key,
    timeout: Duration,
) -> Result<(Vec<Session>, Live), Vec<DaemonError>> {
    let mut sessions = connect_all(hosts, key, timeout)?;
    let snapshots = snapshot_all(&mut sessions, timeout, false)?;
    Ok((sessions, assemble(hosts, snapshots)))
}

/// The state the snapshots add up to. A link is in it when both ends hold the same link
/// (transport and dialer) with each other's address; anything else between declared daemons
/// is a half link; links and rules naming undeclared daemons are foreign.
pub fn assemble(hosts: &[HostDef], snapshots: BTreeMap<String, Snapshot>) -> Live {
    let declared = |m: &str| hosts.iter().find(|h| h.machine == m);
    let mut live = Live {
        state: State {
            hosts: hosts.to_vec(),
            ..State::default()
        },
        ..Live::default()
    };
    // Every end of every link between declared daemons, by pair.
    let mut ends: BTreeMap<LinkKey, Vec<(&str, &LinkSpec)>> = BTreeMap::new();
    for (daemon, snap) in &snapshots {
        for spec in &snap.links {
            let peer = spec.peer_of(daemon).unwrap_or_default();
            if declared(peer).is_none() {
                live.drift.push(format!(
                    "daemon {daemon} has a link to `{peer}`, which no HOST line declares"
                ));
                live.foreign
                    .entry(daemon.clone())
                    .or_default()
                    .links
                    .push(spec.clone());
                continue;
            }
            ends.entry(spec.link.key())
                .or_default()
                .push((daemon, spec));
        }
        for rule in &snap.rules {
            match &rule.target {
                Target::Link { peer } if declared(peer).is_none() => {
                    live.drift.push(format!(
                        "daemon {daemon} has a rule over a link to `{peer}`, which no HOST line declares: {rule}"
                    ));
                    live.foreign
                        .entry(daemon.clone())
                        .or_default()
                        .rules
                        .push(rule.clone());
                }
                _ => {
                    live.state.rules.insert(rule.clone());
                }
            }
        }
    }
    for (key, found) in ends {
        let expected = |daemon: &str, spec: &LinkSpec| {
            let peer = spec.peer_of(daemon).unwrap_or_default();
            declared(peer).is_some_and(|h| hosts::peer_addr(h) == spec.peer_addr)
        };
        let problem = match found.as_slice() {
            [(d1, s1), (d2, s2)] if d1 != d2 => {
                if s1.link != s2.link {
                    Some(format!(
                        "its ends disagree: {d1} has `{}`, {d2} has `{}`",
                        s1.link, s2.link
                    ))
                } else if !expected(d1, s1) || !expected(d2, s2) {
                    let (d, s) = if expected(d1, s1) { (d2, s2) } else { (d1, s1) };
                    Some(format!(
                        "{d} dials it at {}, not at the address its HOST line gives",
                        s.peer_addr
                    ))
                } else {
                    None
                }
            }
            [(d, _)] => Some(format!("it is configured on {d} only")),
            _ => Some("it is configured inconsistently".to_string()),
        };
        let def = found[0].1.link.clone();
        match problem {
            None => {
                live.state.links.insert(key, def);
            }
            Some(why) => {
                live.drift.push(format!("link `{def}` is drift: {why}"));
                live.half_links.push(def);
            }
        }
    }
    live.snapshots = snapshots;
    live
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnet_grammar::ast::Transport;
    use vnet_grammar::model::Match;

    fn host(m: &str) -> HostDef {
        HostDef {
            user: "u".into(),
            machine: m.into(),
            port: 7000,
            iface: "vm".into(),
        }
    }

    fn snap(daemon: &str, links: Vec<LinkSpec>, rules: Vec<RuleDef>) -> Snapshot {
        Snapshot {
            daemon: daemon.into(),
            instance: "i".into(),
            generation: 1,
            links,
            up: BTreeMap::new(),
            rules,
            lease: None,
            public_key: None,
            insecure_links: false,
            security: BTreeMap::new(),
            underlay: None,
        }
    }

    fn spec(def: &LinkDef, peer: &str) -> LinkSpec {
        LinkSpec {
            link: def.clone(),
            peer_addr: format!("{peer}:7000"),
            peer_key: None,
        }
    }

    #[test]
    fn links_on_both_ends_are_links_and_the_rest_is_drift() {
        let ab = LinkDef::new(Transport::Tcp, "a", "a", "b");
        let ac = LinkDef::new(Transport::Udp, "a", "a", "c");
        let ad = LinkDef::new(Transport::Tcp, "a", "a", "d");
        let rule = RuleDef {
            daemon: "a".into(),
            src: Match::Any,
            dst: Match::None,
            target: Target::Link { peer: "z".into() },
        };
        let snaps = BTreeMap::from([
            (
                "a".to_string(),
                snap(
                    "a",
                    vec![spec(&ab, "b"), spec(&ac, "c"), spec(&ad, "d")],
                    vec![rule.clone()],
                ),
            ),
            ("b".to_string(), snap("b", vec![spec(&ab, "a")], vec![])),
            ("c".to_string(), snap("c", vec![], vec![])),
        ]);
        let live = assemble(&[host("a"), host("b"), host("c")], snaps);
        assert_eq!(live.state.links.len(), 1);
        assert!(live.state.links.contains_key(&ab.key()));
        assert_eq!(live.half_links, vec![ac]);
        assert_eq!(live.foreign["a"].links.len(), 1);
        assert_eq!(live.foreign["a"].rules, vec![rule]);
        assert!(live.state.rules.is_empty());
        assert_eq!(live.drift.len(), 3, "{:?}", live.drift);
    }
}
