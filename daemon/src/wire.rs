//! The overlay link wire format, the frame buffer layout, and the software offloads.
//!
//! Every link message starts with a 4-byte header `[MAGIC, kind, hop limit, flags]`.
//! - TCP links: each message is a frame `u32 length (big endian) ‖ header ‖ body`.
//! - UDP links: each datagram is `header ‖ body`; a frame too large for one datagram is sent
//!   as `FRAGMENT` messages `header ‖ id u32 ‖ index u16 ‖ count u16 ‖ chunk`, reassembled
//!   at the receiver (a lost chunk loses the frame, as a lost datagram would).
//! - A `FRAME` body is `virtio_net_hdr (10 bytes, when flags & HAS_VNET_HDR) ‖ Ethernet frame`.
//!   Carrying the virtio-net header keeps TSO/GSO super-frames (up to 64 KB) whole across
//!   the overlay: they are segmented only where they leave into something that cannot take
//!   them (a `dgram` interface), or by the receiving kernel.
//! - Handshake and keepalive bodies are small JSON objects.

use std::io;

pub const MAGIC: u8 = 0x56; // 'V'; a control frame starts with '{' instead.

pub const KIND_FRAME: u8 = 1;
pub const KIND_HELLO: u8 = 2;
pub const KIND_CHALLENGE: u8 = 3;
pub const KIND_PROOF: u8 = 4;
pub const KIND_READY: u8 = 5;
pub const KIND_KEEPALIVE: u8 = 6;
pub const KIND_KEEPALIVE_ACK: u8 = 7;
pub const KIND_FRAGMENT: u8 = 8;
/// "I have no session with you": the dialer should say hello again.
pub const KIND_RESET: u8 = 9;
pub const KIND_REFUSED: u8 = 10;
/// A listener over its handshake budget: retry the hello with this cookie (UDP).
pub const KIND_COOKIE: u8 = 11;
/// A listener's keys are due: the dialer should start a new handshake (sent sealed).
pub const KIND_REKEY: u8 = 12;

pub const FLAG_VNET_HDR: u8 = 1;

/// A frame enters the overlay with this hop limit (SPEC 2.4).
pub const HOP_LIMIT: u8 = 16;

pub const LINK_HDR: usize = 4;
pub const FRAG_HDR: usize = 8;
pub const VNET_HDR_LEN: usize = 10;

/// Bytes reserved in front of the virtio-net header in a [`FrameBuf`] for link headers.
pub const HEADROOM: usize = 16;
/// Where the Ethernet frame starts in a [`FrameBuf`].
pub const DATA: usize = HEADROOM + VNET_HDR_LEN;
/// The largest Ethernet frame carried (a 64 KB GSO super-frame plus its Ethernet header).
pub const MAX_FRAME: usize = 65535 + 14 + 4;
pub const BUF_LEN: usize = DATA + MAX_FRAME;
/// The largest TCP link message accepted.
pub const MAX_LINK_MSG: usize = LINK_HDR + VNET_HDR_LEN + MAX_FRAME;

pub const VIRTIO_NET_HDR_F_NEEDS_CSUM: u8 = 1;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
pub const GSO_ECN: u8 = 0x80;

/// One frame in flight: headroom, virtio-net header, Ethernet frame, in one reusable buffer.
pub struct FrameBuf {
    pub buf: Box<[u8]>,
    /// Length of the Ethernet frame at `DATA`.
    pub len: usize,
    /// Hop limit the frame has left.
    pub hop: u8,
}

impl Default for FrameBuf {
    fn default() -> Self {
        FrameBuf::new()
    }
}

impl FrameBuf {
    pub fn new() -> FrameBuf {
        FrameBuf {
            buf: vec![0u8; BUF_LEN].into_boxed_slice(),
            len: 0,
            hop: HOP_LIMIT,
        }
    }

    pub fn clear_vnet(&mut self) {
        self.buf[HEADROOM..DATA].fill(0);
    }

