//! The live control plane end to end, on loopback with real processes: `vnetc up` starts the
//! daemons, `apply` builds the resilient star and the all-to-all fast path and back, `diff`,
//! `plan`, `show` and `route --live` agree with the files, two applies never interleave, and
//! `down` leaves no process behind.

mod live_common;

use live_common::*;
use std::time::Duration;
use vnet_proto::{Client, Key};

#[test]
fn up_apply_star_fast_path_and_back_then_down() {
    let mut w = World::new("e2e", 151);
    let n = 5;
    let empty = w.write("empty.vnet", &topology(151, n, 7000, Shape::Empty));
    let star = w.write("star.vnet", &topology(151, n, 7000, Shape::Star));
    let fast = w.write("fast.vnet", &topology(151, n, 7000, Shape::AllToAll));

    // up starts every daemon, creating the key; a second up is a no-op.
    let out = w.vnetc(&[&["up", &star][..], &DGRAM].concat());
    expect_code(&out, 0);
    assert_eq!(
        stdout(&out).matches(": started (pid").count(),
        n,
        "{}",
        stdout(&out)
    );
    assert!(w.key_file().is_file());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(w.key_file())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pids = w.daemon_pids();
    assert_eq!(pids.len(), n);
    let out = w.vnetc(&[&["up", &star][..], &DGRAM].concat());
    expect_code(&out, 0);
    assert_eq!(stdout(&out).matches("already running").count(), n);
    assert_eq!(w.daemon_pids(), pids);

    // Fresh daemons differ from the star: diff says so (2) and prints a patch.
    let out = w.vnetc(&["diff", "--detailed-exitcode", &star]);
    expect_code(&out, 2);
    assert!(stdout(&out).contains("\nADD\n"));

    // plan: Terraform-like, one-line summary, listener before dialer.
    let out = w.vnetc(&["plan", &star]);
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(
        text.contains("Plan: 30 to add, 0 to remove on 5 daemons."),
        "{text}"
    );
    assert!(
        text.contains("after 127.151.0.1 configures its end (it listens)"),
        "{text}"
    );
    let out = w.vnetc(&["plan", "--format", "json", &star]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("plan JSON");
    assert_eq!(json["summary"]["add"], 30);
    assert_eq!(json["steps"].as_array().unwrap().len(), 30);

    // apply the star; it is idempotent and diff then exits 0.
    let out = w.vnetc(&["apply", "--wait", &star]);
    expect_code(&out, 0);
    assert!(
        stdout(&out).contains("Apply complete: 30 added, 0 removed on 5 daemons"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("All 4 links are up."));
    let out = w.vnetc(&["apply", &star]);
    expect_code(&out, 0);
    assert!(stdout(&out).contains("No changes"));
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &star]), 0);

    // show equals `vnetc state` of the file, in both formats.
    let shown = w.vnetc(&["show", &star]);
    expect_code(&shown, 0);
    assert_eq!(stdout(&shown), stdout(&w.vnetc(&["state", &star])));

    // route --live gives the static answer.
    let route = ["--from", "127.151.0.2", "--src", &mac(1), "--dst", &mac(3)];
    let live_route = w.vnetc(&[&["route", &star, "--live"][..], &route].concat());
    expect_code(&live_route, 0);
    let static_route = w.vnetc(&[&["route", &star][..], &route].concat());
    assert_eq!(stdout(&live_route), stdout(&static_route));
    assert!(
        stdout(&live_route).contains("127.151.0.2 --[TCP]--> 127.151.0.1 --[TCP]--> 127.151.0.4")
    );

    // The diff to the fast path is a patch that checks cleanly against the shown live state
    // and that `apply --patch` accepts.
    let live_file = w.write("live.vnet", &stdout(&shown));
    let out = w.vnetc(&["diff", "--detailed-exitcode", &fast]);
    expect_code(&out, 2);
    let patch = w.write("patch.vnet", &stdout(&out));
    let check = w.vnetc(&["check", "--base", &live_file, &patch]);
    expect_code(&check, 0);
    let out = w.vnetc(&["apply", "--patch", "--wait", &patch]);
    expect_code(&out, 0);
    assert!(
        stdout(&out).contains("All 10 links are up."),
        "{}",
        stdout(&out)
    );
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &fast]), 0);
    let shown = w.vnetc(&["show", &fast]);
    assert_eq!(stdout(&shown), stdout(&w.vnetc(&["state", &fast])));
    let json = w.vnetc(&["show", "--format", "json", &fast]);
    let mut shown: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    let security = shown
        .as_object_mut()
        .and_then(|o| o.remove("security"))
        .expect("security in show --format json");
    let state: serde_json::Value =
        serde_json::from_str(&stdout(&w.vnetc(&["state", "--format", "json", &fast]))).unwrap();
    assert_eq!(shown, state);
    // Both ends of all 10 links are sealed, each with the key `apply` pinned.
    let ends = security["links"].as_array().unwrap();
    assert_eq!(ends.len(), 20, "{security}");
    assert!(ends.iter().all(|l| l["mode"] == "sealed"), "{security}");
    let keys = w.vnetc(&["keys", &fast]);
    expect_code(&keys, 0);
    assert_eq!(stdout(&keys).lines().count(), 5, "{}", stdout(&keys));
    // The fast path now carries VM 1 → VM 3 directly.
    let live_route = w.vnetc(&[&["route", &fast, "--live"][..], &route].concat());
    assert!(
        stdout(&live_route).contains("127.151.0.2 --[UDP]--> 127.151.0.4"),
        "{}",
        stdout(&live_route)
    );

    // Back to the star, then to nothing.
    let out = w.vnetc(&["apply", &star]);
    expect_code(&out, 0);
    assert!(
        stdout(&out).contains("0 added, 24 removed"),
        "{}",
        stdout(&out)
    );
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &star]), 0);
    expect_code(&w.vnetc(&["apply", &empty]), 0);
    assert_eq!(
        stdout(&w.vnetc(&["show", &star])),
        stdout(&w.vnetc(&["state", &empty]))
    );

    // down stops them all and leaves no process behind; a second down finds none.
    let out = w.vnetc(&["down", &star]);
    expect_code(&out, 0);
    assert_eq!(
        stdout(&out).matches(": stopped").count(),
        n,
        "{}",
        stdout(&out)
    );
    assert!(
        wait_until(Duration::from_secs(5), || w.daemon_pids().is_empty()),
        "{:?}",
        w.daemon_pids()
    );
    let out = w.vnetc(&["down", &star]);
    expect_code(&out, 0);
    assert_eq!(stdout(&out).matches("not running").count(), n);
    // Nothing runs now: a diff is an error naming the daemon, never "no difference".
    let out = w.vnetc(&["diff", "--detailed-exitcode", &star]);
    expect_code(&out, 1);
    assert!(
        stderr(&out).contains("daemon 127.151.0.1: not running"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn apply_reports_daemons_not_running_and_up_starts_them() {
    let mut w = World::new("upflag", 152);
    let star = w.write("star.vnet", &topology(152, 3, 7000, Shape::Star));
    std::fs::write(w.key_file(), "a-test-key-of-enough-length-0123456789").unwrap();
    let out = w.vnetc(&["apply", &star]);
    expect_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("daemon 127.152.0.1: not running"), "{err}");
    assert!(err.contains("--up"), "{err}");
    assert!(
        w.daemon_pids().is_empty(),
        "apply started something by surprise"
    );
    let out = w.vnetc(&[&["apply", "--up", "--wait", &star][..], &DGRAM].concat());
    expect_code(&out, 0);
    assert!(stderr(&out).contains("127.152.0.3: started"));
    assert!(stdout(&out).contains("All 2 links are up."));
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &star]), 0);
}

