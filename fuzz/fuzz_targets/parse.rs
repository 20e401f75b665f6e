//! Arbitrary bytes through the front end as every tool reads a file: decode, parse, format.
//! Crashes are panics; the formatter must also be idempotent on whatever it accepts.

#![no_main]

use libfuzzer_sys::fuzz_target;
use vnet_grammar::{decode, fmt, parse};

fuzz_target!(|bytes: &[u8]| {
    let (text, _) = decode(bytes);
    let parsed = parse(&text);
    for d in &parsed.diagnostics {
        assert!(
            d.span.start() <= d.span.end() && d.span.end() <= text.len(),
            "{d:?} outside the text"
        );
        assert!(
            text.is_char_boundary(d.span.start()) && text.is_char_boundary(d.span.end()),
            "{d:?} splits a character"
        );
    }
    // The LSP may lay out a tree that holds errors: that must not panic either.
    let _ = fmt::format_file(&parsed.file, &text);
    if let Ok(once) = fmt::format(&text) {
        let twice = fmt::format(&once);
        assert_eq!(twice.as_ref(), Ok(&once), "formatting is not idempotent");
    }
});
