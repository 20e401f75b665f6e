//! Topology shapes for scale benchmarks and the flow analysis' cross-checks: each one builds a
//! clean program (adversarial ones aside) of about the number of rules asked for, so that the
//! checker's cost can be compared across shapes at equal file sizes.

use super::{Field, Program, Stmt, BROADCAST};

/// A topology shape. [`Shape::ALL`] lists them in the order the benchmarks print them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// The thesis star with source-qualified defaults (Figure 2) and fast paths: [`super::generate`].
    StarSrc,
    /// A star whose hosts each serve 25 VMs and send every other frame to the Proxy with one
    /// `ANY`-source default; the Proxy has an exact rule per VM.
    StarAny,
    /// A ring: unicast clockwise to the VM's daemon, broadcasts forwarded per source clockwise
    /// (and delivered on the way) until the daemon before the sender's.
    Ring,
    /// A line of daemons: unicast towards the VM's daemon, broadcasts per source outwards both
    /// ways from the sender's daemon.
    Bus,
    /// Every daemon linked to every other: unicast straight to the VM's daemon, a VM's
    /// broadcast fanned out to every other daemon.
    Mesh,
    /// A tree of daemons (eight children each) with two rules each: its VM, and an `ANY`-source
    /// default to the parent.
    ManySmall,
    /// Four daemons, fully linked, thousands of VMs each, with a source-qualified default per VM.
    FewLarge,
    /// A two-level broadcast tree: the root fans broadcasts out to (up to) 50 daemons, each to
    /// its leaves, with Figure 2 rules on the leaves.
    Fanout,
    /// Adversarial: a line of daemons each sending everything to the next (one path as deep as
    /// the file is long).
    Chain,
    /// Adversarial: a ring of daemons with one rule each, `ANY NONE` to the next: one loop
    /// through every daemon.
    Singles,
    /// Adversarial: two daemons; the first sends each VM's frames to the second for every
    /// destination but its own partner VM (`s NOT d`), the second delivers every partner. Each
    /// source decides on its own for every destination (sources times destinations classes),
    /// and each rule matches every destination but one: the walk and the loop search stop at
    /// their work limits, in bounded time.
    Excluding,
    /// Adversarial: the line of `chain`, whose links a last DELETE block removes one by one
    /// while every rule still uses its link: each deletion is a V110, and the fold must find a
    /// link's rules without reading them all.
    Deletes,
}

impl Shape {
    pub const ALL: [Shape; 12] = [
        Shape::StarSrc,
        Shape::StarAny,
        Shape::Ring,
        Shape::Bus,
        Shape::Mesh,
        Shape::ManySmall,
        Shape::FewLarge,
        Shape::Fanout,
        Shape::Chain,
        Shape::Singles,
        Shape::Excluding,
        Shape::Deletes,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::StarSrc => "star-src",
            Shape::StarAny => "star-any",
            Shape::Ring => "ring",
            Shape::Bus => "bus",
            Shape::Mesh => "mesh",
            Shape::ManySmall => "many-small",
            Shape::FewLarge => "few-large",
            Shape::Fanout => "fanout",
            Shape::Chain => "chain",
            Shape::Singles => "singles",
            Shape::Excluding => "excluding",
            Shape::Deletes => "deletes",
        }
    }

    pub fn from_name(name: &str) -> Option<Shape> {
        Shape::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the program is meant to be clean (the adversarial shapes are not).
    pub fn clean(self) -> bool {
        !matches!(self, Shape::Singles | Shape::Deletes)
    }

    /// A program of this shape with about `rules` rules (at least a few daemons' worth).
    pub fn generate(self, rules: usize) -> Program {
        let rules = rules.max(8);
        match self {
            Shape::StarSrc => super::generate(super::Params {
                daemons: (rules / 50).max(3),
                rules,
                vms_per_host: 1,
            }),
            Shape::StarAny => star_any(rules / 51 + 1, 25),
            Shape::Ring => ring(isqrt(rules / 6).max(3), 2, true),
            Shape::Bus => ring(isqrt(rules / 6).max(3), 2, false),
            Shape::Mesh => mesh(isqrt(rules / 2).max(3)),
            Shape::ManySmall => many_small(rules / 2 + 1),
            Shape::FewLarge => few_large(4, rules / 19 + 1),
            Shape::Fanout => {
                let mids = isqrt(rules / 6).clamp(2, 50);
                fanout(mids, rules / (6 * mids) + 1)
            }
            Shape::Chain => chain(rules / 2 + 1, false),
            Shape::Singles => chain(rules, true),
            Shape::Excluding => excluding(rules / 2),
            Shape::Deletes => {
                let mut p = chain(rules / 2 + 1, false);
                p.deleted = p.links.clone();
                p
            }
        }
    }
}

