//! `vnetc` as a user runs it: real processes, real files, exit codes and output.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn vnetc(args: &[&str]) -> Output {
    run_with_stdin(args, None)
}

fn run_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vnetc"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vnetc");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(bytes).expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait for vnetc");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "vnetc panicked: {stderr}");
    out
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch directory of this test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("vnetc-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, bytes).expect("write scratch file");
        path.to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

const STAR: &str = "BEGIN\nHOST u AT a 7000 eth0\nHOST u AT b 7000 eth1\nADD\n    LINK TCP b a b\n    FORWARD INTERFACE b ANY 00:50:56:00:00:02 eth1\n    FORWARD EDGE b 00:50:56:00:00:02 NONE b a\n    FORWARD EDGE a ANY 00:50:56:00:00:02 a b\nEND\n";

#[test]
fn check_exit_codes_follow_the_contract() {
    let s = Scratch::new("exit");
    let star = example("resilient-star.vnet");
    let out = vnetc(&["check", &star]);
    assert_eq!(code(&out), 0);
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("{star}: ok (5 daemons, 4 links, 22 rules)\n"),
        "a clean file is said to be clean, on stderr"
    );
    assert_eq!(stdout(&out), "", "stdout holds diagnostics only");
    let json = vnetc(&["check", "--format", "json", &star]);
    assert_eq!(
        String::from_utf8_lossy(&json.stderr),
        "",
        "json output is unchanged"
    );
    let warn = s.file(
        "warn.vnet",
        b"BEGIN\nHOST u AT a 1 e\nADD\nADD\n FORWARD INTERFACE a ANY 00:00:00:00:00:01 e\nEND\n",
    );
    let out = vnetc(&["check", &warn]);
    assert_eq!(code(&out), 0, "warnings alone do not fail");
    assert!(stdout(&out).contains("V204"));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .ends_with(": ok, 1 warning (1 daemon, 0 links, 1 rule)\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = s.file("bad.vnet", b"BEGIN\nHOST u AT a 99999 e\nEND\n");
    let out = vnetc(&["check", &bad]);
    assert_eq!(code(&out), 1);
    assert!(!String::from_utf8_lossy(&out.stderr).contains(": ok"));
    assert!(
        stdout(&out).contains("[V004] Error: port `99999` is out of range"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("bad.vnet:2:13"), "{}", stdout(&out));
    assert_eq!(code(&vnetc(&["check", "/nonexistent/file.vnet"])), 2);
    assert_eq!(code(&vnetc(&["check"])), 2, "usage error");
    assert_eq!(code(&vnetc(&["check", "--bogus", &bad])), 2);
}

#[test]
fn check_json_follows_the_schema() {
    let s = Scratch::new("json");
    let file = s.file(
        "f.vnet",
        "BEGIN\n# é\nHOST u AT a 7000 eth0\nADD\n    LINK TCP a a zz\nEND\n".as_bytes(),
    );
    let out = vnetc(&["check", "--format", "json", &file]);
    assert_eq!(code(&out), 1);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let diags = json["diagnostics"].as_array().expect("diagnostics array");
    assert_eq!(diags.len(), 1, "{json}");
    let d = &diags[0];
    assert_eq!(d["file"], file.as_str());
    assert_eq!(d["code"], "V101");
    assert_eq!(d["severity"], "error");
    assert!(d["message"].as_str().unwrap_or("").contains("`zz`"));
    assert_eq!(
        d["span"]["start"],
        serde_json::json!({"line": 5, "column": 18})
    );
    assert_eq!(
        d["span"]["end"],
        serde_json::json!({"line": 5, "column": 20}),
        "half-open end"
    );
    assert!(d["related"].is_array());
    assert!(d.get("help").is_some());
}

#[test]
fn check_base_folds_a_patch_onto_a_file() {
    let s = Scratch::new("base");
    let base = s.file("base.vnet", STAR.as_bytes());
    let ok = s.file(
        "ok.vnet",
        b"BEGIN\nDELETE\n    FORWARD EDGE a ANY 00:50:56:00:00:02 a b\nEND\n",
    );
    assert_eq!(code(&vnetc(&["check", "--base", &base, &ok])), 0);
    let in_use = s.file("in-use.vnet", b"BEGIN\nDELETE\n    LINK TCP b a b\nEND\n");
    let out = vnetc(&["check", "--base", &base, &in_use]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("V110"), "{}", stdout(&out));
    // Without the base the same patch deletes a link that is not there: a warning only.
    let out = vnetc(&["check", &in_use]);
    assert!(stdout(&out).contains("V202"), "{}", stdout(&out));
}

#[test]
fn fmt_filters_stdin_checks_and_rewrites_in_place() {
    let s = Scratch::new("fmt");
    let messy = "begin host u at a 7000 eth0 HOST u AT b 7000 eth1\nadd link tcp b a b forward interface b any 00:50:56:00:00:02 eth1 # vm\nend";
    let out = run_with_stdin(&["fmt", "-"], Some(messy.as_bytes()));
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let formatted = stdout(&out);
    assert!(
        formatted.starts_with(
            "BEGIN\nHOST u AT a 7000 eth0\nHOST u AT b 7000 eth1\n\nADD\n    LINK TCP b a b\n"
        ),
        "{formatted}"
    );
    assert!(
        formatted.contains("    FORWARD INTERFACE b ANY 00:50:56:00:00:02 eth1 # vm\n"),
        "{formatted}"
    );

    let file = s.file("messy.vnet", messy.as_bytes());
    assert_eq!(code(&vnetc(&["fmt", "--check", &file])), 1);
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        messy,
        "--check changes nothing"
    );
    assert_eq!(code(&vnetc(&["fmt", &file])), 0);
    assert_eq!(std::fs::read_to_string(&file).expect("read"), formatted);
    assert_eq!(code(&vnetc(&["fmt", "--check", &file])), 0);

    let broken = s.file("broken.vnet", b"BEGIN HOST u AT END");
    assert_eq!(code(&vnetc(&["fmt", &broken])), 1);
    assert_eq!(
        std::fs::read(&broken).expect("read"),
        b"BEGIN HOST u AT END",
        "never rewrites a broken file"
    );
}

#[test]
fn state_depends_only_on_meaning() {
    let s = Scratch::new("state");
    let a = s.file("a.vnet", STAR.as_bytes());
    // The same meaning: other layout, case, link written from the other end, rules in another
    // order, and a rule added, deleted and added again.
    let b = s.file(
        "b.vnet",
        b"# same\nbegin HOST u AT a 7000 eth0 HOST u AT b 7000 eth1\n add\n link tcp b b a\n forward edge a any 00:50:56:00:00:02 a b\n\
          FORWARD EDGE b 00:50:56:00:00:02 NONE b a FORWARD INTERFACE b ANY 00:50:56:00:00:02 eth1\n\
          DELETE FORWARD EDGE a ANY 00:50:56:00:00:02 a b ADD FORWARD EDGE a ANY 00:50:56:00:00:02 a b END",
    );
    let c = s.file(
        "c.vnet",
        STAR.replace("LINK TCP b a b", "LINK UDP b a b").as_bytes(),
    );
    let (sa, sb, sc) = (
        vnetc(&["state", &a]),
        vnetc(&["state", &b]),
        vnetc(&["state", &c]),
    );
    assert_eq!(code(&sa), 0);
    assert_eq!(code(&sb), 0, "{}", String::from_utf8_lossy(&sb.stderr));
    assert_eq!(sa.stdout, sb.stdout, "same meaning, same bytes");
    assert_ne!(sa.stdout, sc.stdout, "different meaning, different output");
    let canonical = stdout(&sa);
    assert!(
        canonical.contains("\nADD\n    LINK TCP b a b\n    FORWARD EDGE a ANY"),
        "{canonical}"
    );
    let json = vnetc(&["state", "--format", "json", &a]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("state JSON");
    assert_eq!(value["hosts"].as_array().map(Vec::len), Some(2));
    // The canonical program is itself clean and a fixed point.
    let again = s.file("again.vnet", &sa.stdout);
    assert_eq!(vnetc(&["state", &again]).stdout, sa.stdout);
    assert_eq!(code(&vnetc(&["fmt", "--check", &again])), 0);
}

#[test]
fn graph_draws_dot_and_svg() {
    let s = Scratch::new("graph");
    let out = vnetc(&["graph", &example("resilient-star.vnet")]);
    assert_eq!(code(&out), 0);
    let dot = stdout(&out);
    assert!(dot.starts_with("digraph vnet {"), "{dot}");
    assert!(
        dot.contains("\"127.0.0.2\" -> \"127.0.0.1\" [label=\"TCP\""),
        "{dot}"
    );
    assert_eq!(dot.matches(" -> ").count(), 4);
    let svg = s.0.join("star.svg");
    let out = vnetc(&[
        "graph",
        &example("fast-path-8.vnet"),
        "-o",
        &svg.to_string_lossy(),
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).expect("svg written");
    assert!(
        text.contains("<svg") && text.contains("127.0.0.8"),
        "{}",
        &text[..text.len().min(300)]
    );
}

#[test]
fn bad_input_gives_diagnostics_or_a_clear_error_never_a_panic() {
    let s = Scratch::new("bad");
    let empty = s.file("empty.vnet", b"");
    let out = vnetc(&["check", &empty]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("V001"));

    // Pseudo-random binary from a fixed seed.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let binary: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let bin = s.file("binary.vnet", &binary);
    let out = vnetc(&["check", "--format", "json", &bin]);
    assert_eq!(code(&out), 1);
    let json: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("JSON even for binary input");
    let diags = json["diagnostics"].as_array().expect("array");
    assert_eq!(
        diags.len(),
        1001,
        "1,000 diagnostics and one that counts the rest"
    );
    assert!(diags[1000]["message"]
        .as_str()
        .unwrap_or("")
        .contains("more diagnostics not shown"));
    assert_eq!(code(&vnetc(&["fmt", "--check", &bin])), 1);
    assert_eq!(code(&vnetc(&["state", &bin])), 1);

    let utf8 = s.file("latin1.vnet", b"BEGIN\nHOST u AT caf\xe9 7000 eth0\nEND\n");
    let out = vnetc(&["check", &utf8]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("V003"), "{}", stdout(&out));

    // A bad byte inside a comment is V003 too, and fmt refuses rather than rewrite it.
    let comment = s.file("comment.vnet", b"BEGIN END # caf\x80\n");
    let out = vnetc(&["check", &comment]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("V003"), "{}", stdout(&out));
    assert_eq!(code(&vnetc(&["fmt", &comment])), 1);
    assert_eq!(
        std::fs::read(&comment).expect("read"),
        b"BEGIN END # caf\x80\n"
    );

    // A UTF-8 byte-order mark is whitespace.
    let bom = s.file("bom.vnet", b"\xef\xbb\xbfBEGIN\nEND\n");
    assert_eq!(code(&vnetc(&["check", &bom])), 0);

    assert_eq!(
        code(&vnetc(&["check", &s.0.to_string_lossy()])),
        2,
        "a directory is an I/O error"
    );
}

#[test]
fn a_file_past_4_gib_is_refused_before_it_is_read() {
    let s = Scratch::new("4gib");
    let path = s.0.join("sparse.vnet");
    // Sparse: no disk space is used, and vnetc must refuse it from its size alone.
    let file = std::fs::File::create(&path).expect("create");
    file.set_len(5 << 30).expect("set length");
    let out = vnetc(&["check", &path.to_string_lossy()]);
    assert_eq!(code(&out), 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at most"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_50_megabyte_file_is_handled() {
    let s = Scratch::new("huge");
    // 50 MB: a valid program whose HOST lines repeat one declaration, then junk.
    let mut text = String::from("BEGIN\n");
    let line = "HOST user AT machine-with-a-long-name 7000 eth0   # repeated\n";
    while text.len() < 50 * 1024 * 1024 {
        text.push_str(line);
    }
    text.push_str("END\n");
    let file = s.file("huge.vnet", text.as_bytes());
    let out = vnetc(&["check", &file]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let junk = s.file("junk.vnet", &"x@ ".repeat(17 * 1024 * 1024).into_bytes());
    let out = vnetc(&["check", &junk]);
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).contains("more diagnostics not shown"));
}
