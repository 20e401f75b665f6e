//! One rank's BSP loop over any transport: compute, then the rounds of the schedule.
//!
//! The transport ([`Links`]) only moves frames; everything else (what to send, checking
//! what arrived, when to stop) is here, so TCP and the user-space stack behave alike.

use crate::compute;
use crate::payload;
use crate::program::{Error, Length, Options, Program};
use crate::report::{PeerStats, Report, Sampler};
use crate::schedule::{Item, Operation, RankRound, Schedule};
use crate::wire::{encode, Data, Frame};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What a transport reports.
#[derive(Debug)]
pub enum Event {
    Frame(usize, Data),
    /// The peer's connection ended (normally when it finished, or because it failed).
    Closed(usize, String),
    Timeout,
}

/// Connections to a rank's partners.
pub trait Links {
    /// Sends one encoded frame; fails (naming the peer) if it cannot be taken in time.
    fn send(&mut self, to: usize, frame: &[u8]) -> Result<(), Error>;
    /// The next frame or closure from any partner, or `Timeout` at `deadline`.
    fn next(&mut self, deadline: Instant) -> Event;
    /// How errors name a peer, e.g. `rank 3 (10.0.0.3:7000)`.
    fn name(&self, peer: usize) -> String;
    /// Tells every partner, as far as it can without waiting, why this rank gives up, so
    /// that their errors name the first cause rather than this rank.
    fn abort(&mut self, why: &str);
    /// Called once the last superstep is done: returns when what this rank sent has
    /// reached its partners (a kernel's TCP does that after the process has gone; a
    /// user-space stack must stay to do it).
    fn finish(&mut self) -> Result<(), Error> {
        Ok(())
    }
    /// Whether whoever runs this rank asked a run of a given duration to end now (a VM's
    /// control socket can); only rank 0 acts on it, as it decides when such a run ends.
    fn end_requested(&self) -> bool {
        false
    }
}

/// A rank's state across supersteps.
struct Rank<'a, L: Links> {
    program: &'a Program,
    rank: usize,
    plan: &'a [RankRound],
    links: &'a mut L,
    timeout: Duration,
    stop_at: u64,
    /// Frames that arrived before this rank reached their round, by (superstep, round, from).
    early: BTreeMap<(u64, u32, usize), Data>,
    closed: HashMap<usize, String>,
    peers: BTreeMap<usize, PeerStats>,
    verified: u64,
    reductions: u64,
    /// Whether the partners have been told this rank gives up.
    aborted: bool,
}

/// Runs `program` as rank `rank` over `links` to the end, and reports.
pub fn run<L: Links>(
    program: &Program,
    schedule: &Schedule,
    rank: usize,
    links: &mut L,
    opts: &Options,
) -> Result<Report, Error> {
    let plan = schedule.for_rank(rank);
    let peers = schedule
        .partners(rank)
        .into_iter()
        .map(|p| {
            (
                p,
                PeerStats {
                    rank: p,
                    ..Default::default()
                },
            )
        })
        .collect();
    let stop_at = match program.length {
        Length::Supersteps(s) => s,
        Length::Duration(_) => u64::MAX,
    };
    let mut r = Rank {
        program,
        rank,
        plan: &plan,
        links,
        timeout: opts.timeout,
        stop_at,
        early: BTreeMap::new(),
        closed: HashMap::new(),
        peers,
        verified: 0,
        reductions: 0,
        aborted: false,
    };
    let result = r
        .supersteps(opts)
        .and_then(|report| r.links.finish().map(|()| report));
    match &result {
        Err(e) if !r.aborted => r.links.abort(&e.0),
        _ => {}
    }
    result
}

