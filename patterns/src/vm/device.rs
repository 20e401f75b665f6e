//! The user-space VM's network card: Ethernet frames as UDP datagrams, one frame per
//! datagram, the format of QEMU's `-netdev dgram` and of vnetd's `dgram` interfaces.

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr,
};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};

/// The largest Ethernet frame (without FCS) the card sends; what a `dgram` peer expects.
pub const MTU: usize = 1514;

/// Where the card's frames go: the UDP address of a `dgram` interface. Shared, so that the
/// VM can be moved to another daemon's interface while it runs (a migration); the card
/// then announces itself there with a gratuitous ARP, so the overlay learns the new place.
#[derive(Clone, Debug)]
pub struct Attachment(Arc<Mutex<SocketAddr>>);

impl Attachment {
    pub fn new(addr: SocketAddr) -> Attachment {
        Attachment(Arc::new(Mutex::new(addr)))
    }

    pub fn get(&self) -> SocketAddr {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set(&self, addr: SocketAddr) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = addr;
    }
}

/// A smoltcp device over a non-blocking UDP socket.
pub struct Dgram {
    pub sock: UdpSocket,
    to: Attachment,
    announced: SocketAddr,
    mac: EthernetAddress,
    ip: Ipv4Addr,
    buf: Vec<u8>,
}

impl Dgram {
    pub fn new(sock: UdpSocket, to: Attachment, mac: [u8; 6], ip: Ipv4Addr) -> Dgram {
        let announced = to.get();
        Dgram {
            sock,
            to,
            announced,
            mac: EthernetAddress(mac),
            ip,
            buf: vec![0; 65536],
        }
    }

    /// After a move, tells the new attachment who we are before anything else.
    fn follow(&mut self) -> SocketAddr {
        let to = self.to.get();
        if to != self.announced {
            self.announced = to;
            let _ = self.sock.send_to(&gratuitous_arp(self.mac, self.ip), to);
        }
        to
    }
}

/// A broadcast ARP request for our own address: every switch on the way learns our MAC.
pub fn gratuitous_arp(mac: EthernetAddress, ip: Ipv4Addr) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: ip,
    };
    let eth = EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut bytes = vec![0; eth.buffer_len() + arp.buffer_len()];
    let mut frame = EthernetFrame::new_unchecked(&mut bytes[..]);
    eth.emit(&mut frame);
    arp.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
    bytes
}

pub struct Rx(Vec<u8>);

pub struct Tx<'a> {
    sock: &'a UdpSocket,
    to: SocketAddr,
}

impl phy::Device for Dgram {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx<'_>)> {
        let to = self.follow();
        loop {
            let (n, from) = self.sock.recv_from(&mut self.buf).ok()?;
            // Only the attachment speaks for the wire; anything else is a stray datagram.
            if from == to && n <= MTU {
                let rx = Rx(self.buf[..n].to_vec());
                return Some((
                    rx,
                    Tx {
                        sock: &self.sock,
                        to,
                    },
                ));
            }
        }
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
        let to = self.follow();
        Some(Tx {
            sock: &self.sock,
            to,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps
    }
}

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        // A full socket buffer drops the frame, as a wire would; TCP sends it again.
        let _ = self.sock.send_to(&frame, self.to);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gratuitous_arp_parses_back() {
        let mac = EthernetAddress([2, 0, 10, 0, 0, 1]);
        let bytes = gratuitous_arp(mac, Ipv4Addr::new(10, 0, 0, 1));
        let frame = EthernetFrame::new_checked(&bytes[..]).expect("frame");
        assert_eq!(frame.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(frame.src_addr(), mac);
        let arp =
            ArpRepr::parse(&ArpPacket::new_checked(frame.payload()).expect("arp")).expect("repr");
        let ArpRepr::EthernetIpv4 {
            source_protocol_addr,
            target_protocol_addr,
            ..
        } = arp
        else {
            panic!("not IPv4 ARP");
        };
        assert_eq!(source_protocol_addr, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(target_protocol_addr, source_protocol_addr);
    }
}
