//! Data-driven checker tests: every `.vnet` under `tests/check/` states its expected
//! diagnostics in `# expect: LINE:COLUMN CODE MESSAGE` header lines, and must produce exactly
//! those. A new case is a new file. Every example under `examples/` must be clean and formatted.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use vnet_grammar::{analyze, decode, Code, LineIndex};

fn vnet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "vnet"))
        .collect();
    files.sort();
    files
}

/// The diagnostics of a file, one `LINE:COLUMN CODE MESSAGE` string each.
fn actual(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read test file");
    let (text, invalid_utf8) = decode(&bytes);
    let mut analysis = analyze(&text);
    if let Some(offset) = invalid_utf8 {
        analysis.report_invalid_utf8(offset);
    }
    let index = LineIndex::new(&text);
    analysis
        .diagnostics
        .iter()
        .map(|d| {
            let at = index.line_col(&text, d.span.start());
            assert!(
                d.span.start() <= d.span.end() && d.span.end() <= text.len(),
                "{}: bad span {:?}",
                path.display(),
                d.span
            );
            format!("{}:{} {} {}", at.line, at.column, d.code, d.message)
        })
        .collect()
}

fn expected(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read test file");
    String::from_utf8_lossy(&bytes)
        .lines()
        .filter_map(|line| line.strip_prefix("# expect: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_case_reports_exactly_its_expected_diagnostics() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check");
    let mut failures = Vec::new();
    for path in vnet_files(&dir) {
        let want = expected(&path);
        let got = actual(&path);
        assert!(
            !want.is_empty(),
            "{} has no `# expect:` line",
            path.display()
        );
        let want_set: BTreeSet<&String> = want.iter().collect();
        let got_set: BTreeSet<&String> = got.iter().collect();
        if want_set != got_set {
            failures.push(format!(
                "{}\n  missing: {:?}\n  unexpected: {:?}",
                path.display(),
                want_set.difference(&got_set).collect::<Vec<_>>(),
                got_set.difference(&want_set).collect::<Vec<_>>()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_diagnostic_code_has_a_test_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/check");
    let mut covered = BTreeSet::new();
    for path in vnet_files(&dir) {
        for line in expected(&path) {
            if let Some(code) = line.split_whitespace().nth(1).and_then(Code::parse) {
                covered.insert(code);
            }
        }
    }
    let missing: Vec<&str> = Code::ALL
        .iter()
        .filter(|c| !covered.contains(c))
        .map(|c| c.as_str())
        .collect();
    assert!(missing.is_empty(), "codes without a test file: {missing:?}");
}

#[test]
fn every_example_is_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let files = vnet_files(&dir);
    assert!(files.len() >= 5, "expected at least five examples");
    for path in files {
        let got = actual(&path);
        assert!(got.is_empty(), "{}: {got:#?}", path.display());
        let text = std::fs::read_to_string(&path).expect("examples are UTF-8");
        let formatted = vnet_grammar::format(&text).expect("examples parse");
        assert!(
            formatted == text,
            "{} is not in `vnetc fmt` layout",
            path.display()
        );
    }
}
