//! The server as an editor sees it: the real binary over stdio, every feature with its exact
//! answer.

mod common;

use common::{apply_edits, at, pos, range, Lsp, URI};
use serde_json::{json, Value};

/// A program with mistakes: a non-UTF-16-trivial name (V003) and port (V004) on one line, an
/// undeclared machine (V101) whose link is missing (V106), and a duplicate link (V201).
const BROKEN: &str = "BEGIN
HOST alice AT h1 7000 tap0 # the Proxy — ünïcode 😀
HOST b😀b AT h2 70000 tap1
ADD
    LINK TCP h1 h1 h2
    FORWARD EDGE h1 ANY 00:50:56:00:00:02 h1 h2
    FORWARD INTERFACE h1 ANY 00:50:56:00:00:01 tap0
    FORWARD EDGE h2 ANY 00:50:56:00:00:01 h2 h3 # back — 😀
    FORWARD INTERFACE h2 ANY 00:50:56:00:00:02 tap1

ADD
    LINK TCP h1 h1 h2
END
";

/// The same program once the mistakes are fixed.
const FIXED: &str = "BEGIN
HOST alice AT h1 7000 tap0 # the Proxy — ünïcode 😀
HOST bob AT h2 7000 tap1
ADD
    LINK TCP h1 h1 h2
    FORWARD EDGE h1 ANY 00:50:56:00:00:02 h1 h2
    FORWARD INTERFACE h1 ANY 00:50:56:00:00:01 tap0
    FORWARD EDGE h2 ANY 00:50:56:00:00:01 h2 h1 # back — 😀
    FORWARD INTERFACE h2 ANY 00:50:56:00:00:02 tap1
END
";

fn codes(diagnostics: &[Value]) -> Vec<&str> {
    diagnostics
        .iter()
        .map(|d| d["code"].as_str().unwrap_or("?"))
        .collect()
}

/// The grammar's message for a code in `text`, with the help line the server appends.
fn message(text: &str, code: &str) -> String {
    let analysis = vnet_grammar::analyze(text);
    let d = analysis
        .diagnostics
        .iter()
        .find(|d| d.code.as_str() == code)
        .unwrap_or_else(|| panic!("the grammar reports {code}"));
    match &d.help {
        Some(help) => format!("{}\nhelp: {help}", d.message),
        None => d.message.clone(),
    }
}

fn change(version: i64, changes: Value) -> Value {
    json!({"textDocument": {"uri": URI, "version": version}, "contentChanges": changes})
}

/// Opens FIXED and waits for its (empty) diagnostics.
fn open_fixed() -> Lsp {
    let (mut lsp, _) = Lsp::start();
    lsp.open(URI, FIXED);
    assert_eq!(lsp.diagnostics(URI, 1), Vec::<Value>::new());
    lsp
}

#[test]
fn initialize_announces_the_features() {
    let (lsp, result) = Lsp::start();
    let caps = &result["capabilities"];
    assert_eq!(result["serverInfo"]["name"], "vnet-lsp");
    assert_eq!(caps["positionEncoding"], "utf-16");
    assert_eq!(caps["textDocumentSync"]["change"], 2, "incremental sync");
    assert_eq!(caps["textDocumentSync"]["openClose"], true);
    for feature in [
        "hoverProvider",
        "definitionProvider",
        "referencesProvider",
        "documentHighlightProvider",
        "documentSymbolProvider",
        "documentFormattingProvider",
        "foldingRangeProvider",
    ] {
        assert_eq!(caps[feature], true, "{feature}");
    }
    assert_eq!(caps["renameProvider"], json!({"prepareProvider": true}));
    assert_eq!(
        caps["codeActionProvider"],
        json!({"codeActionKinds": ["quickfix"]})
    );
    assert_eq!(caps["completionProvider"], json!({}));
    assert_eq!(caps["semanticTokensProvider"]["full"], true);
    assert_eq!(caps["semanticTokensProvider"]["range"], true);
    assert!(lsp.shutdown().success(), "exit after shutdown is 0");
}

