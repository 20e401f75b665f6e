//! What vnetd says about itself: `status` reports whether the kernel fast path runs and why
//! not, and its log is plain text when it goes to a file (issue 9).

mod common;

use common::*;

#[test]
fn status_says_why_the_fast_path_is_off() {
    let dir = TempDir::new("reports-off");
    let mut d = Vnetd::start(
        dir.path(),
        "r",
        "127.43.0.1:7000",
        &["vm=dgram:127.43.0.1:6000"],
    );
    let state = d.client().status().expect("status").fast_path;
    let state = state.expect("status reports the fast path");
    assert!(state.built_in && !state.active, "{state:?}");
    let why = state.off_because.expect("a reason");
    if is_root() {
        assert_eq!(why, "no packet interface");
    } else {
        assert!(why.starts_with("no privileges"), "{why}");
    }

    d.terminate();
    d.spawn(&["--no-fast-path"]);
    let state = d.client().status().expect("status").fast_path;
    let state = state.expect("status reports the fast path");
    assert!(state.built_in && !state.active, "{state:?}");
    assert_eq!(state.off_because.as_deref(), Some("--no-fast-path"));
}

#[test]
fn the_log_file_has_no_colour_codes() {
    let dir = TempDir::new("reports-log");
    let d = Vnetd::start(
        dir.path(),
        "l",
        "127.43.0.2:7000",
        &["vm=dgram:127.43.0.2:6000"],
    );
    d.client().set_config_bound(1000).expect("a change, logged");
    let log = d.log_text();
    assert!(log.contains("vnetd listening"), "{log}");
    assert!(log.contains("INFO"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "escape sequences in the log file:\n{log:?}"
    );
}

#[test]
fn version_says_the_fast_path_is_built_in() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vnetd"))
        .arg("--version")
        .output()
        .expect("vnetd --version");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.starts_with("vnetd 0."), "{text}");
    assert!(text.contains("kernel fast path: built in"), "{text}");
    if !is_root() {
        assert!(text.contains("cannot run here: no privileges"), "{text}");
    }
}
