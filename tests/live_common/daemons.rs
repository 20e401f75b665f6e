//! `vnetd` processes started directly (not by `vnetc up`), for tests and benches that need
//! daemons in network namespaces or configured through the control protocol alone.

use super::{vnetd_path, wait_until, World};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vnet_proto::{Client, Key};
#[allow(unused_imports)]
pub use vnet_testkit::sh;

/// vnetd processes, killed on drop.
pub struct Daemons(pub Vec<Child>);

impl Drop for Daemons {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `vnetd` for each address at port 7000, named by its address as HOST lines name
/// daemons, with `key` written to the world's key file; inside `netns[i]` when given; with a
/// dgram interface `vm` at ADDR:6000 when `dgram`. Returns once each accepts connections.
pub fn start_daemons(
    w: &World,
    key: &str,
    addrs: &[String],
    netns: &[Option<String>],
    dgram: bool,
) -> Daemons {
    std::fs::write(w.key_file(), key).expect("key file");
    let mut d = Daemons(Vec::new());
    for (i, a) in addrs.iter().enumerate() {
        let mut cmd = match netns.get(i).cloned().flatten() {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns]).arg(vnetd_path());
                c
            }
            None => Command::new(vnetd_path()),
        };
        cmd.args(["--name", a, "--listen", &format!("{a}:7000"), "--fresh"])
            .arg("--key-file")
            .arg(w.key_file())
            .arg("--state-dir")
            .arg(w.path(&format!("state-{i}")))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if dgram {
            cmd.args(["--iface", &format!("vm=dgram:{a}:6000")]);
        }
        d.0.push(cmd.spawn().expect("start vnetd"));
    }
    let key = Key::from_bytes(key.as_bytes()).expect("key");
    for (i, a) in addrs.iter().enumerate() {
        let up = wait_until(Duration::from_secs(10), || {
            match netns.get(i).cloned().flatten() {
                // Not reachable from here: wait for its port inside the namespace.
                Some(ns) => sh(&format!("ip netns exec {ns} ss -ltnH 'sport = :7000'"))
                    .1
                    .contains(a.as_str()),
                None => {
                    Client::connect_timeout(format!("{a}:7000"), &key, Duration::from_millis(300))
                        .is_ok()
                }
            }
        });
        assert!(up, "vnetd {a} did not come up");
    }
    d
}

/// A program of HOST lines only, one per address (port 7000, interface `vm`).
pub fn hosts_file(addrs: &[String]) -> String {
    let hosts: String = addrs
        .iter()
        .map(|a| format!("HOST vnet AT {a} 7000 vm\n"))
        .collect();
    format!("BEGIN\n{hosts}END\n")
}
