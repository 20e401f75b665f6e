//! Bad input: garbage, unknown methods, changes to files never opened, positions outside the
//! text. Each gets an error (a response, or for a notification a logged error) and the server
//! keeps running.

mod common;

use common::{at, frame, range, Lsp, URI};
use serde_json::{json, Value};

const TEXT: &str = "BEGIN\nHOST alice AT h1 7000 tap0 # é😀\nHOST bob AT h2 7000 tap1\nADD\n    LINK TCP h1 h1 h2\nEND\n";

/// The server still answers: a hover on `h1` of the LINK line.
fn still_serving(lsp: &mut Lsp) {
    let hover = lsp.request_ok("textDocument/hover", at(URI, 4, 13));
    assert_eq!(hover["range"], range(4, 13, 4, 15), "{hover}");
    assert!(lsp.alive());
}

fn started() -> Lsp {
    let (mut lsp, _) = Lsp::start();
    lsp.open(URI, TEXT);
    assert_eq!(lsp.diagnostics(URI, 1), Vec::<Value>::new());
    lsp
}

fn null_id_error(lsp: &mut Lsp) -> Value {
    lsp.wait_for(|m| m.get("id") == Some(&Value::Null) && m.get("error").is_some())
}

#[test]
fn garbage_gets_a_parse_error_and_the_server_goes_on() {
    let mut lsp = started();
    // A well-framed body that is not JSON, then one that is not UTF-8.
    lsp.send_raw(&frame(b"this is { not json"));
    assert_eq!(
        null_id_error(&mut lsp),
        json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": "Parse error"}, "id": null})
    );
    lsp.send_raw(&frame(&[0xff, 0xfe, 0x00, 0x80]));
    assert_eq!(null_id_error(&mut lsp)["error"]["code"], -32700);
    // Lines that are no headers at all.
    lsp.send_raw(b"hello there\r\nwho are you\r\n\r\n");
    assert_eq!(null_id_error(&mut lsp)["error"]["code"], -32700);
    // A header with a length that is no number.
    lsp.send_raw(b"Content-Length: lots\r\n\r\n");
    assert_eq!(null_id_error(&mut lsp)["error"]["code"], -32700);
    still_serving(&mut lsp);
    // JSON that is no JSON-RPC message: Invalid Request, with the id when there is one.
    lsp.send_raw(&frame(br#"{"jsonrpc":"2.0","id":77,"method":42}"#));
    let invalid = lsp.wait_for(|m| m.get("id") == Some(&json!(77)));
    assert_eq!(
        invalid,
        json!({"jsonrpc": "2.0", "error": {"code": -32600, "message": "Invalid request"}, "id": 77})
    );
    lsp.send_raw(&frame(b"[1, 2, 3]"));
    assert_eq!(null_id_error(&mut lsp)["error"]["code"], -32600);
    still_serving(&mut lsp);
    assert!(lsp.shutdown().success());
}

#[test]
fn unknown_methods_and_bad_params() {
    let mut lsp = started();
    let error = lsp.request_err("vnet/doesNotExist", json!({}));
    assert_eq!(
        error,
        json!({"code": -32601, "message": "Method not found", "data": "vnet/doesNotExist"})
    );
    // An unknown notification is ignored, as LSP asks; so is a `$/` one.
    lsp.notify("vnet/whatever", json!({"x": 1}));
    lsp.notify("$/setTrace", json!({"value": "off"}));
    // Parameters of the wrong shape.
    let error = lsp.request_err("textDocument/hover", json!({"textDocument": 5}));
    assert_eq!(error["code"], -32602);
    let error = lsp.request_err("textDocument/completion", Value::Null);
    assert_eq!(error["code"], -32602);
    still_serving(&mut lsp);
}

#[test]
fn positions_outside_the_text_are_invalid_params() {
    let mut lsp = started();
    let error = lsp.request_err("textDocument/hover", at(URI, 99, 0));
    assert_eq!(
        error,
        json!({"code": -32602, "message": "position 99:0 is outside the document, which has 7 lines"})
    );
    for method in [
        "textDocument/definition",
        "textDocument/references",
        "textDocument/completion",
        "textDocument/prepareRename",
        "textDocument/documentHighlight",
    ] {
        let mut params = at(URI, 7, 0);
        params["context"] = json!({"includeDeclaration": true});
        assert_eq!(lsp.request_err(method, params)["code"], -32602, "{method}");
    }
    let mut rename = at(URI, 4000, 3);
    rename["newName"] = json!("x");
    assert_eq!(
        lsp.request_err("textDocument/rename", rename)["code"],
        -32602
    );
    let actions = json!({"textDocument": {"uri": URI}, "range": range(0, 0, 50, 0), "context": {"diagnostics": []}});
    assert_eq!(
        lsp.request_err("textDocument/codeAction", actions)["code"],
        -32602
    );
    let tokens = json!({"textDocument": {"uri": URI}, "range": range(0, 0, 50, 0)});
    assert_eq!(
        lsp.request_err("textDocument/semanticTokens/range", tokens)["code"],
        -32602
    );
    // A column past the end of a line means the line's end (LSP), here the end of `h2`.
    let hover = lsp.request_ok("textDocument/hover", at(URI, 4, 500));
    assert_eq!(hover["range"], range(4, 19, 4, 21));
    still_serving(&mut lsp);
}

#[test]
fn documents_never_opened_or_changed_out_of_range() {
    let mut lsp = started();
    let other = "file:///work/never-opened.vnet";
    let error = lsp.request_err("textDocument/hover", at(other, 0, 0));
    assert_eq!(
        error,
        json!({"code": -32602, "message": format!("document is not open: {other}")})
    );
    assert_eq!(
        lsp.request_err(
            "textDocument/formatting",
            json!({"textDocument": {"uri": other}, "options": {"tabSize": 4, "insertSpaces": true}})
        )["code"],
        -32602
    );
    // A notification has no response: the error is logged to the client.
    lsp.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": other, "version": 2}, "contentChanges": [{"text": "BEGIN END"}]}),
    );
    let logged = lsp.notification("window/logMessage");
    assert_eq!(
        logged,
        json!({"type": 1, "message": format!("textDocument/didChange ignored: change to a document that is not open: {other}")})
    );
    lsp.notify(
        "textDocument/didClose",
        json!({"textDocument": {"uri": other}}),
    );
    let logged = lsp.notification("window/logMessage");
    assert_eq!(logged["type"], 1);

    // A change whose range is outside the text is refused whole; the text stays as it was.
    lsp.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 2}, "contentChanges": [
            {"range": range(0, 0, 0, 5), "text": "BEGIN"},
            {"range": range(40, 0, 41, 0), "text": "oops"},
        ]}),
    );
    let logged = lsp.notification("window/logMessage");
    assert_eq!(
        logged["message"],
        "textDocument/didChange ignored: position 40:0 is outside the document, which has 7 lines"
    );
    still_serving(&mut lsp);
    // The next good change applies to the unchanged text.
    lsp.notify(
        "textDocument/didChange",
        json!({"textDocument": {"uri": URI, "version": 3}, "contentChanges": [{"range": range(4, 13, 4, 15), "text": "h9"}]}),
    );
    let diagnostics = lsp.diagnostics(URI, 3);
    assert_eq!(diagnostics[0]["code"], "V101");
    assert_eq!(diagnostics[0]["range"], range(4, 13, 4, 15));
}

