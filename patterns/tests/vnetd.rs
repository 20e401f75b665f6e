//! Two user-space VMs on the `dgram` interfaces of two real vnetd daemons joined by a UDP
//! overlay link: the way `vnetc demo` runs Patterns. The test needs the workspace's `vnetd`
//! binary (built by `cargo build` or `cargo test --workspace`); it skips, saying why, when
//! it is missing.

mod common;

use common::program;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{LinkDef, Match, RuleDef, Target};
use vnet_grammar::Mac;
use vnet_patterns::vm::device::Attachment;
use vnet_patterns::vm::{mac_for, Nic};
use vnet_patterns::{run_vm, Operation, Report};
use vnet_proto::{Client, Key, LinkSpec};

const KEY: &[u8] = b"patterns-test-key-0123456789abcdef";

fn vnetd_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VNETD") {
        return Some(PathBuf::from(p));
    }
    // target/debug/deps/vnetd-HASH -> target/debug/vnetd
    let exe = std::env::current_exe().ok()?;
    let p = exe.parent()?.parent()?.join("vnetd");
    p.exists().then_some(p)
}

/// A vnetd at 127.78.0.HOST:7000 with interface `vm` = dgram at port 6000 whose peer is
/// the VM at port 6001; killed, and its directory removed, on drop.
struct Daemon {
    name: String,
    addr: SocketAddr,
    dir: PathBuf,
    child: Child,
}

impl Daemon {
    fn start(bin: &PathBuf, host: u8) -> Daemon {
        let name = format!("h{host}");
        let ip = format!("127.78.0.{host}");
        let dir =
            std::env::temp_dir().join(format!("patterns-vnetd-{}-{host}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("key"), KEY).expect("key");
        let log = std::fs::File::create(dir.join("log")).expect("log");
        let child = Command::new(bin)
            .args(["--name", &name, "--listen", &format!("{ip}:7000")])
            .arg("--key-file")
            .arg(dir.join("key"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .args([
                "--fresh",
                "--no-fast-path",
                "--iface",
                &format!("vm=dgram:{ip}:6000,{ip}:6001"),
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start vnetd");
        let d = Daemon {
            name,
            addr: format!("{ip}:7000").parse().expect("addr"),
            dir,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while d.client_once().is_none() {
            assert!(
                Instant::now() < deadline,
                "vnetd did not come up: {}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn client_once(&self) -> Option<Client> {
        let key = Key::from_bytes(KEY).expect("key");
        Client::connect_timeout(self.addr, &key, Duration::from_millis(500)).ok()
    }

    fn client(&self) -> Client {
        self.client_once().expect("control connection")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn rule(&self, src: Match, dst: Match, target: Target) {
        let rule = RuleDef {
            daemon: self.name.clone().into(),
            src,
            dst,
            target,
        };
        self.client().add_rule(rule).expect("add rule");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn vm_mac(i: usize) -> [u8; 6] {
    mac_for(Ipv4Addr::new(10, 9, 0, i as u8 + 1))
}

/// Links the daemons over UDP and writes the rules of a two-site overlay: each daemon
/// delivers its VM's MAC (and others' broadcasts) to `vm`, and sends the other VM's MAC
/// (and its own VM's broadcasts) over the link.
fn overlay(d: &[Daemon; 2]) {
    let def = LinkDef::new(Transport::Udp, &d[0].name, &d[0].name, &d[1].name);
    for (me, other) in [(0, 1), (1, 0)] {
        let spec = LinkSpec {
            link: def.clone(),
            peer_addr: d[other].addr.to_string(),
            peer_key: d[other].client().status().expect("status").public_key,
        };
        d[me].client().add_link(spec).expect("add link");
    }
    for (me, other) in [(0, 1), (1, 0)] {
        let (mine, theirs) = (Mac(vm_mac(me)), Mac(vm_mac(other)));
        let vm = || Target::Interface { name: "vm".into() };
        let link = || Target::Link {
            peer: d[other].name.clone().into(),
        };
        d[me].rule(Match::Any, Match::Exact(mine), vm());
        d[me].rule(Match::Not(mine), Match::Exact(Mac::BROADCAST), vm());
        d[me].rule(Match::Any, Match::Exact(theirs), link());
        d[me].rule(Match::Exact(mine), Match::Exact(Mac::BROADCAST), link());
    }
}

#[test]
fn two_user_space_vms_run_patterns_through_two_daemons() {
    let Some(bin) = vnetd_binary() else {
        println!("skipped: no vnetd binary (cargo build -p vnet-daemon, or VNETD=path)");
        return;
    };
    let daemons = [Daemon::start(&bin, 1), Daemon::start(&bin, 2)];
    overlay(&daemons);
    let peers: Vec<SocketAddr> = vec![
        "10.9.0.1:7000".parse().unwrap(),
        "10.9.0.2:7000".parse().unwrap(),
    ];
    let nic = |i: usize| Nic {
        mac: vm_mac(i),
        prefix: 24,
        local: SocketAddr::from(([127, 78, 0, i as u8 + 1], 6001)),
        remote: Attachment::new(SocketAddr::from(([127, 78, 0, i as u8 + 1], 6000))),
        end: Default::default(),
    };
    for op in [Operation::Exchange, Operation::Reduce, Operation::AllToAll] {
        let mut p = program("ring", op, 2, 40);
        p.message_size = 5000; // several Ethernet frames per message
        let reports: Vec<Report> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|i| {
                    let (p, peers, nic) = (&p, &peers, nic(i));
                    s.spawn(move || run_vm(p, i, peers, &nic, &common::quick()))
                })
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("thread"))
                .collect::<Result<_, _>>()
        })
        .unwrap_or_else(|e| panic!("{op}: {e}\n{}\n{}", daemons[0].log(), daemons[1].log()));
        for r in &reports {
            assert_eq!(r.supersteps, 40, "{op}");
            assert_eq!(r.peers[0].bytes_received, 40 * 5000, "{op}");
            let checked = r.messages_verified + r.reductions_verified;
            assert_eq!(checked, 40, "{op}");
        }
    }
    // Everything crossed the overlay: daemon 1's link carried at least the payload of
    // three runs of 40 supersteps of 5000 bytes from VM 0.
    let links = daemons[0].client().list_links().expect("links");
    let sent: u64 = links.iter().map(|l| l.counters.tx_bytes).sum();
    assert!(sent > 3 * 40 * 5000, "{sent} bytes over the link");
}
