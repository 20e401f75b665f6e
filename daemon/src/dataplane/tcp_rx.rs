//! TCP link connections on the forwarding thread: registering one, reading it, and
//! forwarding every complete message in place (a sealed link's records opened in place first).

use super::*;

/// A TCP link's receive buffer: several of the largest messages, so reads are large and a
/// message in progress rarely has to be moved to the front.
const TCP_BUF: usize = 4 * (4 + wire::MAX_LINK_MSG);
/// Move the unread tail to the front when less room than this is left for a read.
const TCP_MIN_READ: usize = 32 << 10;

/// One TCP link connection's receiving state.
pub(super) struct TcpRx {
    pub(super) link: Arc<Link>,
    pub(super) session: u64,
    pub(super) stream: TcpStream,
    pub(super) buf: Vec<u8>,
    pub(super) start: usize,
    pub(super) end: usize,
    /// Frames without a virtio-net header are copied here to get one.
    pub(super) fb: Option<FrameBuf>,
    pub(super) lookup: Lookup<Port>,
    /// Dropped with this state: tells the dialer the connection is over.
    pub(super) _ended: oneshot::Sender<()>,
}

impl DataPlane {
    /// Registers a TCP link connection; `None` (and the session down) if that fails.
    pub(super) fn tcp_add(
        &self,
        ep: &Epoll,
        token: u64,
        c: NewTcp,
        sc: &mut Scratch,
    ) -> Option<TcpRx> {
        let mut buf = vec![0u8; TCP_BUF.max(c.leftover.len() + TCP_MIN_READ)];
        buf[..c.leftover.len()].copy_from_slice(&c.leftover);
        if let Err(e) = ep.ctl(libc::EPOLL_CTL_ADD, c.stream.as_raw_fd(), token) {
            c.link.down(c.session, &format!("epoll: {e}"));
            return None;
        }
        let mut rx = TcpRx {
            lookup: Lookup::new(
                Target::Link {
                    peer: c.link.peer.clone().into(),
                },
                None,
            ),
            link: c.link,
            session: c.session,
            stream: c.stream,
            buf,
            start: 0,
            end: c.leftover.len(),
            fb: None,
            _ended: c.ended,
        };
        // Frames that came with the handshake are forwarded now (epoll reports only new data).
        if rx.end > 0 {
            if let Err(why) = self.tcp_parse(&mut rx, sc) {
                let _ = ep.ctl(libc::EPOLL_CTL_DEL, rx.stream.as_raw_fd(), token);
                rx.link.down(rx.session, &why);
                return None;
            }
        }
        Some(rx)
    }

    /// One `recv` from a TCP link connection, and every complete message forwarded in place;
    /// `Err(why)` when the connection is over.
    pub(super) fn tcp_rx(&self, rx: &mut TcpRx, sc: &mut Scratch) -> Result<(), String> {
        // SAFETY: a valid socket and the free part of the buffer.
        let n = unsafe {
            libc::recv(
                rx.stream.as_raw_fd(),
                rx.buf[rx.end..].as_mut_ptr().cast(),
                rx.buf.len() - rx.end,
                libc::MSG_DONTWAIT,
            )
        };
        if n == 0 {
            return Err("closed by the peer".into());
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(()),
                _ => Err(format!("read: {e}")),
            };
        }
        rx.end += n as usize;
        self.tcp_parse(rx, sc)
    }

    /// Forwards every complete message in a TCP link's buffer in place, and makes room for the
    /// next read.
    fn tcp_parse(&self, rx: &mut TcpRx, sc: &mut Scratch) -> Result<(), String> {
        let link = rx.link.clone();
        let mut need = 8;
        while rx.end - rx.start >= 8 {
            let s = rx.start;
            let len = crate::framing::peek_len(&rx.buf[s..rx.end]).unwrap_or(0);
            if !(wire::LINK_HDR..=wire::MAX_LINK_MSG + vnet_seal::OVERHEAD).contains(&len) {
                link.stats.drop(DropReason::Malformed);
                return Err("malformed length".into());
            }
            let total = 4 + len;
            if rx.end - s < total {
                need = total;
                break;
            }
            rx.start += total;
            // A sealed link takes records only; a clear one, clear messages only.
            let record = seal::is_record(&rx.buf[s + 4..]);
            let (at, len) = match (record, link.is_sealed()) {
                (true, true) => {
                    match link.open_in_place(&mut rx.buf[s + 4..s + total], seal::wall_ns()) {
                        Ok(n) => (s + 4 + vnet_seal::HEADER_LEN, n),
                        Err(why) => {
                            link.stats.drop(why);
                            continue;
                        }
                    }
                }
                (false, false) => (s + 4, len),
                // A clear message on a sealed link (or a record on a clear one): the stream
                // is not the peer's (records authenticate it), so it is closed.
                _ => {
                    link.stats.drop(DropReason::Downgrade);
                    return Err("a message not sealed as the link is".into());
                }
            };
            self.tcp_message(rx, at, len, sc)?;
        }
        self.note_lookups(&mut rx.lookup);
        if rx.start == rx.end {
            (rx.start, rx.end) = (0, 0);
        } else if rx.start > 0
            && (rx.start + need > rx.buf.len() || rx.buf.len() - rx.end < TCP_MIN_READ)
        {
            rx.buf.copy_within(rx.start..rx.end, 0);
            rx.end -= rx.start;
            rx.start = 0;
        }
        Ok(())
    }

    /// Forwards one clear TCP link message (`len` bytes at `at`: link header and body) in
    /// place; `Err(why)` when it is malformed beyond skipping.
    fn tcp_message(
        &self,
        rx: &mut TcpRx,
        at: usize,
        len: usize,
        sc: &mut Scratch,
    ) -> Result<(), String> {
        let link = rx.link.clone();
        let malformed = |why: &str| {
            link.stats.drop(DropReason::Malformed);
            why.to_string()
        };
        let header = wire::LinkHeader::parse(&rx.buf[at..at + wire::LINK_HDR]);
        let Some(wire::LinkHeader { kind, hop, flags }) = header else {
            return Err(malformed("malformed message"));
        };
        if len > wire::MAX_LINK_MSG {
            return Err(malformed("malformed length"));
        }
        // A (sealed) rekey request is noted for the dialer; other kinds are skipped.
        if kind != wire::KIND_FRAME {
            if kind == wire::KIND_REKEY {
                link.ask_rekey();
            }
            return Ok(());
        }
        let (start, body) = (at + wire::LINK_HDR, len - wire::LINK_HDR);
        if flags & wire::FLAG_VNET_HDR != 0 {
            if body < wire::VNET_HDR_LEN {
                return Err(malformed("malformed frame"));
            }
            let flen = body - wire::VNET_HDR_LEN;
            if flen > wire::MAX_FRAME {
                return Err(malformed("frame too large"));
            }
            if flen < 14 {
                link.stats.drop(DropReason::Malformed);
            } else if let Some(mut f) = Frame::new(&mut rx.buf, start, flen, hop) {
                link.stats.rx(flen);
                self.forward(&mut f, &mut rx.lookup, &link.stats, None, sc);
            }
        } else if body > wire::MAX_FRAME {
            return Err(malformed("frame too large"));
        } else {
            let fb = rx.fb.get_or_insert_with(FrameBuf::new);
            if fb.load_body(flags, &rx.buf[start..start + body]) {
                fb.hop = hop;
                link.stats.rx(fb.len);
                self.forward(&mut fb.view(), &mut rx.lookup, &link.stats, None, sc);
            } else {
                link.stats.drop(DropReason::Malformed);
            }
        }
        Ok(())
    }
}
