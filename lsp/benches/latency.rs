//! How fast a one-character change reaches the editor as diagnostics, and how much memory the
//! server holds, on files of 1,000 to 30,000 lines. Run with
//! `cargo bench -p vnet-lsp --bench latency` (`-- 10000` for one size).
//!
//! For each size it spawns the real `vnet-lsp` binary, opens the file, then types: each round
//! sends one `didChange` with a one-character edit and waits for the `publishDiagnostics` of
//! that version; then it types in bursts of eight changes sent back to back. It prints the
//! latency percentiles, the server's CPU time and its resident memory; then the time of a
//! completion at a rule's daemon and at its destination (every MAC of the file).

#[path = "../tests/common/mod.rs"]
mod common;

use common::{range, Lsp};
use serde_json::json;
use std::time::{Duration, Instant};
use vnet_grammar::gen::{editor_program, EDITOR_LINK_LINE, EDITOR_RULE_LINE};

const SIZES: [usize; 4] = [1_000, 3_000, 10_000, 30_000];
/// Rounds of each kind of keystroke (typed, then deleted).
const ROUNDS: usize = 30;
const BURSTS: usize = 10;
const URI: &str = "file:///bench/big.vnet";

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

fn load() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// A keystroke kind: where it types (line, column), what, and what the diagnostics then say.
struct Keystroke {
    what: &'static str,
    line: u32,
    column: u32,
    typed: &'static str,
    /// A code the typed version must report (the benchmark checks the server's answer).
    reports: Option<&'static str>,
}

fn keystrokes(text: &str) -> [Keystroke; 3] {
    let rule_line = EDITOR_RULE_LINE;
    let link_line = EDITOR_LINK_LINE;
    let line = text.lines().nth(rule_line).unwrap_or_default();
    let comment = line.find('#').map_or(0, |c| c + 2) as u32;
    [
        // Inside the comment: the program does not change.
        Keystroke {
            what: "in a comment",
            line: rule_line as u32,
            column: comment,
            typed: "x",
            reports: None,
        },
        // `INTERFACE` becomes `xINTERFACE`: a syntax error, and the rule is gone.
        Keystroke {
            what: "in a keyword",
            line: rule_line as u32,
            column: 12,
            typed: "x",
            reports: Some("V001"),
        },
        // A machine name of a LINK: an undeclared machine, the link is gone, its rules dangle.
        Keystroke {
            what: "in a machine name",
            line: link_line as u32,
            column: 17,
            typed: "9",
            reports: Some("V101"),
        },
    ]
}

