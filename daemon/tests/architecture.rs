//! The daemon's module rules that a grep can check (ARCHITECTURE.md, "daemon/"): they read
//! the `use` lines and paths of the sources, so breaking a rule fails here, named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every source file of the crate: (path relative to src/, text).
fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&src(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(src())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rel, std::fs::read_to_string(&p).expect("read source"))
        })
        .collect()
}

/// The top-level module a file belongs to (`daemon/session.rs` → `daemon`).
fn module_of(rel: &str) -> String {
    rel.split(['/', '.']).next().unwrap_or_default().to_string()
}

/// The code of a file without its unit tests (they may use anything).
fn production(text: &str) -> &str {
    text.split("#[cfg(test)]").next().unwrap_or(text)
}

/// The top-level modules a file refers to as `crate::NAME`.
fn crate_refs(text: &str) -> BTreeSet<String> {
    production(text)
        .match_indices("crate::")
        .map(|(i, _)| {
            let rest = &text[i + "crate::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            rest[..end].to_string()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

#[test]
fn nothing_imports_the_daemon_module() {
    for (rel, text) in sources() {
        if module_of(&rel) == "daemon" || rel == "lib.rs" || rel == "main.rs" {
            continue;
        }
        assert!(
            !crate_refs(&text).contains("daemon"),
            "{rel} uses crate::daemon: the daemon module is the top, nothing depends on it"
        );
    }
}

#[test]
fn only_the_data_plane_touches_the_fast_path() {
    // The daemon starts it and hands it to the data plane; only the data plane holds it.
    let allowed = ["dataplane", "daemon", "lib", "fastpath"];
    for (rel, text) in sources() {
        let m = module_of(&rel);
        if allowed.contains(&m.as_str()) {
            continue;
        }
        assert!(
            !crate_refs(&text).contains("fastpath"),
            "{rel} uses crate::fastpath: only the data plane owns and voids the fast path"
        );
    }
    for (rel, text) in sources() {
        if module_of(&rel) == "daemon" {
            assert!(
                !production(&text).contains("FastPath::")
                    && !production(&text).contains(".invalidate()"),
                "{rel}: the daemon does not drive the fast path, the data plane does"
            );
        }
    }
}

#[test]
fn the_module_graph_has_no_cycle() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in sources() {
        let m = module_of(&rel);
        if m == "lib" || m == "main" {
            continue;
        }
        let refs: Vec<String> = crate_refs(&text).into_iter().filter(|r| *r != m).collect();
        graph.entry(m).or_default().extend(refs);
    }
    // Depth-first search for a back edge.
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) {
        if done.contains(m) {
            return;
        }
        if let Some(at) = path.iter().position(|p| p == m) {
            panic!("import cycle: {} → {m}", path[at..].join(" → "));
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(m.to_string());
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        visit(m, &graph, &mut Vec::new(), &mut done);
    }
    assert!(
        done.contains("daemon") && done.contains("dataplane"),
        "{graph:?}"
    );
}

#[test]
fn protocol_logic_does_no_io() {
    // The handshake, the link messages and the control tables are state machines and
    // values: no sockets, no files, no runtime, no clock.
    let forbidden = [
        "tokio",
        "std::fs",
        "TcpStream",
        "UdpSocket",
        "Instant::now",
        "random_bytes",
    ];
    for rel in ["link/handshake.rs", "link/msg.rs", "control.rs"] {
        let text = std::fs::read_to_string(src().join(rel)).expect(rel);
        for f in forbidden {
            assert!(
                !production(&text).contains(f),
                "{rel} mentions {f}: protocol logic takes its inputs and returns what to do"
            );
        }
    }
}

#[test]
fn no_production_file_is_over_700_lines() {
    for (rel, text) in sources() {
        let lines = production(&text).lines().count();
        assert!(lines <= 700, "{rel} has {lines} lines of production code");
    }
}

#[test]
fn vnetc_and_the_protocol_crate_do_not_depend_on_the_daemon() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("root manifest");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|d| d.split("\n[").next())
        .unwrap_or_default();
    assert!(deps.contains("vnet-proto"), "{deps}");
    assert!(
        !deps.contains("vnet-daemon"),
        "vnetc depends on the daemon:\n{deps}"
    );
    let proto = std::fs::read_to_string(root.join("proto/Cargo.toml")).expect("proto manifest");
    for heavy in ["tokio", "aya", "tun-rs", "vnet-daemon"] {
        assert!(!proto.contains(heavy), "vnet-proto depends on {heavy}");
    }
}