#[test]
fn diagnostics_after_open_then_cleared_by_incremental_changes() {
    let (mut lsp, _) = Lsp::start();
    lsp.open(URI, BROKEN);
    let published = lsp.diagnostics(URI, 1);
    // Line 2 is `HOST b😀b AT h2 70000 tap1`: the emoji is two UTF-16 units (four bytes).
    let expected = json!([
        {"range": range(2, 6, 2, 8), "severity": 1, "code": "V003", "source": "vnet",
         "message": message(BROKEN, "V003")},
        {"range": range(2, 16, 2, 21), "severity": 1, "code": "V004", "source": "vnet",
         "message": message(BROKEN, "V004")},
        {"range": range(7, 42, 7, 47), "severity": 1, "code": "V106", "source": "vnet",
         "message": message(BROKEN, "V106"),
         "relatedInformation": [{"location": {"uri": URI, "range": range(7, 4, 7, 47)}, "message": "the rule"}]},
        {"range": range(7, 45, 7, 47), "severity": 1, "code": "V101", "source": "vnet",
         "message": message(BROKEN, "V101")},
        {"range": range(11, 4, 11, 21), "severity": 2, "code": "V201", "source": "vnet",
         "message": message(BROKEN, "V201"), "tags": [1],
         "relatedInformation": [{"location": {"uri": URI, "range": range(4, 4, 4, 21)}, "message": "added here"}]},
    ]);
    // The forwarding analysis (V111, V205, V206) of a broken state is not this test's subject.
    let published: Vec<Value> = published
        .into_iter()
        .filter(|d| !matches!(d["code"].as_str(), Some("V111" | "V205" | "V206")))
        .collect();
    assert_eq!(Value::Array(published), expected);

    // Two changes in one notification, the second in the coordinates the first left.
    lsp.notify(
        "textDocument/didChange",
        change(
            2,
            json!([
                {"range": range(2, 6, 2, 8), "text": "o"},
                {"range": range(2, 15, 2, 20), "text": "7000"},
            ]),
        ),
    );
    let second = lsp.diagnostics(URI, 2);
    let left: Vec<&str> = codes(&second)
        .into_iter()
        .filter(|c| !matches!(*c, "V111" | "V205" | "V206"))
        .collect();
    assert_eq!(left, ["V106", "V101", "V201"]);

    lsp.notify(
        "textDocument/didChange",
        change(
            3,
            json!([
                {"range": range(7, 45, 7, 47), "text": "h1"},
                {"range": range(9, 0, 12, 0), "text": ""},
            ]),
        ),
    );
    assert_eq!(lsp.diagnostics(URI, 3), Vec::<Value>::new());

    // The server now holds FIXED: it answers as for a fresh copy of FIXED, token for token.
    let copy = "file:///work/copy.vnet";
    lsp.open(copy, FIXED);
    assert_eq!(lsp.diagnostics(copy, 1), Vec::<Value>::new());
    for method in [
        "textDocument/semanticTokens/full",
        "textDocument/documentSymbol",
        "textDocument/foldingRange",
    ] {
        let edited = lsp.request_ok(method, json!({"textDocument": {"uri": URI}}));
        let fresh = lsp.request_ok(method, json!({"textDocument": {"uri": copy}}));
        assert_eq!(
            edited.to_string().replace(copy, URI),
            fresh.to_string().replace(copy, URI),
            "{method}"
        );
    }
    assert!(lsp.shutdown().success());
}

#[test]
fn a_change_replacing_the_whole_text_and_close_clears_diagnostics() {
    let (mut lsp, _) = Lsp::start();
    lsp.open(URI, BROKEN);
    assert!(!lsp.diagnostics(URI, 1).is_empty());
    lsp.notify(
        "textDocument/didChange",
        change(2, json!([{"text": FIXED}])),
    );
    assert_eq!(lsp.diagnostics(URI, 2), Vec::<Value>::new());
    lsp.notify(
        "textDocument/didChange",
        change(3, json!([{"text": BROKEN}])),
    );
    assert!(!lsp.diagnostics(URI, 3).is_empty());
    lsp.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": URI}}),
    );
    let closed = lsp.notification("textDocument/publishDiagnostics");
    assert_eq!(closed, json!({"uri": URI, "diagnostics": []}));
}