/// Holds a daemon's lease from the test, as another vnetc would.
fn hold_lease(w: &World, host: usize, who: &str) -> Client {
    let key = Key::load(&w.key_file()).expect("key");
    let mut c = Client::connect(format!("{}:7000", w.addr(host)), &key).expect("connect");
    c.lease(who, Duration::from_secs(60)).expect("lease");
    c
}

#[test]
fn a_held_lease_refuses_apply_with_who_and_when_and_concurrent_applies_do_not_interleave() {
    let mut w = World::new("lease", 153);
    let n = 6;
    let star = w.write("star.vnet", &topology(153, n, 7000, Shape::Star));
    let fast = w.write("fast.vnet", &topology(153, n, 7000, Shape::AllToAll));
    expect_code(&w.vnetc(&[&["up", &star][..], &DGRAM].concat()), 0);

    // Someone holds one daemon: apply fails at once, naming the holder, and changes nothing.
    let holder = hold_lease(&w, 2, "alice@elsewhere pid 42 (vnetc apply)");
    let out = w.vnetc(&["apply", &star]);
    expect_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(
            "daemon 127.153.0.3 is leased by alice@elsewhere pid 42 (vnetc apply) since 20"
        ),
        "{err}"
    );
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(stdout(&w.vnetc(&["show", &star]))
        .lines()
        .all(|l| !l.contains("LINK")));
    // With --lock-timeout it waits for the holder to let go, then applies.
    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        drop(holder);
    });
    let out = w.vnetc(&["apply", "--lock-timeout", "10s", &star]);
    expect_code(&out, 0);
    release.join().unwrap();
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &star]), 0);

    // Two applies at once, several times: each ends in exactly one of the two states.
    for round in 0..4 {
        let a = w
            .command(&["apply", "--lock-timeout", "20s", &fast], &[])
            .spawn()
            .unwrap();
        let b = w
            .command(&["apply", "--lock-timeout", "20s", &star], &[])
            .spawn()
            .unwrap();
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        expect_code(&a, 0);
        expect_code(&b, 0);
        let shown = stdout(&w.vnetc(&["show", &star]));
        let star_state = stdout(&w.vnetc(&["state", &star]));
        let fast_state = stdout(&w.vnetc(&["state", &fast]));
        assert!(
            shown == star_state || shown == fast_state,
            "round {round}: an interleaved state:\n{shown}"
        );
    }
}

