//! Arbitrary bytes through the whole analysis the front ends share: parse, fold, check.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let (text, _) = vnet_grammar::decode(bytes);
    let _ = vnet_grammar::analyze(&text);
});