#[test]
fn hover_machine_mac_keyword_interface() {
    let mut lsp = open_fixed();
    // `h1` in `    LINK TCP h1 h1 h2`.
    let machine = lsp.request_ok("textDocument/hover", at(URI, 4, 14));
    assert_eq!(
        machine,
        json!({
            "contents": {"kind": "markdown", "value":
                "**machine** `h1` — the Proxy (first HOST line)\n\n```vnet\nHOST alice AT h1 7000 tap0\n```\n\n1 link:\n```vnet\nLINK TCP h1 h1 h2\n```\n\n2 rules installed on `h1`"},
            "range": range(4, 13, 4, 15),
        })
    );
    let mac = lsp.request_ok("textDocument/hover", at(URI, 5, 30));
    assert_eq!(
        mac,
        json!({
            "contents": {"kind": "markdown", "value":
                "**MAC** `00:50:56:00:00:02` (unicast)\n\n2 rules name it:\n\n- line 6: `FORWARD EDGE h1 ANY 00:50:56:00:00:02 h1 h2`\n- line 9: `FORWARD INTERFACE h2 ANY 00:50:56:00:00:02 tap1`\n"},
            "range": range(5, 24, 5, 41),
        })
    );
    let keyword = lsp.request_ok("textDocument/hover", at(URI, 5, 4));
    assert_eq!(keyword["range"], range(5, 4, 5, 11));
    let text = keyword["contents"]["value"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("**FORWARD**\n\n```vnet\nFORWARD (EDGE | INTERFACE) daemon source destination target\n```\n\nA forwarding rule installed on `daemon`"),
        "{text}"
    );
    let interface = lsp.request_ok("textDocument/hover", at(URI, 8, 48));
    assert_eq!(
        interface["contents"]["value"],
        "**interface** `tap1` of daemon `h2`\n\n```vnet\nHOST bob AT h2 7000 tap1\n```\n\n1 rule delivers into it"
    );
    // On a line after non-ASCII text, in a comment, and on blank space: nothing.
    assert_eq!(
        lsp.request_ok("textDocument/hover", at(URI, 1, 30)),
        Value::Null
    );
    assert_eq!(
        lsp.request_ok("textDocument/hover", at(URI, 4, 2)),
        Value::Null
    );
}

#[test]
fn definition_references_and_highlights() {
    let mut lsp = open_fixed();
    // `h2` as the daemon of line 7 → the HOST line's `h2`.
    let definition = lsp.request_ok("textDocument/definition", at(URI, 7, 18));
    assert_eq!(
        definition,
        json!({"uri": URI, "range": range(2, 12, 2, 14)})
    );
    // `h1` as a hop of line 7, after nothing but ASCII, lands on line 1 (which has an emoji).
    let definition = lsp.request_ok("textDocument/definition", at(URI, 7, 45));
    assert_eq!(
        definition,
        json!({"uri": URI, "range": range(1, 14, 1, 16)})
    );
    // An interface → the interface on its daemon's HOST line.
    let definition = lsp.request_ok("textDocument/definition", at(URI, 8, 48));
    assert_eq!(
        definition,
        json!({"uri": URI, "range": range(2, 20, 2, 24)})
    );
    // A keyword has no definition.
    assert_eq!(
        lsp.request_ok("textDocument/definition", at(URI, 4, 5)),
        Value::Null
    );

    let refs = |declaration: bool| json!({"textDocument": {"uri": URI}, "position": pos(4, 20), "context": {"includeDeclaration": declaration}});
    let h2 = [
        range(2, 12, 2, 14),
        range(4, 19, 4, 21),
        range(5, 45, 5, 47),
        range(7, 17, 7, 19),
        range(7, 42, 7, 44),
        range(8, 22, 8, 24),
    ];
    let with: Vec<Value> = h2.iter().map(|r| json!({"uri": URI, "range": r})).collect();
    assert_eq!(
        lsp.request_ok("textDocument/references", refs(true)),
        Value::Array(with.clone())
    );
    assert_eq!(
        lsp.request_ok("textDocument/references", refs(false)),
        Value::Array(with[1..].to_vec())
    );

    let highlights = lsp.request_ok("textDocument/documentHighlight", at(URI, 2, 13));
    let expected: Vec<Value> = h2
        .iter()
        .enumerate()
        .map(|(i, r)| json!({"range": r, "kind": if i == 0 { 3 } else { 2 }}))
        .collect();
    assert_eq!(highlights, Value::Array(expected));
}