fn run(lines: usize) {
    let text = editor_program(lines);
    assert_eq!(text.lines().count(), lines);
    let (mut lsp, _) = Lsp::start();
    let pid = lsp.pid();
    let idle = rss_kib(pid, "VmRSS:").unwrap_or(0);

    let opened = Instant::now();
    lsp.open(URI, &text);
    let first = lsp.diagnostics(URI, 1);
    let open_time = opened.elapsed();

    let mut version = 1;
    let mut change = |lsp: &mut Lsp, edit: serde_json::Value| {
        version += 1;
        lsp.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": URI, "version": version}, "contentChanges": [edit]}),
        );
        version
    };
    let cpu_before = cpu_time(pid);
    let mut samples: Vec<(&str, Vec<Duration>)> = Vec::new();
    for key in keystrokes(&text) {
        let mut taken = Vec::new();
        for round in 0..2 * ROUNDS {
            let (l, c) = (key.line, key.column);
            let typing = round % 2 == 0;
            let edit = if typing {
                json!({"range": range(l, c, l, c), "text": key.typed})
            } else {
                json!({"range": range(l, c, l, c + 1), "text": ""})
            };
            let sent = Instant::now();
            let version = change(&mut lsp, edit);
            let diagnostics = lsp.diagnostics(URI, version);
            taken.push(sent.elapsed());
            let wanted = if typing { key.reports } else { None };
            match wanted {
                Some(code) => assert!(diagnostics.iter().any(|d| d["code"] == code), "{code}"),
                None => assert!(diagnostics.is_empty(), "{diagnostics:?}"),
            }
        }
        samples.push((key.what, taken));
    }
    let cpu_per_change = match (cpu_before, cpu_time(pid)) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before) / (6 * ROUNDS) as u32),
        _ => None,
    };
    // Bursts: eight keystrokes in a comment sent back to back (a fast typist, or a paste in
    // pieces), timed from the last keystroke to the diagnostics of the final version.
    let key = &keystrokes(&text)[0];
    let mut bursts = Vec::new();
    for burst in 0..BURSTS {
        let mut last_sent = Instant::now();
        let mut last = 0;
        for k in 0..8u32 {
            let (l, c) = (key.line, key.column);
            let edit = if burst % 2 == 0 {
                json!({"range": range(l, c + k, l, c + k), "text": "x"})
            } else {
                json!({"range": range(l, c, l, c + 1), "text": ""})
            };
            last_sent = Instant::now();
            last = change(&mut lsp, edit);
        }
        lsp.diagnostics(URI, last);
        bursts.push(last_sent.elapsed());
    }
    samples.push(("burst of 8, from the last", bursts));
    let rss = rss_kib(pid, "VmRSS:").unwrap_or(0);
    let peak = rss_kib(pid, "VmHWM:").unwrap_or(0);
    // After the memory is read: it is the edits' memory, as in earlier runs.
    let completions = complete(&mut lsp, &text);
    assert!(lsp.shutdown().success());

    println!(
        "{lines}-line file ({} bytes): open → first diagnostics {:.1} ms ({} diagnostics)",
        text.len(),
        ms(open_time),
        first.len()
    );
    for (what, mut samples) in samples {
        samples.sort();
        println!(
            "  change → diagnostics, {what:<26} median {:>6.2} ms   p95 {:>6.2} ms   max {:>6.2} ms   (n={})",
            ms(percentile(&samples, 0.5)),
            ms(percentile(&samples, 0.95)),
            ms(*samples.last().unwrap_or(&Duration::ZERO)),
            samples.len()
        );
    }
    for (what, items, mut taken) in completions {
        taken.sort();
        println!(
            "  completion {what:<32} median {:>6.2} ms   p95 {:>6.2} ms   ({items} items, n={})",
            ms(percentile(&taken, 0.5)),
            ms(percentile(&taken, 0.95)),
            taken.len()
        );
    }
    if let Some(cpu) = cpu_per_change {
        println!("  server CPU time per single change: {:.1} ms", ms(cpu));
    }
    println!(
        "  memory: {:.1} MiB resident holding the file (peak {:.1} MiB; {:.1} MiB before opening it)",
        mib(rss),
        mib(peak),
        mib(idle)
    );
    println!("  load average after: {}", load());
}

/// Completion requests on a rule line, at its daemon (every machine is a candidate) and at its
/// destination (every MAC of the file, each with how many rules name it): each list must be
/// made in one pass over the file, not a pass per candidate.
fn complete(lsp: &mut Lsp, text: &str) -> Vec<(&'static str, usize, Vec<Duration>)> {
    let line = text.lines().nth(EDITOR_RULE_LINE).unwrap_or_default();
    let field = |n: usize| line.match_indices(' ').filter(|(i, _)| *i > 4).nth(n);
    let (Some((daemon, _)), Some((dst, _))) = (field(1), field(3)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (what, column) in [
        ("at a daemon (machines)", daemon),
        ("at a destination (MACs)", dst),
    ] {
        let mut taken = Vec::new();
        let mut items = 0;
        for _ in 0..ROUNDS / 3 {
            let sent = Instant::now();
            let answer = lsp.request_ok(
                "textDocument/completion",
                json!({"textDocument": {"uri": URI},
                       "position": {"line": EDITOR_RULE_LINE, "character": column + 1}}),
            );
            taken.push(sent.elapsed());
            items = answer["items"].as_array().map_or(0, Vec::len);
        }
        assert!(items > 0, "no completions {what}");
        out.push((what, items, taken));
    }
    out
}

fn main() {
    // `cargo bench` passes `--bench`; a number picks one size.
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        SIZES.to_vec()
    } else {
        sizes
    };
    println!(
        "vnet-lsp latency benchmark: one-character changes, {ROUNDS} typed and {ROUNDS} deleted of each kind; {} cores, load average {} (other work on the machine inflates the latencies)",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load()
    );
    for lines in sizes {
        run(lines);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
