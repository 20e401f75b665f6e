//! The kernel fast path: eBPF programs (bpf/fastpath.bpf.c) that repeat, inside the kernel,
//! forwarding decisions the daemon has already made, so that an established flow between a
//! packet interface and a UDP link costs what kernel VXLAN costs (no wake-up of the daemon,
//! no copies to user space).
//!
//! Rules it keeps, so that forwarding stays exactly SPEC 2.4 and the counters stay true:
//! - The daemon decides. An entry is written only after the forwarding thread resolved a
//!   (port, source, destination) with the one table implementation, and only when the
//!   decision is a single destination the kernel can reach the same way: from a packet
//!   interface to one UDP link that is up (ENCAP), or from a UDP link to one packet interface
//!   (DECAP). Broadcasts, fan-out, TCP links, dgram and TAP interfaces stay in the daemon.
//! - Every table change and every link state change voids all entries at once (a generation
//!   number in the CONFIG map that every entry must match), before the change is
//!   acknowledged; entries are written under the same lock, after checking that the
//!   decision is still current, so a stale decision can never be armed.
//! - Frames the kernel forwards are counted in the entries and credited to the same
//!   counters the daemon uses (ports, rules, traffic matrix) whenever they are read.
//! - The wire format is the daemon's own: a kernel-sent datagram is a FRAME message without
//!   a virtio-net header, which a daemon without the fast path reads like any other.
//!   Super-frames (TSO/GSO) stay in the daemon: a peer's UDP socket could not take them
//!   apart.
//!
//! The programs are attached with TCX links (Linux 6.6+) and a socket filter; all of them
//! go away with the process, so a killed daemon leaves nothing forwarding behind it.