#[test]
fn rename_a_machine_everywhere_and_refuse_bad_names() {
    let mut lsp = open_fixed();
    let prepared = lsp.request_ok("textDocument/prepareRename", at(URI, 7, 18));
    assert_eq!(
        prepared,
        json!({"range": range(7, 17, 7, 19), "placeholder": "h2"})
    );
    let on_mac = lsp.request_err("textDocument/prepareRename", at(URI, 5, 30));
    assert_eq!(
        on_mac["message"],
        "only a machine or an interface can be renamed"
    );

    let rename = |name: &str| {
        let mut params = at(URI, 7, 18);
        params["newName"] = json!(name);
        params
    };
    let edit = lsp.request_ok("textDocument/rename", rename("node-2.lan"));
    let edits = edit["changes"][URI].as_array().cloned().unwrap_or_default();
    assert_eq!(edits.len(), 6);
    assert_eq!(
        edits[0],
        json!({"range": range(2, 12, 2, 14), "newText": "node-2.lan"})
    );
    assert_eq!(
        apply_edits(FIXED, &edits),
        FIXED.replace("h2", "node-2.lan")
    );

    for (name, why) in [
        ("h1", "a machine named `h1` already exists (line 2)"),
        ("Forward", "`Forward` is a keyword"),
        (
            "no way",
            "`no way` is not a valid name: names use ASCII letters, digits, `_`, `-` and `.`, and are not all digits",
        ),
        (
            "8080",
            "`8080` is not a valid name: names use ASCII letters, digits, `_`, `-` and `.`, and are not all digits",
        ),
    ] {
        let error = lsp.request_err("textDocument/rename", rename(name));
        assert_eq!(error, json!({"code": -32803, "message": why}), "{name}");
    }
}

/// The labels of a completion answer, and the range every item replaces.
fn labels(result: &Value) -> (Vec<String>, Vec<Value>) {
    let items = result["items"].as_array().cloned().unwrap_or_default();
    let labels = items
        .iter()
        .map(|i| i["label"].as_str().unwrap_or("?").to_string())
        .collect();
    let ranges = items
        .iter()
        .map(|i| i["textEdit"]["range"].clone())
        .collect();
    (labels, ranges)
}

