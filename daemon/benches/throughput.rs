//! Throughput and latency between two "VM" namespaces, side by side in one run: a plain veth
//! pair (the ceiling), the kernel's VXLAN, and two vnetd daemons with a UDP link and with a
//! TCP link. Every path is set up at once in its own namespaces (hosts joined by a 1500-MTU
//! veth underlay; VM MTU 1450 everywhere, room for VXLAN's 50 bytes; default offloads), and
//! the measurements are interleaved — round after round, each path in turn — so a change in
//! the machine's load hits every path alike and the ratios stay fair.
//!
//! Per path: ping RTT (50 pings at 10 ms per round: median, mean, 90th percentile; and the
//! median of 200 pings at 1 ms, whose CPUs and caches stay warm between pings), iperf3 TCP
//! Gbit/s (mean over rounds), and the CPU time the two vnetd processes used per GB carried,
//! while pinging (share of one core) and idle.
//!
//! Root only: `cargo bench -p vnet-daemon --bench throughput` (prints a table).
//! `VNET_BENCH_SECS` sets the iperf3 duration per round (default 4; 0: pings only), `VNET_BENCH_ROUNDS` the
//! rounds (default 3), `VNET_BENCH_IDLE` seconds of idle before the rounds over which the daemons'
//! CPU is measured (default 0: not measured), `VNET_BENCH_ONLY` (comma-separated `veth`, `vxlan`, `udp`, `tcp`) the
//! paths. With `VNET_BENCH_HOLD=FILE` everything is set up and left running until FILE is
//! removed, for experiments (`ip netns exec tbtv1 ping 10.150.0.2`, ...). With
//! `VNET_BENCH_COMPARE=CMD[,CMD...]` (other `vnetd` commands: an older build, or this one behind
//! a wrapper, e.g. `taskset -c 0 THIS`, where THIS stands for this build's binary) their UDP and
//! TCP links are measured too, interleaved with the others (keys `udp-b1`, `tcp-b1`, ...).
//! When `wireguard-go` and `wg` are installed, the yardstick of issue 14 runs too (key `wg`):
//! wireguard-go between the same kind of hosts, routing the VMs' traffic (layer 3: VM route MTU
//! 1420, WireGuard's default, since its tunnel cannot carry 1450-byte packets in 1500).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{must, sh};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vnet_daemon::proto::ProxySpec;
use vnet_daemon::{Change, Client, Key, LinkSpec};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{LinkDef, Match, RuleDef, Target};
use vnet_grammar::Mac;

fn mac(n: u8) -> Mac {
    Mac([0x02, 0, 0, 0, 0x96, n])
}

/// One measured path: its VM namespaces (`from` pings `ip` in `to`) and its daemons.
struct Path {
    key: &'static str,
    label: &'static str,
    from: String,
    to: String,
    ip: &'static str,
    daemons: Vec<Child>,
    rtts: Vec<f64>,
    /// RTTs of pings 1 ms apart: the same path with warm caches and CPUs that have not gone
    /// idle between pings.
    rtts_1ms: Vec<f64>,
    gbps: Vec<f64>,
    /// CPU seconds of the daemons and wall seconds while pinging at 10 ms, at 1 ms, and idle.
    ping_cpu: [(f64, f64); 3],
    cpu_s: f64,
    bytes: f64,
    error: Option<String>,
}

impl Path {
    fn new(
        key: &'static str,
        label: &'static str,
        from: String,
        to: String,
        ip: &'static str,
    ) -> Path {
        Path {
            key,
            label,
            from,
            to,
            ip,
            daemons: Vec::new(),
            rtts: Vec::new(),
            rtts_1ms: Vec::new(),
            gbps: Vec::new(),
            ping_cpu: [(0.0, 0.0); 3],
            cpu_s: 0.0,
            bytes: 0.0,
            error: None,
        }
    }
}

/// Letters naming the namespaces of the paths with hosts: VXLAN, this vnetd's UDP and TCP
/// links, and the UDP and TCP links of each `VNET_BENCH_COMPARE` binary.
const LETTERS: [&str; 9] = ["x", "u", "t", "U", "T", "V", "S", "W", "R"];

/// The letter of the wireguard-go path's namespaces.
const WG: &str = "g";

