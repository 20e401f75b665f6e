//! Flow analysis (V111 loops, V205 rules that never fire, V206 black holes) and the route
//! simulation of `vnetc route`, on small programs whose answers are known by hand.

use vnet_grammar::diag::Diagnostic;
use vnet_grammar::gen::{generate, Params, Shape};
use vnet_grammar::route::{route, Step};
use vnet_grammar::{analyze, Code, LineIndex, Mac};

/// Every diagnostic as (code, "line:col", message, related count).
fn diagnostics(text: &str) -> Vec<(Code, String, String, usize)> {
    let index = LineIndex::new(text);
    analyze(text)
        .diagnostics
        .iter()
        .map(|d: &Diagnostic| {
            let at = index.line_col(text, d.span.start());
            (
                d.code,
                format!("{}:{}", at.line, at.column),
                d.message.clone(),
                d.related.len(),
            )
        })
        .collect()
}

fn only(text: &str, code: Code) -> Vec<(Code, String, String, usize)> {
    diagnostics(text)
        .into_iter()
        .filter(|d| d.0 == code)
        .collect()
}

fn mac(text: &str) -> Mac {
    Mac::parse(text).expect("test MAC")
}

fn program(hosts: &[&str], body: &str) -> String {
    let mut out = String::from("BEGIN\n");
    for h in hosts {
        out.push_str(&format!("HOST u AT {h} 5000 if-{h}\n"));
    }
    out.push_str("ADD\n");
    out.push_str(body);
    out.push_str("END\n");
    out
}

const RING3: &str = "BEGIN
HOST u AT a 1 ia
HOST u AT b 1 ib
HOST u AT c 1 ic
ADD
    LINK TCP a a b
    LINK TCP b b c
    LINK TCP c c a
    FORWARD EDGE a ANY 00:00:00:00:00:09 a b
    FORWARD EDGE b ANY 00:00:00:00:00:09 b c
    FORWARD EDGE c ANY 00:00:00:00:00:09 c a
END
";

#[test]
fn a_ring_of_three_edge_rules_is_a_loop_closed_by_the_last_rule() {
    let all = diagnostics(RING3);
    assert_eq!(all.len(), 1, "{all:#?}");
    let (code, at, message, related) = &all[0];
    assert_eq!(*code, Code::V111);
    assert_eq!(at, "11:5");
    assert!(message.contains("a → b → c → a"), "{message}");
    assert!(message.contains("to 00:00:00:00:00:09"), "{message}");
    assert!(message.contains("from any other MAC"), "{message}");
    assert_eq!(*related, 2);
    let analysis = analyze(RING3);
    let hops: Vec<&str> = analysis.diagnostics[0]
        .related
        .iter()
        .map(|r| r.message.as_ref())
        .collect();
    assert_eq!(hops, ["hop 1: a → b", "hop 2: b → c"]);
    let index = LineIndex::new(RING3);
    let lines: Vec<usize> = analysis.diagnostics[0]
        .related
        .iter()
        .map(|r| index.line_col(RING3, r.span.start()).line)
        .collect();
    assert_eq!(lines, [9, 10]);
}

/// A loop through many daemons names its first and last eight and how many it passes, and
/// labels only their hops: the whole of it was unreadable, and slow to draw.
#[test]
fn a_long_loop_is_shown_by_its_ends() {
    let names: Vec<String> = (0..40).map(|i| format!("n{i:02}")).collect();
    let hosts: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut body = String::new();
    for (i, a) in names.iter().enumerate() {
        let b = &names[(i + 1) % names.len()];
        body.push_str(&format!("    LINK TCP {a} {a} {b}\n"));
        body.push_str(&format!("    FORWARD EDGE {a} ANY NONE {a} {b}\n"));
    }
    let text = program(&hosts, &body);
    let all = only(&text, Code::V111);
    assert_eq!(all.len(), 1, "{all:#?}");
    let (_, _, message, related) = &all[0];
    let head = "n00 → n01 → n02 → n03 → n04 → n05 → n06 → n07 → … 24 more …";
    let tail = "n32 → n33 → n34 → n35 → n36 → n37 → n38 → n39 → n00 (40 daemons)";
    assert!(message.contains(&format!("{head} → {tail}")), "{message}");
    assert!(
        !message.contains("n08") && !message.contains("n31"),
        "{message}"
    );
    // Eight hops from the start, seven to the closing rule (the primary place).
    assert_eq!(*related, 15);
    let analysis = analyze(&text);
    let found = analysis.diagnostics.iter().find(|d| d.code == Code::V111);
    let hops: Vec<&str> = found
        .into_iter()
        .flat_map(|d| &d.related)
        .map(|r| r.message.as_ref())
        .collect();
    assert_eq!(hops[7], "hop 8: n07 → n08");
    assert_eq!(hops[8], "hop 33: n32 → n33");
    assert_eq!(hops[14], "hop 39: n38 → n39");
}