    /// The frame as a [`Frame`] view (what forwarding works on).
    pub fn view(&mut self) -> Frame<'_> {
        Frame {
            buf: &mut self.buf,
            at: HEADROOM,
            len: self.len,
            hop: self.hop,
        }
    }

    /// Loads a received link FRAME body (`[vnet hdr] ‖ frame`) into this buffer.
    pub fn load_body(&mut self, flags: u8, body: &[u8]) -> bool {
        let (vnet, frame) = if flags & FLAG_VNET_HDR != 0 {
            if body.len() < VNET_HDR_LEN {
                return false;
            }
            body.split_at(VNET_HDR_LEN)
        } else {
            (&[][..], body)
        };
        if frame.len() < 14 || frame.len() > MAX_FRAME {
            return false;
        }
        if vnet.is_empty() {
            self.clear_vnet();
        } else {
            self.buf[HEADROOM..DATA].copy_from_slice(vnet);
        }
        self.buf[DATA..DATA + frame.len()].copy_from_slice(frame);
        self.len = frame.len();
        true
    }
}

/// Bytes a [`Frame`] needs in front of its virtio-net header: a TCP link message's length and
/// link header, written in place when the frame is sent over a link.
pub const PREFIX: usize = 4 + LINK_HDR;

/// A frame being forwarded, wherever it lies: in a [`FrameBuf`], or in place in a TCP link's
/// receive buffer. `buf[at..at + 10]` is its virtio-net header, the Ethernet frame follows, and
/// at least [`PREFIX`] bytes in front of `at` may be overwritten with a link header.
pub struct Frame<'a> {
    buf: &'a mut [u8],
    at: usize,
    /// Length of the Ethernet frame.
    pub len: usize,
    /// Hop limit the frame has left.
    pub hop: u8,
}

impl<'a> Frame<'a> {
    /// A view of `buf` with the virtio-net header at `at`; `None` unless there is room for the
    /// link prefix in front and the frame fits.
    pub fn new(buf: &'a mut [u8], at: usize, len: usize, hop: u8) -> Option<Frame<'a>> {
        (at >= PREFIX && at + VNET_HDR_LEN + len <= buf.len()).then_some(Frame {
            buf,
            at,
            len,
            hop,
        })
    }

    pub fn frame(&self) -> &[u8] {
        &self.buf[self.at + VNET_HDR_LEN..self.at + VNET_HDR_LEN + self.len]
    }

    pub fn frame_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.at + VNET_HDR_LEN..self.at + VNET_HDR_LEN + self.len]
    }

    /// virtio-net header and frame.
    pub fn vnet_and_frame(&self) -> &[u8] {
        &self.buf[self.at..self.at + VNET_HDR_LEN + self.len]
    }

    pub fn vnet(&self) -> VnetHdr {
        VnetHdr::decode(&self.buf[self.at..self.at + VNET_HDR_LEN])
    }

    pub fn clear_vnet(&mut self) {
        self.buf[self.at..self.at + VNET_HDR_LEN].fill(0);
    }

    /// Source and destination MACs, if the frame is long enough to be Ethernet.
    pub fn macs(&self) -> Option<(vnet_grammar::Mac, vnet_grammar::Mac)> {
        if self.len < 14 {
            return None;
        }
        let f = &self.buf[self.at + VNET_HDR_LEN..];
        let mut dst = [0u8; 6];
        let mut src = [0u8; 6];
        dst.copy_from_slice(&f[0..6]);
        src.copy_from_slice(&f[6..12]);
        Some((vnet_grammar::Mac(src), vnet_grammar::Mac(dst)))
    }

    /// Writes a TCP link message header in front; returns the whole message
    /// (`u32 length ‖ link header ‖ virtio-net header ‖ frame`).
    pub fn tcp_message(&mut self, hop: u8) -> &[u8] {
        let body = LINK_HDR + VNET_HDR_LEN + self.len;
        let start = self.at - PREFIX;
        self.buf[start..start + 4].copy_from_slice(&crate::framing::header(body));
        self.buf[start + 4..self.at].copy_from_slice(&LinkHeader::frame(hop).encode());
        &self.buf[start..self.at + VNET_HDR_LEN + self.len]
    }

    /// Writes a UDP link header in front; returns the (unfragmented) datagram.
    pub fn udp_message(&mut self, hop: u8) -> &[u8] {
        let start = self.at - LINK_HDR;
        self.buf[start..self.at].copy_from_slice(&LinkHeader::frame(hop).encode());
        &self.buf[start..self.at + VNET_HDR_LEN + self.len]
    }
}

