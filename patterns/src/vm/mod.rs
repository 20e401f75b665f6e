//! A user-space VM: a rank with its own MAC and IP address and its own TCP/IP stack
//! (smoltcp), whose only wire is a UDP socket carrying Ethernet frames to a `dgram`
//! interface. Needs no privileges; the overlay sees an ordinary machine.
//!
//! Connections follow the same rules as over kernel TCP ([`crate::handshake`]); one thread
//! drives the stack: every wait polls the interface and the UDP socket.

pub mod control;
pub mod device;

use crate::engine::{Event, Links};
use crate::handshake::{Greeting, Setup};
use crate::program::Error;
use crate::wire::{encode, split_frame, Frame};
use device::{Attachment, Dgram};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};
use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Bytes of each TCP socket's receive and send buffer.
const BUFFER: usize = 64 * 1024;

/// The VM's network card.
#[derive(Clone, Debug)]
pub struct Nic {
    pub mac: [u8; 6],
    /// The prefix length of the VM's address (the address is its entry in the peer list).
    pub prefix: u8,
    /// The UDP address the card receives on.
    pub local: SocketAddr,
    /// The `dgram` interface the card sends to.
    pub remote: Attachment,
    /// Set when the control socket asks a run of a given duration to end now.
    pub end: control::EndRequest,
}

/// A locally administered MAC made from an IPv4 address: 02:00:a:b:c:d.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x00, o[0], o[1], o[2], o[3]]
}

/// One TCP connection of the stack and the bytes on their way in and out of it.
struct Conn {
    handle: SocketHandle,
    inbox: Vec<u8>,
    outbox: VecDeque<u8>,
    /// Whether the peer's end (or failure) has been reported.
    ended: bool,
    since: Instant,
}

impl Conn {
    fn new(handle: SocketHandle) -> Conn {
        Conn {
            handle,
            inbox: Vec::new(),
            outbox: VecDeque::new(),
            ended: false,
            since: Instant::now(),
        }
    }

    /// Moves bytes between the socket and the boxes, taking in no more than `room` bytes
    /// (what is left unread holds the partner back through TCP's window); true if any
    /// moved.
    fn io(&mut self, sockets: &mut SocketSet, room: usize) -> bool {
        let s = sockets.get_mut::<tcp::Socket>(self.handle);
        let mut moved = false;
        while s.can_recv() && self.inbox.len() < room {
            let inbox = &mut self.inbox;
            match s.recv(|data| (data.len(), inbox.extend_from_slice(data))) {
                Ok(()) => moved = true,
                Err(_) => break,
            }
        }
        while !self.outbox.is_empty() && s.can_send() {
            let (head, _) = self.outbox.as_slices();
            match s.send_slice(head) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    self.outbox.drain(..n);
                    moved = true;
                }
            }
        }
        moved
    }

    /// The next whole frame in the inbox.
    fn frame(&mut self, max: usize) -> Result<Option<Frame>, String> {
        Ok(split_frame(&self.inbox, max)?.map(|(f, used)| {
            self.inbox.drain(..used);
            f
        }))
    }
}

/// A rank's connections over its own TCP/IP stack.
pub struct VmLinks {
    iface: Interface,
    dev: Dgram,
    sockets: SocketSet<'static>,
    conns: BTreeMap<usize, Conn>,
    events: VecDeque<Event>,
    names: BTreeMap<usize, String>,
    max_frame: usize,
    in_flight: usize,
    io_timeout: Duration,
    epoch: Instant,
    next_port: u16,
    end: control::EndRequest,
}

