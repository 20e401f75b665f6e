//! The incremental analysis against the whole one: random programs, random edit sequences, and
//! after every edit `Incremental::update` must give exactly what `analyze` gives.

use proptest::prelude::*;
use vnet_grammar::incremental::{Incremental, Outcome};
use vnet_grammar::{analyze, Analysis};

/// Every field of two analyses, with the text, so a failure says where they part.
fn assert_same(got: &Analysis, want: &Analysis, text: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        &got.diagnostics,
        &want.diagnostics,
        "diagnostics of {:?}",
        text
    );
    prop_assert_eq!(&got.file, &want.file, "tree of {:?}", text);
    prop_assert_eq!(&got.state, &want.state, "state of {:?}", text);
    prop_assert_eq!(
        &got.origins.hosts,
        &want.origins.hosts,
        "host origins of {:?}",
        text
    );
    prop_assert_eq!(
        &got.origins.links,
        &want.origins.links,
        "link origins of {:?}",
        text
    );
    prop_assert_eq!(
        &got.origins.rules,
        &want.origins.rules,
        "rule origins of {:?}",
        text
    );
    Ok(())
}

const MACHINES: &[&str] = &["h1", "h2", "h3", "h4"];
const MACS: &[&str] = &[
    "02:00:00:00:00:01",
    "02:00:00:00:00:02",
    "02:00:00:00:00:03",
    "FF:FF:FF:FF:FF:FF",
];

fn machine() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(MACHINES)
}

fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::sample::select(MACS).prop_map(str::to_string),
        1 => proptest::sample::select(MACS).prop_map(|m| format!("NOT {m}")),
        2 => Just("ANY".to_string()),
        1 => Just("NONE".to_string()),
    ]
}

/// One statement line of a program over four machines: links and rules that make loops,
/// black holes, dead and duplicate rules, dangling hops.
fn statement() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => (machine(), machine(), machine(), any::<bool>()).prop_map(|(d, a, b, udp)| {
            format!("LINK {} {d} {a} {b}", if udp { "UDP" } else { "TCP" })
        }),
        5 => (machine(), field(), field(), machine()).prop_map(|(d, s, t, peer)| {
            format!("FORWARD EDGE {d} {s} {t} {d} {peer}")
        }),
        2 => (machine(), field(), field()).prop_map(|(d, s, t)| {
            format!("FORWARD INTERFACE {d} {s} {t} tap-{d}")
        }),
        1 => Just("DELETE".to_string()),
        1 => Just("ADD".to_string()),
        1 => Just("# a comment FORWARD".to_string()),
    ]
}

fn program() -> impl Strategy<Value = String> {
    program_of(statement())
}

/// FORWARD statements only (and links first): the edit the incremental fold patches in place.
fn rules_program() -> impl Strategy<Value = String> {
    let link =
        (machine(), machine(), machine()).prop_map(|(d, a, b)| format!("LINK TCP {d} {a} {b}"));
    (
        proptest::collection::vec(link, 0..5),
        proptest::collection::vec(rule(), 1..25),
    )
        .prop_map(|(mut lines, rules)| {
            lines.extend(rules);
            format!("# header\n{}# trailer\n", program_text(MACHINES, &lines))
        })
}

fn rule() -> impl Strategy<Value = String> {
    prop_oneof![
        5 => (machine(), field(), field(), machine()).prop_map(|(d, s, t, peer)| {
            format!("FORWARD EDGE {d} {s} {t} {d} {peer}")
        }),
        2 => (machine(), field(), field()).prop_map(|(d, s, t)| {
            format!("FORWARD INTERFACE {d} {s} {t} tap-{d}")
        }),
    ]
}

/// An edit among the rules: a rule inserted, a character typed, a few deleted.
fn rule_edit() -> impl Strategy<Value = (f64, usize, String, bool)> {
    let insertion = prop_oneof![
        3 => "[a-zA-Z0-9: ]",
        3 => rule().prop_map(|s| format!("{s}\n    ")),
        1 => proptest::sample::select(MACS).prop_map(str::to_string),
        1 => Just("FORWARD ".to_string()),
    ];
    (
        0.15..=0.95f64,
        prop_oneof![3 => Just(0usize), 2 => 1..3usize, 1 => 1..40usize],
        insertion,
        proptest::bool::weighted(0.1),
    )
}

fn program_of(statement: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    proptest::collection::vec(statement, 0..25)
        .prop_map(|lines| format!("# header\n{}", program_text(MACHINES, &lines)))
}

/// A program declaring `machines` with `lines` as its one ADD block.
fn program_text(machines: &[&str], lines: &[String]) -> String {
    let mut text = String::from("BEGIN\n");
    for m in machines {
        text.push_str(&format!("HOST u AT {m} 7000 tap-{m}\n"));
    }
    text.push_str("ADD\n");
    for line in lines {
        text.push_str(&format!("    {line}\n"));
    }
    text.push_str("END\n");
    text
}