fn isqrt(n: usize) -> usize {
    (n as f64).sqrt() as usize
}

fn daemon(i: usize) -> String {
    format!("d{i:05}")
}

/// The MAC of VM number `i` (up to 2^24 of them).
fn vm(i: usize) -> String {
    format!(
        "00:50:56:{:02x}:{:02x}:{:02x}",
        i >> 16 & 0xff,
        i >> 8 & 0xff,
        i & 0xff
    )
}

fn exact(mac: String) -> Field {
    Field::Exact(mac)
}

fn bcast() -> Field {
    Field::Exact(BROADCAST.into())
}

/// Statements for daemons named by [`daemon`], each serving `vmnet1`.
struct Builder {
    p: Program,
}

impl Builder {
    fn new(daemons: usize) -> Builder {
        let mut p = Program::default();
        for i in 0..daemons {
            p.hosts.push(Stmt::Host {
                machine: daemon(i),
                iface: "vmnet1".into(),
            });
        }
        Builder { p }
    }

    fn link(&mut self, a: usize, b: usize) {
        self.p.links.push(Stmt::Link {
            dialer: daemon(a),
            a: daemon(a),
            b: daemon(b),
            udp: false,
        });
    }

    fn edge(&mut self, d: usize, src: Field, dst: Field, peer: usize) {
        self.p.rules.push(Stmt::Edge {
            daemon: daemon(d),
            src,
            dst,
            peer: daemon(peer),
        });
    }

    fn iface(&mut self, d: usize, src: Field, dst: Field) {
        self.p.rules.push(Stmt::Interface {
            daemon: daemon(d),
            src,
            dst,
            iface: "vmnet1".into(),
        });
    }
}

/// Daemon 0 is the Proxy; every host serves `vms` VMs and defaults to the Proxy from any source.
fn star_any(daemons: usize, vms: usize) -> Program {
    let mut b = Builder::new(daemons.max(2));
    let hosts = daemons.max(2) - 1;
    for h in 1..=hosts {
        b.link(h, 0);
        b.edge(h, Field::Any, Field::None, 0);
        for v in 0..vms {
            b.iface(h, Field::Any, exact(vm(h * vms + v)));
        }
    }
    for h in 1..=hosts {
        for v in 0..vms {
            b.edge(0, Field::Any, exact(vm(h * vms + v)), h);
        }
    }
    b.p
}

/// `n` daemons with `vms` VMs each, on a ring (`closed`) or a line. Unicast goes the short way
/// on a line and clockwise on a ring; a broadcast from a VM is delivered at every other daemon
/// and forwarded away from the sender's daemon, per source, until it has reached them all.
fn ring(n: usize, vms: usize, closed: bool) -> Program {
    let mut b = Builder::new(n);
    for i in 0..n - 1 {
        b.link(i, i + 1);
    }
    if closed {
        b.link(n - 1, 0);
    }
    let owner = |v: usize| v / vms;
    // The daemon after `i` on the way from the owner `o` outwards (clockwise on a ring).
    let onward = |i: usize, o: usize| -> Option<usize> {
        if closed {
            let next = (i + 1) % n;
            (next != o).then_some(next)
        } else if i > o {
            (i + 1 < n).then_some(i + 1)
        } else {
            i.checked_sub(1)
        }
    };
    for i in 0..n {
        for v in 0..n * vms {
            let o = owner(v);
            if o == i {
                b.iface(i, Field::Any, exact(vm(v)));
                let ways = if closed {
                    vec![(i + 1) % n]
                } else {
                    [i.checked_sub(1), (i + 1 < n).then_some(i + 1)]
                        .into_iter()
                        .flatten()
                        .collect()
                };
                for w in ways {
                    b.edge(i, exact(vm(v)), bcast(), w);
                }
                continue;
            }
            let toward = if closed || o > i { (i + 1) % n } else { i - 1 };
            b.edge(i, Field::Any, exact(vm(v)), toward);
            b.iface(i, exact(vm(v)), bcast());
            if let Some(next) = onward(i, o) {
                b.edge(i, exact(vm(v)), bcast(), next);
            }
        }
    }
    b.p
}

/// `n` daemons, one VM each, every pair linked.
fn mesh(n: usize) -> Program {
    let mut b = Builder::new(n);
    for i in 0..n {
        for j in i + 1..n {
            b.link(i, j);
        }
    }
    for i in 0..n {
        b.iface(i, Field::Any, bcast());
        for v in 0..n {
            if v == i {
                b.iface(i, Field::Any, exact(vm(v)));
            } else {
                b.edge(i, Field::Any, exact(vm(v)), v);
                b.edge(i, exact(vm(i)), bcast(), v);
            }
        }
    }
    b.p
}

