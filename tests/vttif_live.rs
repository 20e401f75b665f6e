//! `vnetc up`'s daemon flags on real daemons: `--report-hz`, `--metrics` and `--forward-cpu`
//! reach the `vnetd` processes it starts (as vnetd's own flags do), and bad values are named.

mod live_common;

use live_common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use vnet_proto::{Client, Key};

/// GET /metrics over plain HTTP: the status line and the body.
fn scrape(addr: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    Some((head.lines().next()?.to_string(), body.to_string()))
}

#[test]
fn up_passes_report_hz_metrics_and_forward_cpu_to_the_daemons() {
    let net = 177;
    let mut w = World::new("up-vttif-flags", net);
    let file = w.write("two.vnet", &topology(net, 2, 7000, Shape::Empty));
    let (proxy, other) = (w.addr(0), w.addr(1));
    let metrics = format!("{other}:9177");
    let flag = format!("{other}={metrics}");
    let cpu = vnet_testkit::last_cpu(&vnet_testkit::my_cpus()).to_string();
    let mut args = vec![
        "up",
        &file,
        "--report-hz",
        "7",
        "--metrics",
        &flag,
        "--forward-cpu",
        &cpu,
    ];
    args.extend(DGRAM);
    expect_code(&w.vnetc(&args), 0);

    let key = Key::load(&w.key_file()).expect("key");
    for addr in [&proxy, &other] {
        let mut c = Client::connect(format!("{addr}:7000").as_str(), &key).expect("connect");
        assert_eq!(c.vttif().expect("vttif").report_hz, 7, "daemon {addr}");
        let home = c.status().expect("status").forward_cpu;
        assert_eq!(
            home.map(|c| c.to_string()),
            Some(cpu.clone()),
            "daemon {addr}"
        );
    }
    // Only the daemon named serves metrics, at the address given.
    let (status, body) = scrape(&metrics).expect("the metrics endpoint answers");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.contains("vnet_interface_rx_frames_total"), "{body}");
    assert!(
        scrape(&format!("{proxy}:9177")).is_none(),
        "the Proxy was not asked to"
    );
}

#[test]
fn bad_vttif_flags_of_up_are_named() {
    let net = 178;
    let mut w = World::new("up-vttif-bad", net);
    let file = w.write("two.vnet", &topology(net, 2, 7000, Shape::Empty));
    let cases: [(&[&str], &str); 4] = [
        (&["--report-hz", "5000"], "5000"),
        (&["--metrics", "127.178.0.2"], "MACHINE=ADDR"),
        (
            &["--metrics", "127.9.9.9=127.0.0.1:1"],
            "no HOST line declares 127.9.9.9",
        ),
        (
            &[
                "--metrics",
                "127.178.0.2=127.0.0.1:1",
                "--metrics",
                "127.178.0.2=127.0.0.1:2",
            ],
            "twice",
        ),
    ];
    for (flags, says) in cases {
        let mut args = vec!["up", &file];
        args.extend(flags);
        let out = w.vnetc(&args);
        assert_eq!(code(&out), 2, "{flags:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{flags:?}: {}", stderr(&out));
    }
    assert!(w.daemon_pids().is_empty(), "nothing started");
}
