//! Ranks connected by plain TCP sockets: one connection per partner pair, the higher rank
//! dials the lower, a hello each way compares the programs, then a reader thread per
//! connection feeds frames to the rank.
//!
//! The reader threads always drain the sockets, so a rank blocked in a send never stops its
//! own receiving, and two ranks sending to each other cannot deadlock.

use crate::engine::{Event, Links};
use crate::handshake::{Greeting, Setup};
use crate::program::Error;
use crate::wire::{encode, read_frame, Frame};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A rank's TCP connections to its partners.
pub struct TcpLinks {
    streams: BTreeMap<usize, TcpStream>,
    names: BTreeMap<usize, String>,
    events: Receiver<Event>,
    readers: Vec<JoinHandle<()>>,
}

impl TcpLinks {
    /// Dials the lower partners, then accepts the higher ones on `listener`, all within
    /// the connect timeout.
    pub fn connect(setup: &Setup, listener: &TcpListener) -> Result<TcpLinks, Error> {
        let deadline = Instant::now() + setup.connect_timeout;
        let mut streams = BTreeMap::new();
        for p in setup.lower() {
            streams.insert(p, dial(setup, p, deadline)?);
        }
        let higher = setup.higher();
        accept(setup, listener, &higher, deadline, &mut streams)?;
        let (tx, events) = sync_channel(setup.in_flight);
        let mut readers = Vec::new();
        for (&p, s) in &streams {
            // The handshake's read timeouts (a dial's connect deadline, an accept's patience
            // of at most 5 s) end here: the engine's timeout governs waits for data, and a
            // reader whose read timed out would end a healthy connection to a slow partner.
            s.set_read_timeout(None)
                .and_then(|()| s.set_write_timeout(Some(setup.io_timeout)))
                .map_err(|e| io_error(setup, p, e))?;
            let reader = s.try_clone().map_err(|e| io_error(setup, p, e))?;
            readers.push(spawn_reader(p, reader, setup.max_frame, tx.clone()));
        }
        let names = streams.keys().map(|&p| (p, setup.name(p))).collect();
        Ok(TcpLinks {
            streams,
            names,
            events,
            readers,
        })
    }
}

fn io_error(setup: &Setup, p: usize, e: io::Error) -> Error {
    Error(format!("connection to {}: {e}", setup.name(p)))
}

/// Connects to partner `p`, retrying while it is not listening yet, and trades hellos.
fn dial(setup: &Setup, p: usize, deadline: Instant) -> Result<TcpStream, Error> {
    let addr = setup.peers[p];
    let mut wait = Duration::from_millis(20);
    let mut stream = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let attempt = TcpStream::connect_timeout(
            &addr,
            left.clamp(Duration::from_millis(1), Duration::from_secs(2)),
        );
        match attempt {
            Ok(s) => break s,
            Err(e) if Instant::now() + wait >= deadline => {
                return Err(Error(format!(
                    "cannot reach {} within {:.1} s: {e}",
                    setup.name(p),
                    setup.connect_timeout.as_secs_f64()
                )))
            }
            Err(_) => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(500));
            }
        }
    };
    let fail = |e: io::Error| io_error(setup, p, e);
    stream.set_nodelay(true).map_err(fail)?;
    stream.write_all(&setup.hello()).map_err(fail)?;
    // The partner answers once it has dialed its own lower partners, so this may take
    // until the deadline.
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).map_err(fail)?;
    match read_frame(&mut stream, setup.max_frame) {
        Ok(frame) => setup.answered(p, frame).map(|()| stream),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Err(Error(format!(
                "{} accepted the connection but did not answer within {:.1} s",
                setup.name(p),
                setup.connect_timeout.as_secs_f64()
            )))
        }
        Err(e) => Err(fail(e)),
    }
}