/// A tree, eight children per daemon; the root's default goes into its LAN.
fn many_small(n: usize) -> Program {
    let mut b = Builder::new(n.max(2));
    for i in 0..n.max(2) {
        b.iface(i, Field::Any, exact(vm(i)));
        match i {
            0 => b.iface(0, Field::Any, Field::None),
            _ => {
                b.link(i, (i - 1) / 8);
                b.edge(i, Field::Any, Field::None, (i - 1) / 8);
            }
        }
    }
    b.p
}

/// `n` daemons fully linked, `vms` VMs each; the VMs' other frames go to daemon 0's LAN.
fn few_large(n: usize, vms: usize) -> Program {
    let mut b = Builder::new(n);
    for i in 0..n {
        for j in i + 1..n {
            b.link(i, j);
        }
    }
    b.iface(0, Field::Any, Field::None);
    for i in 0..n {
        for v in 0..n * vms {
            let o = v / vms;
            match o == i {
                true => b.iface(i, Field::Any, exact(vm(v))),
                false => b.edge(i, Field::Any, exact(vm(v)), o),
            }
        }
        if i != 0 {
            for v in i * vms..(i + 1) * vms {
                b.edge(i, exact(vm(v)), Field::None, 0);
            }
        }
    }
    b.p
}

/// Daemon 0 is the root, 1..=mids its children, then `leaves` leaves under each mid, one VM
/// each with the Figure 2 rules.
fn fanout(mids: usize, leaves: usize) -> Program {
    let mut b = Builder::new(1 + mids + mids * leaves);
    let leaf = |m: usize, l: usize| 1 + mids + m * leaves + l;
    b.iface(0, Field::Any, Field::None);
    for m in 0..mids {
        let mid = 1 + m;
        b.link(mid, 0);
        b.edge(0, Field::Any, bcast(), mid);
        b.edge(mid, Field::Any, bcast(), 0);
        b.edge(mid, Field::Any, Field::None, 0);
        for l in 0..leaves {
            let (d, mac) = (leaf(m, l), vm(leaf(m, l)));
            b.link(d, mid);
            b.edge(0, Field::Any, exact(mac.clone()), mid);
            b.edge(mid, Field::Any, exact(mac.clone()), d);
            b.edge(mid, Field::Any, bcast(), d);
            b.iface(d, Field::Any, exact(mac.clone()));
            b.iface(d, Field::Not(mac.clone()), bcast());
            b.edge(d, exact(mac), Field::None, mid);
        }
    }
    b.p
}

/// A line of `n` daemons, each sending everything on to the next, the last into its LAN; as a
/// ring (`closed`), one rule per daemon and the last sends back to the first.
fn chain(n: usize, closed: bool) -> Program {
    let n = n.max(3);
    let mut b = Builder::new(n);
    for i in 0..n - 1 {
        b.link(i, i + 1);
    }
    if closed {
        b.link(n - 1, 0);
    }
    for i in 0..n {
        if !closed {
            b.iface(i, Field::Any, exact(vm(i)));
        }
        match (i + 1 < n, closed) {
            (true, _) => b.edge(i, Field::Any, Field::None, i + 1),
            (false, true) => b.edge(i, Field::Any, Field::None, 0),
            (false, false) => b.iface(i, Field::Any, Field::None),
        }
    }
    b.p
}

/// Daemon 0 sends VM `i`'s frames to daemon 1 for every destination but VM `n + i`; daemon 1
/// serves VMs `n..2n`.
fn excluding(n: usize) -> Program {
    let n = n.max(2);
    let mut b = Builder::new(2);
    b.link(0, 1);
    for i in 0..n {
        b.edge(0, exact(vm(i)), Field::Not(vm(n + i)), 1);
    }
    for i in 0..n {
        b.iface(1, Field::Any, exact(vm(n + i)));
    }
    b.p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_is_clean_or_adversarial_and_near_its_rule_count() {
        for shape in Shape::ALL {
            let program = shape.generate(3000);
            let count = program.rule_count();
            assert!((1500..=4500).contains(&count), "{shape:?}: {count} rules");
            let analysis = crate::analyze(&program.to_vnet());
            if shape.clean() {
                assert!(
                    analysis.diagnostics.is_empty(),
                    "{shape:?}: {:#?}",
                    &analysis.diagnostics[..analysis.diagnostics.len().min(3)]
                );
            } else {
                assert!(!analysis.diagnostics.is_empty(), "{shape:?}");
            }
            assert_eq!(Shape::from_name(shape.name()), Some(shape));
        }
    }
}