#[test]
fn remote_daemons_start_over_ssh_with_the_key_on_standard_input() {
    let mut w = World::new("ssh", 159);
    let star = w.write("star.vnet", &topology(159, 3, 7000, Shape::Star));
    // A fake ssh: records the destination, runs the command here.
    let log = w.path("ssh.log");
    let fake = w.write(
        "fake-ssh",
        &format!(
            "#!/bin/sh\necho \"$1\" >> '{}'\nshift\nexec sh -c \"$*\"\n",
            log.display()
        ),
    );
    let vnetd = vnetd_path().to_string_lossy().into_owned();
    let remote = [
        "--remote",
        "127.159.0.2",
        "--remote",
        "127.159.0.3",
        "--ssh-command",
        &format!("sh {fake}"),
        "--remote-vnetd",
        &vnetd,
    ];
    w.extra_args = remote.iter().map(|s| s.to_string()).collect();
    let out = w.vnetc(&[&["up", &star][..], &DGRAM, &remote].concat());
    expect_code(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("127.159.0.1: started (pid"), "{text}");
    assert!(
        text.contains("127.159.0.2: started over ssh as vnet@127.159.0.2"),
        "{text}"
    );
    assert!(
        text.contains("127.159.0.3: started over ssh as vnet@127.159.0.3"),
        "{text}"
    );
    let mut dests: Vec<String> = read(&log).lines().map(String::from).collect();
    dests.sort();
    assert_eq!(dests, ["vnet@127.159.0.2", "vnet@127.159.0.3"]);
    // The key went over standard input into a private file on the "remote" side.
    let remote_key = w.path("xdg-state/vnet/daemons/127.159.0.2/control.key");
    assert_eq!(
        std::fs::read(&remote_key).unwrap(),
        std::fs::read(w.key_file()).unwrap()
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&remote_key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the remote key file is readable by others");
    }
    expect_code(&w.vnetc(&["apply", "--wait", &star]), 0);
    // up again is a no-op, over ssh too.
    let out = w.vnetc(&[&["up", &star][..], &DGRAM, &remote].concat());
    assert_eq!(
        stdout(&out).matches("already running").count(),
        3,
        "{}",
        stdout(&out)
    );
    let out = w.vnetc(&[&["down", &star][..], &remote].concat());
    expect_code(&out, 0);
    assert_eq!(
        stdout(&out).matches(": stopped").count(),
        3,
        "{}",
        stdout(&out)
    );
    assert!(wait_until(Duration::from_secs(5), || w
        .daemon_pids()
        .is_empty()));
}