#[test]
fn a_broadcast_storm_on_a_ring_of_four_is_a_loop() {
    let text = program(
        &["a", "b", "c", "d"],
        "    LINK TCP a a b
    LINK TCP b b c
    LINK TCP c c d
    LINK TCP d d a
    FORWARD EDGE a ANY ff:ff:ff:ff:ff:ff a b
    FORWARD EDGE a ANY ff:ff:ff:ff:ff:ff a d
    FORWARD EDGE b ANY ff:ff:ff:ff:ff:ff b a
    FORWARD EDGE b ANY ff:ff:ff:ff:ff:ff b c
    FORWARD EDGE c ANY ff:ff:ff:ff:ff:ff c b
    FORWARD EDGE c ANY ff:ff:ff:ff:ff:ff c d
    FORWARD EDGE d ANY ff:ff:ff:ff:ff:ff d c
    FORWARD EDGE d ANY ff:ff:ff:ff:ff:ff d a
",
    );
    let loops = only(&text, Code::V111);
    assert_eq!(loops.len(), 1, "{loops:#?}");
    let (_, at, message, related) = &loops[0];
    // The closing rule is the last one written: d → a, line 17.
    assert_eq!(at, "17:5");
    assert!(message.contains("to ff:ff:ff:ff:ff:ff"), "{message}");
    assert!(message.contains("c → b → a → d → c"), "{message}");
    assert_eq!(*related, 3);
}

#[test]
fn a_two_cycle_is_no_loop_because_of_split_horizon() {
    let text = program(
        &["a", "b"],
        "    LINK TCP a a b
    FORWARD EDGE a ANY 00:00:00:00:00:09 a b
    FORWARD EDGE b ANY 00:00:00:00:00:09 b a
    FORWARD EDGE a ANY NONE a b
    FORWARD EDGE b ANY NONE b a
",
    );
    assert_eq!(diagnostics(&text), []);
}

#[test]
fn default_rules_round_a_ring_loop_for_every_frame() {
    let text = program(
        &["a", "b", "c"],
        "    LINK TCP a a b
    LINK TCP b b c
    LINK TCP c c a
    FORWARD EDGE a ANY NONE a b
    FORWARD EDGE b ANY NONE b c
    FORWARD EDGE c ANY NONE c a
",
    );
    let loops = only(&text, Code::V111);
    assert_eq!(loops.len(), 1, "{loops:#?}");
    assert!(
        loops[0].2.contains("from any other MAC to any other MAC"),
        "{}",
        loops[0].2
    );
    assert_eq!(loops[0].1, "11:5");
}

#[test]
fn a_loop_of_one_source_only_is_found_and_named() {
    let text = program(
        &["a", "b", "c"],
        "    LINK TCP a a b
    LINK TCP b b c
    LINK TCP c c a
    FORWARD EDGE a 00:00:00:00:00:01 ANY a b
    FORWARD EDGE b 00:00:00:00:00:01 ANY b c
    FORWARD EDGE c 00:00:00:00:00:01 ANY c a
    FORWARD EDGE a ANY ANY a c
",
    );
    let loops = only(&text, Code::V111);
    assert_eq!(loops.len(), 1, "{loops:#?}");
    assert!(
        loops[0]
            .2
            .contains("from 00:00:00:00:00:01 to any other MAC"),
        "{}",
        loops[0].2
    );
    assert!(loops[0].2.contains("a → b → c → a"), "{}", loops[0].2);
}