/// The virtio-net header (`struct virtio_net_hdr`, native endian as the kernel uses it for
/// packet sockets and TAP devices on little-endian hosts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    pub fn decode(b: &[u8]) -> VnetHdr {
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        }
    }

    pub fn encode(&self, b: &mut [u8]) {
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }

    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }
}

/// Completes a partial checksum (`VIRTIO_NET_HDR_F_NEEDS_CSUM`) in software.
pub fn finish_checksum(frame: &mut [u8], h: &VnetHdr) -> io::Result<()> {
    if h.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM == 0 {
        return Ok(());
    }
    let start = h.csum_start as usize;
    let at = start + h.csum_offset as usize;
    if at + 2 > frame.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "checksum offset past the frame",
        ));
    }
    let sum = tun_rs::checksum(&frame[start..], 0);
    let folded = !sum;
    frame[at..at + 2].copy_from_slice(&folded.to_be_bytes());
    Ok(())
}

/// Scratch space for software segmentation of GSO super-frames (reused: no allocation once
/// warm).
pub struct Segmenter {
    bufs: Vec<Vec<u8>>,
    sizes: Vec<usize>,
    copy: Vec<u8>,
}

impl Default for Segmenter {
    fn default() -> Self {
        Segmenter::new()
    }
}

impl Segmenter {
    pub fn new() -> Segmenter {
        Segmenter {
            bufs: Vec::new(),
            sizes: Vec::new(),
            copy: Vec::new(),
        }
    }

    /// [`Segmenter::split`] of a copy of `frame` (which stays as it is).
    pub fn split_copy(&mut self, frame: &[u8], h: &VnetHdr) -> io::Result<usize> {
        let mut copy = std::mem::take(&mut self.copy);
        copy.clear();
        copy.extend_from_slice(frame);
        let r = self.split(&mut copy, h);
        self.copy = copy;
        r
    }

    /// Splits a TCP (v4/v6) or UDP-L4 GSO Ethernet frame into MTU-sized Ethernet frames with
    /// correct checksums; returns how many, readable through [`Segmenter::segment`].
    pub fn split(&mut self, frame: &mut [u8], h: &VnetHdr) -> io::Result<usize> {
        const ETH: usize = 14;
        if frame.len() < ETH + 20 || h.gso_size == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad GSO frame"));
        }
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        let is_v6 = match ethertype {
            0x0800 => false,
            0x86dd => true,
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "GSO frame is not IP",
                ))
            }
        };
        let (csum_start, hdr_len) = (h.csum_start as usize, h.hdr_len as usize);
        if csum_start < ETH || hdr_len < ETH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "bad GSO offsets",
            ));
        }
        // The kernel's hdr_len may be a hint only; recompute it from the transport header.
        let hdr_len = match h.gso_type & !GSO_ECN {
            GSO_TCPV4 | GSO_TCPV6 => {
                let off = csum_start + 12;
                if off >= frame.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "short TCP header",
                    ));
                }
                csum_start + ((frame[off] >> 4) as usize) * 4
            }
            _ => hdr_len.max(csum_start + 8),
        };
        let ip_hdr = tun_rs::VirtioNetHdr {
            flags: h.flags,
            gso_type: h.gso_type & !GSO_ECN,
            hdr_len: (hdr_len - ETH) as u16,
            gso_size: h.gso_size,
            csum_start: (csum_start - ETH) as u16,
            csum_offset: h.csum_offset,
        };
        let payload = frame.len().saturating_sub(hdr_len);
        let count = payload.div_ceil(h.gso_size as usize).max(1);
        let seg_len = ETH + hdr_len + h.gso_size as usize;
        if self.bufs.len() < count {
            self.bufs.resize_with(count, Vec::new);
            self.sizes.resize(count, 0);
        }
        for b in &mut self.bufs[..count] {
            if b.len() < seg_len {
                b.resize(seg_len, 0);
            }
        }
        let (eth, ip) = frame.split_at_mut(ETH);
        let n = tun_rs::gso_split(
            ip,
            ip_hdr,
            &mut self.bufs[..count],
            &mut self.sizes[..count],
            ETH,
            is_v6,
        )?;
        for b in &mut self.bufs[..n] {
            b[..ETH].copy_from_slice(eth);
        }
        Ok(n)
    }

    pub fn segment(&self, i: usize) -> &[u8] {
        &self.bufs[i][..14 + self.sizes[i]]
    }
}

