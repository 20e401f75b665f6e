//! The `.vnet` of `vnetc infer` (SPEC 5.1): the file's desired state plus, for every topology
//! pair whose two daemons are known, differ and have no link yet, a UDP link between them and
//! an exact-source, exact-destination EDGE rule on the source's daemon — the thesis's
//! fast-path links, giving every communicating pair a one-hop path.

use crate::view::PairRate;
use std::fmt::Write;
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{LinkDef, LinkKey, Match, RuleDef, State, Target};

/// The state with the fast-path links and rules added, and what was added.
#[derive(Clone, Debug)]
pub struct FastPaths {
    pub state: State,
    pub links: Vec<LinkDef>,
    pub rules: Vec<RuleDef>,
}

/// Adds a one-hop path for every topology pair that lacks one (see the module's comment).
/// The source's daemon dials, as it is the one with traffic to send.
pub fn fast_paths(base: &State, topology: &[PairRate]) -> FastPaths {
    let mut state = base.clone();
    let mut links = Vec::new();
    let mut rules = Vec::new();
    for pair in topology {
        let Some(dst_daemon) = pair.dst_daemon.as_deref() else {
            continue;
        };
        let src_daemon = pair.src_daemon.as_str();
        if src_daemon == dst_daemon
            || base.host(src_daemon).is_none()
            || base.host(dst_daemon).is_none()
        {
            continue;
        }
        let key = LinkKey::new(src_daemon, dst_daemon);
        if base.links.contains_key(&key) {
            continue;
        }
        if let std::collections::btree_map::Entry::Vacant(slot) = state.links.entry(key) {
            let link = LinkDef::new(Transport::Udp, src_daemon, src_daemon, dst_daemon);
            links.push(slot.insert(link).clone());
        }
        let rule = RuleDef {
            daemon: src_daemon.to_string().into(),
            src: Match::Exact(pair.src),
            dst: Match::Exact(pair.dst),
            target: Target::Link {
                peer: dst_daemon.to_string().into(),
            },
        };
        if state.rules.insert(rule.clone()) {
            rules.push(rule);
        }
    }
    FastPaths {
        state,
        links,
        rules,
    }
}

/// The program `vnetc infer` prints: a header of measured rates as comments, then the state
/// as the canonical program.
pub fn program(proxy: &str, window_ms: u64, paths: &FastPaths, topology: &[PairRate]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Inferred by VTTIF at the Proxy {proxy} over a {} s window: {} communicating pair(s), {} new link(s), {} new rule(s).",
        window_ms as f64 / 1000.0,
        topology.len(),
        paths.links.len(),
        paths.rules.len()
    );
    for p in topology {
        let _ = writeln!(
            out,
            "#   {} -> {}  {} -> {}  {:.3} Mbit/s  {:.0} frames/s  intensity {:.2}",
            p.src,
            p.dst,
            p.src_daemon,
            p.dst_daemon.as_deref().unwrap_or("?"),
            p.bytes_per_s * 8.0 / 1e6,
            p.frames_per_s,
            p.intensity
        );
    }
    out.push_str(&paths.state.to_program());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use vnet_grammar::Mac;

    const STAR: &str = "BEGIN\nHOST u AT p 7000 e0\nHOST u AT a 7000 e1\nHOST u AT b 7000 e2\nADD\n    LINK TCP a a p\n    LINK TCP b b p\n    FORWARD EDGE a ANY NONE a p\n    FORWARD EDGE b ANY NONE b p\n    FORWARD EDGE p ANY 02:00:00:00:00:01 p a\n    FORWARD EDGE p ANY 02:00:00:00:00:02 p b\n    FORWARD INTERFACE a ANY 02:00:00:00:00:01 e1\n    FORWARD INTERFACE b ANY 02:00:00:00:00:02 e2\nEND\n";

    fn pair(s: u8, d: u8, sd: &str, dd: Option<&str>) -> PairRate {
        PairRate {
            src: Mac([2, 0, 0, 0, 0, s]),
            dst: Mac([2, 0, 0, 0, 0, d]),
            src_daemon: sd.into(),
            dst_daemon: dd.map(Into::into),
            bytes_per_s: 125_000.0,
            frames_per_s: 100.0,
            intensity: 1.0,
        }
    }

    #[test]
    fn pairs_get_one_hop_paths_that_check_clean() {
        let base = vnet_grammar::analyze(STAR).state;
        let topology = [
            pair(1, 2, "a", Some("b")),
            pair(2, 1, "b", Some("a")),
            pair(1, 3, "a", None), // destination never seen: nothing to add
            pair(1, 1, "a", Some("a")), // same daemon
            pair(1, 2, "a", Some("p")), // already linked
        ];
        let paths = fast_paths(&base, &topology);
        assert_eq!(paths.links.len(), 1, "{:?}", paths.links);
        assert_eq!(paths.rules.len(), 2);
        let text = program("p", 2000, &paths, &topology);
        let analysis = vnet_grammar::analyze(&text);
        assert!(!analysis.has_errors(), "{text}\n{:?}", analysis.diagnostics);
        assert_eq!(analysis.state, paths.state);
        // Every pair with two known, distinct daemons now leaves its daemon on a direct link.
        let route = analysis
            .state
            .rules_of("a")
            .find(|r| {
                r.src == Match::Exact(Mac([2, 0, 0, 0, 0, 1]))
                    && r.dst == Match::Exact(Mac([2, 0, 0, 0, 0, 2]))
            })
            .expect("a's exact rule");
        assert_eq!(route.target, Target::Link { peer: "b".into() });
    }
}
