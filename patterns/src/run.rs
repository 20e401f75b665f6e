//! Running ranks over TCP: one rank in this process, or all of them on loopback.

use crate::engine;
use crate::handshake::Setup;
use crate::program::{Error, Options, Program};
use crate::report::Report;
use crate::schedule::Schedule;
use crate::tcp::TcpLinks;
use crate::vm::{Nic, VmLinks};
use std::net::{SocketAddr, TcpListener};

/// Runs rank `rank` of `program`; `peers` holds every rank's address. The rank listens on
/// `listener`, or, without one, on its own address in `peers`.
pub fn run_tcp(
    program: &Program,
    rank: usize,
    peers: &[SocketAddr],
    listener: Option<TcpListener>,
    opts: &Options,
) -> Result<Report, Error> {
    check_rank(program, rank, peers)?;
    let (_, schedule) = program.plan()?;
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(peers[rank]).map_err(|e| {
            Error(format!(
                "rank {rank} cannot listen on {}, its address in the peer list: {e}",
                peers[rank]
            ))
        })?,
    };
    let partners = schedule.partners(rank);
    let setup = setup(program, &schedule, rank, peers, &partners, opts);
    let mut links = TcpLinks::connect(&setup, &listener)?;
    drop(listener);
    engine::run(program, &schedule, rank, &mut links, opts)
}

/// Runs rank `rank` of `program` as a user-space VM: its address is its entry in `peers`,
/// its wire the UDP datagrams of `nic`.
pub fn run_vm(
    program: &Program,
    rank: usize,
    peers: &[SocketAddr],
    nic: &Nic,
    opts: &Options,
) -> Result<Report, Error> {
    check_rank(program, rank, peers)?;
    let (_, schedule) = program.plan()?;
    let partners = schedule.partners(rank);
    let setup = setup(program, &schedule, rank, peers, &partners, opts);
    let mut links = VmLinks::connect(&setup, nic)?;
    engine::run(program, &schedule, rank, &mut links, opts)
}

fn setup<'a>(
    program: &Program,
    schedule: &Schedule,
    rank: usize,
    peers: &'a [SocketAddr],
    partners: &'a [usize],
    opts: &Options,
) -> Setup<'a> {
    Setup {
        rank,
        peers,
        partners,
        program: program.describe(),
        max_frame: program.max_frame(schedule),
        // Two supersteps of receipts, and room for every partner's end.
        in_flight: 2 * schedule.frames_received(rank) + partners.len() + 1,
        connect_timeout: opts.connect_timeout,
        io_timeout: opts.timeout,
    }
}

fn check_rank(program: &Program, rank: usize, peers: &[SocketAddr]) -> Result<(), Error> {
    if peers.len() != program.ranks {
        return Err(Error(format!(
            "{} peer addresses for a program of {} ranks",
            peers.len(),
            program.ranks
        )));
    }
    if rank >= peers.len() {
        return Err(Error(format!(
            "rank {rank} is not among the {} ranks (0 to {})",
            peers.len(),
            peers.len() - 1
        )));
    }
    Ok(())
}

/// Runs every rank of `program` as a thread of this process, on 127.0.0.1 with ports the
/// kernel picks. Fails with every failing rank's error.
pub fn run_local(program: &Program, opts: &Options) -> Result<Vec<Report>, Error> {
    program.plan()?;
    let mut listeners = Vec::new();
    for _ in 0..program.ranks {
        let l = TcpListener::bind("127.0.0.1:0")
            .map_err(|e| Error(format!("cannot listen on 127.0.0.1: {e}")))?;
        listeners.push(l);
    }
    let peers = listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Error(format!("cannot read a listening address: {e}")))?;
    let results: Vec<Result<Report, Error>> = std::thread::scope(|s| {
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(rank, l)| {
                let peers = &peers;
                s.spawn(move || run_tcp(program, rank, peers, Some(l), opts))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::new("a rank's thread panicked")))
            })
            .collect()
    });
    let errors: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(r, res)| res.as_ref().err().map(|e| format!("rank {r}: {e}")))
        .collect();
    if !errors.is_empty() {
        return Err(Error(errors.join("\n")));
    }
    Ok(results.into_iter().flatten().collect())
}