#[test]
fn completion_by_position() {
    let (mut lsp, _) = Lsp::start();
    let head = "BEGIN\nHOST alice AT h1 7000 tap0\nHOST bob AT h2 7000 tap1\nADD\n    LINK TCP h1 h1 h2\n    FORWARD EDGE h1 ANY 00:50:56:00:00:02 h1 h2\n";
    let cases: &[(&str, &[&str])] = &[
        ("", &["FORWARD", "ADD", "DELETE", "END"]),
        ("    FORWARD ", &["EDGE", "INTERFACE"]),
        ("    FORWARD INTERFACE ", &["h1", "h2"]),
        (
            "    FORWARD INTERFACE h2 ",
            &["00:50:56:00:00:02", "NOT", "ANY"],
        ),
        (
            "    FORWARD INTERFACE h2 ANY ",
            &["00:50:56:00:00:02", "NOT", "ANY", "NONE"],
        ),
        ("    FORWARD INTERFACE h2 ANY NOT ", &["00:50:56:00:00:02"]),
        ("    FORWARD INTERFACE h2 ANY NONE ", &["tap1"]),
        ("    FORWARD EDGE h2 ANY NONE ", &["h2"]),
        ("    FORWARD EDGE h2 ANY NONE h2 ", &["h1"]),
        (
            "    FORWARD EDGE h2 ANY NONE h2 h1 ",
            &["FORWARD", "ADD", "DELETE", "END"],
        ),
        ("END\n", &[]),
    ];
    for (i, (tail, expected)) in cases.iter().enumerate() {
        let uri = format!("file:///work/complete-{i}.vnet");
        let text = format!("{head}{tail}");
        lsp.open(&uri, &text);
        let line = text.lines().count() as u32 - u32::from(!text.ends_with('\n'));
        let column = if text.ends_with('\n') {
            0
        } else {
            tail.len() as u32
        };
        let (got, _) = labels(&lsp.request_ok("textDocument/completion", at(&uri, line, column)));
        assert_eq!(got, *expected, "after {tail:?}");
    }

    // Inside a word: the items replace the whole word.
    let uri = "file:///work/complete-word.vnet";
    lsp.open(
        uri,
        "BEGIN\nHOST alice AT h1 7000 tap0\nHOST bob AT h2 7000 tap1\nADD\n    LINK TCP h1 h1 h\n",
    );
    let (got, ranges) = labels(&lsp.request_ok("textDocument/completion", at(uri, 4, 20)));
    assert_eq!(got, ["h2"], "the other end of a link is not the first one");
    assert_eq!(ranges, [range(4, 19, 4, 20)]);
    let (got, ranges) = labels(&lsp.request_ok("textDocument/completion", at(uri, 4, 6)));
    assert_eq!(got, ["LINK", "FORWARD", "ADD", "DELETE", "END"]);
    assert_eq!(ranges[0], range(4, 4, 4, 8));

    // The HOST line of a machine used but not declared; nothing inside a comment.
    let uri = "file:///work/complete-host.vnet";
    lsp.open(
        uri,
        "BEGIN\nHOST alice AT h1 7000 tap0\nHOST bob AT  # é\nADD\n    LINK TCP h1 h1 h9\n",
    );
    let (got, _) = labels(&lsp.request_ok("textDocument/completion", at(uri, 2, 12)));
    assert_eq!(got, ["h9"]);
    let (got, _) = labels(&lsp.request_ok("textDocument/completion", at(uri, 2, 16)));
    assert!(got.is_empty());
}

#[test]
fn completion_among_many_macs_is_narrowed_by_what_is_typed() {
    let (mut lsp, _) = Lsp::start();
    // 300 VMs, each delivered by a rule naming its MAC.
    let mut text = String::from("BEGIN\nHOST alice AT h1 7000 tap0\nADD\n");
    let mac = |i: usize| format!("00:50:56:00:{:02x}:{:02x}", i >> 8, i & 0xff);
    for i in 0..300 {
        text.push_str(&format!("    FORWARD INTERFACE h1 ANY {} tap0\n", mac(i)));
    }
    let line = 3 + 300;
    text.push_str("    FORWARD INTERFACE h1 ANY 00:50:56:00:01:2");
    let uri = "file:///work/complete-many.vnet";
    lsp.open(uri, &text);

    // At the start of the destination: the first MACs, the keywords, and more to ask for.
    let column = "    FORWARD INTERFACE h1 ANY ".len() as u32;
    let answer = lsp.request_ok("textDocument/completion", at(uri, line, column));
    assert_eq!(answer["isIncomplete"], json!(true));
    let (got, _) = labels(&answer);
    assert_eq!(got.len(), 100 + 3, "{got:?}");
    assert_eq!(got[0], mac(0));
    assert_eq!(got[100..], ["NOT", "ANY", "NONE"]);

    // Part of a MAC typed: the MACs that start with it first (00:50:56:00:01:20 to 2b), then
    // those that hold its characters in order (01:02, 01:12), then the keywords.
    let column = text.lines().last().map_or(0, str::len) as u32;
    let answer = lsp.request_ok("textDocument/completion", at(uri, line, column));
    let (got, _) = labels(&answer);
    let macs: Vec<&String> = got.iter().filter(|l| l.contains(':')).collect();
    assert_eq!(macs.len(), 12 + 2, "{got:?}");
    assert!(
        macs[..12].iter().all(|m| m.starts_with("00:50:56:00:01:2")),
        "{macs:?}"
    );
    assert_eq!(macs[12..], [&mac(0x102), &mac(0x112)]);
    assert_eq!(got[14..], ["NOT", "ANY", "NONE"]);

    // A few MACs: every one, and nothing more to ask for.
    let uri = "file:///work/complete-few.vnet";
    lsp.open(
        uri,
        "BEGIN\nHOST alice AT h1 7000 tap0\nADD\n    FORWARD INTERFACE h1 ANY 00:50:56:00:00:01 tap0\n    FORWARD INTERFACE h1 ANY ",
    );
    let answer = lsp.request_ok("textDocument/completion", at(uri, 4, 29));
    assert_eq!(answer["isIncomplete"], json!(false));
    assert_eq!(
        labels(&answer).0,
        ["00:50:56:00:00:01", "NOT", "ANY", "NONE"]
    );
}