impl VmLinks {
    /// Brings the card up and connects to every partner within the connect timeout.
    pub fn connect(setup: &Setup, nic: &Nic) -> Result<VmLinks, Error> {
        let IpAddr::V4(ip) = setup.peers[setup.rank].ip() else {
            return Err(Error(format!(
                "a user-space VM needs an IPv4 address, not {}",
                setup.peers[setup.rank]
            )));
        };
        let sock = UdpSocket::bind(nic.local)
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .map_err(|e| Error(format!("the VM's card cannot use UDP {}: {e}", nic.local)))?;
        let mut dev = Dgram::new(sock, nic.remote.clone(), nic.mac, ip);
        let epoch = Instant::now();
        let config = Config::new(EthernetAddress(nic.mac).into());
        let mut iface = Interface::new(config, &mut dev, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), nic.prefix));
        });
        let mut links = VmLinks {
            iface,
            dev,
            sockets: SocketSet::new(Vec::new()),
            conns: BTreeMap::new(),
            events: VecDeque::new(),
            names: setup.partners.iter().map(|&p| (p, setup.name(p))).collect(),
            max_frame: setup.max_frame,
            in_flight: setup.in_flight,
            io_timeout: setup.io_timeout,
            epoch,
            next_port: 49152,
            end: nic.end.clone(),
        };
        links.handshake(setup)?;
        Ok(links)
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    fn socket(&mut self) -> SocketHandle {
        let buf = || tcp::SocketBuffer::new(vec![0; BUFFER]);
        let mut s = tcp::Socket::new(buf(), buf());
        s.set_nagle_enabled(false);
        s.set_ack_delay(None);
        self.sockets.add(s)
    }

    fn dial(&mut self, setup: &Setup, p: usize) -> Result<Conn, Error> {
        let handle = self.socket();
        let port = self.next_port;
        self.next_port = if port == u16::MAX { 49152 } else { port + 1 };
        let to = setup.peers[p];
        let IpAddr::V4(ip) = to.ip() else {
            return Err(Error(format!(
                "a user-space VM reaches only IPv4 peers, not {}",
                setup.name(p)
            )));
        };
        let s = self.sockets.get_mut::<tcp::Socket>(handle);
        s.connect(self.iface.context(), (IpAddress::Ipv4(ip), to.port()), port)
            .map_err(|e| Error(format!("cannot dial {}: {e}", setup.name(p))))?;
        let mut c = Conn::new(handle);
        c.outbox.extend(setup.hello());
        Ok(c)
    }

    fn listen(&mut self, port: u16) -> Result<Conn, Error> {
        let handle = self.socket();
        self.sockets
            .get_mut::<tcp::Socket>(handle)
            .listen(port)
            .map_err(|e| Error(format!("cannot listen on port {port}: {e}")))?;
        Ok(Conn::new(handle))
    }

    /// Dials the lower partners and accepts the higher ones, trading hellos, all at once.
    fn handshake(&mut self, setup: &Setup) -> Result<(), Error> {
        let deadline = Instant::now() + setup.connect_timeout;
        let port = setup.peers[setup.rank].port();
        let mut dialing = BTreeMap::new();
        for p in setup.lower() {
            dialing.insert(p, self.dial(setup, p)?);
        }
        let mut listening = Vec::new();
        for _ in setup.higher() {
            listening.push(self.listen(port)?);
        }
        while !dialing.is_empty() || !listening.is_empty() {
            if Instant::now() >= deadline {
                return Err(self.not_connected(setup, &dialing));
            }
            let mut done = std::mem::take(&mut self.conns);
            let all = dialing.values_mut().chain(listening.iter_mut());
            self.pump(&mut all.chain(done.values_mut()));
            self.conns = done;
            self.advance_dials(setup, &mut dialing)?;
            self.advance_listens(setup, &mut listening, port)?;
            if !dialing.is_empty() || !listening.is_empty() {
                self.wait(deadline);
            }
        }
        // Our answers to the last hellos go out now, not after the first compute phase.
        self.pump_partners();
        Ok(())
    }

    /// Moves each dial on: re-dials a refused or unanswered one, takes an answered one.
    fn advance_dials(
        &mut self,
        setup: &Setup,
        dialing: &mut BTreeMap<usize, Conn>,
    ) -> Result<(), Error> {
        for p in dialing.keys().copied().collect::<Vec<_>>() {
            let Some(c) = dialing.get_mut(&p) else {
                continue;
            };
            // An answer (or a refusal) that arrived counts even if the connection then
            // closed.
            if let Some(f) = c.frame(self.max_frame).map_err(|e| self.broke(p, e))? {
                setup.answered(p, f)?;
                if let Some(c) = dialing.remove(&p) {
                    self.conns.insert(p, c);
                }
                continue;
            }
            let state = self.sockets.get::<tcp::Socket>(c.handle).state();
            // Refused (the partner is not listening yet) or unanswered (its VM is not up
            // yet, and TCP's SYN retries back off for seconds): dial afresh.
            let stale = state == State::SynSent && c.since.elapsed() > Duration::from_millis(500);
            if state == State::Closed || stale {
                let old = c.handle;
                std::thread::sleep(Duration::from_millis(20));
                self.drop_socket(old);
                dialing.insert(p, self.dial(setup, p)?);
            }
        }
        Ok(())
    }

    /// Judges each hello that arrived on a listening socket; a socket a stranger used or
    /// a connection that died is replaced by a fresh listener.
    fn advance_listens(
        &mut self,
        setup: &Setup,
        listening: &mut Vec<Conn>,
        port: u16,
    ) -> Result<(), Error> {
        let mut i = 0;
        while i < listening.len() {
            let state = self.sockets.get::<tcp::Socket>(listening[i].handle).state();
            let greeted = match listening[i].frame(self.max_frame) {
                Ok(Some(f)) => Some(self.greet(setup, f, &listening[i])),
                Ok(None) if state == State::Closed => Some(Greeting::Ignore(String::new())),
                Ok(None) => None,
                Err(_) => Some(Greeting::Ignore("an unreadable hello".into())),
            };
            match greeted {
                None => i += 1,
                Some(Greeting::Accept(r)) => {
                    let mut c = listening.swap_remove(i);
                    c.outbox.extend(setup.hello());
                    self.conns.insert(r, c);
                }
                Some(Greeting::Ignore(why)) => {
                    let c = listening.swap_remove(i);
                    self.refuse(c, &why);
                    listening.push(self.listen(port)?);
                }
                Some(Greeting::Fail(why)) => {
                    let c = listening.swap_remove(i);
                    self.refuse(c, &why);
                    return Err(Error(why));
                }
            }
        }
        Ok(())
    }

    fn drop_socket(&mut self, handle: SocketHandle) {
        self.sockets.get_mut::<tcp::Socket>(handle).abort();
        let now = self.now();
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        self.sockets.remove(handle);
    }

    fn greet(&self, setup: &Setup, hello: Frame, c: &Conn) -> Greeting {
        let s = self.sockets.get::<tcp::Socket>(c.handle);
        let from = s
            .remote_endpoint()
            .map(|e| e.to_string())
            .unwrap_or_default();
        setup.greet(hello, &from, |r| self.conns.contains_key(&r))
    }

    /// Sends a refusal and closes, giving the refusal a moment to be acknowledged (so the
    /// dialer reads why), then drops the socket.
    fn refuse(&mut self, mut c: Conn, why: &str) {
        if !why.is_empty() {
            c.outbox.extend(encode(&Frame::Refuse(why.to_string())));
        }
        let end = Instant::now() + Duration::from_millis(300);
        while Instant::now() < end {
            self.pump(&mut std::iter::once(&mut c));
            let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
            if c.outbox.is_empty() && s.send_queue() == 0 {
                break;
            }
            self.wait(end);
        }
        self.sockets.get_mut::<tcp::Socket>(c.handle).close();
        self.pump(&mut std::iter::empty());
        self.drop_socket(c.handle);
    }

    fn not_connected(&self, setup: &Setup, dialing: &BTreeMap<usize, Conn>) -> Error {
        let secs = setup.connect_timeout.as_secs_f64();
        if let Some((&p, c)) = dialing.iter().next() {
            let state = self.sockets.get::<tcp::Socket>(c.handle).state();
            return Error(format!(
                "cannot reach {} within {secs:.1} s (its TCP connection is {state})",
                setup.name(p)
            ));
        }
        let missing = setup
            .higher()
            .into_iter()
            .find(|p| !self.conns.contains_key(p));
        let who = missing.map_or("a partner".to_string(), |p| setup.name(p));
        Error(format!(
            "{who} did not connect to rank {} at {} within {secs:.1} s",
            setup.rank, setup.peers[setup.rank]
        ))
    }

    fn broke(&self, p: usize, why: String) -> Error {
        Error(format!("{} broke the connection: {why}", self.name(p)))
    }

    /// Runs the stack once over `conns`: frames in and out, bytes between sockets and boxes.
    fn pump(&mut self, conns: &mut dyn Iterator<Item = &mut Conn>) {
        let now = self.now();
        self.iface.poll(now, &mut self.dev, &mut self.sockets);
        let mut moved = false;
        // Undecoded bytes stay below a frame and a buffer; decoded frames below in_flight.
        let room = if self.events.len() < self.in_flight {
            self.max_frame + 4 + BUFFER
        } else {
            0
        };
        for c in conns {
            moved |= c.io(&mut self.sockets, room);
        }
        if moved {
            let now = self.now();
            self.iface.poll(now, &mut self.dev, &mut self.sockets);
        }
    }

    /// Sleeps until a datagram arrives, the stack has a timer due, or `deadline`.
    fn wait(&mut self, deadline: Instant) {
        let left = deadline.saturating_duration_since(Instant::now());
        let due = self
            .iface
            .poll_delay(self.now(), &self.sockets)
            .map_or(left, |d| Duration::from_micros(d.total_micros()).min(left));
        let ms = due.as_millis().min(100) as u16;
        if ms > 0 {
            let mut fds = [PollFd::new(self.dev.sock.as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(ms));
        }
    }

    /// Pumps the partner connections and turns what arrived into events.
    fn pump_partners(&mut self) {
        let mut conns = std::mem::take(&mut self.conns);
        self.pump(&mut conns.values_mut());
        for (&p, c) in conns.iter_mut().filter(|(_, c)| !c.ended) {
            while self.events.len() < self.in_flight {
                match c.frame(self.max_frame) {
                    Ok(Some(Frame::Data(d))) => self.events.push_back(Event::Frame(p, d)),
                    Ok(Some(Frame::Refuse(why))) => {
                        c.ended = true;
                        self.events
                            .push_back(Event::Closed(p, format!("gave up ({why})")));
                    }
                    Ok(Some(Frame::Hello { .. })) => {
                        c.ended = true;
                        let why = "sent a hello in the middle of the run".to_string();
                        self.events.push_back(Event::Closed(p, why));
                    }
                    Ok(None) => break,
                    Err(e) => {
                        c.ended = true;
                        self.events
                            .push_back(Event::Closed(p, format!("broke the connection ({e})")));
                    }
                }
                if c.ended {
                    break;
                }
            }
            let s = self.sockets.get::<tcp::Socket>(c.handle);
            // The end is reported after every whole frame before it.
            let drained = self.events.len() < self.in_flight && s.recv_queue() == 0;
            if !c.ended && drained && !s.may_recv() {
                c.ended = true;
                let why = match s.state() {
                    State::Closed => "broke the connection (reset)",
                    _ => "closed the connection",
                };
                self.events.push_back(Event::Closed(p, why.to_string()));
            }
        }
        self.conns = conns;
    }

    /// The TCP side of the connection with `peer`, for an error that says where it stuck.
    fn describe(&self, peer: usize) -> String {
        let Some(c) = self.conns.get(&peer) else {
            return "no connection".into();
        };
        let s = self.sockets.get::<tcp::Socket>(c.handle);
        format!(
            "TCP {}, {} bytes unsent, {} unacknowledged, {} unread, {} frames undelivered",
            s.state(),
            c.outbox.len(),
            s.send_queue(),
            s.recv_queue() + c.inbox.len(),
            self.events.len()
        )
    }
}

