//! Helpers for the daemon's integration tests: real `vnetd` processes, test "VMs" on UDP
//! datagram interfaces, and cleanup on drop (even when a test fails).
#![allow(dead_code)]

pub mod capture;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vnet_daemon::proto::LinkInfo;
use vnet_daemon::{Client, Key};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{LinkDef, Match, RuleDef, Target};
use vnet_grammar::Mac;

#[allow(unused_imports)] // each test binary uses some of them
pub use vnet_testkit::{
    cpus_allowed, have, is_root, last_cpu, must, my_cpus, sh, wait_until, TempDir,
};

pub const KEY: &[u8] = b"test-key-0123456789abcdef0123456789";

pub fn key() -> Key {
    Key::from_bytes(KEY).expect("key")
}

pub fn write_key(dir: &Path) -> PathBuf {
    let p = dir.join("control.key");
    std::fs::write(&p, KEY).expect("key file");
    p
}

/// A running `vnetd`, killed on drop.
pub struct Vnetd {
    pub name: String,
    pub addr: SocketAddr,
    pub ifaces: Vec<String>,
    pub state_dir: PathBuf,
    pub key_file: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Vnetd {
    pub fn start(dir: &Path, name: &str, addr: &str, ifaces: &[&str]) -> Vnetd {
        Vnetd::start_with(dir, name, addr, ifaces, &[])
    }

    /// [`Vnetd::start`] with more arguments (`--insecure-links`, ...).
    pub fn start_with(
        dir: &Path,
        name: &str,
        addr: &str,
        ifaces: &[&str],
        extra: &[&str],
    ) -> Vnetd {
        let mut d = Vnetd {
            name: name.to_string(),
            addr: addr.parse().expect("address"),
            ifaces: ifaces.iter().map(|s| s.to_string()).collect(),
            state_dir: dir.join(format!("state-{name}")),
            key_file: write_key(dir),
            log: dir.join(format!("{name}.log")),
            child: None,
        };
        d.spawn(extra);
        d
    }

    pub fn spawn(&mut self, extra: &[&str]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_vnetd"));
        cmd.arg("--name")
            .arg(&self.name)
            .arg("--listen")
            .arg(self.addr.to_string())
            .arg("--key-file")
            .arg(&self.key_file)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        for i in &self.ifaces {
            cmd.arg("--iface").arg(i);
        }
        self.child = Some(cmd.spawn().expect("start vnetd"));
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "vnetd {} exited with {status}:\n{}",
                        self.name,
                        self.log_text()
                    );
                }
            }
            if Client::connect_timeout(self.addr, &key(), Duration::from_millis(500)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "vnetd {} did not come up:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Each of its threads' name and the CPUs it may run on (see [`cpus_allowed`]).
    pub fn thread_cpus(&self) -> Vec<(String, String)> {
        let pid = self.pid().expect("running");
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
        tasks
            .map(|task| {
                let task = task.expect("task").path();
                let comm = std::fs::read_to_string(task.join("comm")).unwrap_or_default();
                (comm.trim().to_string(), cpus_allowed(&task.join("status")))
            })
            .collect()
    }

    /// The CPUs its forwarding thread may run on.
    pub fn forwarding_cpus(&self) -> String {
        self.thread_cpus()
            .into_iter()
            .find_map(|(name, cpus)| (name == "vnetd-forward").then_some(cpus))
            .unwrap_or_else(|| panic!("vnetd {} has no forwarding thread", self.name))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn client(&self) -> Client {
        Client::connect(self.addr, &key()).expect("connect to vnetd")
    }

    /// The daemon's static link key, as its status reports it (what peers pin).
    pub fn public_key(&self) -> String {
        self.client()
            .status()
            .expect("status")
            .public_key
            .expect("a public key in status")
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return Some(s);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let c = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = c.try_wait() {
                self.child = None;
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Vnetd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Daemon `name` at 127.NET.0.HOST:7000 with one dgram interface `vm` at port 6000 of the
/// same address: each test picks its own NET, so tests running at once never collide.
pub fn loopback_vnetd(dir: &Path, net: u8, host: u8, name: &str) -> Vnetd {
    let ip = format!("127.{net}.0.{host}");
    Vnetd::start(
        dir,
        name,
        &format!("{ip}:7000"),
        &[&format!("vm=dgram:{ip}:6000")],
    )
}

/// A VM at 127.NET.0.HOST:6001 on the `vm` interface of [`loopback_vnetd`]`(.., NET, HOST, ..)`.
pub fn loopback_vm(net: u8, host: u8, mac: Mac) -> Vm {
    let ip = format!("127.{net}.0.{host}");
    Vm::new(mac, &format!("{ip}:6001"), &format!("{ip}:6000"))
}

pub fn mac(last: u8) -> Mac {
    Mac([0x02, 0, 0, 0, 0, last])
}

/// Configures a link on both ends.
pub fn connect(transport: Transport, dialer: &Vnetd, other: &Vnetd) {
    let def = LinkDef::new(transport, &dialer.name, &dialer.name, &other.name);
    dialer
        .client()
        .add_link(vnet_daemon::LinkSpec {
            link: def.clone(),
            peer_addr: other.addr.to_string(),
            peer_key: Some(other.public_key()),
        })
        .expect("add link at dialer");
    other
        .client()
        .add_link(vnet_daemon::LinkSpec {
            link: def,
            peer_addr: dialer.addr.to_string(),
            peer_key: Some(dialer.public_key()),
        })
        .expect("add link at listener");
}

pub fn edge(on: &Vnetd, src: Match, dst: Match, peer: &Vnetd) -> RuleDef {
    RuleDef {
        daemon: on.name.clone().into(),
        src,
        dst,
        target: Target::Link {
            peer: peer.name.clone().into(),
        },
    }
}

pub fn to_iface(on: &Vnetd, src: Match, dst: Match, iface: &str) -> RuleDef {
    RuleDef {
        daemon: on.name.clone().into(),
        src,
        dst,
        target: Target::Interface { name: iface.into() },
    }
}

pub fn links_of(d: &Vnetd) -> Vec<LinkInfo> {
    d.client().list_links().expect("list links")
}

/// Waits until every link of every daemon is up.
pub fn wait_links_up(ds: &[&Vnetd], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let down: Vec<String> = ds
            .iter()
            .flat_map(|d| {
                links_of(d)
                    .into_iter()
                    .filter(|l| !l.up)
                    .map(move |l| format!("{}→{}", d.name, l.peer))
            })
            .collect();
        if down.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            let logs: String = ds
                .iter()
                .map(|d| format!("--- {}\n{}", d.name, d.log_text()))
                .collect();
            panic!("links still down after {timeout:?}: {down:?}\n{logs}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The VMs announce themselves (a frame each to nobody), so that their daemons' dgram
/// interfaces learn where they are, and the frames have time to arrive.
pub fn announce(vms: &[&Vm]) {
    for vm in vms {
        vm.send(mac(99), b"hello");
    }
    std::thread::sleep(Duration::from_millis(100));
}

/// A test "VM": a UDP socket speaking QEMU's `-netdev dgram` format to a daemon.
pub struct Vm {
    pub mac: Mac,
    pub sock: UdpSocket,
    pub daemon_iface: SocketAddr,
}

impl Vm {
    pub fn new(mac: Mac, local: &str, daemon_iface: &str) -> Vm {
        let sock = UdpSocket::bind(local).expect("bind VM socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        Vm {
            mac,
            sock,
            daemon_iface: daemon_iface.parse().expect("address"),
        }
    }

    pub fn frame(&self, dst: Mac, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(14 + payload.len());
        f.extend_from_slice(&dst.0);
        f.extend_from_slice(&self.mac.0);
        f.extend_from_slice(&[0x88, 0xb5]);
        f.extend_from_slice(payload);
        f
    }

    pub fn send(&self, dst: Mac, payload: &[u8]) {
        let f = self.frame(dst, payload);
        self.sock.send_to(&f, self.daemon_iface).expect("VM send");
    }

    /// Every frame that arrives within `window`.
    pub fn recv_all(&self, window: Duration) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + window;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70000];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                out.push(buf[..n].to_vec());
            }
        }
        out
    }

    /// Waits for one frame whose payload equals `payload` (up to `timeout`).
    pub fn expect(&self, payload: &[u8], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 70000];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                if n >= 14 && &buf[14..n] == payload {
                    return true;
                }
            }
        }
        false
    }
}