/// Thesis Figure 1 and 2: the Proxy and three hosts, one VM each, Figure 2 on every host.
fn figure2(hosts: usize) -> String {
    let mut text = String::from("BEGIN\nHOST vnet AT proxy 5000 eth0\n");
    for h in 1..=hosts {
        text.push_str(&format!("HOST vnet AT host{h} 5000 vmnet1\n"));
    }
    text.push_str("ADD\n");
    for h in 1..=hosts {
        text.push_str(&format!("    LINK TCP host{h} host{h} proxy\n"));
    }
    for h in 1..=hosts {
        let vm = format!("00:50:56:00:21:{h:02x}");
        text.push_str(&format!(
            "    FORWARD INTERFACE host{h} NOT {vm} FF:FF:FF:FF:FF:FF vmnet1
    FORWARD INTERFACE host{h} ANY {vm} vmnet1
    FORWARD EDGE host{h} {vm} NONE host{h} proxy
    FORWARD EDGE proxy ANY {vm} proxy host{h}
    FORWARD EDGE proxy ANY FF:FF:FF:FF:FF:FF proxy host{h}
"
        ));
    }
    text.push_str("    FORWARD INTERFACE proxy ANY FF:FF:FF:FF:FF:FF eth0\n");
    text.push_str("    FORWARD INTERFACE proxy ANY NONE eth0\nEND\n");
    text
}

#[test]
fn the_figure2_star_is_clean() {
    assert_eq!(diagnostics(&figure2(3)), []);
}

#[test]
fn a_star_with_default_rules_to_the_hub_and_back_has_no_loop() {
    // Every host sends everything to the Proxy and the Proxy everything to every host: a
    // mutual star, a tree, so split horizon stops every frame after two hops.
    let mut body = String::new();
    for h in ["h1", "h2", "h3"] {
        body.push_str(&format!("    LINK TCP {h} {h} p\n"));
    }
    for h in ["h1", "h2", "h3"] {
        body.push_str(&format!(
            "    FORWARD EDGE {h} ANY NONE {h} p\n    FORWARD EDGE p ANY NONE p {h}\n"
        ));
    }
    assert_eq!(
        only(&program(&["p", "h1", "h2", "h3"], &body), Code::V111),
        []
    );
}

#[test]
fn any_outranked_by_two_nots_never_fires() {
    let text = program(
        &["x"],
        "    FORWARD INTERFACE x ANY 00:00:00:00:00:09 if-x
    FORWARD INTERFACE x NOT 00:00:00:00:00:01 00:00:00:00:00:09 if-x
    FORWARD INTERFACE x NOT 00:00:00:00:00:02 00:00:00:00:00:09 if-x
",
    );
    let found = only(&text, Code::V205);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].1, "4:5");
    assert!(found[0].2.contains("never fire"), "{}", found[0].2);
    assert_eq!(found[0].3, 1);
    // With one NOT only, the ANY rule still takes frames from that one address.
    let text = program(
        &["x"],
        "    FORWARD INTERFACE x ANY 00:00:00:00:00:09 if-x
    FORWARD INTERFACE x NOT 00:00:00:00:00:01 00:00:00:00:00:09 if-x
",
    );
    assert_eq!(diagnostics(&text), []);
}

#[test]
fn a_default_rule_never_fires_only_when_every_destination_is_outranked() {
    // An exact destination outranks NONE for that address, but other addresses still reach it.
    let text = program(
        &["x"],
        "    FORWARD INTERFACE x ANY 00:00:00:00:00:09 if-x
    FORWARD INTERFACE x ANY NONE if-x
",
    );
    assert_eq!(diagnostics(&text), []);
    let text = program(
        &["x"],
        "    FORWARD INTERFACE x ANY ANY if-x
    FORWARD INTERFACE x 00:00:00:00:00:01 NONE if-x
",
    );
    let found = only(&text, Code::V205);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].1, "5:5");
}

