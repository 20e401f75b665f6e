//! Throughput and latency between two "VM" namespaces, side by side in one run:
//! a plain veth pair (the ceiling), the kernel's VXLAN, and two vnetd daemons with a UDP link
//! and with a TCP link. Hosts are namespaces joined by a 1500-MTU veth underlay; the VMs'
//! MTU is 1450 in every case (room for VXLAN's 50 bytes), with default offloads.
//!
//! Root only: `cargo bench -p vnet-daemon --bench throughput` (prints a table).
//! `VNET_BENCH_SECS` sets the iperf3 duration (default 5).

use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vnet_daemon::{Change, Client, Key, LinkSpec};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{LinkDef, Match, RuleDef, Target};
use vnet_grammar::Mac;

const NS: [&str; 6] = ["tbh1", "tbh2", "tbv1", "tbv2", "tbc1", "tbc2"];

fn sh(cmd: &str) -> (bool, String) {
    match Command::new("sh").arg("-c").arg(cmd).output() {
        Ok(o) => (
            o.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ),
        Err(e) => (false, e.to_string()),
    }
}

fn must(cmd: &str) {
    let (ok, out) = sh(cmd);
    assert!(ok, "{cmd}: {out}");
}

fn cleanup() {
    for ns in NS {
        sh(&format!("ip netns del {ns} 2>/dev/null"));
    }
}

struct Cleanup(Vec<Child>);
impl Drop for Cleanup {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
        cleanup();
    }
}

fn mac(n: u8) -> Mac {
    Mac([0x02, 0, 0, 0, 0x96, n])
}

fn setup() {
    cleanup();
    for ns in NS {
        must(&format!("ip netns add {ns}"));
        must(&format!("ip -n {ns} link set lo up"));
    }
    // Underlay between the hosts.
    must("ip link add tbu1 netns tbh1 type veth peer name tbu2 netns tbh2");
    must("ip -n tbh1 addr add 192.168.150.1/24 dev tbu1 && ip -n tbh1 link set tbu1 up");
    must("ip -n tbh2 addr add 192.168.150.2/24 dev tbu2 && ip -n tbh2 link set tbu2 up");
    // VMs attached to their hosts.
    for n in 1..=2u8 {
        must(&format!(
            "ip link add e0 netns tbv{n} type veth peer name tbt{n} netns tbh{n}"
        ));
        must(&format!(
            "ip -n tbv{n} link set e0 address {} mtu 1450 up",
            mac(n)
        ));
        must(&format!("ip -n tbv{n} addr add 10.150.0.{n}/24 dev e0"));
        must(&format!("ip -n tbh{n} link set tbt{n} mtu 1450 up"));
    }
    // The ceiling: two namespaces on one veth pair.
    must("ip link add e0 netns tbc1 type veth peer name e0 netns tbc2");
    for n in 1..=2 {
        must(&format!(
            "ip -n tbc{n} link set e0 mtu 1450 up && ip -n tbc{n} addr add 10.151.0.{n}/24 dev e0"
        ));
    }
}

/// (Gbit/s, ping average RTT in µs), or why not.
type Measured = Result<(f64, f64), String>;

/// (Gbit/s, ping average RTT in µs) from `from` to `ip` in `to`.
fn measure(from: &str, to: &str, ip: &str, secs: u32) -> Measured {
    // Warm up ARP and the path.
    sh(&format!("ip netns exec {from} ping -c 2 -W 1 {ip}"));
    let (ok, out) = sh(&format!(
        "ip netns exec {from} ping -c 50 -i 0.01 -q -W 1 {ip}"
    ));
    if !ok {
        return Err(format!("ping: {out}"));
    }
    let rtt = out
        .lines()
        .find(|l| l.contains("min/avg/max"))
        .and_then(|l| l.split('=').nth(1))
        .and_then(|v| v.trim().split('/').nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .ok_or_else(|| out.clone())?;
    let mut server = Command::new("ip")
        .args(["netns", "exec", to, "iperf3", "-s", "-1", "-B", ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(400));
    let (ok, out) = sh(&format!(
        "timeout {} ip netns exec {from} iperf3 -c {ip} -t {secs} -J",
        secs + 30
    ));
    let _ = server.kill();
    let _ = server.wait();
    if !ok {
        return Err(format!("iperf3: {out}"));
    }
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    let gbps = v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or(out)?
        / 1e9;
    Ok((gbps, rtt))
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("netns");
        // SAFETY: setns on this thread only, with a valid namespace fd.
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}");
        f()
    })
    .join()
    .expect("netns thread")
}

fn start_daemons(dir: &std::path::Path, extra: &[&str], children: &mut Vec<Child>) {
    for n in 1..=2 {
        let log = std::fs::File::create(dir.join(format!("h{n}.log"))).unwrap();
        let c = Command::new("ip")
            .args([
                "netns",
                "exec",
                &format!("tbh{n}"),
                env!("CARGO_BIN_EXE_vnetd"),
            ])
            .args([
                "--name",
                &format!("h{n}"),
                "--listen",
                &format!("192.168.150.{n}:7000"),
            ])
            .args(["--iface", &format!("tbt{n}=packet"), "--fresh"])
            .arg("--key-file")
            .arg(dir.join("key"))
            .arg("--state-dir")
            .arg(dir.join(format!("state{n}")))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("vnetd");
        children.push(c);
    }
}

