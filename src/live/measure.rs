//! `vnetc measure`'s work (SPEC 5.2), callable in-process (`vnetc adapt FILE` uses it):
//! probes between the daemons of a file, scheduled in rounds of disjoint pairs
//! (`vnet_underlay::schedule`) so that no daemon is in two probes at once. For each ordered
//! pair (A, B), B opens a probe socket for a fresh random token and A probes it; the numbers
//! come back as an adaptation problem's `links`.

use super::fetch::{connect_all, Session};
use super::{hosts, DaemonError};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;
use vnet_grammar::model::State;
use vnet_proto::auth::{hex, random_bytes};
use vnet_proto::control::{ErrorCode, ProbeResult};
use vnet_proto::Key;
use vnet_underlay::estimate::{Link, Measurement};
use vnet_underlay::schedule;

/// Which daemon pairs to measure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pairs {
    /// Every ordered pair of the file's daemons.
    All,
    /// Only the pairs the file links (both directions).
    Links,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub pairs: Pairs,
    /// How long each directed probe runs.
    pub duration: Duration,
    /// How long to wait for each daemon to accept a control connection.
    pub connect_timeout: Duration,
}

/// What a measurement gave: the links measured, and one line per pair that gave no number
/// (every echo lost, or no train arrived), which a caller should show.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub measurement: Measurement,
    pub unmeasured: Vec<String>,
}

/// Measures `state`'s daemons. Fails with every daemon that cannot be reached or refused.
pub fn run(state: &State, key: &Key, opts: &Options) -> Result<Outcome, Vec<DaemonError>> {
    let sessions: Vec<Mutex<Session>> = connect_all(&state.hosts, key, opts.connect_timeout)?
        .into_iter()
        .map(Mutex::new)
        .collect();
    let index = |name: &str| state.hosts.iter().position(|h| h.machine == name);
    let rounds = match opts.pairs {
        Pairs::All => schedule::rounds(sessions.len()),
        Pairs::Links => {
            let mut pairs: Vec<(usize, usize)> = state
                .links
                .values()
                .filter_map(|l| Some((index(&l.a)?, index(&l.b)?)))
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect();
            pairs.sort_unstable();
            pairs.dedup();
            schedule::rounds_of(&pairs)
        }
    };
    let mut out = Outcome::default();
    let mut errors = Vec::new();
    for round in rounds {
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = round
                .iter()
                .map(|&(a, b)| {
                    let sessions = &sessions;
                    s.spawn(move || {
                        [(a, b), (b, a)].map(|(from, to)| {
                            probe_pair(&sessions[from], &sessions[to], opts.duration)
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        for r in results {
            match r {
                Ok(Ok(link)) => out.measurement.links.push(link),
                Ok(Err(why)) => out.unmeasured.push(why),
                Err(e) => errors.push(e),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    out.measurement
        .links
        .sort_by(|x, y| (&x.from, &x.to).cmp(&(&y.from, &y.to)));
    Ok(out)
}

fn lock(m: &Mutex<Session>) -> std::sync::MutexGuard<'_, Session> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One directed probe, `from` probing `to`: the link, or why it has no numbers (`Ok(Err)`),
/// or the daemon that failed.
fn probe_pair(
    from: &Mutex<Session>,
    to: &Mutex<Session>,
    duration: Duration,
) -> Result<Result<Link, String>, DaemonError> {
    let token = hex(&random_bytes::<32>());
    let (a, b) = (lock(from).host.clone(), lock(to).host.clone());
    let fail = |host: &str, what: &str, e: &dyn std::fmt::Display| {
        DaemonError::new(host, format!("{what}: {e}"))
    };
    // The probe starts right after the socket opens; a short life keeps the daemon's few probe
    // sockets free for the next rounds (it serves at most 8 at once).
    let ttl = duration + Duration::from_secs(2);
    let served = serve(to, &a.machine, &token, ttl)
        .map_err(|e| fail(&b.machine, "cannot serve a probe", &e))?;
    let addr = reachable(&served, &b).map_err(|e| fail(&b.machine, "probe address", &e))?;
    let r = lock(from)
        .client
        .probe(&b.machine, &addr.to_string(), &token, duration)
        .map_err(|e| fail(&a.machine, &format!("probing {}", b.machine), &e))?;
    Ok(link(&a.machine, &b.machine, &r))
}

/// Asks `to` to open a probe socket for `peer`. A daemon whose probe sockets are all in use
/// answers [`ErrorCode::Busy`]: that is retried for a few seconds, as the earlier rounds'
/// sockets time out.
fn serve(
    to: &Mutex<Session>,
    peer: &str,
    token: &str,
    ttl: Duration,
) -> Result<String, vnet_proto::client::ClientError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match lock(to).client.probe_serve(peer, token, ttl) {
            Err(e) if e.code() == Some(ErrorCode::Busy) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// The probe socket's address as the prober reaches it: a daemon listening on every address
/// answers with an unspecified one, which is its HOST line's address instead.
fn reachable(served: &str, host: &vnet_grammar::model::HostDef) -> Result<SocketAddr, String> {
    let mut addr: SocketAddr = served
        .parse()
        .map_err(|e| format!("`{served}` is not an address: {e}"))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(hosts::resolve(host)?.ip());
    }
    Ok(addr)
}

fn link(from: &str, to: &str, r: &ProbeResult) -> Result<Link, String> {
    match (r.lat_ms, r.bw_mbps) {
        (Some(lat), Some(bw)) => Ok(Link {
            from: from.to_string(),
            to: to.to_string(),
            bw,
            lat,
            loss: r.loss,
        }),
        _ => Err(format!(
            "{from} -> {to}: no measurement ({} of {} echoes and {} of {} train datagrams came back)",
            r.echoes_back, r.echoes_sent, r.train_arrived, r.train_sent
        )),
    }
}