#[test]
fn tied_rules_fire_together_and_do_not_outrank() {
    let text = program(
        &["x", "y"],
        "    LINK TCP x x y
    FORWARD INTERFACE x ANY 00:00:00:00:00:09 if-x
    FORWARD EDGE x ANY 00:00:00:00:00:09 x y
    FORWARD INTERFACE y ANY 00:00:00:00:00:09 if-y
",
    );
    assert_eq!(diagnostics(&text), []);
}

#[test]
fn a_frame_sent_to_a_daemon_without_a_rule_for_it_is_a_black_hole() {
    let text = program(
        &["a", "b"],
        "    LINK TCP a a b
    FORWARD INTERFACE a ANY 00:00:00:00:00:01 if-a
    FORWARD EDGE a ANY 00:00:00:00:00:09 a b
    FORWARD INTERFACE b ANY 00:00:00:00:00:02 if-b
",
    );
    let found = only(&text, Code::V206);
    assert_eq!(found.len(), 1, "{found:#?}");
    let (_, at, message, related) = &found[0];
    assert_eq!(at, "7:5");
    assert!(message.contains("to 00:00:00:00:00:09"), "{message}");
    assert!(message.contains("to `b`"), "{message}");
    assert_eq!(*related, 1);
    // The related span is b's HOST line.
    let analysis = analyze(&text);
    let index = LineIndex::new(&text);
    assert_eq!(
        index
            .line_col(&text, analysis.diagnostics[0].related[0].span.start())
            .line,
        3
    );
}

#[test]
fn a_frame_whose_only_destination_is_where_it_came_from_is_no_black_hole() {
    let text = program(
        &["a", "b"],
        "    LINK TCP a a b
    FORWARD EDGE a ANY 00:00:00:00:00:09 a b
    FORWARD EDGE b ANY 00:00:00:00:00:09 b a
",
    );
    assert_eq!(diagnostics(&text), []);
}

#[test]
fn a_black_hole_for_one_source_names_that_source() {
    // b delivers frames to :09 from everyone but :01, whose frames it drops.
    let text = program(
        &["a", "b"],
        "    LINK TCP a a b
    FORWARD EDGE a ANY 00:00:00:00:00:09 a b
    FORWARD INTERFACE b NOT 00:00:00:00:00:01 00:00:00:00:00:09 if-b
",
    );
    let found = only(&text, Code::V206);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .2
            .contains("from 00:00:00:00:00:01 to 00:00:00:00:00:09"),
        "{}",
        found[0].2
    );
}

#[test]
fn rules_over_missing_links_are_reported_once_as_v106() {
    let text = program(
        &["a", "b", "c"],
        "    LINK TCP a a b
    FORWARD EDGE a ANY 00:00:00:00:00:09 a c
    FORWARD EDGE b ANY NONE b a
    FORWARD EDGE a ANY NONE a b
",
    );
    let codes: Vec<Code> = diagnostics(&text).iter().map(|d| d.0).collect();
    assert_eq!(codes, [Code::V106]);
}