#[test]
fn requests_before_initialize_and_exit_codes() {
    let mut lsp = Lsp::spawn();
    let error = lsp.request_err("textDocument/hover", at(URI, 0, 0));
    assert_eq!(error["code"], -32002, "server not initialized");
    lsp.request_ok("initialize", json!({"capabilities": {}}));
    // `exit` without `shutdown` ends the process with 1, as LSP asks.
    lsp.notify("exit", Value::Null);
    assert_eq!(lsp.wait().code(), Some(1));

    // The end of the input ends the server too.
    let (mut lsp, _) = Lsp::start();
    assert_eq!(lsp.wait().code(), Some(1));
}

/// Every request at every position of some awkward texts: each gets a result or an error.
#[test]
fn no_request_anywhere_breaks_the_server() {
    let texts = [
        TEXT.to_string(),
        String::new(),
        "\n\n\n".to_string(),
        "BEGIN\r\nHOST a AT b 0 c\r\nADD\r\nLINK UDP\r\nFORWARD EDGE b NOT NOT ff:ff\r\n"
            .to_string(),
        "béGIN h😀st@1 # 😀😀\nEND END\u{0}\u{7f}\tADD DELETE FORWARD INTERFACE x NONE NONE y z w"
            .to_string(),
        "# only a comment ünïcode".to_string(),
    ];
    let (mut lsp, _) = Lsp::start();
    for (n, text) in texts.iter().enumerate() {
        let uri = format!("file:///work/awkward-{n}.vnet");
        lsp.open(&uri, text);
        lsp.diagnostics(&uri, 1);
        let lines = text.split('\n').count() as u32;
        for line in 0..lines + 1 {
            for character in [0, 1, 2, 3, 5, 8, 13, 21, 200] {
                for method in [
                    "textDocument/hover",
                    "textDocument/definition",
                    "textDocument/completion",
                    "textDocument/prepareRename",
                    "textDocument/documentHighlight",
                ] {
                    let response = lsp.request(method, at(&uri, line, character));
                    assert!(
                        response.get("result").is_some() || response.get("error").is_some(),
                        "{response}"
                    );
                }
                let mut references = at(&uri, line, character);
                references["context"] = json!({"includeDeclaration": true});
                lsp.request("textDocument/references", references);
                let mut rename = at(&uri, line, character);
                rename["newName"] = json!("renamed");
                lsp.request("textDocument/rename", rename);
                let actions = json!({"textDocument": {"uri": uri}, "range": range(0, 0, line, character), "context": {"diagnostics": []}});
                lsp.request("textDocument/codeAction", actions);
            }
        }
        let doc = json!({"textDocument": {"uri": uri}});
        for method in [
            "textDocument/documentSymbol",
            "textDocument/foldingRange",
            "textDocument/semanticTokens/full",
        ] {
            lsp.request_ok(method, doc.clone());
        }
        let mut formatting = doc.clone();
        formatting["options"] = json!({"tabSize": 4, "insertSpaces": true});
        lsp.request("textDocument/formatting", formatting);
    }
    still_serving_after_awkward(&mut lsp);
}

fn still_serving_after_awkward(lsp: &mut Lsp) {
    lsp.open(URI, TEXT);
    lsp.diagnostics(URI, 1);
    still_serving(lsp);
    assert!(lsp.alive());
}