fn configure(dir: &std::path::Path, transport: Transport) {
    let key = Key::load(&dir.join("key")).unwrap();
    for n in 1..=2u8 {
        let key = key.clone();
        in_netns(&format!("tbh{n}"), move || {
            let me = format!("h{n}");
            let other = 3 - n;
            let peer = format!("h{other}");
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut c = loop {
                match Client::connect(format!("192.168.150.{n}:7000"), &key) {
                    Ok(c) => break c,
                    Err(e) => {
                        assert!(Instant::now() < deadline, "vnetd h{n}: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            };
            let rule = |src, dst, target| RuleDef {
                daemon: me.clone(),
                src,
                dst,
                target,
            };
            let iface = Target::Interface {
                name: format!("tbt{n}"),
            };
            let link = Target::Link { peer: peer.clone() };
            c.change(
                vec![
                    Change::AddLink {
                        link: LinkSpec {
                            link: LinkDef::new(transport, "h1", "h1", "h2"),
                            peer_addr: format!("192.168.150.{other}:7000"),
                        },
                    },
                    Change::AddRule {
                        rule: rule(Match::Any, Match::Exact(mac(n)), iface.clone()),
                    },
                    Change::AddRule {
                        rule: rule(Match::Any, Match::Exact(mac(other)), link.clone()),
                    },
                    Change::AddRule {
                        rule: rule(Match::Any, Match::Exact(Mac::BROADCAST), iface),
                    },
                    Change::AddRule {
                        rule: rule(Match::Any, Match::Exact(Mac::BROADCAST), link),
                    },
                ],
                None,
            )
            .unwrap();
        });
    }
    in_netns("tbh1", move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = Client::connect("192.168.150.1:7000", &key).unwrap();
        while !c.list_links().unwrap().iter().all(|l| l.up) {
            assert!(Instant::now() < deadline, "link did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        println!("throughput benchmark skipped: needs root (network namespaces)");
        return;
    }
    for t in ["ip", "ping", "iperf3"] {
        if !sh(&format!("command -v {t}")).0 {
            println!("throughput benchmark skipped: needs {t}");
            return;
        }
    }
    let secs: u32 = std::env::var("VNET_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dir = std::env::temp_dir().join(format!("vnetd-tput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), "bench-key-0123456789abcdef").unwrap();
    let mut guard = Cleanup(Vec::new());
    setup();
    let mut results: Vec<(String, Measured)> = Vec::new();
    results.push((
        "veth pair (ceiling)".into(),
        measure("tbc1", "tbc2", "10.151.0.2", secs),
    ));
    // Kernel VXLAN: a bridge per host joining the VM's veth and a VXLAN device.
    for n in 1..=2 {
        let other = 3 - n;
        must(&format!(
            "ip -n tbh{n} link add vx0 type vxlan id 150 local 192.168.150.{n} remote 192.168.150.{other} dstport 4789 dev tbu{n}"
        ));
        must(&format!(
            "ip -n tbh{n} link add br0 type bridge && ip -n tbh{n} link set br0 up"
        ));
        must(&format!(
            "ip -n tbh{n} link set vx0 master br0 up && ip -n tbh{n} link set tbt{n} master br0"
        ));
    }
    results.push((
        "kernel VXLAN".into(),
        measure("tbv1", "tbv2", "10.150.0.2", secs),
    ));
    for n in 1..=2 {
        must(&format!(
            "ip -n tbh{n} link del br0 && ip -n tbh{n} link del vx0"
        ));
        must(&format!("ip -n tbh{n} link set tbt{n} up"));
    }
    for (label, transport, extra) in [
        (
            "vnetd, UDP link (1472-byte datagrams)",
            Transport::Udp,
            vec![],
        ),
        (
            "vnetd, UDP link (64 KB datagrams, IP fragmentation)",
            Transport::Udp,
            vec!["--udp-datagram", "65507"],
        ),
        ("vnetd, TCP link", Transport::Tcp, vec![]),
    ] {
        let mut children = Vec::new();
        start_daemons(&dir, &extra, &mut children);
        configure(&dir, transport);
        results.push((label.into(), measure("tbv1", "tbv2", "10.150.0.2", secs)));
        for mut c in children {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    guard.0.clear();
    let vxlan = results
        .iter()
        .find(|r| r.0 == "kernel VXLAN")
        .and_then(|r| r.1.as_ref().ok())
        .copied();
    println!("\niperf3 TCP, {secs} s, VM namespace to VM namespace (MTU 1450, default offloads)");
    println!(
        "{:<55} {:>10} {:>12} {:>14} {:>14}",
        "path", "Gbit/s", "vs VXLAN", "ping RTT µs", "RTT - VXLAN"
    );
    for (label, r) in &results {
        match r {
            Ok((g, rtt)) => {
                let (ratio, drtt) = match vxlan {
                    Some((vg, vr)) => (format!("{:.2}", g / vg), format!("{:+.0}", rtt - vr)),
                    None => ("-".into(), "-".into()),
                };
                println!("{label:<55} {g:>10.2} {ratio:>12} {rtt:>14.0} {drtt:>14}");
            }
            Err(e) => println!("{label:<55} failed: {}", e.lines().next().unwrap_or("")),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