/// The titles and edits of the quick fixes offered for `r`.
fn quick_fixes(lsp: &mut Lsp, uri: &str, r: Value) -> Vec<(String, Vec<Value>)> {
    let actions = lsp.request_ok(
        "textDocument/codeAction",
        json!({"textDocument": {"uri": uri}, "range": r, "context": {"diagnostics": []}}),
    );
    actions
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            assert_eq!(a["kind"], "quickfix");
            assert_eq!(a["isPreferred"], true);
            let title = a["title"].as_str().unwrap_or("?").to_string();
            let edits = a["edit"]["changes"][uri]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (title, edits)
        })
        .collect()
}

#[test]
fn quick_fixes_declare_host_add_link_remove_duplicate() {
    // FIXED with an undeclared `h3` (V101) and its missing link (V106) on line 7, and a
    // block repeating a link (V201).
    let text = format!(
        "{}ADD\n    LINK TCP h1 h1 h2 # again\nEND\n",
        FIXED
            .replace("h2 h1 # back", "h2 h3 # back")
            .replace("END\n", "")
    );
    let (mut lsp, _) = Lsp::start();
    lsp.open(URI, &text);
    let codes_before: Vec<String> = lsp
        .diagnostics(URI, 1)
        .iter()
        .map(|d| d["code"].as_str().unwrap_or("?").to_string())
        .collect();
    assert!(
        codes_before.starts_with(&["V106".to_string(), "V101".to_string(), "V201".to_string()]),
        "{codes_before:?}"
    );

    // On `h3`: both fixes, in the order of their diagnostics.
    let on_h3 = quick_fixes(&mut lsp, URI, range(7, 46, 7, 46));
    assert_eq!(
        on_h3,
        vec![
            (
                "Add the link: LINK TCP h2 h2 h3".to_string(),
                vec![json!({"range": range(5, 0, 5, 0), "newText": "    LINK TCP h2 h2 h3\n"})],
            ),
            (
                "Declare `h3`: HOST bob AT h3 7000 tap0".to_string(),
                vec![json!({"range": range(3, 0, 3, 0), "newText": "HOST bob AT h3 7000 tap0\n"})],
            ),
        ]
    );
    // On the duplicate: it goes, and its block with it since nothing else is in it.
    let on_duplicate = quick_fixes(&mut lsp, URI, range(10, 10, 10, 12));
    assert_eq!(
        on_duplicate,
        vec![(
            "Remove the duplicate `LINK TCP h1 h1 h2`".to_string(),
            vec![json!({"range": range(9, 0, 11, 0), "newText": ""})],
        )]
    );
    // Nothing to fix on a line without diagnostics.
    assert_eq!(quick_fixes(&mut lsp, URI, range(1, 0, 1, 3)), vec![]);

    // Applying the three fixes leaves no error.
    let edits: Vec<Value> = on_h3
        .iter()
        .chain(&on_duplicate)
        .flat_map(|(_, e)| e.clone())
        .collect();
    let fixed = apply_edits(&text, &edits);
    assert!(
        fixed.contains(
            "HOST bob AT h3 7000 tap0\nADD\n    LINK TCP h1 h1 h2\n    LINK TCP h2 h2 h3\n"
        ),
        "{fixed}"
    );
    lsp.notify(
        "textDocument/didChange",
        change(2, json!([{"text": fixed}])),
    );
    let left: Vec<Value> = lsp
        .diagnostics(URI, 2)
        .into_iter()
        .filter(|d| !matches!(d["code"].as_str(), Some("V111" | "V205" | "V206")))
        .collect();
    assert_eq!(left, Vec::<Value>::new());
}