impl<L: Links> Rank<'_, L> {
    fn supersteps(&mut self, opts: &Options) -> Result<Report, Error> {
        let program = self.program;
        let started_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let start = Instant::now();
        let mut samples = Sampler::new(opts.sample_interval);
        let (mut compute, mut communicate) = (Duration::ZERO, Duration::ZERO);
        let mut step = 0;
        while step < self.stop_at {
            if let Length::Duration(d) = program.length {
                // Everyone hears of the decision within n supersteps: it travels at least one
                // hop per superstep and no rank is more than n-1 hops from rank 0.
                let due = start.elapsed() >= d || self.links.end_requested();
                if self.rank == 0 && self.stop_at == u64::MAX && due {
                    self.stop_at = step + program.ranks as u64;
                }
            }
            let t0 = Instant::now();
            compute::spin(program.compute_units());
            let t1 = Instant::now();
            self.communicate(step)?;
            let t2 = Instant::now();
            compute += t1 - t0;
            communicate += t2 - t1;
            samples.record(t2 - start);
            step += 1;
        }
        let seconds = start.elapsed();
        Ok(Report {
            rank: self.rank,
            ranks: program.ranks,
            program: program.describe(),
            work: program.work(),
            started_unix,
            supersteps: step,
            seconds: seconds.as_secs_f64(),
            supersteps_per_second: step as f64 / seconds.as_secs_f64().max(1e-9),
            compute_seconds: compute.as_secs_f64(),
            communicate_seconds: communicate.as_secs_f64(),
            messages_verified: self.verified,
            reductions_verified: self.reductions,
            peers: self.peers.values().cloned().collect(),
            samples: samples.finish(seconds),
        })
    }

    fn communicate(&mut self, step: u64) -> Result<(), Error> {
        let size = self.program.message_size;
        let reduce = self.program.operation == Operation::Reduce;
        let mut partial = payload::contribution(self.rank, step, size);
        let mut total: Option<Vec<u8>> = None;
        let mut transit: HashMap<(u32, u32), Vec<u8>> = HashMap::new();
        for round in 0..self.plan.len() {
            let plan = self.plan;
            for (to, items) in &plan[round].sends {
                let mut out = Vec::with_capacity(items.len());
                for &item in items {
                    let bytes = match item {
                        Item::Direct { origin, dest } if origin as usize == self.rank => {
                            payload::direct(origin, dest, step, size)
                        }
                        Item::Direct { origin, dest } => transit
                            .remove(&(origin, dest))
                            .ok_or_else(|| self.bug(step, round, "forwards a message it lacks"))?,
                        Item::Partial => partial.clone(),
                        Item::Total if self.rank == 0 => partial.clone(),
                        Item::Total => total
                            .clone()
                            .ok_or_else(|| self.bug(step, round, "sends a total it lacks"))?,
                    };
                    out.push((item, bytes));
                }
                self.send(step, round, *to, out)?;
            }
            for (from, items) in &plan[round].receives {
                let data = self.receive(step, round, *from)?;
                let got: Vec<Item> = data.items.iter().map(|i| i.0).collect();
                if &got != items {
                    return Err(Error(format!(
                        "{} sent other data than the program says in superstep {step} round {round}",
                        self.links.name(*from)
                    )));
                }
                for (item, bytes) in data.items {
                    self.take(
                        step,
                        *from,
                        item,
                        bytes,
                        &mut partial,
                        &mut total,
                        &mut transit,
                    )?;
                }
            }
        }
        if reduce && self.rank == 0 {
            self.check_total(step, 0, &partial)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn take(
        &mut self,
        step: u64,
        from: usize,
        item: Item,
        bytes: Vec<u8>,
        partial: &mut [u8],
        total: &mut Option<Vec<u8>>,
        transit: &mut HashMap<(u32, u32), Vec<u8>>,
    ) -> Result<(), Error> {
        let size = self.program.message_size;
        match item {
            Item::Direct { origin, dest } if dest as usize == self.rank => {
                if !payload::is_direct(&bytes, origin, dest, step, size) {
                    return Err(Error(format!(
                        "the message from rank {origin} to rank {dest} of superstep {step}, received from {}, is corrupt",
                        self.links.name(from)
                    )));
                }
                self.verified += 1;
            }
            Item::Direct { origin, dest } => {
                transit.insert((origin, dest), bytes);
            }
            Item::Partial if bytes.len() == size => payload::add_into(partial, &bytes),
            Item::Partial => return Err(self.wrong_size(step, from, bytes.len())),
            Item::Total => {
                self.check_total(step, from, &bytes)?;
                *total = Some(bytes);
            }
        }
        Ok(())
    }

    fn check_total(&mut self, step: u64, from: usize, bytes: &[u8]) -> Result<(), Error> {
        let n = self.program.ranks;
        if !payload::is_total(bytes, n, step, self.program.message_size) {
            return Err(Error(format!(
                "the reduction of superstep {step} at rank {} (last from {}) is not the sum of all {n} ranks",
                self.rank,
                self.links.name(from)
            )));
        }
        self.reductions += 1;
        Ok(())
    }

    fn send(
        &mut self,
        step: u64,
        round: usize,
        to: usize,
        items: Vec<(Item, Vec<u8>)>,
    ) -> Result<(), Error> {
        let bytes: usize = items.iter().map(|i| i.1.len()).sum();
        let frame = encode(&Frame::Data(Data {
            superstep: step,
            round: round as u32,
            stop_at: self.stop_at,
            items,
        }));
        self.links.send(to, &frame)?;
        if let Some(p) = self.peers.get_mut(&to) {
            p.frames_sent += 1;
            p.bytes_sent += bytes as u64;
        }
        Ok(())
    }

    /// The frame `from` sends in (`step`, `round`), waiting at most the timeout for it.
    fn receive(&mut self, step: u64, round: usize, from: usize) -> Result<Data, Error> {
        let deadline = Instant::now() + self.timeout;
        let key = (step, round as u32, from);
        loop {
            if let Some(d) = self.early.remove(&key) {
                let p = self.peers.entry(from).or_default();
                p.frames_received += 1;
                p.bytes_received += d.items.iter().map(|i| i.1.len() as u64).sum::<u64>();
                return Ok(d);
            }
            if let Some(why) = self.closed.get(&from) {
                return Err(Error(format!(
                    "{} {why} while rank {} waited for its data of superstep {step} round {round}",
                    self.links.name(from),
                    self.rank
                )));
            }
            match self.links.next(deadline) {
                Event::Frame(peer, d) => self.arrived(step, round, peer, d)?,
                Event::Closed(peer, why) => {
                    self.closed.insert(peer, why);
                }
                Event::Timeout => return Err(self.silent(step, round, from)),
            }
        }
    }

    /// The error for a partner that sent nothing for the whole timeout. A silent partner
    /// is often itself waiting for a third rank, with a timeout that ends a moment before
    /// ours; its partners are told at once, and a short grace lets the silent partner's
    /// reason arrive, so that every error names the first cause.
    fn silent(&mut self, step: u64, round: usize, from: usize) -> Error {
        let timeout = Error(format!(
            "no data from {} for {:.1} s: rank {} waited for superstep {step} round {round}",
            self.links.name(from),
            self.timeout.as_secs_f64(),
            self.rank
        ));
        self.links.abort(&timeout.0);
        self.aborted = true;
        let grace = Instant::now() + (self.timeout / 4).min(Duration::from_secs(1));
        loop {
            match self.links.next(grace) {
                Event::Closed(peer, why) if peer == from => {
                    return Error(format!(
                    "{} {why} while rank {} waited for its data of superstep {step} round {round}",
                    self.links.name(from),
                    self.rank
                ))
                }
                Event::Timeout => return timeout,
                // Frames and other partners' ends change nothing: this rank fails anyway.
                _ => {}
            }
        }
    }

    /// Files a frame for its round after checking it is one the peer may send now.
    fn arrived(&mut self, step: u64, round: usize, peer: usize, d: Data) -> Result<(), Error> {
        let r = d.round as usize;
        let scheduled = self
            .plan
            .get(r)
            .is_some_and(|p| p.receives.iter().any(|(f, _)| *f == peer));
        // A peer is at most one superstep ahead: it cannot finish a superstep without us.
        let current = (d.superstep, r) >= (step, round) && d.superstep <= step + 1;
        let key = (d.superstep, d.round, peer);
        if !scheduled || !current || d.stop_at <= d.superstep || self.early.contains_key(&key) {
            return Err(Error(format!(
                "{} sent an unexpected frame (superstep {} round {}, stop at {}) while rank {} was in superstep {step} round {round}",
                self.links.name(peer),
                d.superstep,
                d.round,
                d.stop_at,
                self.rank
            )));
        }
        self.stop_at = self.stop_at.min(d.stop_at);
        self.early.insert(key, d);
        Ok(())
    }

    fn wrong_size(&self, step: u64, from: usize, len: usize) -> Error {
        Error(format!(
            "{} sent a {len}-byte partial reduction in superstep {step}, not {}",
            self.links.name(from),
            self.program.message_size
        ))
    }

    fn bug(&self, step: u64, round: usize, what: &str) -> Error {
        Error(format!(
            "internal error: rank {} {what} in superstep {step} round {round}",
            self.rank
        ))
    }
}
