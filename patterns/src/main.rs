//! `vnet-patterns`: the command line over the Patterns library.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;
use vnet_patterns::{
    run_local, run_tcp, run_vm, vm, Length, Operation, Options, Program, Report, Topology,
};

/// Patterns: a BSP workload (supersteps of compute and communication) over TCP.
#[derive(Parser)]
#[command(name = "vnet-patterns", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one rank; every rank is started with the same program and peer list.
    Run {
        /// This rank's number, an index into --peers.
        #[arg(long)]
        rank: usize,
        /// Every rank's address, in rank order, e.g. 10.0.0.1:7000,10.0.0.2:7000.
        #[arg(long, value_delimiter = ',', required = true)]
        peers: Vec<SocketAddr>,
        #[command(flatten)]
        program: ProgramArgs,
    },
    /// Run all ranks as threads of this process on 127.0.0.1.
    Launch {
        /// The number of ranks.
        #[arg(long, short = 'n')]
        ranks: usize,
        #[command(flatten)]
        program: ProgramArgs,
    },
    /// Run one rank as a user-space VM: its own MAC, IP address (its entry in --peers) and
    /// TCP/IP stack, speaking Ethernet frames in UDP datagrams to a `dgram` interface.
    Vm {
        #[arg(long)]
        rank: usize,
        /// Every rank's IPv4 address and port, in rank order.
        #[arg(long, value_delimiter = ',', required = true)]
        peers: Vec<SocketAddr>,
        /// The UDP address the VM's card receives on.
        #[arg(long)]
        udp_local: SocketAddr,
        /// The UDP address of the `dgram` interface the card sends to.
        #[arg(long)]
        udp_remote: SocketAddr,
        /// The card's MAC (default 02:00 followed by the four bytes of the IPv4 address).
        #[arg(long, value_parser = parse_mac)]
        mac: Option<[u8; 6]>,
        /// A Unix socket that takes `attach HOST:PORT` lines to move the VM to another
        /// `dgram` interface while it runs (a migration) and `where`.
        #[arg(long)]
        control: Option<std::path::PathBuf>,
        /// The prefix length of the VM's network.
        #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(1..=32))]
        prefix: u8,
        #[command(flatten)]
        program: ProgramArgs,
    },
    /// Print the neighbour sets and the rounds of one superstep, without running.
    Plan {
        #[arg(long, short = 'n')]
        ranks: usize,
        #[command(flatten)]
        program: ProgramArgs,
    },
}

#[derive(Args)]
struct ProgramArgs {
    /// bus, ring, mesh[:AxB..], torus[:AxB..], hypercube, tree or all-to-all.
    #[arg(long, short = 't', default_value = "all-to-all")]
    topology: Topology,
    /// exchange (with neighbours), reduce or all-to-all.
    #[arg(long, short = 'o', default_value = "exchange")]
    operation: Operation,
    /// Bytes per message.
    #[arg(long, short = 's', default_value_t = 1024)]
    message_size: usize,
    /// Compute work per superstep in units (~1 ns each) per byte of message size.
    #[arg(long, short = 'r', default_value_t = 0.0)]
    compute_ratio: f64,
    /// Run this many supersteps (the default is 100 unless --duration is given).
    #[arg(long, conflicts_with = "duration")]
    supersteps: Option<u64>,
    /// Run for this many seconds (rank 0 decides; the others stop within n supersteps).
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds to wait for a partner's data before failing.
    #[arg(long, default_value_t = 30.0)]
    timeout: f64,
    /// Seconds to wait for all connections at the start.
    #[arg(long, default_value_t = 30.0)]
    connect_timeout: f64,
    /// Seconds per throughput sample in the report.
    #[arg(long, default_value_t = 1.0)]
    sample_interval: f64,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    s.parse::<smoltcp::wire::EthernetAddress>()
        .map(|m| m.0)
        .map_err(|()| format!("`{s}` is not a MAC address like 02:00:0a:00:00:01"))
}

fn seconds(what: &str, s: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--{what} {s}: a positive number of seconds"))
}

