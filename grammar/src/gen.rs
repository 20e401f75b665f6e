//! A generator of realistic, clean `.vnet` programs for benchmarks and scale tests (not part
//! of the library's API).
//!
//! The shape is the thesis's: a resilient star of hosts around the Proxy (the first HOST), one
//! or more VMs per host with the Figure 2 rules, the Proxy forwarding to every VM and
//! broadcasting to every host, then fast-path links between hosts (each host linked to its
//! next neighbours) with EDGE rules by exact destination until the rule count is reached.
//! [`Shape`] builds other topologies (rings, meshes, trees, adversarial ones) of a given size.

use std::fmt::Write;

mod shapes;
pub use shapes::Shape;

/// What to generate.
#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Daemons, the Proxy included (at least 2).
    pub daemons: usize,
    /// Rules wanted; the star alone needs about 5 per host, so fewer gives just the star.
    pub rules: usize,
    /// VMs on each host (at least 1); one gives exactly thesis Figure 2.
    pub vms_per_host: usize,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            daemons: 2000,
            rules: 100_000,
            vms_per_host: 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Field {
    Any,
    None,
    Not(String),
    Exact(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stmt {
    Host {
        machine: String,
        iface: String,
    },
    Link {
        dialer: String,
        a: String,
        b: String,
        udp: bool,
    },
    Edge {
        daemon: String,
        src: Field,
        dst: Field,
        peer: String,
    },
    Interface {
        daemon: String,
        src: Field,
        dst: Field,
        iface: String,
    },
}

/// A generated program, as statements in file order.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub hosts: Vec<Stmt>,
    pub links: Vec<Stmt>,
    pub rules: Vec<Stmt>,
    /// Statements of a last DELETE block (none but in an adversarial shape).
    pub deleted: Vec<Stmt>,
}

const PROXY: &str = "proxy";
const BROADCAST: &str = "ff:ff:ff:ff:ff:ff";
const PORT: u16 = 5000;

fn host_name(i: usize) -> String {
    format!("host{i:04}")
}

fn vm_mac(host: usize, vm: usize) -> String {
    let id = (host << 4 | vm) as u32;
    format!(
        "00:50:56:{:02x}:{:02x}:{:02x}",
        id >> 16 & 0xff,
        id >> 8 & 0xff,
        id & 0xff
    )
}

pub fn generate(params: Params) -> Program {
    let hosts = params.daemons.max(2) - 1;
    let vms = params.vms_per_host.clamp(1, 16);
    let mut p = Program::default();
    p.hosts.push(Stmt::Host {
        machine: PROXY.into(),
        iface: "eth0".into(),
    });
    for h in 0..hosts {
        p.hosts.push(Stmt::Host {
            machine: host_name(h),
            iface: "vmnet1".into(),
        });
        p.links.push(Stmt::Link {
            dialer: host_name(h),
            a: host_name(h),
            b: PROXY.into(),
            udp: false,
        });
        host_rules(&mut p.rules, h, vms);
    }
    proxy_rules(&mut p.rules, hosts, vms);
    fast_paths(&mut p, hosts, vms, params.rules);
    p
}

/// Thesis Figure 2 on each host: its VMs' frames and other daemons' broadcasts go into the
/// interface, the VMs' other frames to the Proxy by the default rule. With several VMs a VM's
/// own broadcast needs an exact rule to the Proxy, because `NOT vm` no longer covers the rest.
fn host_rules(rules: &mut Vec<Stmt>, h: usize, vms: usize) {
    let daemon = host_name(h);
    let iface = |src: Field, dst: Field| Stmt::Interface {
        daemon: daemon.clone(),
        src,
        dst,
        iface: "vmnet1".into(),
    };
    let to_proxy = |src: Field, dst: Field| Stmt::Edge {
        daemon: daemon.clone(),
        src,
        dst,
        peer: PROXY.into(),
    };
    if vms == 1 {
        let vm = vm_mac(h, 0);
        rules.push(iface(
            Field::Not(vm.clone()),
            Field::Exact(BROADCAST.into()),
        ));
        rules.push(iface(Field::Any, Field::Exact(vm.clone())));
        rules.push(to_proxy(Field::Exact(vm), Field::None));
        return;
    }
    rules.push(iface(Field::Any, Field::Exact(BROADCAST.into())));
    for v in 0..vms {
        let vm = vm_mac(h, v);
        rules.push(iface(Field::Any, Field::Exact(vm.clone())));
        rules.push(to_proxy(
            Field::Exact(vm.clone()),
            Field::Exact(BROADCAST.into()),
        ));
        rules.push(to_proxy(Field::Exact(vm), Field::None));
    }
}

/// The Proxy sends each VM's frames to its host, broadcasts to every host and its LAN, and
/// everything else to its LAN.
fn proxy_rules(rules: &mut Vec<Stmt>, hosts: usize, vms: usize) {
    let edge = |dst: String, h: usize| Stmt::Edge {
        daemon: PROXY.into(),
        src: Field::Any,
        dst: Field::Exact(dst),
        peer: host_name(h),
    };
    for h in 0..hosts {
        for v in 0..vms {
            rules.push(edge(vm_mac(h, v), h));
        }
        rules.push(edge(BROADCAST.into(), h));
    }
    for dst in [Field::Exact(BROADCAST.into()), Field::None] {
        rules.push(Stmt::Interface {
            daemon: PROXY.into(),
            src: Field::Any,
            dst,
            iface: "eth0".into(),
        });
    }
}

/// Links each host to its next neighbours (offset 1, 2, …, wrapping round) and routes the
/// neighbours' VMs over them, until `target` rules exist.
fn fast_paths(p: &mut Program, hosts: usize, vms: usize, target: usize) {
    let max_offset = hosts / 2;
    for offset in 1..=max_offset {
        for a in 0..hosts {
            let b = (a + offset) % hosts;
            // With an even count the last offset meets every pair from both ends.
            if 2 * offset == hosts && a > b {
                continue;
            }
            if p.rules.len() >= target {
                return;
            }
            p.links.push(Stmt::Link {
                dialer: host_name(a),
                a: host_name(a),
                b: host_name(b),
                udp: true,
            });
            for (from, to) in [(a, b), (b, a)] {
                for v in 0..vms {
                    if p.rules.len() >= target {
                        return;
                    }
                    p.rules.push(Stmt::Edge {
                        daemon: host_name(from),
                        src: Field::Any,
                        dst: Field::Exact(vm_mac(to, v)),
                        peer: host_name(to),
                    });
                }
            }
        }
    }
}

impl Field {
    fn vnet(&self, out: &mut String) {
        match self {
            Field::Any => out.push_str("ANY"),
            Field::None => out.push_str("NONE"),
            Field::Not(mac) => {
                out.push_str("NOT ");
                out.push_str(mac);
            }
            Field::Exact(mac) => out.push_str(mac),
        }
    }

    fn json(&self) -> String {
        match self {
            Field::Any => r#"{"kind":"any"}"#.to_string(),
            Field::None => r#"{"kind":"none"}"#.to_string(),
            Field::Not(mac) => format!(r#"{{"kind":"not","mac":"{mac}"}}"#),
            Field::Exact(mac) => format!(r#"{{"kind":"exact","mac":"{mac}"}}"#),
        }
    }
}

impl Program {
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// The program as `.vnet` text, laid out as `vnetc fmt` writes it.
    pub fn to_vnet(&self) -> String {
        let mut out =
            String::with_capacity(64 * (self.hosts.len() + self.links.len() + self.rules.len()));
        out.push_str("# Generated by `cargo run -p vnet-grammar --example gen`.\nBEGIN\n");
        for stmt in &self.hosts {
            if let Stmt::Host { machine, iface } = stmt {
                let _ = writeln!(out, "HOST vnet AT {machine} {PORT} {iface}");
            }
        }
        out.push_str("\nADD\n");
        for stmt in self.links.iter().chain(&self.rules) {
            out.push_str("    ");
            stmt.vnet(&mut out);
            out.push('\n');
        }
        if !self.deleted.is_empty() {
            out.push_str("\nDELETE\n");
        }
        for stmt in &self.deleted {
            out.push_str("    ");
            stmt.vnet(&mut out);
            out.push('\n');
        }
        out.push_str("END\n");
        out
    }

    /// The same statements as a JSON array of objects (for comparing with a JSON parser).
    pub fn to_json(&self) -> String {
        let mut out = String::from("[\n");
        let all: Vec<&Stmt> = self
            .hosts
            .iter()
            .chain(&self.links)
            .chain(&self.rules)
            .chain(&self.deleted)
            .collect();
        for (i, stmt) in all.iter().enumerate() {
            out.push_str(&stmt.json());
            out.push_str(if i + 1 < all.len() { ",\n" } else { "\n" });
        }
        out.push_str("]\n");
        out
    }
}

impl Stmt {
    fn vnet(&self, out: &mut String) {
        match self {
            Stmt::Host { machine, iface } => {
                let _ = write!(out, "HOST vnet AT {machine} {PORT} {iface}");
            }
            Stmt::Link { dialer, a, b, udp } => {
                let _ = write!(
                    out,
                    "LINK {} {dialer} {a} {b}",
                    if *udp { "UDP" } else { "TCP" }
                );
            }
            Stmt::Edge {
                daemon,
                src,
                dst,
                peer,
            } => {
                let _ = write!(out, "FORWARD EDGE {daemon} ");
                src.vnet(out);
                out.push(' ');
                dst.vnet(out);
                let _ = write!(out, " {daemon} {peer}");
            }
            Stmt::Interface {
                daemon,
                src,
                dst,
                iface,
            } => {
                let _ = write!(out, "FORWARD INTERFACE {daemon} ");
                src.vnet(out);
                out.push(' ');
                dst.vnet(out);
                let _ = write!(out, " {iface}");
            }
        }
    }

    fn json(&self) -> String {
        match self {
            Stmt::Host { machine, iface } => format!(
                r#"{{"stmt":"host","user":"vnet","machine":"{machine}","port":{PORT},"interface":"{iface}"}}"#
            ),
            Stmt::Link { dialer, a, b, udp } => format!(
                r#"{{"stmt":"link","transport":"{}","dialer":"{dialer}","a":"{a}","b":"{b}"}}"#,
                if *udp { "udp" } else { "tcp" }
            ),
            Stmt::Edge {
                daemon,
                src,
                dst,
                peer,
            } => format!(
                r#"{{"stmt":"rule","kind":"edge","daemon":"{daemon}","src":{},"dst":{},"hop":["{daemon}","{peer}"]}}"#,
                src.json(),
                dst.json()
            ),
            Stmt::Interface {
                daemon,
                src,
                dst,
                iface,
            } => format!(
                r#"{{"stmt":"rule","kind":"interface","daemon":"{daemon}","src":{},"dst":{},"interface":"{iface}"}}"#,
                src.json(),
                dst.json()
            ),
        }
    }
}

/// The editor benchmarks' program (`lsp/benches/latency.rs`, `examples/edit_cost.rs`) of
/// `lines` lines: 100 daemons in a star around the Proxy, each with its VMs' MACs delivered
/// locally and routed from the Proxy, a comment on every other line; it has no diagnostics.
pub fn editor_program(lines_wanted: usize) -> String {
    let daemons = 100;
    let mut lines = vec![
        "# A large overlay for the latency benchmark.".to_string(),
        "BEGIN".to_string(),
    ];
    for d in 0..daemons {
        lines.push(format!("HOST vnet AT node{d} 5000 tap{d}"));
    }
    lines.push(String::new());
    lines.push("ADD".to_string());
    for d in 1..daemons {
        lines.push(format!("    LINK TCP node{d} node{d} node0"));
    }
    let mut n = 0u32;
    while lines.len() < lines_wanted.saturating_sub(1) {
        let d = (n as usize % (daemons - 1)) + 1;
        let mac = format!(
            "02:00:{:02x}:{:02x}:{:02x}:01",
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            n & 0xff
        );
        lines.push(format!(
            "    FORWARD INTERFACE node{d} ANY {mac} tap{d} # VM {n}"
        ));
        lines.push(format!("    FORWARD EDGE node0 ANY {mac} node0 node{d}"));
        n += 1;
    }
    lines.truncate(lines_wanted.saturating_sub(1));
    lines.push("END".to_string());
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

/// The line of [`editor_program`] the editor benchmarks type into: a FORWARD INTERFACE rule
/// with a comment (`INTERFACE` starts at column 12).
pub const EDITOR_RULE_LINE: usize = 3 + 100 + 1 + 99 + 10;

/// The line of [`editor_program`] whose LINK the editor benchmarks rename
/// (`LINK TCP node51 node51 node0`, the machine name starts at column 13).
pub const EDITOR_LINK_LINE: usize = 3 + 100 + 1 + 50;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_programs_are_clean_and_hit_the_rule_count() {
        for (vms, rules) in [(1, 150), (3, 300)] {
            let program = generate(Params {
                daemons: 12,
                rules,
                vms_per_host: vms,
            });
            assert_eq!(program.rule_count(), rules);
            let text = program.to_vnet();
            let analysis = crate::analyze(&text);
            assert!(
                analysis.diagnostics.is_empty(),
                "{vms} VMs: {:#?}",
                analysis.diagnostics
            );
            assert_eq!(analysis.state.rules.len(), rules);
        }
    }
}