/// What an edit inserts: a character, a token, a statement, spaces or a line break, junk.
fn insertion() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-zA-Z0-9:#]",
        2 => proptest::sample::select(vnet_grammar::lexer::KEYWORDS).prop_map(|k| format!("{k} ")),
        2 => statement().prop_map(|s| format!("{s}\n")),
        2 => proptest::sample::select(&[" ", "\n", "\t", "", "\r\n", " # note\n"][..]).prop_map(str::to_string),
        1 => proptest::sample::select(MACS).prop_map(str::to_string),
        1 => "[ -~é\u{FEFF}]{1,8}",
    ]
}

/// An edit: where (a fraction of the text), how much to delete, what to insert, and whether
/// the analysis of the result is abandoned (a newer text arrived).
fn edit() -> impl Strategy<Value = (f64, usize, String, bool)> {
    (
        0.0..=1.0f64,
        prop_oneof![3 => Just(0usize), 2 => 1..3usize, 1 => 1..40usize],
        insertion(),
        proptest::bool::weighted(0.15),
    )
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &mut String, (place, delete, insert, _): &(f64, usize, String, bool)) {
    let start = floor_char_boundary(text, (*place * text.len() as f64) as usize);
    let end = floor_char_boundary(text, (start + delete).min(text.len())).max(start);
    text.replace_range(start..end, insert);
}

fn check_sequence(
    mut text: String,
    edits: Vec<(f64, usize, String, bool)>,
) -> Result<(), TestCaseError> {
    let mut engine = Incremental::new();
    let never = || false;
    let always = || true;
    match engine.update(&text, &never) {
        Outcome::Done(got) => assert_same(&got, &analyze(&text), &text)?,
        Outcome::Cancelled => prop_assert!(false, "cancelled without being asked"),
    }
    for edit in &edits {
        apply(&mut text, edit);
        let cancel = edit.3;
        match engine.update(&text, if cancel { &always } else { &never }) {
            Outcome::Done(got) => assert_same(&got, &analyze(&text), &text)?,
            Outcome::Cancelled => prop_assert!(cancel, "cancelled without being asked"),
        }
    }
    Ok(())
}

// 256 cases by default; `PROPTEST_CASES=100000` searches deeper.
proptest! {

    #[test]
    fn edits_to_programs_analyse_as_the_whole_text(
        text in program(),
        edits in proptest::collection::vec(edit(), 1..12),
    ) {
        check_sequence(text, edits)?;
    }

    #[test]
    fn rule_edits_analyse_as_the_whole_text(
        text in rules_program(),
        edits in proptest::collection::vec(rule_edit(), 1..16),
    ) {
        check_sequence(text, edits)?;
    }

    #[test]
    fn edits_to_junk_analyse_as_the_whole_text(
        text in "[ -~\n]{0,120}",
        edits in proptest::collection::vec(edit(), 1..12),
    ) {
        check_sequence(text, edits)?;
    }
}

/// A text with more lexical errors than the lexer reports: the whole text's lexer gives up,
/// and so must the incremental analysis, at the same place.
#[test]
fn junk_past_the_diagnostic_cap_is_analysed_as_the_whole_text() {
    let mut text = "BEGIN\n".to_string();
    for i in 0..1100 {
        text.push_str(&format!("HOST u@{i} AT h 7000 eth0\n"));
    }
    let mut engine = Incremental::new();
    for edit in ["", "x", "xx"] {
        text.push_str(edit);
        let Outcome::Done(got) = engine.update(&text, &|| false) else {
            panic!("not cancelled")
        };
        let want = analyze(&text);
        assert_eq!(got.diagnostics, want.diagnostics);
        assert_eq!(got.file, want.file);
        assert!(got.diagnostics.len() > 1000);
    }
}

/// Six machines, wired in a ring with chords, and more MACs than the programs above: enough
/// daemons and classes that an edit leaves most of them as they were.
const RING: &[&str] = &["r1", "r2", "r3", "r4", "r5", "r6"];
const RING_MACS: &[&str] = &[
    "02:00:00:00:00:01",
    "02:00:00:00:00:02",
    "02:00:00:00:00:03",
    "02:00:00:00:00:04",
    "02:00:00:00:00:05",
    "02:00:00:00:00:06",
    "FF:FF:FF:FF:FF:FF",
];

fn ring_machine() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(RING)
}

fn ring_mac() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(RING_MACS)
}

/// A source field: mostly `ANY`, sometimes a MAC (a daemon's named sources change then).
fn ring_src() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("ANY".to_string()),
        1 => ring_mac().prop_map(str::to_string),
        1 => ring_mac().prop_map(|m| format!("NOT {m}")),
    ]
}

/// A destination field: mostly one MAC (the edits re-run per class), sometimes generic (the
/// daemon's every class).
fn ring_dst() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => ring_mac().prop_map(str::to_string),
        1 => ring_mac().prop_map(|m| format!("NOT {m}")),
        1 => Just("ANY".to_string()),
        1 => Just("NONE".to_string()),
    ]
}

