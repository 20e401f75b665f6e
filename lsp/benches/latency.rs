//! How fast a one-character change reaches the editor as diagnostics, and how much memory the
//! server holds, on a 10,000-line file. Run with `cargo bench -p vnet-lsp --bench latency`.
//!
//! It spawns the real `vnet-lsp` binary, opens the file, then types: each round sends one
//! `didChange` with a one-character edit and waits for the `publishDiagnostics` of that
//! version; then it types in bursts of eight changes sent back to back. It prints the
//! latency percentiles and the server's resident memory.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{range, Lsp};
use serde_json::json;
use std::time::{Duration, Instant};

const LINES: usize = 10_000;
const ROUNDS: usize = 60;
const BURSTS: usize = 10;
const URI: &str = "file:///bench/big.vnet";

/// A 10,000-line program: 100 daemons in a star around the Proxy, each with its VMs' MACs
/// delivered locally and sent to the Proxy otherwise, and the Proxy forwarding to each.
fn program() -> String {
    let daemons = 100;
    let mut lines = vec![
        "# A large overlay for the latency benchmark.".to_string(),
        "BEGIN".to_string(),
    ];
    for d in 0..daemons {
        lines.push(format!("HOST vnet AT node{d} 5000 tap{d}"));
    }
    lines.push(String::new());
    lines.push("ADD".to_string());
    for d in 1..daemons {
        lines.push(format!("    LINK TCP node{d} node{d} node0"));
    }
    let mut n = 0u32;
    while lines.len() < LINES - 1 {
        let d = (n as usize % (daemons - 1)) + 1;
        let mac = format!(
            "02:00:{:02x}:{:02x}:{:02x}:01",
            (n >> 16) & 0xff,
            (n >> 8) & 0xff,
            n & 0xff
        );
        lines.push(format!(
            "    FORWARD INTERFACE node{d} ANY {mac} tap{d} # VM {n}"
        ));
        lines.push(format!("    FORWARD EDGE node0 ANY {mac} node0 node{d}"));
        n += 1;
    }
    lines.truncate(LINES - 1);
    lines.push("END".to_string());
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn rss_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // Linux reports these in USER_HZ, 100 per second on every architecture it runs on.
    Some(Duration::from_millis(ticks * 10))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let text = program();
    assert_eq!(text.lines().count(), LINES);
    let (mut lsp, _) = Lsp::start();
    let pid = lsp.pid();
    let idle = rss_kib(pid, "VmRSS:").unwrap_or(0);

    let opened = Instant::now();
    lsp.open(URI, &text);
    let first = lsp.diagnostics(URI, 1);
    let open_time = opened.elapsed();

    // Two kinds of keystroke, alternating: one inside a comment (the program stays the same)
    // and one in a machine name of a LINK (a V101 appears, then goes with the next keystroke).
    let comment_line = 3 + 100 + 1 + 99 + 10; // a FORWARD INTERFACE line with a comment
    let link_line = 3 + 100 + 1 + 50;
    let cpu_before = cpu_time(pid);
    let mut comment = Vec::new();
    let mut name = Vec::new();
    let mut version = 1;
    for round in 0..ROUNDS {
        let (line, column, typed) = match round % 4 {
            0 => (comment_line, 12, Some("x")),
            1 => (comment_line, 12, None),
            2 => (link_line, 17, Some("9")),
            _ => (link_line, 17, None),
        };
        let change = match typed {
            Some(ch) => json!({"range": range(line, column, line, column), "text": ch}),
            None => json!({"range": range(line, column, line, column + 1), "text": ""}),
        };
        version += 1;
        let sent = Instant::now();
        lsp.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": version}, "contentChanges": [change]}),
        );
        let diagnostics = lsp.diagnostics(URI, version);
        let took = sent.elapsed();
        if round % 4 == 2 {
            assert!(
                diagnostics.iter().any(|d| d["code"] == "V101"),
                "the typo is reported"
            );
        }
        if round % 4 < 2 {
            comment.push(took)
        } else {
            name.push(took)
        }
    }
    let cpu_per_change = match (cpu_before, cpu_time(pid)) {
        (Some(before), Some(after)) => Some((after.saturating_sub(before)) / ROUNDS as u32),
        _ => None,
    };
    // Bursts: eight keystrokes sent back to back (a fast typist, or a paste in pieces), timed
    // from the last keystroke to the diagnostics of the final version.
    let mut bursts = Vec::new();
    for burst in 0..BURSTS {
        let typing = burst % 2 == 0;
        let mut last_sent = Instant::now();
        for k in 0..8u32 {
            let change = if typing {
                json!({"range": range(comment_line, 12 + k, comment_line, 12 + k), "text": "x"})
            } else {
                json!({"range": range(comment_line, 12, comment_line, 13), "text": ""})
            };
            version += 1;
            last_sent = Instant::now();
            lsp.notify(
                "textDocument/didChange",
                json!({"textDocument": {"uri": URI, "version": version}, "contentChanges": [change]}),
            );
        }
        lsp.diagnostics(URI, version);
        bursts.push(last_sent.elapsed());
    }
    let rss = rss_kib(pid, "VmRSS:").unwrap_or(0);
    let peak = rss_kib(pid, "VmHWM:").unwrap_or(0);
    assert!(lsp.shutdown().success());

    println!(
        "vnet-lsp latency benchmark: {LINES}-line file ({} bytes), {ROUNDS} one-character changes",
        text.len()
    );
    println!(
        "  open → first diagnostics: {:.1} ms ({} diagnostics)",
        ms(open_time),
        first.len()
    );
    for (what, mut samples) in [
        ("edit in a comment", comment),
        ("edit in a machine name", name),
        ("burst of 8, from the last", bursts),
    ] {
        samples.sort();
        println!(
            "  change → diagnostics, {what:<24} median {:>6.2} ms   p95 {:>6.2} ms   max {:>6.2} ms   (n={})",
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.95)),
            ms(*samples.last().unwrap_or(&Duration::ZERO)),
            samples.len()
        );
    }
    if let Some(cpu) = cpu_per_change {
        println!(
            "  server CPU time per single change (analysis and all): {:.1} ms",
            ms(cpu)
        );
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!(
        "  machine: {} cores, load average {} (other work on the machine inflates the latencies)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load.join(" ")
    );
    println!("  memory: {:.1} MiB resident holding the file (peak {:.1} MiB; {:.1} MiB before opening it)", mib(rss), mib(peak), mib(idle));
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