#[test]
fn formatting_is_vnetc_fmt() {
    let (mut lsp, _) = Lsp::start();
    let messy = "# Two daemons.\nbegin\nhost alice at h1 7000 tap0   # the Proxy\nHost bob AT h2 07000 tap1\nadd\nlink tcp h1 h1 h2\n  forward edge h1 any 00:50:56:00:00:0A h1 h2\nEND\n";
    let canonical = "# Two daemons.\nBEGIN\nHOST alice AT h1 7000 tap0 # the Proxy\nHOST bob AT h2 7000 tap1\n\nADD\n    LINK TCP h1 h1 h2\n    FORWARD EDGE h1 ANY 00:50:56:00:00:0a h1 h2\nEND\n";
    assert_eq!(
        vnet_grammar::format(messy).as_deref(),
        Ok(canonical),
        "the grammar's formatter"
    );
    lsp.open(URI, messy);
    let options = json!({"tabSize": 4, "insertSpaces": true});
    let edits = lsp.request_ok(
        "textDocument/formatting",
        json!({"textDocument": {"uri": URI}, "options": options}),
    );
    let edits = edits.as_array().cloned().unwrap_or_default();
    // One edit, from the first difference (`begin`) to the last (`any 00:…:0A`).
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0]["range"], range(1, 0, 6, 39));
    assert_eq!(apply_edits(messy, &edits), canonical);

    // A formatted file needs no edit; a file with a syntax error is refused.
    let other = "file:///work/formatted.vnet";
    lsp.open(other, canonical);
    let none = lsp.request_ok(
        "textDocument/formatting",
        json!({"textDocument": {"uri": other}, "options": options}),
    );
    assert_eq!(none, json!([]));
    let broken = "file:///work/syntax-error.vnet";
    lsp.open(broken, "BEGIN\nHOST alice AT h1 tap0\nEND\n");
    let error = lsp.request_err(
        "textDocument/formatting",
        json!({"textDocument": {"uri": broken}, "options": options}),
    );
    assert_eq!(error["code"], -32803);
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("cannot format a file with 1 syntax error: V001 at 2:18: "),
        "{message}"
    );
}

#[test]
fn semantic_tokens_full_and_range() {
    let (mut lsp, _) = Lsp::start();
    let text = "BEGIN\nHOST alice AT h1 7000 tap0 # é😀\nADD\n    FORWARD INTERFACE h1 NOT 00:50:56:00:00:01 ANY tap0\nEND\n";
    lsp.open(URI, text);
    let full = lsp.request_ok(
        "textDocument/semanticTokens/full",
        json!({"textDocument": {"uri": URI}}),
    );
    // keyword 0, comment 1, number 2, machine 3, interface 4, user 5, MAC 6; bit 1 = declaration.
    #[rustfmt::skip]
    let expected = json!([
        0, 0, 5, 0, 0,   // BEGIN
        1, 0, 4, 0, 0,   // HOST
        0, 5, 5, 5, 0,   // alice
        0, 6, 2, 0, 0,   // AT
        0, 3, 2, 3, 1,   // h1, declared
        0, 3, 4, 2, 0,   // 7000
        0, 5, 4, 4, 1,   // tap0, declared
        0, 5, 5, 1, 0,   // # é😀 (five UTF-16 units)
        1, 0, 3, 0, 0,   // ADD
        1, 4, 7, 0, 0,   // FORWARD
        0, 8, 9, 0, 0,   // INTERFACE
        0, 10, 2, 3, 0,  // h1
        0, 3, 3, 0, 0,   // NOT
        0, 4, 17, 6, 0,  // 00:50:56:00:00:01
        0, 18, 3, 0, 0,  // ANY
        0, 4, 4, 4, 0,   // tap0
        1, 0, 3, 0, 0,   // END
    ]);
    assert_eq!(full, json!({"data": expected}));
    let ranged = lsp.request_ok(
        "textDocument/semanticTokens/range",
        json!({"textDocument": {"uri": URI}, "range": range(3, 0, 3, 100)}),
    );
    #[rustfmt::skip]
    let expected = json!([
        3, 4, 7, 0, 0,  0, 8, 9, 0, 0,  0, 10, 2, 3, 0,  0, 3, 3, 0, 0,  0, 4, 17, 6, 0,  0, 18, 3, 0, 0,  0, 4, 4, 4, 0,
    ]);
    assert_eq!(ranged, json!({"data": expected}));
}

