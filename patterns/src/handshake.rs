//! Who a rank connects to and the hellos that open each connection, for every transport.
//! Pure: the transports move the bytes.

use crate::program::Error;
use crate::wire::{encode, Frame, VERSION};
use std::net::SocketAddr;
use std::time::Duration;

/// Who a rank is and whom it connects to.
pub struct Setup<'a> {
    pub rank: usize,
    /// Every rank's address, indexed by rank.
    pub peers: &'a [SocketAddr],
    /// The ranks this one exchanges data with.
    pub partners: &'a [usize],
    /// The program text both ends of a connection must agree on.
    pub program: String,
    /// The largest frame body to accept.
    pub max_frame: usize,
    /// The most frames partners can rightly have sent that this rank has not yet taken:
    /// they run at most one superstep ahead, so two supersteps' worth. What is buffered
    /// for the rank is bounded by it, which makes a flooding partner wait, not grow memory.
    pub in_flight: usize,
    pub connect_timeout: Duration,
    /// How long a send may wait for the partner to take data.
    pub io_timeout: Duration,
}

/// What to do with a dialer's hello.
#[derive(Debug, PartialEq, Eq)]
pub enum Greeting {
    /// A partner: answer with our hello.
    Accept(usize),
    /// Send this refusal and ignore the connection (a stranger, a duplicate).
    Ignore(String),
    /// Send this refusal and fail the run (the ranks disagree on the program).
    Fail(String),
}

impl Setup<'_> {
    /// How errors name partner `p`.
    pub fn name(&self, p: usize) -> String {
        format!("rank {p} ({})", self.peers[p])
    }

    /// The partners this rank dials: the higher rank of a pair dials the lower.
    pub fn lower(&self) -> Vec<usize> {
        self.partners
            .iter()
            .copied()
            .filter(|&p| p < self.rank)
            .collect()
    }

    /// The partners that dial this rank.
    pub fn higher(&self) -> Vec<usize> {
        self.partners
            .iter()
            .copied()
            .filter(|&p| p > self.rank)
            .collect()
    }

    pub fn hello(&self) -> Vec<u8> {
        encode(&Frame::Hello {
            version: VERSION,
            rank: self.rank as u32,
            ranks: self.peers.len() as u32,
            program: self.program.clone(),
        })
    }

    /// Checks the answer partner `p` gave to our hello.
    pub fn answered(&self, p: usize, frame: Frame) -> Result<(), Error> {
        match frame {
            Frame::Hello { rank, .. } if rank as usize == p => Ok(()),
            Frame::Hello { rank, .. } => Err(Error(format!(
                "{} answered as rank {rank}: the ranks' peer lists differ",
                self.name(p)
            ))),
            Frame::Refuse(why) => Err(Error(format!(
                "{} refused rank {}: {why}",
                self.name(p),
                self.rank
            ))),
            Frame::Data(_) => Err(Error(format!(
                "{} sent data before its hello",
                self.name(p)
            ))),
        }
    }

    /// Judges the hello of a connection from `from`; `connected(r)` says whether rank r
    /// already has its connection.
    pub fn greet(&self, hello: Frame, from: &str, connected: impl Fn(usize) -> bool) -> Greeting {
        let Frame::Hello {
            version,
            rank,
            ranks,
            program,
        } = hello
        else {
            return Greeting::Ignore("the first frame must be a hello".into());
        };
        let rank = rank as usize;
        if version != VERSION {
            Greeting::Ignore(format!(
                "frame version {version}, this rank speaks {VERSION}"
            ))
        } else if ranks as usize != self.peers.len() || program != self.program {
            Greeting::Fail(format!(
                "the programs differ: rank {rank} at {from} runs `{program}` ({ranks} addresses), rank {} runs `{}` ({} addresses)",
                self.rank,
                self.program,
                self.peers.len()
            ))
        } else if !self.higher().contains(&rank) || connected(rank) {
            Greeting::Ignore(format!(
                "rank {} expects no connection from a rank {rank}",
                self.rank
            ))
        } else {
            Greeting::Accept(rank)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(peers: &[SocketAddr]) -> Setup<'_> {
        Setup {
            rank: 1,
            peers,
            partners: &[0, 2],
            program: "ring".into(),
            max_frame: 1000,
            in_flight: 8,
            connect_timeout: Duration::from_secs(1),
            io_timeout: Duration::from_secs(1),
        }
    }

    fn hello(rank: u32, program: &str) -> Frame {
        Frame::Hello {
            version: VERSION,
            rank,
            ranks: 3,
            program: program.into(),
        }
    }

    #[test]
    fn greetings() {
        let peers: Vec<SocketAddr> = (0..3)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 7000)))
            .collect();
        let s = setup(&peers);
        assert_eq!(s.lower(), vec![0]);
        assert_eq!(
            s.greet(hello(2, "ring"), "x", |_| false),
            Greeting::Accept(2)
        );
        assert!(matches!(
            s.greet(hello(2, "ring"), "x", |_| true),
            Greeting::Ignore(_)
        ));
        assert!(matches!(
            s.greet(hello(0, "ring"), "x", |_| false),
            Greeting::Ignore(_)
        ));
        let Greeting::Fail(why) = s.greet(hello(2, "bus"), "x", |_| false) else {
            panic!("a different program must fail the run");
        };
        assert!(why.contains("`bus`") && why.contains("`ring`"), "{why}");
        assert!(s.answered(0, hello(0, "ring")).is_ok());
        assert!(s
            .answered(0, hello(2, "ring"))
            .unwrap_err()
            .0
            .contains("answered as rank 2"));
        assert!(s
            .answered(0, Frame::Refuse("no".into()))
            .unwrap_err()
            .0
            .contains("refused"));
    }
}