impl ProgramArgs {
    fn program(&self, ranks: usize) -> Result<(Program, Options), String> {
        let length = match (self.supersteps, self.duration) {
            (_, Some(d)) => Length::Duration(seconds("duration", d)?),
            (s, None) => Length::Supersteps(s.unwrap_or(100)),
        };
        let opts = Options {
            timeout: seconds("timeout", self.timeout)?,
            connect_timeout: seconds("connect-timeout", self.connect_timeout)?,
            sample_interval: seconds("sample-interval", self.sample_interval)?,
        };
        let program = Program {
            topology: self.topology.clone(),
            operation: self.operation,
            ranks,
            message_size: self.message_size,
            compute_ratio: self.compute_ratio,
            length,
        };
        Ok((program, opts))
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vnet-patterns: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<String, String> {
    match command {
        Command::Run {
            rank,
            peers,
            program: args,
        } => {
            let (program, opts) = args.program(peers.len())?;
            let report = run_tcp(&program, rank, &peers, None, &opts).map_err(|e| e.to_string())?;
            Ok(render(args.format, &program, std::slice::from_ref(&report)))
        }
        Command::Launch {
            ranks,
            program: args,
        } => {
            let (program, opts) = args.program(ranks)?;
            let reports = run_local(&program, &opts).map_err(|e| e.to_string())?;
            Ok(render(args.format, &program, &reports))
        }
        Command::Vm {
            rank,
            peers,
            udp_local,
            udp_remote,
            mac,
            control,
            prefix,
            program: args,
        } => {
            let (program, opts) = args.program(peers.len())?;
            let mac = match (mac, peers.get(rank).map(|p| p.ip())) {
                (Some(m), _) => m,
                (None, Some(IpAddr::V4(ip))) => vm::mac_for(ip),
                (None, _) => return Err(format!("rank {rank} has no IPv4 address in --peers")),
            };
            let nic = vm::Nic {
                mac,
                prefix,
                local: udp_local,
                remote: vm::device::Attachment::new(udp_remote),
                end: vm::control::EndRequest::default(),
            };
            let _control = match &control {
                Some(path) => Some(
                    vm::control::Control::serve(path, nic.remote.clone(), nic.end.clone())
                        .map_err(|e| format!("control socket {}: {e}", path.display()))?,
                ),
                None => None,
            };
            let report = run_vm(&program, rank, &peers, &nic, &opts).map_err(|e| e.to_string())?;
            Ok(render(args.format, &program, std::slice::from_ref(&report)))
        }
        Command::Plan {
            ranks,
            program: args,
        } => {
            let (program, _) = args.program(ranks)?;
            plan(&program, args.format)
        }
    }
}

fn render(format: Format, program: &Program, reports: &[Report]) -> String {
    match format {
        Format::Json if reports.len() == 1 => json(&reports[0]),
        Format::Json => {
            let rate = reports.first().map_or(0.0, |r| r.supersteps_per_second);
            json(&serde_json::json!({
                "program": program.describe(),
                "supersteps_per_second": rate,
                "ranks": reports,
            }))
        }
        Format::Text => {
            let mut out = format!("{}\n", program.describe());
            for r in reports {
                out += &r.line();
                out.push('\n');
            }
            if let Some(r) = reports.first() {
                let per: Vec<String> = r
                    .samples
                    .iter()
                    .map(|s| format!("{:.0}", s.supersteps_per_second))
                    .collect();
                out += &format!(
                    "supersteps/s per sample (rank {}): {}",
                    r.rank,
                    per.join(" ")
                );
            }
            out
        }
    }
}

fn json(v: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

fn plan(program: &Program, format: Format) -> Result<String, String> {
    let (graph, schedule) = program.plan().map_err(|e| e.to_string())?;
    let rounds: Vec<Vec<(usize, usize, usize)>> = schedule
        .rounds
        .iter()
        .map(|r| r.iter().map(|t| (t.from, t.to, t.items.len())).collect())
        .collect();
    if format == Format::Json {
        return Ok(json(&serde_json::json!({
            "program": program.describe(),
            "neighbours": graph.neighbours,
            "pairs": schedule.pairs(),
            "rounds": rounds,
        })));
    }
    let mut out = format!("{}\n", program.describe());
    for (i, ns) in graph.neighbours.iter().enumerate() {
        out += &format!("rank {i}: neighbours {ns:?}\n");
    }
    for (k, r) in rounds.iter().enumerate() {
        let t: Vec<String> = r.iter().map(|(f, t, n)| format!("{f}->{t} x{n}")).collect();
        out += &format!("round {k}: {}\n", t.join(" "));
    }
    Ok(out.trim_end().to_string())
}
