//! `vnetd`: the VNET forwarding daemon (SPEC 4).

use clap::{CommandFactory, FromArgMatches, Parser};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use vnet_daemon::{Config, IfaceArg, Key, SpinPolicy};

/// The VNET forwarding daemon: local interfaces, overlay links over TCP and UDP, a forwarding
/// table with priority matching, and the authenticated control protocol.
///
/// One port carries both the control protocol and TCP overlay links; the same port number
/// over UDP carries UDP links. Logs go to stderr; RUST_LOG sets the level (default info).
#[derive(Parser, Debug)]
#[command(name = "vnetd")]
struct Args {
    /// This daemon's name (the machine name of its HOST line).
    #[arg(long)]
    name: String,

    /// Address and port to listen on (TCP: control and TCP links; UDP: UDP links). Loopback
    /// unless told otherwise.
    #[arg(long, default_value = "127.0.0.1:7000")]
    listen: SocketAddr,

    /// A local interface, NAME[=KIND], repeatable. KIND: `packet` (attach to the existing
    /// Linux interface NAME with a promiscuous packet socket), `tap` (create and own the TAP
    /// device NAME), `dgram:LOCAL[,PEER]` (UDP datagrams at LOCAL, one Ethernet frame each,
    /// as QEMU's -netdev dgram; bare `dgram`: 127.0.0.1 with a free port). Without a kind: packet if NAME exists (never the interface
    /// of the default route or of the listen address), else tap if allowed, else dgram on
    /// 127.0.0.1 with a free port.
    #[arg(long = "iface", value_name = "NAME[=KIND]")]
    ifaces: Vec<IfaceArg>,

    /// The pre-shared control key file [default: $VNET_KEY_FILE, else
    /// $XDG_CONFIG_HOME/vnet/control.key]. vnetd refuses to start without one.
    #[arg(long)]
    key_file: Option<PathBuf>,

    /// Where the tables are kept across restarts [default: $XDG_STATE_HOME/vnet/vnetd-NAME].
    #[arg(long)]
    state_dir: Option<PathBuf>,

    /// Start with empty tables, ignoring the saved ones.
    #[arg(long)]
    fresh: bool,

    /// Largest UDP link datagram in bytes; larger frames (offloaded super-frames) are sent as
    /// several fragments.
    #[arg(long, default_value_t = 1472)]
    udp_datagram: usize,

    /// fsync the tables (file and directory) before acknowledging each change, so they
    /// survive a power loss too, not only a crash of the daemon (adds about 1 ms per change).
    #[arg(long)]
    fsync: bool,

    /// Forward every frame in the daemon: no kernel fast path. (By default, established flows
    /// between packet interfaces and UDP links are forwarded by eBPF programs in the kernel,
    /// with the daemon's own decisions and counters, when vnetd was built with clang and runs
    /// with the privileges and the Linux 6.6+ it needs.)
    #[arg(long)]
    no_fast_path: bool,

    /// Send link frames in clear (after a handshake that still authenticates the peer's key
    /// when one is pinned): for measurements only. Logged loudly and shown by `status`.
    #[arg(long)]
    insecure_links: bool,

    /// Seconds after which a link's dialer makes new keys (volume also triggers a rekey).
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    rekey_seconds: u64,
    /// VTTIF report periods per second: how often this daemon sends what changed in its
    /// traffic matrix to the Proxy (SPEC 5.1). 0 turns reporting off.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=1000))]
    report_hz: u32,

    /// Serve Prometheus metrics (text format) at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,

    /// Busy-poll window in microseconds: after forwarding frames, the forwarding thread keeps
    /// polling its sockets this long before it sleeps (while its CPU is not wanted by another
    /// task), so that a reply is read by a running thread instead of waking a sleeping one:
    /// lower RTT on a machine with idle cores, at a CPU cost. 0 (the default): off; 2000 is
    /// what was measured (BENCHMARKS.md).
    #[arg(long, default_value_t = SpinPolicy::DEFAULT.window.as_micros() as u64, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    busy_poll_us: u64,