/// Packs a FRAME body (`virtio-net header ‖ frame`) that does not fit one UDP datagram of
/// `max` bytes as FRAGMENT datagrams laid end to end in `out`: every datagram is exactly `max`
/// bytes except the last, the layout UDP GSO sends with one `sendmsg` (segment size `max`).
/// Returns the number of datagrams, or `None` if there would be more than `u16::MAX`.
pub fn pack_fragments(
    out: &mut Vec<u8>,
    body: &[u8],
    id: u32,
    hop: u8,
    max: usize,
) -> Option<usize> {
    pack_fragments_spaced(out, body, id, hop, max, (0, 0))
}

/// [`pack_fragments`] with `room.0` bytes before and `room.1` after each fragment message, so
/// that slots of `room.0 + max + room.1` bytes lie end to end: a sealed link writes each
/// record's header and tag there and seals the fragment where it lies.
pub fn pack_fragments_spaced(
    out: &mut Vec<u8>,
    body: &[u8],
    id: u32,
    hop: u8,
    max: usize,
    room: (usize, usize),
) -> Option<usize> {
    let chunk = max.checked_sub(LINK_HDR + FRAG_HDR).filter(|c| *c > 0)?;
    let count = body.len().div_ceil(chunk);
    if count > u16::MAX as usize {
        return None;
    }
    out.clear();
    for (i, piece) in body.chunks(chunk).enumerate() {
        out.resize(out.len() + room.0, 0);
        let header = LinkHeader {
            kind: KIND_FRAGMENT,
            ..LinkHeader::frame(hop)
        };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&(i as u16).to_be_bytes());
        out.extend_from_slice(&(count as u16).to_be_bytes());
        out.extend_from_slice(piece);
        out.resize(out.len() + room.1, 0);
    }
    Some(count)
}

/// What a fragment did to its frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembled {
    /// More fragments to come.
    Pending,
    /// The frame is complete in [`Reasm::fb`].
    Done,
    /// The fragment did not fit what came before (counted in [`Reasm::take_lost`]).
    Lost,
    Malformed,
}

/// Reassembly of one UDP link's fragmented frames, directly into a frame buffer (one frame in
/// flight per link; fragments in order, as one GSO send or GRO batch delivers them).
pub struct Reasm {
    id: Option<u32>,
    next: u16,
    count: u16,
    /// Where the body starts in `fb.buf` (the virtio-net header, or the frame without one).
    base: usize,
    filled: usize,
    vnet: bool,
    lost: u64,
    pub fb: FrameBuf,
}

impl Default for Reasm {
    fn default() -> Self {
        Reasm {
            id: None,
            next: 0,
            count: 0,
            base: HEADROOM,
            filled: 0,
            vnet: true,
            lost: 0,
            fb: FrameBuf::new(),
        }
    }
}

impl Reasm {
    /// Adds one FRAGMENT message (`body` follows its 4-byte link header).
    pub fn push(&mut self, hop: u8, flags: u8, body: &[u8]) -> Reassembled {
        if body.len() < FRAG_HDR {
            return Reassembled::Malformed;
        }
        let id = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        let index = u16::from_be_bytes([body[4], body[5]]);
        let count = u16::from_be_bytes([body[6], body[7]]);
        let chunk = &body[FRAG_HDR..];
        if count == 0 || index >= count {
            return Reassembled::Malformed;
        }
        if index == 0 {
            if self.id.is_some() {
                // The previous frame never completed.
                self.lost += 1;
            }
            self.id = Some(id);
            self.next = 0;
            self.count = count;
            self.filled = 0;
            self.vnet = flags & FLAG_VNET_HDR != 0;
            self.base = if self.vnet { HEADROOM } else { DATA };
            if !self.vnet {
                self.fb.clear_vnet();
            }
            self.fb.hop = hop;
        } else if self.id != Some(id) || self.next != index || self.count != count {
            return if self.id.take().is_some() {
                self.lost += 1;
                Reassembled::Lost
            } else {
                Reassembled::Pending
            };
        }
        let at = self.base + self.filled;
        if at + chunk.len() > self.fb.buf.len() {
            self.id = None;
            return Reassembled::Malformed;
        }
        self.fb.buf[at..at + chunk.len()].copy_from_slice(chunk);
        self.filled += chunk.len();
        self.next += 1;
        if self.next < self.count {
            return Reassembled::Pending;
        }
        self.id = None;
        let len = if self.vnet {
            self.filled.saturating_sub(VNET_HDR_LEN)
        } else {
            self.filled
        };
        if !(14..=MAX_FRAME).contains(&len) || (self.vnet && self.filled < VNET_HDR_LEN) {
            return Reassembled::Malformed;
        }
        self.fb.len = len;
        Reassembled::Done
    }