/// Namespaces of every path: veth `tbc{1,2}`; the others `tb{letter}{h,v}{1,2}` (hosts, VMs).
fn namespaces() -> Vec<String> {
    let mut v = vec!["tbc1".to_string(), "tbc2".to_string()];
    for p in LETTERS.iter().chain([&WG]) {
        for r in ["h", "v"] {
            for n in 1..=2 {
                v.push(format!("tb{p}{r}{n}"));
            }
        }
    }
    v
}

fn cleanup() {
    for ns in namespaces() {
        sh(&format!("ip netns del {ns} 2>/dev/null"));
    }
}

/// Two hosts `tb{p}h{1,2}` on a 1500-MTU underlay (192.168.150.{1,2}), each with a VM
/// `tb{p}v{n}` (10.150.0.n, MTU 1450) on a veth whose host end is `tbt{n}`.
fn two_hosts(p: &str) {
    must(&format!(
        "ip link add tbu1 netns tb{p}h1 type veth peer name tbu2 netns tb{p}h2"
    ));
    for n in 1..=2u8 {
        let (h, v) = (format!("tb{p}h{n}"), format!("tb{p}v{n}"));
        must(&format!(
            "ip -n {h} addr add 192.168.150.{n}/24 dev tbu{n} && ip -n {h} link set tbu{n} up"
        ));
        must(&format!(
            "ip link add e0 netns {v} type veth peer name tbt{n} netns {h}"
        ));
        must(&format!(
            "ip -n {v} link set e0 address {} mtu 1450 up",
            mac(n)
        ));
        must(&format!("ip -n {v} addr add 10.150.0.{n}/24 dev e0"));
        must(&format!("ip -n {h} link set tbt{n} mtu 1450 up"));
    }
}

fn setup(compared: usize, wg: bool) {
    cleanup();
    let mut letters = LETTERS[..3 + 2 * compared].to_vec();
    if wg {
        letters.push(WG);
    }
    for ns in namespaces()
        .into_iter()
        .filter(|n| n == "tbc1" || n == "tbc2" || letters.contains(&&n[2..3]))
    {
        must(&format!("ip netns add {ns}"));
        must(&format!("ip -n {ns} link set lo up"));
    }
    // The ceiling: two namespaces on one veth pair.
    must("ip link add e0 netns tbc1 type veth peer name e0 netns tbc2");
    for n in 1..=2 {
        must(&format!(
            "ip -n tbc{n} link set e0 mtu 1450 up && ip -n tbc{n} addr add 10.151.0.{n}/24 dev e0"
        ));
    }
    for p in &letters {
        two_hosts(p);
    }
    // Kernel VXLAN: a bridge per host joining the VM's veth and a VXLAN device.
    for n in 1..=2 {
        let other = 3 - n;
        must(&format!(
            "ip -n tbxh{n} link add vx0 type vxlan id 150 local 192.168.150.{n} remote 192.168.150.{other} dstport 4789 dev tbu{n}"
        ));
        must(&format!(
            "ip -n tbxh{n} link add br0 type bridge && ip -n tbxh{n} link set br0 up"
        ));
        must(&format!(
            "ip -n tbxh{n} link set vx0 master br0 up && ip -n tbxh{n} link set tbt{n} master br0"
        ));
    }
}

