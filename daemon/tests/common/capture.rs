//! The underlay as an attacker on the path sees it: a packet socket on `lo` that records the
//! IPv4 packets between two addresses, and a raw IP socket that injects forged or replayed UDP
//! datagrams from any address (root only).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// One IPv4 packet seen on `lo`.
#[derive(Clone, Debug)]
pub struct Packet {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    /// 17 (UDP) or 6 (TCP).
    pub proto: u8,
    /// The whole IP packet.
    pub ip: Vec<u8>,
    /// The UDP payload (empty for TCP).
    pub udp_payload: Vec<u8>,
}

/// A packet socket bound to `lo`, and a raw socket to send IP packets written whole.
pub struct Tap {
    fd: OwnedFd,
    raw: OwnedFd,
}

fn ll_addr(ifindex: i32) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data.
    let mut a: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    a.sll_family = libc::AF_PACKET as u16;
    a.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    a.sll_ifindex = ifindex;
    a.sll_halen = 6;
    a
}

impl Tap {
    pub fn open() -> Tap {
        // SAFETY: plain socket calls with valid arguments; the fd is owned at once.
        unsafe {
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW,
                (libc::ETH_P_ALL as u16).to_be() as i32,
            );
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            let fd = OwnedFd::from_raw_fd(fd);
            let ifindex = libc::if_nametoindex(c"lo".as_ptr()) as i32;
            let a = ll_addr(ifindex);
            let r = libc::bind(
                fd.as_raw_fd(),
                (&a as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 50_000,
            };
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
            // Other tests' links share `lo`: a large buffer so ours are not lost among them.
            let big: libc::c_int = 64 << 20;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&big as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
            let raw = libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_RAW);
            assert!(raw >= 0, "raw socket: {}", std::io::Error::last_os_error());
            let raw = OwnedFd::from_raw_fd(raw);
            Tap { fd, raw }
        }
    }

    /// The packets between addresses of `net` (any port) seen until `until` returns true or
    /// `limit` passes; each packet once (outgoing copies on `lo` are skipped).
    pub fn record(&self, net: [u8; 3], limit: Duration, until: impl Fn() -> bool) -> Vec<Packet> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        let end = Instant::now() + limit;
        while Instant::now() < end && !until() {
            // SAFETY: sockaddr_ll is plain data.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: a valid socket, buffer and address.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut from as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n <= 0 || from.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            if let Some(p) = parse(&buf[..n as usize])
                .filter(|p| p.src.ip().octets()[..3] == net && p.dst.ip().octets()[..3] == net)
            {
                out.push(p);
            }
        }
        out
    }

    /// Sends a UDP datagram from `src` (any address) to `dst`, as if it came off the wire.
    pub fn inject(&self, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        let packet = udp_packet(src, dst, payload);
        // SAFETY: sockaddr_in is plain data.
        let mut to: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        to.sin_family = libc::AF_INET as u16;
        to.sin_addr.s_addr = u32::from_ne_bytes(dst.ip().octets());
        // SAFETY: a valid socket, packet and address.
        let n = unsafe {
            libc::sendto(
                self.raw.as_raw_fd(),
                packet.as_ptr().cast(),
                packet.len(),
                0,
                (&to as *const libc::sockaddr_in).cast(),
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            )
        };
        assert_eq!(
            n,
            packet.len() as isize,
            "inject: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn parse(frame: &[u8]) -> Option<Packet> {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] {
        return None;
    }
    let ip = &frame[14..];
    let ihl = ((ip[0] & 0x0f) as usize) * 4;
    let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
    if ip[0] >> 4 != 4 || ihl < 20 || total > ip.len() || total < ihl + 8 {
        return None;
    }
    let ip = &ip[..total];
    let addr = |o: usize| Ipv4Addr::new(ip[o], ip[o + 1], ip[o + 2], ip[o + 3]);
    let port = |o: usize| u16::from_be_bytes([ip[ihl + o], ip[ihl + o + 1]]);
    let proto = ip[9];
    Some(Packet {
        src: SocketAddrV4::new(addr(12), port(0)),
        dst: SocketAddrV4::new(addr(16), port(2)),
        proto,
        udp_payload: if proto == 17 {
            ip[ihl + 8..].to_vec()
        } else {
            Vec::new()
        },
        ip: ip.to_vec(),
    })
}

/// An IPv4 packet holding a UDP datagram (UDP checksum 0: none).
fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let total = 20 + 8 + payload.len();
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend_from_slice(&src.ip().octets());
    ip.extend_from_slice(&dst.ip().octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&src.port().to_be_bytes());
    ip.extend_from_slice(&dst.port().to_be_bytes());
    ip.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(payload);
    ip
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]) as u32)
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}