    /// Frames lost since the last call.
    pub fn take_lost(&mut self) -> u64 {
        std::mem::take(&mut self.lost)
    }
}

/// The 4-byte header of every link message: `[MAGIC, kind, hop limit, flags]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkHeader {
    /// `KIND_*`.
    pub kind: u8,
    /// The hop limit (frames and fragments; 0 in control messages).
    pub hop: u8,
    /// `FLAG_*`.
    pub flags: u8,
}

impl LinkHeader {
    /// A frame's header: a virtio-net header follows.
    pub fn frame(hop: u8) -> LinkHeader {
        LinkHeader {
            kind: KIND_FRAME,
            hop,
            flags: FLAG_VNET_HDR,
        }
    }

    /// A control message's header (no hop limit, no flags).
    pub fn control(kind: u8) -> LinkHeader {
        LinkHeader {
            kind,
            hop: 0,
            flags: 0,
        }
    }

    /// Reads the header at the start of `msg`; `None` when it is too short or not a link
    /// message (another magic byte).
    pub fn parse(msg: &[u8]) -> Option<LinkHeader> {
        match msg {
            [MAGIC, kind, hop, flags, ..] => Some(LinkHeader {
                kind: *kind,
                hop: *hop,
                flags: *flags,
            }),
            _ => None,
        }
    }

    /// Whether a frame or fragment (data, not a control message).
    pub fn is_data(&self) -> bool {
        self.kind == KIND_FRAME || self.kind == KIND_FRAGMENT
    }