use crate::engine::{PairCounters, RuleCounters};
use crate::link::Link;
use crate::port::Port;
use crate::route::RouteTable;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use vnet_grammar::Mac;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct EncapKey {
    ifindex: u32,
    src: [u8; 6],
    dst: [u8; 6],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct EncapVal {
    saddr: u32,
    daddr: u32,
    sport: u16,
    dport: u16,
    oif: u32,
    hop: u8,
    armed: u8,
    max_len: u16,
    gen: u32,
    frames: u64,
    bytes: u64,
    lost: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct DecapKey {
    saddr: u32,
    sport: u16,
    src: [u8; 6],
    dst: [u8; 6],
    pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct DecapVal {
    ifindex: u32,
    gen: u32,
    frames: u64,
    bytes: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct ConfigVal {
    addr: u32,
    port: u16,
    pad: u16,
    gen: u32,
}

// SAFETY: plain `repr(C)` integers and byte arrays without implicit padding, laid out as the
// C structs of bpf/fastpath.bpf.c.
unsafe impl aya::Pod for EncapKey {}
// SAFETY: as above.
unsafe impl aya::Pod for EncapVal {}
// SAFETY: as above.
unsafe impl aya::Pod for DecapKey {}
// SAFETY: as above.
unsafe impl aya::Pod for DecapVal {}
// SAFETY: as above.
unsafe impl aya::Pod for ConfigVal {}

/// What the frames of one entry are credited to.
struct Credit {
    rx: Port,
    tx: Port,
    rules: Vec<Arc<RuleCounters>>,
    pair: Option<Arc<PairCounters>>,
    /// The entry's counters already credited.
    seen: (u64, u64),
    /// Its lost frames already counted as drops.
    lost: u64,
}

impl Credit {
    /// Credits the entry's counters past what was seen; returns the new frames and bytes.
    fn credit(&mut self, frames: u64, bytes: u64) -> (u64, u64) {
        let (f, b) = (
            frames.saturating_sub(self.seen.0),
            bytes.saturating_sub(self.seen.1),
        );
        self.seen = (frames, bytes);
        if f == 0 {
            return (0, 0);
        }
        self.rx.stats().rx_many(f, b);
        crate::engine::count_fired(&self.rules, self.pair.as_ref(), f, b);
        self.tx.stats().tx_many(f, b);
        (f, b)
    }
}

type Map<K, V> = aya::maps::HashMap<aya::maps::MapData, K, V>;

/// The running fast path, owned by the data plane (one per daemon).
pub struct FastPath {
    inner: Mutex<Inner>,
    /// The interface the daemon's UDP link traffic leaves by.
    underlay_name: String,
}

struct Inner {
    /// Keeps the programs and their links alive.
    _ebpf: aya::Ebpf,
    encap: Map<EncapKey, EncapVal>,
    decap: Map<DecapKey, DecapVal>,
    config: aya::maps::Array<aya::maps::MapData, ConfigVal>,
    cfg: ConfigVal,
    encap_credits: HashMap<EncapKey, Credit>,
    decap_credits: HashMap<DecapKey, Credit>,
    /// The daemon's UDP link address, and the interface and MTU its traffic leaves by.
    local: SocketAddrV4,
    underlay: u32,
    /// For each UDP session's peer address: whether the kernel routes it out of the underlay
    /// (read on the control side by [`FastPath::learn_routes`], so that arming an entry on the
    /// forwarding thread reads no files).
    routed: HashMap<Ipv4Addr, bool>,
    max_len: u16,
    /// Frames and bytes the kernel has forwarded (credited so far).
    carried: (u64, u64),
}

/// Where a frame entered, for [`FastPath::offer`].
pub enum Arrival<'a> {
    /// A packet interface: its index and the interface.
    Iface(u32, &'a Arc<crate::iface::Iface>),
    /// A UDP link: the sender's address and the link.
    Link(SocketAddr, &'a Arc<Link>),
}

/// The decision the forwarding thread made for a (source, destination), and the engine
/// version it was made at.
pub struct Decision<'a> {
    pub src: Mac,
    pub dst: Mac,
    pub version: u64,
    pub outs: &'a [crate::engine::Out<Port>],
    pub missing: u32,
    pub rules: &'a [Arc<RuleCounters>],
    pub pair: Option<&'a Arc<PairCounters>>,
    /// The hop limit the frame arrived with.
    pub hop: u8,
}

/// The eBPF object of this build: rebuilt by clang, or the committed one (see build.rs).
static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("VNET_BPF_OBJECT"));

/// Where [`OBJECT`] came from, for `vnetd --version`.
pub const ORIGIN: &str = env!("VNET_BPF_ORIGIN");

/// Why the fast path cannot run here, as this process, if it cannot: it needs the
/// capabilities to load and attach eBPF programs and Linux 6.6+ (TCX links).
pub fn preflight() -> Result<(), String> {
    const CAP_NET_ADMIN: u32 = 12;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_BPF: u32 = 39;
    let caps =
        effective_capabilities().ok_or("no privileges: cannot read this process's capabilities")?;
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if !has(CAP_NET_ADMIN) || !(has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
        return Err("no privileges: needs root (CAP_NET_ADMIN and CAP_BPF)".into());
    }
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .map_err(|e| format!("cannot read the kernel version: {e}"))?;
    match kernel_version(&release) {
        Some(v) if v >= (6, 6) => Ok(()),
        _ => Err(format!(
            "kernel too old: Linux {release}, the fast path needs 6.6+ (TCX)"
        )),
    }
}

/// The effective capability set (`CapEff` of /proc/self/status).
fn effective_capabilities() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// (major, minor) of a kernel release such as `6.18.44-fc-v1300`.
fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

/// Why there is no fast path, or the running one. `packet_ifaces`: (name, socket) of every
/// packet interface; `local`: the daemon's UDP link address; `udp_datagram`: its largest
/// datagram.
pub fn start(
    packet_ifaces: &[(String, std::os::fd::BorrowedFd<'_>)],
    local: SocketAddr,
    udp_datagram: usize,
) -> Result<FastPath, String> {
    preflight()?;
    if packet_ifaces.is_empty() {
        return Err("no packet interface".into());
    }
    let SocketAddr::V4(local) = local else {
        return Err("the listen address is not IPv4".into());
    };
    if local.ip().is_unspecified() {
        return Err("the listen address is unspecified (0.0.0.0): no underlay to attach to".into());
    }
    let (underlay_name, underlay, mtu) = interface_of(*local.ip())?;
    let max_len = (mtu.saturating_sub(32)).min(udp_datagram.saturating_sub(4) as u32);
    let mut ebpf = aya::Ebpf::load(OBJECT).map_err(|e| format!("load: {e}"))?;
    attach_tc(&mut ebpf, "tc_decap", &[underlay_name.as_str()])?;
    let names: Vec<&str> = packet_ifaces.iter().map(|(n, _)| n.as_str()).collect();
    attach_tc(&mut ebpf, "tc_encap", &names)?;
    {
        let p: &mut aya::programs::SocketFilter = ebpf
            .program_mut("sock_filter")
            .ok_or("no program sock_filter")?
            .try_into()
            .map_err(|e| format!("sock_filter: {e}"))?;
        p.load().map_err(|e| format!("load sock_filter: {e}"))?;
        for (name, fd) in packet_ifaces {
            p.attach(fd)
                .map_err(|e| format!("socket filter on {name}: {e}"))?;
        }
    }
    let encap = Map::try_from(ebpf.take_map("ENCAP").ok_or("no map ENCAP")?)
        .map_err(|e| format!("ENCAP: {e}"))?;
    let decap = Map::try_from(ebpf.take_map("DECAP").ok_or("no map DECAP")?)
        .map_err(|e| format!("DECAP: {e}"))?;
    let mut config = aya::maps::Array::try_from(ebpf.take_map("CONFIG").ok_or("no map CONFIG")?)
        .map_err(|e| format!("CONFIG: {e}"))?;
    let cfg = ConfigVal {
        addr: u32::from_ne_bytes(local.ip().octets()),
        port: local.port().to_be(),
        pad: 0,
        gen: 1,
    };
    config.set(0, cfg, 0).map_err(|e| format!("CONFIG: {e}"))?;
    let fast = FastPath {
        inner: Mutex::new(Inner {
            _ebpf: ebpf,
            encap,
            decap,
            config,
            cfg,
            encap_credits: Default::default(),
            decap_credits: Default::default(),
            local,
            underlay,
            routed: HashMap::new(),
            max_len: max_len.min(u16::MAX as u32) as u16,
            carried: (0, 0),
        }),
        underlay_name: underlay_name.clone(),
    };
    tracing::info!(underlay = %underlay_name, mtu, "kernel fast path on");
    Ok(fast)
}

fn attach_tc(ebpf: &mut aya::Ebpf, prog: &str, ifaces: &[&str]) -> Result<(), String> {
    use aya::programs::tc::{SchedClassifier, TcAttachOptions, TcAttachType};
    let p: &mut SchedClassifier = ebpf
        .program_mut(prog)
        .ok_or_else(|| format!("no program {prog}"))?
        .try_into()
        .map_err(|e| format!("{prog}: {e}"))?;
    p.load().map_err(|e| format!("load {prog}: {e}"))?;
    for iface in ifaces {
        p.attach_with_options(
            iface,
            TcAttachType::Ingress,
            TcAttachOptions::TcxOrder(Default::default()),
        )
        .map_err(|e| format!("attach {prog} to {iface} (TCX, Linux 6.6+): {e}"))?;
    }
    Ok(())
}

/// The interface holding `ip` (`lo` for all of 127.0.0.0/8): its name, index and MTU.
fn interface_of(ip: Ipv4Addr) -> Result<(String, u32, u32), String> {
    let name =
        local_interface(ip).ok_or_else(|| format!("no interface holds the listen address {ip}"))?;
    let index = nix::net::if_::if_nametoindex(name.as_str()).map_err(|e| format!("{name}: {e}"))?;
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1500);
    Ok((name, index, mtu))
}

/// The interface holding the local address `ip`.
fn local_interface(ip: Ipv4Addr) -> Option<String> {
    if ip.is_loopback() {
        return Some("lo".into());
    }
    nix::ifaddrs::getifaddrs().ok()?.find_map(|a| {
        let sin = a.address.as_ref()?.as_sockaddr_in()?;
        (sin.ip() == ip).then_some(a.interface_name)
    })
}

/// The interface `table` sends `ip` out of; local addresses leave by the interface holding
/// them.
fn route_interface(table: &RouteTable, ip: Ipv4Addr) -> Option<String> {
    local_interface(ip).or_else(|| table.interface_for(ip).map(str::to_string))
}

impl FastPath {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads which of `peers` (the UDP sessions' addresses) the kernel sends out of the
    /// underlay: on the control side, when the tables or the sessions change, outside the
    /// lock the forwarding thread takes; [`FastPath::offer`] only looks the answer up.
    pub fn learn_routes(&self, peers: impl IntoIterator<Item = SocketAddr>) {
        let table = RouteTable::read();
        let routed: HashMap<Ipv4Addr, bool> = peers
            .into_iter()
            .filter_map(|p| match p {
                SocketAddr::V4(p) => Some(*p.ip()),
                SocketAddr::V6(_) => None,
            })
            .map(|ip| {
                let out = route_interface(&table, ip);
                (ip, out.as_deref() == Some(self.underlay_name.as_str()))
            })
            .collect();
        self.lock().routed = routed;
    }

    /// Voids every entry (after a table or link change), before the change is answered.
    pub fn invalidate(&self) {
        let mut g = self.lock();
        tracing::debug!(gen = g.cfg.gen + 1, "fast path: entries void");
        g.cfg.gen = g.cfg.gen.wrapping_add(1);
        let cfg = g.cfg;
        if let Err(e) = g.config.set(0, cfg, 0) {
            tracing::warn!("fast path: cannot void its entries: {e}");
        }
        g.credit_kernel_counts();
        g.clear();
    }

    /// Offers a decision the forwarding thread just made; it becomes an entry when the
    /// kernel can carry it out the same way. `current` says whether the decision still holds
    /// (asked under the lock that [`FastPath::invalidate`] takes).
    pub fn offer(&self, came: Arrival<'_>, d: &Decision<'_>, current: impl Fn(u64) -> bool) {
        let [out] = d.outs else { return };
        if d.missing != 0 || d.rules.is_empty() {
            return;
        }
        let mut g = self.lock();
        if !current(d.version) {
            return;
        }
        match (came, &out.port, out.over_link) {
            (Arrival::Iface(ifindex, rx), Port::Link(l), true) => {
                let crate::engine::Action::Send(hop) = crate::engine::action(true, d.hop) else {
                    return;
                };
                if l.transport != vnet_grammar::ast::Transport::Udp || !l.is_up() {
                    return;
                }
                let Some(SocketAddr::V4(peer)) = l.udp_remote() else {
                    return;
                };
                let key = EncapKey {
                    ifindex,
                    src: d.src.0,
                    dst: d.dst.0,
                };
                if g.encap_credits.contains_key(&key) {
                    return;
                }
                // The kernel sends out of the underlay only; a peer routed elsewhere (or not
                // learnt yet) stays with the daemon (whose socket follows the routing table).
                if g.routed.get(peer.ip()) != Some(&true) {
                    return;
                }
                let val = EncapVal {
                    saddr: u32::from_ne_bytes(g.local.ip().octets()),
                    daddr: u32::from_ne_bytes(peer.ip().octets()),
                    sport: g.local.port().to_be(),
                    dport: peer.port().to_be(),
                    oif: g.underlay,
                    hop,
                    max_len: g.max_len,
                    gen: g.cfg.gen,
                    ..Default::default()
                };
                tracing::debug!(?key, gen = g.cfg.gen, "fast path: encap entry");
                if g.encap.insert(key, val, 0).is_ok() {
                    let c = credit(Port::Iface(rx.clone()), out.port.clone(), d);
                    g.encap_credits.insert(key, c);
                }
            }
            (Arrival::Link(SocketAddr::V4(peer), link), Port::Iface(i), false) => {
                let Some(ifindex) = i.packet_ifindex() else {
                    return;
                };
                let key = DecapKey {
                    saddr: u32::from_ne_bytes(peer.ip().octets()),
                    sport: peer.port().to_be(),
                    src: d.src.0,
                    dst: d.dst.0,
                    pad: 0,
                };
                if g.decap_credits.contains_key(&key) {
                    return;
                }
                let val = DecapVal {
                    ifindex,
                    gen: g.cfg.gen,
                    frames: 0,
                    bytes: 0,
                };
                if g.decap.insert(key, val, 0).is_ok() {
                    let c = credit(Port::Link(link.clone()), out.port.clone(), d);
                    g.decap_credits.insert(key, c);
                }
            }
            _ => {}
        }
    }

    /// Credits what the kernel forwarded to the daemon's counters (before they are read).
    pub fn credit_kernel_counts(&self) {
        self.lock().credit_kernel_counts();
    }

    /// Entries in use (armed or not) and what the kernel has carried, as of the last
    /// [`FastPath::fold`] (every control request starts with one).
    pub fn stats(&self) -> crate::proto::FastPathStats {
        let g = self.lock();
        crate::proto::FastPathStats {
            encap_entries: g.encap_credits.len() as u64,
            decap_entries: g.decap_credits.len() as u64,
            frames: g.carried.0,
            bytes: g.carried.1,
        }
    }
}

fn credit(rx: Port, tx: Port, d: &Decision<'_>) -> Credit {
    Credit {
        rx,
        tx,
        rules: d.rules.to_vec(),
        pair: d.pair.cloned(),
        seen: (0, 0),
        lost: 0,
    }
}

impl Inner {
    /// Credits every entry's new frames.
    fn credit_kernel_counts(&mut self) {
        let mut carried = (0, 0);
        for (k, c) in self.encap_credits.iter_mut() {
            if let Ok(v) = self.encap.get(k, 0) {
                let (f, b) = c.credit(v.frames, v.bytes);
                carried = (carried.0 + f, carried.1 + b);
                // Counted where the daemon counts a frame it could not send: at the output.
                c.tx.stats().drop_many(
                    crate::stats::DropReason::SendError,
                    v.lost.saturating_sub(c.lost),
                );
                c.lost = c.lost.max(v.lost);
            }
        }
        for (k, c) in self.decap_credits.iter_mut() {
            if let Ok(v) = self.decap.get(k, 0) {
                let (f, b) = c.credit(v.frames, v.bytes);
                carried = (carried.0 + f, carried.1 + b);
            }
        }
        self.carried = (self.carried.0 + carried.0, self.carried.1 + carried.1);
    }

    fn clear(&mut self) {
        for k in self.encap_credits.keys() {
            let _ = self.encap.remove(k);
        }
        for k in self.decap_credits.keys() {
            let _ = self.decap.remove(k);
        }
        self.encap_credits.clear();
        self.decap_credits.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v1300"), Some((6, 18)));
        assert_eq!(kernel_version("6.1.0-28-cloud-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("5.10"), Some((5, 10)));
        assert_eq!(kernel_version("garbage"), None);
        assert!(kernel_version("6.1.0").is_some_and(|v| v < (6, 6)));
    }

    #[test]
    fn the_object_is_embedded() {
        // An ELF file for the BPF machine (EM_BPF = 247), whatever built it.
        assert_eq!(&OBJECT[..4], b"\x7fELF");
        assert_eq!(u16::from_le_bytes([OBJECT[18], OBJECT[19]]), 247);
    }

    /// The clang that produced an object (its DWARF producer string).
    fn producer(obj: &[u8]) -> Option<&str> {
        let at = obj.windows(14).position(|w| w == b"clang version ")?;
        let start = obj[..at].iter().rposition(|&b| b == 0).map_or(0, |i| i + 1);
        let end = obj[at..].iter().position(|&b| b == 0)? + at;
        std::str::from_utf8(&obj[start..end]).ok()
    }

    /// The check that the committed object is the compiled source: build.rs rebuilt it
    /// deterministically; it must be byte for byte what is committed. Set
    /// `VNET_BPF_UPDATE=1` to write the rebuilt object over the committed one.
    #[cfg(vnet_bpf_rebuilt)]
    #[test]
    fn committed_object_matches_source() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/fastpath.bpf.o");
        let committed = std::fs::read(path).expect("the committed eBPF object");
        if committed == OBJECT {
            return;
        }
        if std::env::var_os("VNET_BPF_UPDATE").is_some() {
            std::fs::write(path, OBJECT).expect("update the committed object");
            return;
        }
        let (theirs, ours) = (producer(&committed), producer(OBJECT));
        if theirs != ours {
            eprintln!(
                "skipping: the committed object was built by {theirs:?}, this build's by \
                 {ours:?}; their bytes differ anyway (CI builds with Debian's clang-14)"
            );
            return;
        }
        panic!(
            "{path} no longer matches bpf/fastpath.bpf.c: rebuild it with \
             `VNET_BPF_UPDATE=1 cargo test -p vnet-daemon --lib committed_object` and commit it"
        );
    }
}