/// How long a close left half-way ([`Ending::Settled`]) is given to complete.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How far a connection has come in closing, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ending {
    /// Data or our FIN not yet acknowledged.
    Open,
    /// Nothing owed either way, but one FIN is missing: ours was acknowledged and the
    /// partner's has not come (FIN-WAIT-2), or the partner's came and ours, lost, will
    /// never be sent again: smoltcp (0.12) stops the retransmission timer on entering
    /// CLOSING. After the last superstep a partner sends nothing more, so neither waits.
    Settled,
    /// Both FINs acknowledged or sent (TIME-WAIT, LAST-ACK), or gone.
    Clean,
}

fn ending(s: &tcp::Socket) -> Ending {
    match s.state() {
        State::TimeWait | State::Closed | State::LastAck => Ending::Clean,
        State::FinWait2 => Ending::Settled,
        State::Closing if s.send_queue() == 0 => Ending::Settled,
        _ => Ending::Open,
    }
}

impl Links for VmLinks {
    fn end_requested(&self) -> bool {
        self.end.is_requested()
    }

    fn send(&mut self, to: usize, frame: &[u8]) -> Result<(), Error> {
        let name = self.name(to);
        let c = self
            .conns
            .get_mut(&to)
            .ok_or_else(|| Error(format!("internal error: no connection to {name}")))?;
        c.outbox.extend(frame);
        self.pump_partners();
        Ok(())
    }