    pub fn encode(self) -> [u8; LINK_HDR] {
        [MAGIC, self.kind, self.hop, self.flags]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnet_header_round_trips() {
        let h = VnetHdr {
            flags: 1,
            gso_type: GSO_TCPV4,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut b = [0u8; 10];
        h.encode(&mut b);
        assert_eq!(VnetHdr::decode(&b), h);
        assert!(h.is_gso());
    }

    #[test]
    fn a_tcp_super_frame_is_split_into_valid_segments() {
        // Ethernet + IPv4 + TCP header + 4000 bytes of payload, checksum left partial.
        let payload = 4000usize;
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12] = 0x08;
        f[14] = 0x45;
        let total = (20 + 20 + payload) as u16;
        f[16..18].copy_from_slice(&total.to_be_bytes());
        f[22] = 64;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34 + 12] = 5 << 4;
        f[34 + 13] = 0x18;
        for (i, b) in f[54..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let h = VnetHdr {
            flags: VIRTIO_NET_HDR_F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut s = Segmenter::new();
        let n = s.split(&mut f, &h).unwrap();
        assert_eq!(n, 3);
        let mut seen = 0;
        for i in 0..n {
            let seg = s.segment(i);
            let ip_len = u16::from_be_bytes([seg[16], seg[17]]) as usize;
            assert_eq!(ip_len + 14, seg.len());
            // The IPv4 header checksum verifies.
            assert_eq!(tun_rs::checksum(&seg[14..34], 0), 0xffff);
            seen += seg.len() - 54;
        }
        assert_eq!(seen, payload);
    }

    /// A frame cut into GSO-ready fragments (equal datagrams, a shorter last one) comes back
    /// whole from the reassembler; a missing fragment loses the frame and is counted.
    #[test]
    fn spaced_fragments_are_the_same_fragments_with_room_around_each() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i * 31) as u8).collect();
        let (mut plain, mut spaced) = (Vec::new(), Vec::new());
        let n = pack_fragments(&mut plain, &body, 3, 9, 1000).unwrap();
        let m = pack_fragments_spaced(&mut spaced, &body, 3, 9, 1000, (16, 16)).unwrap();
        assert_eq!(n, m);
        let slots: Vec<&[u8]> = spaced.chunks(1032).collect();
        assert_eq!(slots.len(), n);
        for (slot, msg) in slots.iter().zip(plain.chunks(1000)) {
            assert_eq!(&slot[16..slot.len() - 16], msg);
        }
    }

    #[test]
    fn fragments_round_trip_and_losses_are_counted() {
        let mut fb = FrameBuf::new();
        fb.len = 9000;
        for (i, b) in fb.buf[DATA..DATA + fb.len].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        VnetHdr {
            flags: 1,
            gso_type: GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        }
        .encode(&mut fb.buf[HEADROOM..DATA]);
        let mut out = Vec::new();
        let body = fb.view().vnet_and_frame().to_vec();
        let n = pack_fragments(&mut out, &body, 7, 12, 1472).unwrap();
        assert_eq!(n, body.len().div_ceil(1472 - 12));
        assert_eq!(out.len(), body.len() + n * 12);
        let datagrams: Vec<&[u8]> = out.chunks(1472).collect();
        assert_eq!(datagrams.len(), n);
        assert!(datagrams[..n - 1].iter().all(|d| d.len() == 1472));
        let mut r = Reasm::default();
        for (i, d) in datagrams.iter().enumerate() {
            let LinkHeader { kind, hop, flags } = LinkHeader::parse(d).unwrap();
            assert_eq!((kind, hop), (KIND_FRAGMENT, 12));
            let want = if i + 1 == n {
                Reassembled::Done
            } else {
                Reassembled::Pending
            };
            assert_eq!(r.push(hop, flags, &d[LINK_HDR..]), want);
        }
        assert_eq!(r.fb.len, 9000);
        assert_eq!(r.fb.hop, 12);
        assert_eq!(r.fb.view().vnet_and_frame(), &body[..]);
        assert_eq!(r.take_lost(), 0);
        // Drop the second fragment: the frame is lost, counted once, and the next one is fine.
        for (i, d) in datagrams.iter().enumerate() {
            if i != 1 {
                r.push(12, FLAG_VNET_HDR, &d[LINK_HDR..]);
            }
        }
        assert_eq!(r.take_lost(), 1);
        let mut last = Reassembled::Pending;
        for d in &datagrams {
            last = r.push(12, FLAG_VNET_HDR, &d[LINK_HDR..]);
        }
        assert_eq!(last, Reassembled::Done);
        assert_eq!(r.take_lost(), 0);
    }

    /// A frame view writes the link message in front of itself, in place.
    #[test]
    fn a_frame_view_builds_link_messages_in_place() {
        let mut buf = vec![0u8; 100];
        buf[8 + VNET_HDR_LEN..8 + VNET_HDR_LEN + 14].copy_from_slice(&[1; 14]);
        assert!(Frame::new(&mut buf, 7, 14, 3).is_none());
        let mut f = Frame::new(&mut buf, 8, 14, 3).unwrap();
        let m = f.tcp_message(2).to_vec();
        assert_eq!(m.len(), 4 + LINK_HDR + VNET_HDR_LEN + 14);
        assert_eq!(
            &m[..4],
            &((LINK_HDR + VNET_HDR_LEN + 14) as u32).to_be_bytes()
        );
        assert_eq!(LinkHeader::parse(&m[4..]), Some(LinkHeader::frame(2)));
        let d = f.udp_message(5).to_vec();
        assert_eq!(LinkHeader::parse(&d), Some(LinkHeader::frame(5)));
        assert_eq!(LinkHeader::parse(&d[..3]), None);
        assert_eq!(LinkHeader::parse(b"{\"op\""), None);
        assert_eq!(&d[LINK_HDR + VNET_HDR_LEN..], &[1; 14]);
    }
}
