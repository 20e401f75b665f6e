//! VTTIF from vnetc (SPEC 5.1): telling every daemon who the Proxy is, and asking the Proxy
//! what the application's topology is. The answers are computed by the Proxy's
//! `vnet_vttif::View`; here they are only fetched, and turned into `.vnet` by
//! `vnet_vttif::infer`. `vnetc infer` and `vnetc adapt` call [`query`].

use super::fetch::{self, describe, Session};
use super::{hosts, parallel, DaemonError};
use serde::Serialize;
use std::time::Duration;
use vnet_grammar::model::{HostDef, State};
use vnet_proto::control::ProxySpec;
use vnet_proto::{Client, Key};
use vnet_vttif::Answer;

/// The Proxy's answer and who gave it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Inferred {
    /// The Proxy's daemon name (the first HOST line).
    pub proxy: String,
    #[serde(flatten)]
    pub answer: Answer,
}

/// The Proxy of a file: its first HOST line (SPEC 4).
pub fn proxy_of(hosts: &[HostDef]) -> Result<&HostDef, DaemonError> {
    hosts
        .first()
        .ok_or_else(|| DaemonError::new("(none)", "the file declares no HOST, so no Proxy"))
}

/// What every daemon of a file is told: the first HOST line is the Proxy; every HOST may
/// report to it.
pub fn proxy_spec(hosts: &[HostDef]) -> Result<ProxySpec, DaemonError> {
    let proxy = proxy_of(hosts)?;
    Ok(ProxySpec {
        name: proxy.machine.to_string(),
        addr: hosts::peer_addr(proxy),
        members: hosts.iter().map(|h| h.machine.to_string()).collect(),
    })
}

/// Tells every session's daemon who the Proxy is (`vnetc apply`). Idempotent; returns how
/// many daemons changed, or every daemon that refused or failed.
pub fn tell_proxy(sessions: &mut [Session], timeout: Duration) -> Result<usize, Vec<DaemonError>> {
    let hosts: Vec<HostDef> = sessions.iter().map(|s| s.host.clone()).collect();
    let spec = proxy_spec(&hosts).map_err(|e| vec![e])?;
    let results = parallel(sessions, |s| {
        let addr = hosts::peer_addr(&s.host);
        s.client
            .set_proxy(spec.clone())
            .map_err(|e| DaemonError::new(&s.host.machine, describe(&e, &addr, timeout)))
    });
    let mut changed = 0;
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(c) => changed += usize::from(c),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(changed)
    } else {
        Err(errors)
    }
}

/// Connects to the Proxy of `hosts`.
pub fn connect_proxy(
    hosts: &[HostDef],
    key: &Key,
    timeout: Duration,
) -> Result<(String, Client), DaemonError> {
    let proxy = proxy_of(hosts)?;
    let client = fetch::connect(proxy, key, timeout)?;
    Ok((proxy.machine.to_string(), client))
}

/// One question to a connected Proxy.
pub fn ask(
    client: &mut Client,
    proxy: &str,
    window: Duration,
    threshold: f64,
) -> Result<Inferred, DaemonError> {
    let answer = client
        .infer(window.as_millis() as u64, threshold)
        .map_err(|e| DaemonError::new(proxy, describe(&e, proxy, Duration::ZERO)))?;
    Ok(Inferred {
        proxy: proxy.to_string(),
        answer,
    })
}

/// The Proxy's answer for the daemons of `hosts` (the library entry of `vnetc infer`, for
/// callers in this process such as `vnetc adapt`).
pub fn query(
    hosts: &[HostDef],
    key: &Key,
    timeout: Duration,
    window: Duration,
    threshold: f64,
) -> Result<Inferred, DaemonError> {
    check_query(window, threshold).map_err(|m| DaemonError::new("(query)", m))?;
    let (proxy, mut client) = connect_proxy(hosts, key, timeout)?;
    ask(&mut client, &proxy, window, threshold)
}

/// The bounds SPEC 5.1 and the view put on a question.
pub fn check_query(window: Duration, threshold: f64) -> Result<(), String> {
    let ms = window.as_millis() as u64;
    if !(vnet_vttif::BUCKET_MS..=vnet_vttif::MAX_WINDOW_MS).contains(&ms) {
        return Err(format!(
            "--window {ms}ms: it must be between {}ms and {}s",
            vnet_vttif::BUCKET_MS,
            vnet_vttif::MAX_WINDOW_MS / 1000
        ));
    }
    if !(0.0..=1.0).contains(&threshold) {
        return Err(format!(
            "--threshold {threshold}: it must be between 0 and 1"
        ));
    }
    Ok(())
}

/// `vnetc infer`'s `.vnet`: the file's desired state plus a one-hop path for every inferred
/// pair that lacks one, with the measured rates as comments (SPEC 5.1).
pub fn program(desired: &State, inferred: &Inferred) -> String {
    let topology = &inferred.answer.topology;
    let paths = vnet_vttif::infer::fast_paths(desired, topology);
    vnet_vttif::infer::program(&inferred.proxy, inferred.answer.window_ms, &paths, topology)
}