/// wireguard-go (in the foreground, so that its CPU time is counted) on both hosts of the `WG`
/// path, each VM routed through it: VM n is 10.152.n.2, its host 10.152.n.1.
fn wireguard(dir: &std::path::Path, children: &mut Vec<Child>) {
    let key = |n: u8| {
        let private = dir.join(format!("wg{n}.key"));
        must(&format!("umask 077; wg genkey > {}", private.display()));
        let (ok, public) = sh(&format!("wg pubkey < {}", private.display()));
        assert!(ok, "wg pubkey: {public}");
        (private, public.trim().to_string())
    };
    let keys = [key(1), key(2)];
    for n in 1..=2u8 {
        let (h, v, other) = (format!("tb{WG}h{n}"), format!("tb{WG}v{n}"), 3 - n);
        // Distinct device names: wireguard-go's control socket path is not per namespace.
        let dev = format!("tbwg{n}");
        let log = std::fs::File::create(dir.join(format!("wg{n}.log"))).unwrap();
        let c = Command::new("ip")
            .args(["netns", "exec", &h, "wireguard-go", "-f", &dev])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("wireguard-go");
        children.push(c);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sh(&format!("ip -n {h} link show {dev}")).0 {
            assert!(Instant::now() < deadline, "wireguard-go made no {dev}");
            std::thread::sleep(Duration::from_millis(50));
        }
        must(&format!(
            "ip netns exec {h} wg set {dev} private-key {} listen-port 51820 peer {} allowed-ips 10.152.{other}.0/24 endpoint 192.168.150.{other}:51820",
            keys[n as usize - 1].0.display(),
            keys[2 - n as usize].1,
        ));
        must(&format!(
            "ip -n {h} link set {dev} mtu 1420 up && ip -n {h} route add 10.152.{other}.0/24 dev {dev}"
        ));
        must(&format!(
            "ip netns exec {h} sysctl -qw net.ipv4.ip_forward=1 && ip -n {h} addr add 10.152.{n}.1/24 dev tbt{n}"
        ));
        must(&format!(
            "ip -n {v} addr add 10.152.{n}.2/24 dev e0 && ip -n {v} route add 10.152.0.0/16 via 10.152.{n}.1 mtu 1420"
        ));
    }
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

/// Starts the two daemons of a path; `vnetd` is a command line (a binary, possibly behind a
/// wrapper such as `taskset -c 0`), whose last word is the binary (exec'd: same pid).
fn start_daemons(dir: &std::path::Path, p: &str, vnetd: &str, children: &mut Vec<Child>) {
    for n in 1..=2 {
        let log = std::fs::File::create(dir.join(format!("{p}h{n}.log"))).unwrap();
        let c = Command::new("ip")
            .args(["netns", "exec", &format!("tb{p}h{n}")])
            .args(vnetd.split_whitespace())
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
            .arg(dir.join(format!("state-{p}{n}")))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("vnetd");
        children.push(c);
    }
}

fn configure(dir: &std::path::Path, p: &str, transport: Transport) {
    let key = Key::load(&dir.join("key")).unwrap();
    for n in 1..=2u8 {
        let key = key.clone();
        in_netns(&format!("tb{p}h{n}"), move || {
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
                daemon: me.clone().into(),
                src,
                dst,
                target,
            };
            let iface = Target::Interface {
                name: format!("tbt{n}").into(),
            };
            let link = Target::Link {
                peer: peer.clone().into(),
            };
            c.change(
                vec![
                    Change::AddLink {
                        link: LinkSpec {
                            link: LinkDef::new(transport, "h1", "h1", "h2"),
                            peer_addr: format!("192.168.150.{other}:7000"),
                            peer_key: peer_key(other, &key),
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
            // VTTIF as `vnetc apply` sets it up: h1 is the Proxy; both report (unless a
            // compared command runs with `--report-hz 0`).
            // An older compared build may predate VTTIF: it runs without reports.
            if let Err(e) = c.set_proxy(ProxySpec {
                name: "h1".into(),
                addr: "192.168.150.1:7000".into(),
                members: vec!["h1".into(), "h2".into()],
            }) {
                assert!(format!("{e:?}").contains("set_proxy"), "set proxy: {e:?}");
                eprintln!("note: this daemon has no VTTIF (set_proxy unknown): no reports");
            }
        });
    }
    in_netns(&format!("tb{p}h1"), move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = Client::connect("192.168.150.1:7000", &key).unwrap();
        while !c.list_links().unwrap().iter().all(|l| l.up) {
            assert!(Instant::now() < deadline, "link did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
}

/// The static link key of daemon h`n` (its peer pins it), from inside either host.
fn peer_key(n: u8, key: &Key) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Client::connect(format!("192.168.150.{n}:7000"), key) {
            Ok(mut c) => return c.status().ok()?.public_key,
            Err(e) => {
                assert!(Instant::now() < deadline, "vnetd h{n}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// RTTs in µs of `count` pings `interval` seconds apart.
fn ping(from: &str, ip: &str, count: u32, interval: &str) -> Result<Vec<f64>, String> {
    let (ok, out) = sh(&format!(
        "ip netns exec {from} ping -c {count} -i {interval} -W 1 {ip}"
    ));
    if !ok {
        return Err(format!("ping: {out}"));
    }
    Ok(out
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next())
        .filter_map(|t| t.parse::<f64>().ok())
        .map(|ms| ms * 1000.0)
        .collect())
}

/// Runs `f`, adding the daemons' CPU seconds and the wall seconds it took to `acc`.
fn timed<T>(p: &Path, acc: usize, f: impl FnOnce(&Path) -> T) -> (T, (f64, f64)) {
    let (cpu0, t0) = (daemons_cpu(p), Instant::now());
    let r = f(p);
    let (c, w) = p.ping_cpu[acc];
    (
        r,
        (c + daemons_cpu(p) - cpu0, w + t0.elapsed().as_secs_f64()),
    )
}

/// iperf3 TCP Gbit/s from `from` to `ip` in `to`.
fn iperf(from: &str, to: &str, ip: &str, secs: u32) -> Result<f64, String> {
    let mut server = Command::new("ip")
        .args(["netns", "exec", to, "iperf3", "-s", "-1", "-B", ip])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_millis(300));
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
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .map(|b| b / 1e9)
        .ok_or(out)
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces, inside parentheses).
    let Some(rest) = stat.rsplit_once(')').map(|r| r.1) else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks: f64 = f
        .get(11..13)
        .map(|t| t.iter().filter_map(|x| x.parse::<f64>().ok()).sum())
        .unwrap_or(0.0);
    // SAFETY: sysconf has no memory effects.
    ticks / (unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64)
}

/// The vnetd process under each `ip netns exec` child (exec replaces it: same pid).
fn daemons_cpu(p: &Path) -> f64 {
    p.daemons.iter().map(|c| cpu_seconds(c.id())).sum()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn stats(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| s[((s.len() - 1) as f64 * q).round() as usize];
    (at(0.5), s.iter().sum::<f64>() / s.len() as f64, at(0.9))
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

/// What the run measures, from the environment (see BENCHMARKS.md for the variables).
struct Settings {
    secs: u32,
    rounds: u32,
    idle_secs: u32,
    only: Option<Vec<String>>,
    compare: Vec<String>,
}

fn env_num(k: &str, d: u32) -> u32 {
    std::env::var(k)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(d)
}

impl Settings {
    fn from_env() -> Settings {
        let compare: Vec<String> = std::env::var("VNET_BENCH_COMPARE")
            .ok()
            .map(|s| {
                s.split(',')
                    .filter(|b| !b.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        assert!(compare.len() <= 3, "at most 3 VNET_BENCH_COMPARE binaries");
        Settings {
            secs: env_num("VNET_BENCH_SECS", 4),
            rounds: env_num("VNET_BENCH_ROUNDS", 3).max(1),
            idle_secs: env_num("VNET_BENCH_IDLE", 0),
            only: std::env::var("VNET_BENCH_ONLY")
                .ok()
                .map(|s| s.split(',').map(|k| k.trim().to_string()).collect()),
            compare,
        }
    }

    fn wanted(&self, key: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.iter().any(|k| k == key))
    }
}

/// Root and the tools, or why the benchmark is skipped.
fn missing_prerequisite() -> Option<String> {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (network namespaces)".into());
    }
    ["ip", "ping", "iperf3"]
        .into_iter()
        .find(|t| !sh(&format!("command -v {t}")).0)
        .map(|t| format!("needs {t}"))
}

/// A vnetd path: its key, namespace letter, link transport and binary (with arguments).
type VnetdPath = (String, &'static str, Transport, String);

/// The paths to measure (the yardsticks, this vnetd, the compared ones) and how to start the
/// vnetd ones.
fn paths(settings: &Settings, this: &str) -> (Vec<Path>, Vec<VnetdPath>) {
    let mut paths = vec![
        Path::new(
            "veth",
            "veth pair (ceiling)",
            "tbc1".into(),
            "tbc2".into(),
            "10.151.0.2",
        ),
        Path::new(
            "vxlan",
            "kernel VXLAN",
            "tbxv1".into(),
            "tbxv2".into(),
            "10.150.0.2",
        ),
        Path::new(
            "udp",
            "vnetd, sealed UDP link",
            "tbuv1".into(),
            "tbuv2".into(),
            "10.150.0.2",
        ),
        Path::new(
            "tcp",
            "vnetd, sealed TCP link",
            "tbtv1".into(),
            "tbtv2".into(),
            "10.150.0.2",
        ),
    ];
    let mut vnetd_paths: Vec<VnetdPath> = vec![
        ("udp".into(), "u", Transport::Udp, this.into()),
        ("tcp".into(), "t", Transport::Tcp, this.into()),
    ];
    for (i, bin) in settings.compare.iter().enumerate() {
        let bin = &bin.replace("THIS", this);
        let n = i + 1;
        for (kind, t, letter) in [
            ("udp", Transport::Udp, LETTERS[3 + 2 * i]),
            ("tcp", Transport::Tcp, LETTERS[4 + 2 * i]),
        ] {
            let key: &'static str = Box::leak(format!("{kind}-b{n}").into_boxed_str());
            let label: &'static str = Box::leak(
                if bin.contains(' ') {
                    format!("{kind} link, {}", bin.replace(this, "vnetd"))
                } else {
                    format!("{kind} link, {}", bin.rsplit('/').next().unwrap_or(bin))
                }
                .into_boxed_str(),
            );
            paths.push(Path::new(
                key,
                label,
                format!("tb{letter}v1"),
                format!("tb{letter}v2"),
                "10.150.0.2",
            ));
            vnetd_paths.push((key.into(), letter, t, bin.clone()));
        }
    }
    (paths, vnetd_paths)
}

/// Starts each path's daemons, warms ARP and the paths up, and holds while
/// `VNET_BENCH_HOLD` names a file that exists.
fn start(dir: &std::path::Path, paths: &mut [Path], vnetd_paths: &[VnetdPath]) {
    for p in paths.iter_mut() {
        let Some((_, tag, transport, bin)) = vnetd_paths.iter().find(|v| v.0 == p.key) else {
            continue;
        };
        start_daemons(dir, tag, bin, &mut p.daemons);
        configure(dir, tag, *transport);
    }
    for p in paths.iter() {
        sh(&format!(
            "ip netns exec {} ping -c 3 -i 0.1 -W 1 {}",
            p.from, p.ip
        ));
    }
    if let Some(h) = std::env::var_os("VNET_BENCH_HOLD").map(std::path::PathBuf::from) {
        std::fs::write(&h, "remove this file to go on\n").unwrap();
        eprintln!("set up; holding until {} is removed", h.display());
        while h.exists() {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// The daemons' CPU while nothing crosses them (keepalives, reports and timers only).
fn measure_idle(paths: &mut [Path], idle_secs: u32) {
    if idle_secs == 0 {
        return;
    }
    let cpu0: Vec<f64> = paths.iter().map(daemons_cpu).collect();
    std::thread::sleep(Duration::from_secs(idle_secs.into()));
    for (p, c0) in paths.iter_mut().zip(cpu0) {
        p.ping_cpu[2] = (daemons_cpu(p) - c0, idle_secs.into());
    }
}

/// The rounds: pings on every path, then iperf3 on every path, the first path rotating.
fn run_rounds(paths: &mut [Path], secs: u32, rounds: u32) {
    for round in 0..rounds {
        for p in paths.iter_mut() {
            if p.error.is_some() {
                continue;
            }
            let (r, cpu) = timed(p, 0, |p| ping(&p.from, p.ip, 50, "0.01"));
            p.ping_cpu[0] = cpu;
            match r {
                Ok(r) => p.rtts.extend(r),
                Err(e) => p.error = Some(e),
            }
            let (r, cpu) = timed(p, 1, |p| ping(&p.from, p.ip, 200, "0.001"));
            p.ping_cpu[1] = cpu;
            match r {
                Ok(r) => p.rtts_1ms.extend(r),
                Err(e) => p.error = Some(e),
            }
        }
        // Rotate which path goes first, so none always follows the same one.
        let n = if secs == 0 { 0 } else { paths.len() };
        for i in 0..n {
            let p = &mut paths[(i + round as usize) % n];
            if p.error.is_some() {
                continue;
            }
            let cpu0 = daemons_cpu(p);
            match iperf(&p.from, &p.to, p.ip, secs) {
                Ok(g) => {
                    p.gbps.push(g);
                    p.bytes += g * 1e9 / 8.0 * secs as f64;
                    p.cpu_s += daemons_cpu(p) - cpu0;
                }
                Err(e) => p.error = Some(e),
            }
        }
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// The table: each path's throughput and RTT, and their difference from kernel VXLAN's.
fn print_table(paths: &[Path]) {
    let vxlan = paths
        .iter()
        .find(|p| p.key == "vxlan" && p.error.is_none() && !p.rtts.is_empty())
        .map(|p| (mean(&p.gbps), stats(&p.rtts).0, stats(&p.rtts_1ms).0));
    println!(
        "{:<48} {:>7} {:>6} {:>21} {:>8} {:>12} {:>12} {:>11} {:>9}",
        "path",
        "Gbit/s",
        "/VXLAN",
        "per round",
        "RTT med",
        "mean / p90",
        "med-VXLAN µs",
        "1ms: med",
        "-VXLAN"
    );
    for p in paths {
        if let Some(e) = &p.error {
            println!("{:<48} failed: {}", p.label, e.lines().next().unwrap_or(""));
            continue;
        }
        let g = mean(&p.gbps);
        let (med, avg, p90) = stats(&p.rtts);
        let med_1ms = stats(&p.rtts_1ms).0;
        let (ratio, drtt, drtt_1ms) = match vxlan {
            Some((vg, vr, vr_1ms)) => (
                if p.gbps.is_empty() {
                    "-".into()
                } else {
                    format!("{:.2}", g / vg)
                },
                format!("{:+.0}", med - vr),
                format!("{:+.0}", med_1ms - vr_1ms),
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let per_round = p
            .gbps
            .iter()
            .map(|g| format!("{g:.1}"))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:<48} {g:>7.2} {ratio:>6} {per_round:>21} {med:>8.0} {:>12} {drtt:>12} {med_1ms:>11.0} {drtt_1ms:>9}",
            p.label,
            format!("{avg:.0} / {p90:.0}"),
        );
    }
}

/// The daemons' CPU per path: pinging, idle, and per GB carried.
fn print_cpu(paths: &[Path], secs: u32) {
    for p in paths {
        let share = |(cpu, wall): (f64, f64)| 100.0 * cpu / wall.max(1e-9);
        if p.ping_cpu[0].0 > 0.0 || p.ping_cpu[2].0 > 0.0 {
            println!(
                "{}: both daemons' CPU, % of one core: pinging at 10 ms {:.1}, at 1 ms {:.1}, idle {:.2} ({:.0} ms over {:.0} s)",
                p.label,
                share(p.ping_cpu[0]),
                share(p.ping_cpu[1]),
                share(p.ping_cpu[2]),
                p.ping_cpu[2].0 * 1000.0,
                p.ping_cpu[2].1,
            );
        }
    }
    for p in paths {
        if p.cpu_s > 0.0 && p.bytes > 0.0 {
            println!(
                "{}: both daemons used {:.2} CPU s per GB carried ({:.0}% of one core at the mean rate)",
                p.label,
                p.cpu_s / (p.bytes / 1e9),
                100.0 * p.cpu_s / (secs as f64 * p.gbps.len() as f64)
            );
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(why) = missing_prerequisite() {
        println!("throughput benchmark skipped: {why}");
        return;
    }
    let settings = Settings::from_env();
    let (secs, rounds) = (settings.secs, settings.rounds);
    let dir = std::env::temp_dir().join(format!("vnetd-tput-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), "bench-key-0123456789abcdef").unwrap();
    let mut guard = Cleanup(Vec::new());
    let wg = settings.wanted("wg") && sh("command -v wireguard-go && command -v wg").0;
    setup(settings.compare.len(), wg);
    let this = env!("CARGO_BIN_EXE_vnetd");
    let (mut paths, vnetd_paths) = paths(&settings, this);
    if wg {
        let mut p = Path::new(
            "wg",
            "wireguard-go (Debian, layer 3, MTU 1420)",
            format!("tb{WG}v1"),
            format!("tb{WG}v2"),
            "10.152.2.2",
        );
        wireguard(&dir, &mut p.daemons);
        paths.push(p);
    }
    paths.retain(|p| settings.wanted(p.key));
    start(&dir, &mut paths, &vnetd_paths);
    measure_idle(&mut paths, settings.idle_secs);
    let load_before = loadavg();
    let started = Instant::now();
    run_rounds(&mut paths, secs, rounds);
    let load_after = loadavg();
    for p in &mut paths {
        guard.0.append(&mut p.daemons);
    }
    println!(
        "\niperf3 TCP {secs} s x {rounds} rounds, ping 50 x {rounds} at 10 ms and 200 x {rounds} at 1 ms, interleaved; VM namespace to VM namespace (MTU 1450, default offloads)"
    );
    println!(
        "load average before {load_before}, after {load_after}; {:.0} s",
        started.elapsed().as_secs_f64()
    );
    print_table(&paths);
    print_cpu(&paths, secs);
    let _ = std::fs::remove_dir_all(&dir);
}
