//! Data-driven `vnetc adapt` tests: every `tests/adapt/NAME.json` is a problem and
//! `NAME.expect` says how to run it (`args:`) and what must come out: `exit:`, `stderr:` and
//! `stdout:` substrings, and for JSON answers `value:`, `before:`, `optimal:`, `migrations:`.
//! Every JSON answer must also have SPEC 5.3's shape. A new case is two new files.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/adapt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/adapt")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn expectations(problem: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(problem.with_extension("expect"))
        .expect("NAME.expect beside NAME.json");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (key, value) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("{}: `{l}`", problem.display()));
            (key.trim().to_string(), value.trim().to_string())
        })
        .collect()
}

/// SPEC 5.3's answer: exactly these keys, every VM mapped, every demand's path from its
/// source's host to its destination's, and `links` the links the paths use.
fn check_shape(json: &Value, problem: &Value, name: &str) {
    let keys: Vec<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = [
        "objective",
        "solver",
        "value",
        "before",
        "optimal",
        "bound",
        "mapping",
        "migrations",
        "paths",
        "links",
    ];
    want.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, want, "{name}: keys");
    let mapping = json["mapping"].as_object().expect("mapping");
    let vms = problem["vms"].as_array().expect("vms");
    assert_eq!(mapping.len(), vms.len(), "{name}: every VM mapped");
    let demands = problem["demands"].as_array().map_or(0, Vec::len);
    let paths = json["paths"].as_array().expect("paths");
    assert_eq!(paths.len(), demands, "{name}: a path per demand");
    let mut used = Vec::new();
    for path in paths {
        let hosts: Vec<&str> = path["hosts"]
            .as_array()
            .expect("hosts")
            .iter()
            .map(|h| h.as_str().expect("name"))
            .collect();
        assert_eq!(
            hosts.first().copied(),
            mapping[path["src"].as_str().expect("src")].as_str(),
            "{name}"
        );
        assert_eq!(
            hosts.last().copied(),
            mapping[path["dst"].as_str().expect("dst")].as_str(),
            "{name}"
        );
        for pair in hosts.windows(2) {
            if !used.contains(&(pair[0], pair[1])) {
                used.push((pair[0], pair[1]));
            }
        }
    }
    let links: Vec<(&str, &str)> = json["links"]
        .as_array()
        .expect("links")
        .iter()
        .map(|l| {
            (
                l["from"].as_str().expect("from"),
                l["to"].as_str().expect("to"),
            )
        })
        .collect();
    assert_eq!(links, used, "{name}: links are those the paths use");
    for m in json["migrations"].as_array().expect("migrations") {
        assert_eq!(
            mapping[m["vm"].as_str().expect("vm")],
            m["to"],
            "{name}: migration target"
        );
    }
}

fn number_or_null(text: &str) -> Value {
    if text == "null" {
        Value::Null
    } else {
        Value::from(text.parse::<f64>().expect("a number"))
    }
}

#[test]
fn adapt_cases() {
    let all = cases();
    assert!(all.len() >= 10, "the cases are where they should be");
    for problem in all {
        let name = problem
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let expect = expectations(&problem);
        let get = |key: &str| -> Vec<&str> {
            expect
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect()
        };
        let args: Vec<&str> = get("args")
            .first()
            .unwrap_or_else(|| panic!("{name}: args"))
            .split_whitespace()
            .collect();
        let out = Command::new(env!("CARGO_BIN_EXE_vnetc"))
            .args(["adapt", "--problem"])
            .arg(&problem)
            .args(&args)
            .output()
            .expect("run vnetc");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let code: i32 = get("exit")
            .first()
            .expect("exit")
            .parse()
            .expect("exit code");
        assert_eq!(
            out.status.code(),
            Some(code),
            "{name}: stdout {stdout} stderr {stderr}"
        );
        get("stderr")
            .iter()
            .for_each(|s| assert!(stderr.contains(*s), "{name}: stderr lacks `{s}`: {stderr}"));
        get("stdout")
            .iter()
            .for_each(|s| assert!(stdout.contains(*s), "{name}: stdout lacks `{s}`: {stdout}"));
        if code != 0 || !args.contains(&"json") {
            continue;
        }
        let json: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{name}: {e}: {stdout}"));
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&problem).expect("problem"))
            .expect("problem JSON");
        check_shape(&json, &doc, &name);
        for (key, want) in [
            ("value", get("value").first().copied()),
            ("before", get("before").first().copied()),
        ] {
            if let Some(want) = want {
                assert_eq!(json[key], number_or_null(want), "{name}: {key}");
            }
        }
        if let Some(want) = get("optimal").first() {
            assert_eq!(
                json["optimal"],
                Value::from(*want == "true"),
                "{name}: optimal"
            );
        }
        if let Some(want) = get("migrations").first() {
            let n = json["migrations"].as_array().expect("migrations").len();
            assert_eq!(n.to_string(), *want, "{name}: migrations");
        }
    }
}
