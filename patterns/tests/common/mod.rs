//! Helpers for the Patterns integration tests: the binary as child processes (killed on
//! drop, waited for with a bound) and free loopback ports.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use vnet_patterns::{Length, Operation, Options, Program, Topology};

pub fn program(t: &str, op: Operation, n: usize, steps: u64) -> Program {
    Program {
        topology: t.parse::<Topology>().expect("topology"),
        operation: op,
        ranks: n,
        message_size: 300,
        compute_ratio: 0.0,
        length: Length::Supersteps(steps),
    }
}

pub fn quick() -> Options {
    Options {
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        sample_interval: Duration::from_millis(100),
    }
}

/// `n` loopback addresses with ports that were free a moment ago.
pub fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ls: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    ls.iter().map(|l| l.local_addr().expect("addr")).collect()
}

pub fn join(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// A child process killed (and reaped) on drop, so a failing test leaves none behind.
pub struct Proc(pub Option<Child>);

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        Proc(Some(cmd.spawn().expect("spawn")))
    }

    /// Waits at most `limit`; a child still running then is killed and the test fails.
    pub fn wait(mut self, limit: Duration) -> Output {
        let mut child = self.0.take().expect("child");
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Ok(Some(_)) = child.try_wait() {
                return child.wait_with_output().expect("output");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().expect("output");
        panic!(
            "still running after {limit:?} (a hang): stderr {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, |c| c.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vnet-patterns"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
