//! Local interfaces: a promiscuous packet socket on an existing Linux interface, a TAP device
//! the daemon owns, and an unprivileged UDP datagram interface (QEMU `-netdev dgram`).
//!
//! Offloads: packet sockets are opened with `PACKET_VNET_HDR` and TAP devices with
//! `IFF_VNET_HDR` (through `tun-rs`), so the kernel hands the daemon whole TSO/GSO
//! super-frames (up to 64 KB) with a virtio-net header and takes them back the same way.
//! The header travels with the frame across the overlay. Only a `dgram` interface, whose
//! peer expects plain MTU-sized frames, gets super-frames segmented (and partial checksums
//! completed) in software.
//!
//! The forwarding thread waits on [`Iface::raw_fd`] and takes what is ready with
//! [`Iface::recv`] (a `recvmmsg` batch on a packet socket); [`Iface::send`] is called from the
//! same thread.

use crate::proto::InterfaceKind;
use crate::stats::{DropReason, PortStats};
use crate::sys;
use crate::wire::{self, Frame, FrameBuf, Segmenter, DATA, HEADROOM};
use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::str::FromStr;
use std::sync::RwLock;
use std::time::Duration;
use vnet_grammar::Mac;

/// How `--iface NAME[=KIND]` asks for an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindArg {
    Auto,
    Packet,
    Tap,
    Dgram {
        local: SocketAddr,
        peer: Option<SocketAddr>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfaceArg {
    pub name: String,
    pub kind: KindArg,
}

impl FromStr for IfaceArg {
    type Err = String;
    fn from_str(s: &str) -> Result<IfaceArg, String> {
        let (name, kind) = match s.split_once('=') {
            None => (s, KindArg::Auto),
            Some((name, "packet")) => (name, KindArg::Packet),
            Some((name, "tap")) => (name, KindArg::Tap),
            // Bare `dgram`: the one spelling `vnetc up --iface-kind dgram` can give for every
            // host, so each daemon picks a free port (shown by `list interfaces`).
            Some((name, "dgram")) => (
                name,
                KindArg::Dgram {
                    local: SocketAddr::from(([127, 0, 0, 1], 0)),
                    peer: None,
                },
            ),
            Some((name, k)) if k.starts_with("dgram:") => {
                let rest = &k["dgram:".len()..];
                let (local, peer) = match rest.split_once(',') {
                    Some((l, p)) => (l, Some(p)),
                    None => (rest, None),
                };
                let local = local
                    .parse()
                    .map_err(|_| format!("`{local}` is not ADDR:PORT (in --iface {s})"))?;
                let peer = peer
                    .map(|p| {
                        p.parse()
                            .map_err(|_| format!("`{p}` is not ADDR:PORT (in --iface {s})"))
                    })
                    .transpose()?;
                (name, KindArg::Dgram { local, peer })
            }
            Some((_, k)) => {
                return Err(format!(
                    "unknown interface kind `{k}`: use packet, tap, dgram or dgram:LOCAL[,PEER]"
                ))
            }
        };
        if name.is_empty() || name.len() > 15 && !matches!(kind, KindArg::Dgram { .. }) {
            return Err(format!("bad interface name `{name}`"));
        }
        Ok(IfaceArg {
            name: name.to_string(),
            kind,
        })
    }
}

/// A local interface.
pub struct Iface {
    pub name: String,
    pub io: IfaceIo,
    pub stats: PortStats,
}

pub enum IfaceIo {
    Dgram(Dgram),
    Packet(Packet),
    Tap(Tap),
}

/// At most this many learned MACs per dgram interface.
const LEARN_CAP: usize = 4096;

/// Frames one receive call may return (a `recvmmsg` batch on a packet socket).
pub const RX_BATCH: usize = 8;

/// How long a send may wait for room in a full output before the frame is dropped.
const SEND_WAIT: Duration = Duration::from_millis(100);

pub struct Dgram {
    /// Non-blocking.
    sock: UdpSocket,
    pub local: SocketAddr,
    pub peer: Option<SocketAddr>,
    learned: RwLock<Learned>,
}

#[derive(Default)]
struct Learned {
    by_mac: HashMap<Mac, SocketAddr>,
    /// Every address frames came from (and the fixed peer), for broadcast.
    peers: Vec<SocketAddr>,
}

pub struct Packet {
    /// Blocking for sends (bounded by a send timeout); received from with `MSG_DONTWAIT`.
    fd: OwnedFd,
    pub ifindex: u32,
    pub vnet_hdr: bool,
}

pub struct Tap {
    /// Non-blocking.
    dev: tun_rs::SyncDevice,
    pub vnet_hdr: bool,
}

/// Receive buffers of one interface's receiving thread.
pub struct RxBatch {
    pub bufs: Vec<FrameBuf>,
}

impl Default for RxBatch {
    fn default() -> Self {
        RxBatch {
            bufs: (0..RX_BATCH).map(|_| FrameBuf::new()).collect(),
        }
    }
}

impl Iface {
    /// The interface index, for a packet interface (the only kind the kernel fast path serves).
    pub fn packet_ifindex(&self) -> Option<u32> {
        match &self.io {
            IfaceIo::Packet(p) => Some(p.ifindex),
            _ => None,
        }
    }

    /// The packet socket, for a packet interface.
    pub fn packet_socket(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        match &self.io {
            IfaceIo::Packet(p) => Some(p.fd.as_fd()),
            _ => None,
        }
    }

    pub async fn open(arg: &IfaceArg, forbidden: &[String]) -> io::Result<Iface> {
        let kind = match &arg.kind {
            KindArg::Auto => {
                if std::path::Path::new("/sys/class/net")
                    .join(&arg.name)
                    .exists()
                {
                    if forbidden.contains(&arg.name) {
                        return Err(io::Error::new(
                            io::ErrorKind::PermissionDenied,
                            format!(
                                "interface {} carries this computer's default route or overlay address; \
                                 attach to it only with an explicit --iface {}=packet",
                                arg.name, arg.name
                            ),
                        ));
                    }
                    KindArg::Packet
                } else if can_create_tap() {
                    KindArg::Tap
                } else {
                    KindArg::Dgram {
                        local: SocketAddr::from(([127, 0, 0, 1], 0)),
                        peer: None,
                    }
                }
            }
            k => k.clone(),
        };
        let io = match kind {
            KindArg::Packet => IfaceIo::Packet(Packet::open(&arg.name)?),
            KindArg::Tap => IfaceIo::Tap(Tap::open(&arg.name)?),
            KindArg::Dgram { local, peer } => IfaceIo::Dgram(Dgram::open(local, peer)?),
            KindArg::Auto => unreachable!("resolved above"),
        };
        Ok(Iface {
            name: arg.name.clone(),
            io,
            stats: PortStats::default(),
        })
    }

    pub fn kind(&self) -> InterfaceKind {
        match &self.io {
            IfaceIo::Dgram(d) => InterfaceKind::Dgram {
                local: d.local.to_string(),
                peer: d.peer.map(|p| p.to_string()),
                learned: {
                    let l = d.learned.read().unwrap_or_else(|e| e.into_inner());
                    let mut v: Vec<_> = l
                        .by_mac
                        .iter()
                        .map(|(m, a)| (m.to_string(), a.to_string()))
                        .collect();
                    v.sort();
                    v
                },
            },
            IfaceIo::Packet(p) => InterfaceKind::Packet {
                ifindex: p.ifindex,
                vnet_hdr: p.vnet_hdr,
            },
            IfaceIo::Tap(t) => InterfaceKind::Tap {
                vnet_hdr: t.vnet_hdr,
            },
        }
    }

    /// The descriptor the forwarding thread waits on for received frames.
    pub fn raw_fd(&self) -> RawFd {
        match &self.io {
            IfaceIo::Dgram(d) => d.sock.as_raw_fd(),
            IfaceIo::Packet(p) => p.fd.as_raw_fd(),
            IfaceIo::Tap(t) => t.dev.as_raw_fd(),
        }
    }

    /// Takes the frames that are ready, up to [`RX_BATCH`], into `batch` (each with its
    /// virtio-net header, zeroed when the interface has none, and the hop limit a frame enters
    /// with); never blocks (0 when none are ready). A frame of length 0 is to be skipped (it
    /// was truncated, or too short).
    pub fn recv(&self, batch: &mut RxBatch) -> io::Result<usize> {
        let n = match &self.io {
            IfaceIo::Dgram(d) => d.recv(&mut batch.bufs)?,
            IfaceIo::Packet(p) => p.recv(&mut batch.bufs)?,
            IfaceIo::Tap(t) => t.recv(&mut batch.bufs)?,
        };
        for fb in &mut batch.bufs[..n] {
            fb.hop = wire::HOP_LIMIT;
            if fb.len < 14 {
                if fb.len > 0 {
                    self.stats.drop(DropReason::Malformed);
                }
                fb.len = 0;
            }
        }
        Ok(n)
    }

    /// Sends one frame out. Super-frames are segmented for outputs without offloads.
    pub fn send(&self, f: &mut Frame<'_>, seg: &mut Segmenter) {
        let offloads = match &self.io {
            IfaceIo::Dgram(_) => false,
            IfaceIo::Packet(p) => p.vnet_hdr,
            IfaceIo::Tap(t) => t.vnet_hdr,
        };
        let h = f.vnet();
        if !offloads && h.is_gso() {
            match seg.split_copy(f.frame(), &h) {
                Ok(n) => {
                    for i in 0..n {
                        let r = self.send_plain(seg.segment(i));
                        self.count(r, seg.segment(i).len());
                    }
                }
                Err(_) => self.stats.drop(DropReason::Oversize),
            }
            return;
        }
        if !offloads && h.flags & wire::VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 {
            if wire::finish_checksum(f.frame_mut(), &h).is_err() {
                self.stats.drop(DropReason::Malformed);
                return;
            }
            // The checksum is complete now, for every later output too.
            f.clear_vnet();
        }
        let r = match &self.io {
            IfaceIo::Dgram(d) => d.send(f.frame()),
            IfaceIo::Packet(p) => p.send(f.vnet_and_frame()),
            IfaceIo::Tap(t) => t.send(f.vnet_and_frame()),
        };
        self.count(r, f.len);
    }

    /// Sends a plain frame (no virtio-net header) to an output without offloads.
    fn send_plain(&self, frame: &[u8]) -> io::Result<()> {
        match &self.io {
            IfaceIo::Dgram(d) => d.send(frame),
            IfaceIo::Packet(p) => p.send(frame),
            IfaceIo::Tap(t) => t.send(frame),
        }
    }

    fn count(&self, r: io::Result<()>, len: usize) {
        match r {
            Ok(()) => self.stats.tx(len),
            Err(e) => {
                tracing::debug!(iface = %self.name, "send failed: {e}");
                self.stats.drop(DropReason::SendError)
            }
        }
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

fn can_create_tap() -> bool {
    // Root (or CAP_NET_ADMIN, approximated by root) with a TUN/TAP driver.
    // SAFETY: geteuid cannot fail.
    (unsafe { libc::geteuid() }) == 0 && std::path::Path::new("/dev/net/tun").exists()
}

impl Dgram {
    fn open(local: SocketAddr, peer: Option<SocketAddr>) -> io::Result<Dgram> {
        let sock = UdpSocket::bind(local)?;
        let s = socket2::SockRef::from(&sock);
        let _ = s.set_recv_buffer_size(4 << 20);
        let _ = s.set_send_buffer_size(4 << 20);
        sock.set_nonblocking(true)?;
        let local = sock.local_addr()?;
        let learned = Learned {
            by_mac: HashMap::new(),
            peers: peer.into_iter().collect(),
        };
        Ok(Dgram {
            sock,
            local,
            peer,
            learned: RwLock::new(learned),
        })
    }

    fn learn(&self, src: Mac, from: SocketAddr) {
        if src.is_group() {
            return;
        }
        {
            let l = self.learned.read().unwrap_or_else(|e| e.into_inner());
            if l.by_mac.get(&src) == Some(&from) {
                return;
            }
        }
        let mut l = self.learned.write().unwrap_or_else(|e| e.into_inner());
        if l.by_mac.len() >= LEARN_CAP && !l.by_mac.contains_key(&src) {
            return;
        }
        l.by_mac.insert(src, from);
        if !l.peers.contains(&from) {
            if l.peers.len() >= LEARN_CAP {
                return;
            }
            l.peers.push(from);
        }
    }

    fn recv(&self, bufs: &mut [FrameBuf]) -> io::Result<usize> {
        let mut got = 0;
        while got < bufs.len() {
            let fb = &mut bufs[got];
            match self.sock.recv_from(&mut fb.buf[DATA..]) {
                Ok((n, from)) => {
                    fb.clear_vnet();
                    fb.len = n;
                    if n >= 14 {
                        self.learn(
                            Mac(fb.buf[DATA + 6..DATA + 12].try_into().unwrap_or([0; 6])),
                            from,
                        );
                    }
                    got += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if got > 0 || e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    fn send_to(&self, frame: &[u8], to: &SocketAddr) -> io::Result<()> {
        loop {
            match self.sock.send_to(frame, to) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !sys::wait(self.sock.as_raw_fd(), libc::POLLOUT, SEND_WAIT) {
                        return Err(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        let mut dst = [0u8; 6];
        dst.copy_from_slice(&frame[..6]);
        let dst = Mac(dst);
        let l = self.learned.read().unwrap_or_else(|e| e.into_inner());
        if !dst.is_group() {
            if let Some(addr) = l.by_mac.get(&dst) {
                return self.send_to(frame, addr);
            }
        }
        // Broadcast or unknown: every known peer (one peer's error must not stop the others).
        for p in &l.peers {
            if let Err(e) = self.send_to(frame, p) {
                tracing::debug!("dgram send to {p}: {e}");
            }
        }
        Ok(())
    }
}

impl Packet {
    fn open(name: &str) -> io::Result<Packet> {
        let cname = std::ffi::CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad interface name"))?;
        // SAFETY: a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {name}"),
            ));
        }
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let sock = socket2::Socket::new(
            socket2::Domain::PACKET,
            socket2::Type::RAW.nonblocking().cloexec(),
            Some(socket2::Protocol::from(proto as i32)),
        )
        .map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("packet socket for {name}: {e} (needs root or CAP_NET_RAW)"),
            )
        })?;
        let fd = sock.as_raw_fd();
        let vnet_hdr = sys::setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_VNET_HDR, 1).is_ok();
        // Frames this socket sends must not come back to it.
        sys::setsockopt_int(fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, 1)?;
        let _ = sock.set_recv_buffer_size(8 << 20);
        let _ = sock.set_send_buffer_size(8 << 20);
        // SAFETY: sockaddr_ll is plain data; zero is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: fd is a socket; sll is a valid sockaddr_ll of the given size.
        let r = unsafe {
            libc::bind(
                fd,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: packet_mreq is plain data.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        // SAFETY: fd is a packet socket; mreq is valid for its size.
        let r = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_PACKET,
                libc::PACKET_ADD_MEMBERSHIP,
                &mreq as *const libc::packet_mreq as *const libc::c_void,
                std::mem::size_of::<libc::packet_mreq>() as u32,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        // Drain what queued before the bind (frames of any interface). Then sends block (a
        // full device queue makes the forwarding thread wait, up to the send timeout).
        let mut junk = [0u8; 64];
        // SAFETY: a nonblocking socket and a valid buffer.
        while unsafe { libc::recv(fd, junk.as_mut_ptr().cast(), junk.len(), 0) } >= 0 {}
        sock.set_nonblocking(false)?;
        sys::set_timeout(fd, libc::SO_SNDTIMEO, SEND_WAIT)?;
        Ok(Packet {
            fd: sock.into(),
            ifindex,
            vnet_hdr,
        })
    }

    /// One `recvmmsg` of whatever is queued, up to the batch (`MSG_DONTWAIT`).
    fn recv(&self, bufs: &mut [FrameBuf]) -> io::Result<usize> {
        let off = if self.vnet_hdr { HEADROOM } else { DATA };
        let n = bufs.len().min(RX_BATCH);
        // SAFETY: iovec and mmsghdr are plain data; zero is a valid start.
        let mut iov: [libc::iovec; RX_BATCH] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; RX_BATCH] = unsafe { std::mem::zeroed() };
        for i in 0..n {
            let b = &mut bufs[i].buf[off..];
            iov[i].iov_base = b.as_mut_ptr().cast();
            iov[i].iov_len = b.len();
            hdrs[i].msg_hdr.msg_iov = &mut iov[i];
            hdrs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: n headers, each pointing at one iovec over a live, exclusively borrowed buffer.
        let got = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                hdrs.as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            let e = io::Error::last_os_error();
            return if is_timeout(&e) { Ok(0) } else { Err(e) };
        }
        let got = got as usize;
        for (fb, h) in bufs.iter_mut().zip(&hdrs).take(got) {
            let n = h.msg_len as usize;
            if !self.vnet_hdr {
                fb.clear_vnet();
            }
            fb.len = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                0 // larger than any frame we carry
            } else {
                n.saturating_sub(DATA - off)
            };
        }
        Ok(got)
    }

    fn send(&self, buf: &[u8]) -> io::Result<()> {
        // SAFETY: a valid socket and buffer.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}

impl Tap {
    fn open(name: &str) -> io::Result<Tap> {
        let dev = tun_rs::DeviceBuilder::new()
            .name(name)
            .layer(tun_rs::Layer::L2)
            .offload(true)
            .enable(true)
            .build_sync()
            .map_err(|e| io::Error::new(e.kind(), format!("TAP device {name}: {e}")))?;
        dev.set_nonblocking(true)?;
        let vnet_hdr = dev.tcp_gso();
        Ok(Tap { dev, vnet_hdr })
    }

    /// Reads whatever frames are ready, up to the batch.
    fn recv(&self, bufs: &mut [FrameBuf]) -> io::Result<usize> {
        let off = if self.vnet_hdr { HEADROOM } else { DATA };
        let mut got = 0;
        while got < bufs.len() {
            let fb = &mut bufs[got];
            match self.dev.recv(&mut fb.buf[off..]) {
                Ok(n) => {
                    if !self.vnet_hdr {
                        fb.clear_vnet();
                    }
                    fb.len = n.saturating_sub(DATA - off);
                    got += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if got > 0 || e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(got)
    }

    fn send(&self, buf: &[u8]) -> io::Result<()> {
        loop {
            match self.dev.send(buf) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !sys::wait(self.dev.as_raw_fd(), libc::POLLOUT, SEND_WAIT) {
                        return Err(e);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Names of interfaces vnetd must not attach to without an explicit `=packet`: the one
/// carrying the default route and the one holding the overlay (listen) address.
pub fn protected_interfaces(listen: &SocketAddr) -> Vec<String> {
    let mut out: Vec<String> = crate::route::RouteTable::read()
        .default_interfaces()
        .map(str::to_string)
        .collect();
    if !listen.ip().is_unspecified() {
        if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
            for a in addrs {
                let ip = a.address.as_ref().and_then(|s| {
                    s.as_sockaddr_in()
                        .map(|v| std::net::IpAddr::V4(v.ip()))
                        .or_else(|| s.as_sockaddr_in6().map(|v| std::net::IpAddr::V6(v.ip())))
                });
                if ip == Some(listen.ip()) {
                    out.push(a.interface_name.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iface_args_parse() {
        assert_eq!("vmnet1".parse::<IfaceArg>().unwrap().kind, KindArg::Auto);
        assert_eq!(
            "veth0=packet".parse::<IfaceArg>().unwrap().kind,
            KindArg::Packet
        );
        assert_eq!("tap0=tap".parse::<IfaceArg>().unwrap().kind, KindArg::Tap);
        assert_eq!(
            "vm=dgram:127.0.0.1:5555,127.0.0.1:5556"
                .parse::<IfaceArg>()
                .unwrap()
                .kind,
            KindArg::Dgram {
                local: "127.0.0.1:5555".parse().unwrap(),
                peer: Some("127.0.0.1:5556".parse().unwrap())
            }
        );
        assert_eq!(
            "vm=dgram".parse::<IfaceArg>().unwrap().kind,
            KindArg::Dgram {
                local: "127.0.0.1:0".parse().unwrap(),
                peer: None
            }
        );
        assert!("vm=dgram:nope".parse::<IfaceArg>().is_err());
        assert!("vm=weird".parse::<IfaceArg>().is_err());
    }
}