    fn next(&mut self, deadline: Instant) -> Event {
        loop {
            if let Some(e) = self.events.pop_front() {
                return e;
            }
            if Instant::now() >= deadline {
                return Event::Timeout;
            }
            self.pump_partners();
            if self.events.is_empty() {
                self.wait(deadline);
            }
        }
    }

    fn name(&self, peer: usize) -> String {
        self.names
            .get(&peer)
            .cloned()
            .unwrap_or_else(|| format!("rank {peer}"))
    }

    fn abort(&mut self, why: &str) {
        let frame = encode(&Frame::Refuse(why.to_string()));
        for c in self.conns.values_mut() {
            c.outbox.extend(&frame);
        }
        let end = Instant::now() + Duration::from_millis(200);
        while Instant::now() < end && self.conns.values().any(|c| !c.outbox.is_empty()) {
            self.pump_partners();
            self.wait(end);
        }
    }

    /// Sends everything, closes, and stays until every partner has all our data and our FIN
    /// and has closed too, so that no partner waits for data or a FIN this stack never sent.
    /// A close left half-way without anything owed ([`Ending::Settled`]) is accepted after
    /// [`CLOSE_GRACE`], in which a lost segment is sent again.
    fn finish(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let deadline = started + self.io_timeout;
        loop {
            self.pump_partners();
            let mut worst = (Ending::Clean, None);
            for (&p, c) in &self.conns {
                let s = self.sockets.get_mut::<tcp::Socket>(c.handle);
                if c.outbox.is_empty() && matches!(s.state(), State::Established | State::CloseWait)
                {
                    s.close();
                }
                let e = if c.outbox.is_empty() {
                    ending(s)
                } else {
                    Ending::Open
                };
                if e < worst.0 {
                    worst = (e, Some(p));
                }
            }
            let now = Instant::now();
            match worst {
                (Ending::Clean, _) => break,
                (Ending::Settled, _) if now >= started + CLOSE_GRACE => break,
                (_, Some(p)) if now >= deadline => {
                    return Err(Error(format!(
                        "{} did not close its connection within {:.1} s of the last superstep ({})",
                        self.name(p),
                        self.io_timeout.as_secs_f64(),
                        self.describe(p)
                    )));
                }
                _ => {}
            }
            self.wait(deadline);
        }
        // Linger briefly to acknowledge a partner's retransmitted FIN.
        let end = Instant::now() + Duration::from_millis(100);
        while Instant::now() < end {
            self.pump_partners();
            self.wait(end);
        }
        Ok(())
    }
}