    /// The most CPU busy-polling may take, in percent of one core (over each 100 ms).
    #[arg(long, default_value_t = SpinPolicy::ON.budget_permille / 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    busy_poll_budget: u32,

    /// Keep idle CPUs of this machine polling instead of sleeping while vnetd runs (PM QoS,
    /// /dev/cpu_dma_latency; root). Lower RTT on virtual machines, more power: opt-in.
    #[arg(long)]
    cpu_latency_hint: bool,

    /// Keep the forwarding thread on this CPU. Put it on the CPU that runs the VMs' traffic
    /// (their vCPUs, the NIC's interrupts) so that a lone frame is handed over on one CPU
    /// instead of waking a sleeping one: lower RTT on light traffic (BENCHMARKS.md, "Sealed
    /// RTT and CPU placement"). Default: wherever the kernel puts it.
    #[arg(long, value_name = "CPU")]
    forward_cpu: Option<u32>,

    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

/// `vnetd --version`: the version, whether the kernel fast path is built in, and whether it
/// could run here (privileges, kernel).
fn version() -> String {
    let here = match vnet_daemon::fast_path_preflight() {
        Ok(()) => "can run here (with a packet interface and without --no-fast-path)".into(),
        Err(why) => format!("cannot run here: {why}"),
    };
    format!(
        "{}\nkernel fast path: built in (eBPF object: {}); {here}",
        env!("CARGO_PKG_VERSION"),
        vnet_daemon::FAST_PATH_OBJECT
    )
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colours only for a person watching: a log file (`vnetd.log`) stays plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let version: &'static str = Box::leak(version().into_boxed_str());
    let matches = Args::command().version(version).get_matches();
    let args = match Args::from_arg_matches(&matches) {
        Ok(a) => a,
        Err(e) => e.exit(),
    };
    let Some(key_file) = args.key_file.clone().or_else(Key::default_path) else {
        eprintln!("vnetd: no key file: pass --key-file or set VNET_KEY_FILE");
        return ExitCode::from(2);
    };
    let key = match Key::load(&key_file) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("vnetd: refusing to start without a control key: {e}");
            return ExitCode::from(2);
        }
    };
    let state_dir = args
        .state_dir
        .clone()
        .unwrap_or_else(|| default_state_dir(&args.name));
    let threads = args.threads;
    let cfg = Config {
        name: args.name,
        listen: args.listen,
        ifaces: args.ifaces,
        key,
        state_dir,
        fresh: args.fresh,
        udp_datagram: args.udp_datagram.clamp(576, 65507),
        fsync: args.fsync,
        fast_path: !args.no_fast_path,
        insecure_links: args.insecure_links,
        rekey: vnet_seal::RekeyPolicy {
            after_ns: args.rekey_seconds.saturating_mul(1_000_000_000),
            ..Default::default()
        },
        report_hz: args.report_hz,
        metrics: args.metrics,
        busy_poll: SpinPolicy {
            window: std::time::Duration::from_micros(args.busy_poll_us),
            budget_permille: args.busy_poll_budget * 10,
        },
        cpu_latency_hint: args.cpu_latency_hint,
        forward_cpu: args.forward_cpu,
    };
    serve(cfg, threads)
}

/// `$XDG_STATE_HOME/vnet/vnetd-NAME` (or under `~/.local/state`).
fn default_state_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("vnet").join(format!("vnetd-{name}"))
}

/// Runs the daemon on a runtime of `threads` workers until SIGINT or SIGTERM.
fn serve(cfg: Config, threads: Option<usize>) -> ExitCode {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(t) = threads {
        rt.worker_threads(t.max(1));
    }
    let rt = match rt.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("vnetd: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        let stop = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        };
        vnet_daemon::run(cfg, stop).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vnetd: {e}");
            ExitCode::FAILURE
        }
    }
}
