//! The formatter's tests: the data-driven cases of `tests/fmt/` and property tests on
//! generated well-formed programs (idempotence, meaning kept, comments kept, layout).
//!
//! A case is `NAME.in.vnet` with either `NAME.out.vnet` (the expected layout) or `NAME.err`
//! (the codes the refusal must carry, one a line, in order). `VNET_BLESS=1 cargo test` writes
//! the current output into the `.out.vnet` files instead of comparing.

use proptest::prelude::*;
use std::fs;
use std::path::{Path, PathBuf};
use vnet_grammar::ast::{BlockKind, MatchKind, RuleKind, SourceFile, Transport};
use vnet_grammar::{analyze, format, parse};

// ---------------------------------------------------------------------------------------
// The data-driven cases.

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fmt")
}

/// Every `NAME.in.vnet` of the directory, sorted, by NAME.
fn case_names() -> Vec<String> {
    let entries = fs::read_dir(cases_dir()).expect("tests/fmt exists");
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|file| file.strip_suffix(".in.vnet").map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn data_driven_cases() {
    let names = case_names();
    assert!(
        names.len() >= 15,
        "expected the cases of tests/fmt, found {}",
        names.len()
    );
    let failures: Vec<String> = names
        .iter()
        .filter_map(|name| run_case(name).err())
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        names.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_expectation_has_an_input() {
    for entry in fs::read_dir(cases_dir()).expect("tests/fmt exists") {
        let file = entry
            .expect("readable directory")
            .file_name()
            .into_string()
            .expect("UTF-8 name");
        let stem = file
            .strip_suffix(".out.vnet")
            .or_else(|| file.strip_suffix(".err"))
            .or_else(|| file.strip_suffix(".in.vnet"));
        let stem = stem.unwrap_or_else(|| panic!("tests/fmt/{file}: not a case file"));
        assert!(
            cases_dir().join(format!("{stem}.in.vnet")).exists(),
            "tests/fmt/{file} has no input"
        );
    }
}

fn run_case(name: &str) -> Result<(), String> {
    let dir = cases_dir();
    let input = fs::read_to_string(dir.join(format!("{name}.in.vnet")))
        .map_err(|e| format!("{name}: {e}"))?;
    let err_path = dir.join(format!("{name}.err"));
    if err_path.exists() {
        let expected = fs::read_to_string(&err_path).map_err(|e| format!("{name}: {e}"))?;
        return expect_refusal(name, &input, &expected);
    }
    let out_path = dir.join(format!("{name}.out.vnet"));
    let actual = format(&input).map_err(|d| format!("{name}: refused: {d:#?}"))?;
    if std::env::var_os("VNET_BLESS").is_some() {
        fs::write(&out_path, &actual).map_err(|e| format!("{name}: {e}"))?;
    }
    let expected = fs::read_to_string(&out_path).map_err(|e| format!("{name}: {e}"))?;
    if actual != expected {
        return Err(format!(
            "{name}: output differs (- expected, + actual):\n{}",
            diff(&expected, &actual)
        ));
    }
    let again = format(&actual).map_err(|d| format!("{name}: output refused: {d:#?}"))?;
    if again != actual {
        return Err(format!(
            "{name}: not idempotent (- once, + twice):\n{}",
            diff(&actual, &again)
        ));
    }
    same_meaning(&input, &actual).map_err(|e| format!("{name}: {e}"))
}

fn expect_refusal(name: &str, input: &str, expected: &str) -> Result<(), String> {
    let expected: Vec<&str> = expected
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match format(input) {
        Ok(out) => Err(format!(
            "{name}: expected a refusal with {expected:?}, got:\n{out}"
        )),
        Err(diagnostics) => {
            let codes: Vec<&str> = diagnostics.iter().map(|d| d.code.as_str()).collect();
            if codes == expected {
                Ok(())
            } else {
                Err(format!(
                    "{name}: refused with {codes:?}, expected {expected:?}"
                ))
            }
        }
    }
}

/// A line diff (longest common subsequence), enough for files of a few hundred lines.
fn diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.split_inclusive('\n').collect();
    let b: Vec<&str> = actual.split_inclusive('\n').collect();
    // lcs[i][j]: the longest common subsequence of a[i..] and b[j..].
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            out.push_str(&format!("  {:?}\n", a[i]));
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("- {:?}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("+ {:?}\n", b[j]));
            j += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Meaning: what must be equal between a text and its formatted form.

/// The tree without spans, comments by their text: equal trees mean the same statements in
/// the same order with the same comments in the same order.
#[derive(Debug, PartialEq)]
struct Shape {
    hosts: Vec<(String, String, u32, String)>,
    blocks: Vec<(BlockKind, Vec<LinkShape>, Vec<RuleShape>)>,
    comments: Vec<String>,
}

type LinkShape = (Transport, String, String, String);
type RuleShape = (RuleKind, String, MatchKind, MatchKind, Vec<String>);

fn shape(file: &SourceFile) -> Shape {
    let name = |ident: &vnet_grammar::ast::Ident| ident.as_str().to_string();
    Shape {
        hosts: file
            .hosts
            .iter()
            .map(|h| {
                (
                    name(&h.user),
                    name(&h.machine),
                    h.port.value,
                    name(&h.iface),
                )
            })
            .collect(),
        blocks: file
            .blocks
            .iter()
            .map(|b| {
                let links = b
                    .links
                    .iter()
                    .map(|l| (l.transport, name(&l.dialer), name(&l.a), name(&l.b)));
                let rules = b.rules.iter().map(|r| {
                    let dest = r.dest.iter().map(name).collect();
                    (r.kind, name(&r.daemon), r.src.kind, r.dst.kind, dest)
                });
                (b.kind, links.collect(), rules.collect())
            })
            .collect(),
        comments: file
            .comments
            .iter()
            .map(|c| c.text.trim_end().to_string())
            .collect(),
    }
}

/// The formatted text has the same statements, comments, folded state and diagnostics.
fn same_meaning(original: &str, formatted: &str) -> Result<(), String> {
    let before = parse(original);
    let after = parse(formatted);
    if shape(&before.file) != shape(&after.file) {
        return Err(format!(
            "the tree changed:\n{:#?}\nbecame\n{:#?}",
            shape(&before.file),
            shape(&after.file)
        ));
    }
    let (before, after) = (analyze(original), analyze(formatted));
    if before.state != after.state {
        return Err(format!(
            "the state changed:\n{:#?}\nbecame\n{:#?}",
            before.state, after.state
        ));
    }
    let codes = |diagnostics: &[vnet_grammar::Diagnostic]| {
        let mut codes: Vec<&str> = diagnostics.iter().map(|d| d.code.as_str()).collect();
        codes.sort_unstable();
        codes
    };
    if codes(&before.diagnostics) != codes(&after.diagnostics) {
        return Err(format!(
            "the diagnostics changed: {:?} became {:?}",
            codes(&before.diagnostics),
            codes(&after.diagnostics)
        ));
    }
    Ok(())
}

/// The layout rules of SPEC 3 that can be seen line by line.
fn check_layout(out: &str) -> Result<(), String> {
    if !out.ends_with('\n') || out.ends_with("\n\n") {
        return Err("the file must end with exactly one newline".into());
    }
    if out.contains("\n\n\n") || out.starts_with('\n') {
        return Err("at most one blank line in a row, none at the start".into());
    }
    for line in out.lines() {
        if line != line.trim_end() {
            return Err(format!("trailing whitespace: {line:?}"));
        }
        let body = line.strip_prefix("    ").unwrap_or(line);
        let first = body.split(' ').next().unwrap_or("");
        let indented = body.len() != line.len();
        let ok = match first {
            "" => line.is_empty(),
            "LINK" | "FORWARD" => indented,
            "BEGIN" | "END" | "HOST" | "ADD" | "DELETE" => !indented,
            _ => first.starts_with('#'),
        };
        if !ok || body.starts_with(char::is_whitespace) {
            return Err(format!("misplaced line: {line:?}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// A generator of well-formed programs written in every way the language allows: random
// keyword case, MAC case, leading zeros in ports, any whitespace, comments anywhere.

const NAMES: &[&str] = &[
    "h1",
    "h2",
    "Host1",
    "proxy.example.edu",
    "10.0.0.2",
    "127.0.0.3",
    "tap-h1",
    "vmnet1",
    "eth0",
    "a_b",
    "beginning",
    "ENDS",
    "anyhow",
    "1a",
    "x",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(NAMES).prop_map(str::to_string),
        1 => "[A-Za-z_][A-Za-z0-9_.-]{0,10}".prop_filter("not a keyword", |n| !vnet_grammar::lexer::is_keyword(n)),
    ]
}

/// A keyword in a random mix of cases.
fn keyword(word: &'static str) -> impl Strategy<Value = String> {
    any::<u32>().prop_map(move |mask| mixed_case(word, mask))
}

fn mixed_case(word: &str, mask: u32) -> String {
    word.chars()
        .enumerate()
        .map(|(i, c)| {
            if mask >> (i % 32) & 1 == 1 {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

fn mac() -> impl Strategy<Value = String> {
    (any::<[u8; 6]>(), any::<u32>()).prop_map(|(octets, mask)| {
        let text: Vec<String> = octets.iter().map(|o| format!("{o:02x}")).collect();
        mixed_case(&text.join(":"), mask)
    })
}

fn port() -> impl Strategy<Value = String> {
    (1u32..=65535, 0usize..3).prop_map(|(value, zeros)| format!("{}{value}", "0".repeat(zeros)))
}

fn matcher() -> impl Strategy<Value = Vec<String>> {
    prop_oneof![
        (keyword("NOT"), mac()).prop_map(|(k, m)| vec![k, m]),
        keyword("ANY").prop_map(|k| vec![k]),
        keyword("NONE").prop_map(|k| vec![k]),
        mac().prop_map(|m| vec![m]),
    ]
}

fn host() -> impl Strategy<Value = Vec<String>> {
    (
        keyword("HOST"),
        name(),
        keyword("AT"),
        name(),
        port(),
        name(),
    )
        .prop_map(|(h, user, at, machine, port, iface)| vec![h, user, at, machine, port, iface])
}

fn link() -> impl Strategy<Value = Vec<String>> {
    (
        keyword("LINK"),
        prop_oneof![keyword("TCP"), keyword("UDP")],
        name(),
        name(),
        name(),
    )
        .prop_map(|(l, t, dialer, a, b)| vec![l, t, dialer, a, b])
}

/// Either kind with one or two destination names: V107 is the checker's business, and the
/// formatter must keep such a rule as it is.
fn rule() -> impl Strategy<Value = Vec<String>> {
    let kind = prop_oneof![keyword("EDGE"), keyword("INTERFACE")];
    let dest = proptest::collection::vec(name(), 1..=2);
    (keyword("FORWARD"), kind, name(), matcher(), matcher(), dest).prop_map(
        |(f, kind, daemon, src, dst, dest)| {
            let mut tokens = vec![f, kind, daemon];
            tokens.extend(src);
            tokens.extend(dst);
            tokens.extend(dest);
            tokens
        },
    )
}

fn block() -> impl Strategy<Value = Vec<String>> {
    let links = proptest::collection::vec(link(), 0..3);
    let rules = proptest::collection::vec(rule(), 0..3);
    (prop_oneof![keyword("ADD"), keyword("DELETE")], links, rules).prop_map(|(k, links, rules)| {
        let mut tokens = vec![k];
        tokens.extend(links.into_iter().chain(rules).flatten());
        tokens
    })
}

fn program_tokens() -> impl Strategy<Value = Vec<String>> {
    let hosts = proptest::collection::vec(host(), 0..4);
    let blocks = proptest::collection::vec(block(), 0..4);
    (keyword("BEGIN"), hosts, blocks, keyword("END")).prop_map(|(b, hosts, blocks, e)| {
        let mut tokens = vec![b];
        tokens.extend(hosts.into_iter().flatten());
        tokens.extend(blocks.into_iter().flatten());
        tokens.push(e);
        tokens
    })
}

/// Text that may follow `#`: anything but a line feed (tabs, `\r`, `#`, Unicode).
fn comment_body() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[ -~]{0,16}",
        1 => "[^\n]{0,8}",
    ]
}

/// What goes between two tokens: always some whitespace, sometimes a comment and blank lines.
fn separator() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(" ".to_string()),
        1 => Just("\t".to_string()),
        3 => Just("\n".to_string()),
        1 => Just("\r\n".to_string()),
        1 => Just("\n\n\n".to_string()),
        1 => Just("\n    ".to_string()),
        1 => Just(" \x0C\x0B ".to_string()),
        2 => ("[ \t]{0,2}", comment_body(), "[ \t\n]{0,3}").prop_map(|(a, c, b)| format!("{a}#{c}\n{b}")),
    ]
}

/// Joins tokens with separators; the text may also start and end with any separator.
fn program() -> impl Strategy<Value = String> {
    program_tokens().prop_flat_map(|tokens| {
        let n = tokens.len();
        let edges = prop_oneof![Just(String::new()), separator()];
        (
            Just(tokens),
            proptest::collection::vec(separator(), n),
            edges,
        )
            .prop_map(|(tokens, seps, lead)| {
                let mut text = lead;
                for (token, sep) in tokens.iter().zip(&seps) {
                    text.push_str(token);
                    text.push_str(sep);
                }
                text
            })
    })
}

fn formatted(text: &str) -> Result<String, TestCaseError> {
    format(text).map_err(|d| TestCaseError::fail(format!("refused a well-formed program: {d:#?}")))
}

/// 256 cases keep the suite within seconds; `PROPTEST_CASES=100000` searches deeper.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 256;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn format_is_idempotent(text in program()) {
        let once = formatted(&text)?;
        let twice = formatted(&once)?;
        prop_assert_eq!(&twice, &once, "formatting twice differs:\n{}", diff(&once, &twice));
    }

    #[test]
    fn format_keeps_the_meaning_and_the_comments(text in program()) {
        let out = formatted(&text)?;
        same_meaning(&text, &out).map_err(TestCaseError::fail)?;
    }

    #[test]
    fn format_follows_the_layout(text in program()) {
        let out = formatted(&text)?;
        check_layout(&out).map_err(|e| TestCaseError::fail(format!("{e}\nin:\n{out}")))?;
    }

    /// Writing a program all on one line gives the same layout (comments aside, since a
    /// comment ends a line): line breaks carry no meaning (SPEC 2.1).
    #[test]
    fn line_breaks_carry_no_meaning(tokens in program_tokens()) {
        let one_line = tokens.join(" ");
        let one_per_line = tokens.join("\n");
        prop_assert_eq!(formatted(&one_line)?, formatted(&one_per_line)?);
    }
}

#[test]
fn the_formatted_cases_are_fixed_points() {
    for name in case_names() {
        let path = cases_dir().join(format!("{name}.out.vnet"));
        let Ok(expected) = fs::read_to_string(&path) else {
            continue;
        };
        assert_eq!(
            format(&expected).as_ref(),
            Ok(&expected),
            "{name}.out.vnet is not formatted"
        );
        check_layout(&expected).unwrap_or_else(|e| panic!("{name}.out.vnet: {e}"));
    }
}