/// A LINK (its machines from the ring, or one no HOST declares) or a rule of any daemon.
fn ring_statement() -> impl Strategy<Value = String> {
    let daemon = prop_oneof![6 => ring_machine(), 1 => Just("r9")];
    prop_oneof![
        2 => (ring_machine(), daemon).prop_map(|(a, b)| format!("LINK TCP {a} {a} {b}")),
        6 => (ring_machine(), ring_src(), ring_dst(), ring_machine()).prop_map(|(d, s, t, p)| {
            format!("FORWARD EDGE {d} {s} {t} {d} {p}")
        }),
        2 => (ring_machine(), ring_src(), ring_dst()).prop_map(|(d, s, t)| {
            format!("FORWARD INTERFACE {d} {s} {t} tap-{d}")
        }),
    ]
}

/// A statement edit: replace, insert before or delete the statement at a place (a fraction of
/// the statements), or rename one machine of it; and whether the analysis is abandoned.
#[derive(Clone, Debug)]
enum LineEdit {
    Replace(f64, String),
    Insert(f64, String),
    Delete(f64),
    Rename(f64, &'static str, &'static str),
}

fn line_edit() -> impl Strategy<Value = (LineEdit, bool)> {
    let place = 0.0..1.0f64;
    let edit = prop_oneof![
        3 => (place.clone(), ring_statement()).prop_map(|(p, s)| LineEdit::Replace(p, s)),
        3 => (place.clone(), ring_statement()).prop_map(|(p, s)| LineEdit::Insert(p, s)),
        2 => place.clone().prop_map(LineEdit::Delete),
        3 => (place, ring_machine(), prop_oneof![6 => ring_machine(), 1 => Just("r9")])
            .prop_map(|(p, from, to)| LineEdit::Rename(p, from, to)),
    ];
    (edit, proptest::bool::weighted(0.1))
}

fn apply_line_edit(lines: &mut Vec<String>, edit: &LineEdit) {
    let at = |p: f64, len: usize| ((p * len as f64) as usize).min(len.saturating_sub(1));
    match edit {
        LineEdit::Replace(p, s) if !lines.is_empty() => {
            let i = at(*p, lines.len());
            lines[i] = s.clone();
        }
        LineEdit::Insert(p, s) => {
            let i = at(*p, lines.len() + 1);
            lines.insert(i, s.clone());
        }
        LineEdit::Delete(p) if !lines.is_empty() => {
            let i = at(*p, lines.len());
            lines.remove(i);
        }
        LineEdit::Rename(p, from, to) if !lines.is_empty() => {
            // The statement at the place, or the next one naming `from`: LINKs among them.
            let i = at(*p, lines.len());
            let hit = (0..lines.len())
                .map(|k| (i + k) % lines.len())
                .find(|k| lines[*k].split(' ').any(|w| w == *from));
            if let Some(k) = hit {
                let renamed: Vec<&str> = lines[k]
                    .split(' ')
                    .map(|w| if w == *from { to } else { w })
                    .collect();
                lines[k] = renamed.join(" ");
            }
        }
        _ => {}
    }
}

fn check_line_edits(
    mut lines: Vec<String>,
    edits: Vec<(LineEdit, bool)>,
) -> Result<(), TestCaseError> {
    let mut engine = Incremental::new();
    let text = program_text(RING, &lines);
    match engine.update(&text, &|| false) {
        Outcome::Done(got) => assert_same(&got, &analyze(&text), &text)?,
        Outcome::Cancelled => prop_assert!(false, "cancelled without being asked"),
    }
    for (edit, cancel) in &edits {
        apply_line_edit(&mut lines, edit);
        let text = program_text(RING, &lines);
        let cancelled = || *cancel;
        match engine.update(&text, &cancelled) {
            Outcome::Done(got) => assert_same(&got, &analyze(&text), &text)?,
            Outcome::Cancelled => prop_assert!(*cancel, "cancelled without being asked"),
        }
    }
    Ok(())
}

proptest! {
    /// LINKs renamed, added and deleted, rules of several daemons and classes replaced: the
    /// edits whose flow analysis re-runs per daemon and class (loops round the ring, black
    /// holes at its daemons, dead rules) must give what a fresh analysis gives.
    #[test]
    fn link_and_rule_edits_analyse_as_the_whole_text(
        extra in proptest::collection::vec(ring_statement(), 4..40),
        edits in proptest::collection::vec(line_edit(), 1..16),
    ) {
        let mut lines: Vec<String> = (0..RING.len())
            .map(|i| {
                let (a, b) = (RING[i], RING[(i + 1) % RING.len()]);
                format!("LINK TCP {a} {a} {b}")
            })
            .collect();
        lines.extend(extra);
        check_line_edits(lines, edits)?;
    }
}