#[test]
fn drift_is_shown_diffed_and_repaired() {
    use vnet_grammar::ast::Transport;
    use vnet_grammar::model::LinkDef;
    use vnet_proto::control::LinkSpec;
    let mut w = World::new("drift", 160);
    let star = w.write("star.vnet", &topology(160, 3, 7000, Shape::Star));
    let fast = w.write("fast.vnet", &topology(160, 3, 7000, Shape::AllToAll));
    expect_code(&w.vnetc(&[&["up", &star][..], &DGRAM].concat()), 0);
    expect_code(&w.vnetc(&["apply", &star]), 0);
    let key = Key::load(&w.key_file()).unwrap();
    let (h2, h3) = (w.addr(1), w.addr(2));
    let half = LinkDef::new(Transport::Udp, &h2, &h2, &h3);
    let mut c2 = Client::connect(format!("{h2}:7000"), &key).unwrap();
    // A link configured on one end only, and one to a daemon no HOST line declares.
    c2.add_link(LinkSpec {
        link: half.clone(),
        peer_addr: format!("{h3}:7000"),
        peer_key: None,
    })
    .unwrap();
    c2.add_link(LinkSpec {
        link: LinkDef::new(Transport::Tcp, &h2, &h2, "ghost"),
        peer_addr: "127.160.9.9:7000".into(),
        peer_key: None,
    })
    .unwrap();

    // show: the model state is still the star; the drift is said on stderr.
    let shown = w.vnetc(&["show", &star]);
    expect_code(&shown, 0);
    assert_eq!(stdout(&shown), stdout(&w.vnetc(&["state", &star])));
    assert!(
        stderr(&shown).contains(&format!("is configured on {h2} only")),
        "{}",
        stderr(&shown)
    );
    assert!(
        stderr(&shown).contains("`ghost`, which no HOST line declares"),
        "{}",
        stderr(&shown)
    );
    let live_file = w.write("live.vnet", &stdout(&shown));

    // diff against the star: the half link is under DELETE; the patch checks (a warning only).
    let out = w.vnetc(&["diff", "--detailed-exitcode", &star]);
    expect_code(&out, 2);
    let patch = stdout(&out);
    assert!(patch.contains(&format!("DELETE\n    {half}\n")), "{patch}");
    assert!(patch.contains("removes them"), "{patch}");
    let patch_file = w.write("patch.vnet", &patch);
    expect_code(&w.vnetc(&["check", "--base", &live_file, &patch_file]), 0);
    // apply repairs both.
    expect_code(&w.vnetc(&["apply", &star]), 0);
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &star]), 0);
    assert_eq!(c2.list_links().unwrap().len(), 1);

    // The other end alone, of a link the fast path wants: listed under ADD, then repaired.
    let mut c3 = Client::connect(format!("{h3}:7000"), &key).unwrap();
    c3.add_link(LinkSpec {
        link: half.clone(),
        peer_addr: format!("{h2}:7000"),
        peer_key: None,
    })
    .unwrap();
    let out = w.vnetc(&["diff", "--detailed-exitcode", &fast]);
    expect_code(&out, 2);
    assert!(
        stdout(&out).contains(&format!("ADD\n    {half}\n")),
        "{}",
        stdout(&out)
    );
    expect_code(&w.vnetc(&["apply", "--wait", &fast]), 0);
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &fast]), 0);
}

#[test]
fn a_patch_that_does_not_fold_onto_the_live_state_changes_nothing() {
    let mut w = World::new("badpatch", 161);
    let star = w.write("star.vnet", &topology(161, 3, 7000, Shape::Star));
    expect_code(&w.vnetc(&[&["up", &star][..], &DGRAM].concat()), 0);
    expect_code(&w.vnetc(&["apply", &star]), 0);
    let hosts: String = topology(161, 3, 7000, Shape::Empty).replace("END\n", "");
    // Deleting a link the live rules still use is V110 against the live state.
    let patch = w.write(
        "bad.vnet",
        &format!("{hosts}DELETE\n    LINK TCP 127.161.0.2 127.161.0.2 127.161.0.1\nEND\n"),
    );
    let out = w.vnetc(&["apply", "--patch", &patch]);
    expect_code(&out, 1);
    assert!(stderr(&out).contains("V110"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was changed"),
        "{}",
        stderr(&out)
    );
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &star]), 0);
    // The same patch planned: refused the same way.
    expect_code(&w.vnetc(&["plan", "--patch", &patch]), 1);
}