#[test]
fn document_symbols_and_folding_ranges() {
    let mut lsp = open_fixed();
    let symbols = lsp.request_ok(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": URI}}),
    );
    let rule = |line: u32, end: u32, text: &str| json!({"name": text, "kind": 6, "range": range(line, 4, line, end), "selectionRange": range(line, 4, line, end)});
    assert_eq!(
        symbols,
        json!([
            {"name": "h1", "detail": "HOST alice AT h1 7000 tap0", "kind": 19,
             "range": range(1, 0, 1, 26), "selectionRange": range(1, 14, 1, 16)},
            {"name": "h2", "detail": "HOST bob AT h2 7000 tap1", "kind": 19,
             "range": range(2, 0, 2, 24), "selectionRange": range(2, 12, 2, 14)},
            {"name": "ADD", "detail": "1 link, 4 rules", "kind": 3,
             "range": range(3, 0, 8, 51), "selectionRange": range(3, 0, 3, 3),
             "children": [
                {"name": "LINK TCP h1 h1 h2", "kind": 7, "range": range(4, 4, 4, 21), "selectionRange": range(4, 4, 4, 21)},
                rule(5, 47, "FORWARD EDGE h1 ANY 00:50:56:00:00:02 h1 h2"),
                rule(6, 51, "FORWARD INTERFACE h1 ANY 00:50:56:00:00:01 tap0"),
                rule(7, 47, "FORWARD EDGE h2 ANY 00:50:56:00:00:01 h2 h1"),
                rule(8, 51, "FORWARD INTERFACE h2 ANY 00:50:56:00:00:02 tap1"),
             ]},
        ])
    );
    let folds = lsp.request_ok(
        "textDocument/foldingRange",
        json!({"textDocument": {"uri": URI}}),
    );
    assert_eq!(
        folds,
        json!([
            {"startLine": 0, "endLine": 9, "kind": "region"},
            {"startLine": 1, "endLine": 2, "kind": "region"},
            {"startLine": 3, "endLine": 8, "kind": "region"},
        ])
    );
}

#[test]
fn a_burst_of_keystrokes_ends_with_the_diagnostics_of_the_last() {
    let mut lsp = open_fixed();
    // Type `.extra` after `h2` at the end of line 4, one character per change, without waiting.
    let typed = ".extra";
    for (i, ch) in typed.chars().enumerate() {
        let column = 21 + i as u32;
        lsp.notify(
            "textDocument/didChange",
            change(
                2 + i as i64,
                json!([{"range": range(4, column, 4, column), "text": ch.to_string()}]),
            ),
        );
    }
    // A request sent right after the burst answers about the final text.
    let hover = lsp.request_ok("textDocument/hover", at(URI, 4, 25));
    assert_eq!(hover["range"], range(4, 19, 4, 27));
    let text = hover["contents"]["value"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("**machine** `h2.extra` — not declared by a HOST line (V101)"),
        "{text}"
    );
    let last = 1 + typed.len() as i64;
    let diagnostics = lsp.diagnostics(URI, last);
    let mut got = codes(&diagnostics);
    got.retain(|c| !matches!(*c, "V111" | "V205" | "V206"));
    assert_eq!(got, ["V101", "V106", "V106"], "{diagnostics:?}");
    assert_eq!(diagnostics[0]["range"], range(4, 19, 4, 27));
}