/// Accepts one connection from each of `higher`; strangers are refused and ignored, a
/// partner running another program is an error.
fn accept(
    setup: &Setup,
    listener: &TcpListener,
    higher: &[usize],
    deadline: Instant,
    streams: &mut BTreeMap<usize, TcpStream>,
) -> Result<(), Error> {
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    listener
        .set_nonblocking(true)
        .map_err(|e| Error(format!("listening on {local}: {e}")))?;
    while let Some(&missing) = higher.iter().find(|p| !streams.contains_key(p)) {
        if Instant::now() >= deadline {
            return Err(Error(format!(
                "{} did not connect to rank {} at {local} within {:.1} s",
                setup.name(missing),
                setup.rank,
                setup.connect_timeout.as_secs_f64()
            )));
        }
        match listener.accept() {
            Ok((s, from)) => {
                if let Some((p, s)) = greet(setup, s, from, deadline, streams)? {
                    streams.insert(p, s);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => return Err(Error(format!("accepting on {local}: {e}"))),
        }
    }
    Ok(())
}

/// Reads a dialer's hello and answers it. `Ok(None)` for connections to ignore.
fn greet(
    setup: &Setup,
    mut s: TcpStream,
    from: SocketAddr,
    deadline: Instant,
    streams: &BTreeMap<usize, TcpStream>,
) -> Result<Option<(usize, TcpStream)>, Error> {
    // A stranger that connects and says nothing holds the rank up no longer than this.
    let patience = deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(1), Duration::from_secs(5));
    let ok = s.set_nonblocking(false).is_ok()
        && s.set_nodelay(true).is_ok()
        && s.set_read_timeout(Some(patience)).is_ok();
    let Ok(hello) = read_frame(&mut s, setup.max_frame) else {
        return Ok(None);
    };
    match setup.greet(hello, &from.to_string(), |r| streams.contains_key(&r)) {
        Greeting::Accept(rank) if ok => {
            s.write_all(&setup.hello())
                .map_err(|e| io_error(setup, rank, e))?;
            Ok(Some((rank, s)))
        }
        Greeting::Accept(_) => Ok(None),
        Greeting::Ignore(why) => {
            let _ = s.write_all(&encode(&Frame::Refuse(why)));
            Ok(None)
        }
        Greeting::Fail(why) => {
            let _ = s.write_all(&encode(&Frame::Refuse(why.clone())));
            Err(Error(why))
        }
    }
}

fn spawn_reader(
    peer: usize,
    mut s: TcpStream,
    max: usize,
    tx: SyncSender<Event>,
) -> JoinHandle<()> {
    std::thread::spawn(move || loop {
        let event = match read_frame(&mut s, max) {
            Ok(Frame::Data(d)) => Event::Frame(peer, d),
            Ok(Frame::Refuse(why)) => Event::Closed(peer, format!("gave up ({why})")),
            Ok(Frame::Hello { .. }) => {
                Event::Closed(peer, "sent a hello in the middle of the run".into())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Event::Closed(peer, "closed the connection".into())
            }
            Err(e) => Event::Closed(peer, format!("broke the connection ({e})")),
        };
        let last = matches!(event, Event::Closed(..));
        if tx.send(event).is_err() || last {
            return;
        }
    })
}

impl Links for TcpLinks {
    fn send(&mut self, to: usize, frame: &[u8]) -> Result<(), Error> {
        let name = self.name(to);
        let s = self
            .streams
            .get_mut(&to)
            .ok_or_else(|| Error(format!("internal error: no connection to {name}")))?;
        s.write_all(frame).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                Error(format!("{name} took no data for the whole timeout"))
            }
            _ => Error(format!("sending to {name} failed: {e}")),
        })
    }

    fn next(&mut self, deadline: Instant) -> Event {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.events.recv_timeout(left) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Event::Timeout,
        }
    }

    fn abort(&mut self, why: &str) {
        let frame = encode(&Frame::Refuse(why.to_string()));
        for s in self.streams.values_mut() {
            // A partner that takes nothing must not hold up the failing rank.
            let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
            let _ = s.write_all(&frame);
        }
    }

    fn name(&self, peer: usize) -> String {
        self.names
            .get(&peer)
            .cloned()
            .unwrap_or_else(|| format!("rank {peer}"))
    }
}

impl Drop for TcpLinks {
    fn drop(&mut self) {
        for s in self.streams.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}