#[test]
fn the_shipped_examples_are_clean() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("examples folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "vnet") {
            let text = std::fs::read_to_string(&path).expect("example");
            assert_eq!(diagnostics(&text), [], "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 1);
}

#[test]
fn generated_programs_are_clean() {
    for (daemons, rules, vms) in [(50, 1000, 1), (40, 1200, 2), (3, 10, 1)] {
        let text = generate(Params {
            daemons,
            rules,
            vms_per_host: vms,
        })
        .to_vnet();
        assert_eq!(
            diagnostics(&text),
            [],
            "{daemons} daemons, {rules} rules, {vms} VMs"
        );
    }
}

#[test]
fn a_vm_broadcast_in_figure2_reaches_every_other_host_and_the_lan() {
    let state = analyze(&figure2(3)).state;
    let r = route(&state, "host1", mac("00:50:56:00:21:01"), Mac::BROADCAST);
    assert_eq!(r.summary.delivered, 3);
    assert_eq!(
        (r.summary.loops, r.summary.black_holes, r.summary.dropped),
        (0, 0, 0)
    );
    let text = r.render();
    for line in [
        "host1 --[TCP]--> proxy --[TCP]--> host2 ⇒ interface vmnet1 (delivered)",
        "host1 --[TCP]--> proxy --[TCP]--> host3 ⇒ interface vmnet1 (delivered)",
        "host1 --[TCP]--> proxy ⇒ interface eth0 (delivered)",
        "host1: FORWARD EDGE host1 00:50:56:00:21:01 NONE host1 proxy",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    // The broadcast is not sent back to host1 (split horizon).
    assert!(!text.contains("proxy --[TCP]--> host1"), "{text}");
    assert_eq!(r.entry.rules.len(), 1);
}

#[test]
fn figure2_unicast_goes_through_the_proxy() {
    let state = analyze(&figure2(3)).state;
    let r = route(
        &state,
        "host1",
        mac("00:50:56:00:21:01"),
        mac("00:50:56:00:21:02"),
    );
    assert_eq!(r.summary.delivered, 1);
    assert!(r
        .render()
        .contains("host1 --[TCP]--> proxy --[TCP]--> host2 ⇒ interface vmnet1 (delivered)"));
    // A frame from the LAN to a VM enters at the Proxy.
    let r = route(
        &state,
        "proxy",
        mac("00:11:22:33:44:55"),
        mac("00:50:56:00:21:03"),
    );
    assert!(
        r.render()
            .contains("proxy --[TCP]--> host3 ⇒ interface vmnet1 (delivered)"),
        "{}",
        r.render()
    );
    // A frame from an unknown source to an unknown address entering at a host matches nothing.
    let r = route(
        &state,
        "host2",
        mac("00:11:22:33:44:55"),
        mac("00:11:22:33:44:66"),
    );
    assert_eq!(r.summary.dropped, 1);
    assert!(
        r.render()
            .contains("host2 (dropped at host2: no rule matches)"),
        "{}",
        r.render()
    );
}

#[test]
fn route_shows_loops_black_holes_and_missing_links() {
    let state = analyze(RING3).state;
    let r = route(
        &state,
        "a",
        mac("00:00:00:00:00:01"),
        mac("00:00:00:00:00:09"),
    );
    assert_eq!(r.summary.loops, 1);
    assert!(
        r.render()
            .contains("a --[TCP]--> b --[TCP]--> c --[TCP]--> a (loop: back at a)"),
        "{}",
        r.render()
    );

    let text = program(
        &["a", "b", "c"],
        "    LINK TCP a a b
    FORWARD EDGE a ANY 00:00:00:00:00:09 a b
    FORWARD EDGE a ANY 00:00:00:00:00:09 a c
    FORWARD INTERFACE b ANY 00:00:00:00:00:01 if-b
",
    );
    let state = analyze(&text).state;
    let r = route(
        &state,
        "a",
        mac("00:00:00:00:00:01"),
        mac("00:00:00:00:00:09"),
    );
    assert_eq!((r.summary.black_holes, r.summary.dropped), (1, 1));
    let rendered = r.render();
    assert!(
        rendered.contains("a --[TCP]--> b (black hole at b: no rule matches)"),
        "{rendered}"
    );
    assert!(
        rendered.contains("a (dropped at a: no link to c)"),
        "{rendered}"
    );
}

#[test]
fn route_stops_at_the_hop_limit() {
    let names: Vec<String> = (0..20).map(|i| format!("n{i}")).collect();
    let hosts: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut body = String::new();
    for pair in names.windows(2) {
        body.push_str(&format!("    LINK UDP {0} {0} {1}\n", pair[0], pair[1]));
    }
    for pair in names.windows(2) {
        body.push_str(&format!(
            "    FORWARD EDGE {0} ANY 00:00:00:00:00:09 {0} {1}\n",
            pair[0], pair[1]
        ));
    }
    let state = analyze(&program(&hosts, &body)).state;
    let r = route(
        &state,
        "n0",
        mac("00:00:00:00:00:01"),
        mac("00:00:00:00:00:09"),
    );
    assert_eq!(r.summary.dropped, 1);
    assert!(
        r.render()
            .contains("(dropped at n16: hop limit reached before the link to n17)"),
        "{}",
        r.render()
    );
    let json = serde_json::to_value(&r).expect("route serialises");
    assert_eq!(json["hop_limit"], 16);
    assert_eq!(json["entry"]["steps"][0]["kind"], "hop");
    assert_eq!(json["entry"]["steps"][0]["transport"], "udp");
}

#[test]
fn route_entering_at_a_host_does_not_deliver_back_into_its_interface() {
    let state = analyze(&figure2(2)).state;
    // Broadcast from someone else, entering at host1: the only destination is host1's own
    // interface, which the frame came from.
    let r = route(&state, "host1", mac("00:11:22:33:44:55"), Mac::BROADCAST);
    assert_eq!(r.summary, Default::default());
    assert!(
        matches!(r.entry.steps.as_slice(), [Step::SplitHorizon { .. }]),
        "{:?}",
        r.entry.steps
    );
    assert!(
        r.render().contains("not sent back to interface vmnet1"),
        "{}",
        r.render()
    );
}

#[test]
fn rules_on_undeclared_daemons_are_still_simulated() {
    // c has no HOST line (V101), but its rule is in the state and closes the loop.
    let text = "BEGIN
HOST u AT a 1 ia
HOST u AT b 1 ib
ADD
    LINK TCP a a b
    LINK TCP b b c
    LINK TCP c c a
    FORWARD EDGE a ANY NONE a b
    FORWARD EDGE b ANY NONE b c
    FORWARD EDGE c ANY NONE c a
END
";
    let codes: Vec<Code> = diagnostics(text).iter().map(|d| d.0).collect();
    assert!(codes.contains(&Code::V101), "{codes:?}");
    assert!(codes.contains(&Code::V111), "{codes:?}");
}

#[test]
fn source_specific_defaults_below_an_any_rule_do_not_hide_black_holes() {
    // b names :01 only in a default rule, which an exact-destination rule for :09 outranks;
    // frames to :05 from :01 take the default, frames to :05 from others find nothing at b.
    let text = program(
        &["a", "b"],
        "    LINK TCP a a b
    FORWARD EDGE a ANY 00:00:00:00:00:05 a b
    FORWARD INTERFACE b ANY 00:00:00:00:00:09 if-b
    FORWARD INTERFACE b 00:00:00:00:00:01 NONE if-b
",
    );
    let found = only(&text, Code::V206);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0]
            .2
            .contains("from any other MAC to 00:00:00:00:00:05"),
        "{}",
        found[0].2
    );
    assert_eq!(only(&text, Code::V205), []);
}

/// Adversarial sizes end with their diagnostics (the time is measured by
/// `scripts/bench-language`, not here): a ring of 100,000 daemons with one rule each is one
/// loop through all of them, and a line of 50,000 daemons each forwarding everything onwards
/// (paths as deep as the file) is clean.
#[test]
fn a_ring_of_a_hundred_thousand_single_rule_daemons_is_one_loop() {
    let text = Shape::Singles.generate(100_000).to_vnet();
    let analysis = analyze(&text);
    let codes: Vec<Code> = analysis.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, [Code::V111]);
    let loop_ = &analysis.diagnostics[0];
    assert!(
        loop_.message.contains("d00000 → d00001 → d00002"),
        "{}",
        &loop_.message[..200]
    );
    assert_eq!(analysis.state.rules.len(), 100_000);
    let deep = Shape::Chain.generate(100_000).to_vnet();
    assert_eq!(diagnostics(&deep), []);
}

#[test]
fn every_shape_is_clean_at_ten_thousand_rules() {
    for shape in Shape::ALL.into_iter().filter(|s| s.clean()) {
        let text = shape.generate(10_000).to_vnet();
        assert_eq!(diagnostics(&text), [], "{}", shape.name());
    }
}
