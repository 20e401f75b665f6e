//! End to end with network namespaces (root): two VM namespaces on veth pairs, served by two
//! daemons that `vnetc up` starts (attached to the host ends with packet sockets). Before
//! `apply`, the VMs cannot ping each other; after `apply --wait` they can; after applying a
//! file without the link, they cannot again. Skips, saying why, without root or tools.

mod live_common;

use live_common::*;

const NET: u8 = 158;
const TAG: u8 = 158;

fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces, veth pairs, packet sockets)".into());
    }
    for tool in ["ip", "ping"] {
        if !sh(&format!("command -v {tool}")).0 {
            return Some(format!(
                "needs `{tool}` (Debian packages iproute2, iputils-ping)"
            ));
        }
    }
    None
}

/// VM n: namespace `vlc{TAG}-n` with `eth0` (02:00:00:00:TAG:0n, 10.TAG.0.n/24), joined to
/// `vlc{TAG}h{n}` here. Removed on drop.
struct Vms;

impl Vms {
    fn ns(n: u8) -> String {
        format!("vlc{TAG}-{n}")
    }
    fn host_if(n: u8) -> String {
        format!("vlc{TAG}h{n}")
    }
    fn mac(n: u8) -> String {
        format!("02:00:00:00:{TAG:02x}:{n:02x}")
    }
    fn new() -> Vms {
        Vms::teardown();
        for n in 1..=2u8 {
            let (ns, host) = (Vms::ns(n), Vms::host_if(n));
            for c in [
                format!("ip netns add {ns}"),
                format!("ip link add {host} type veth peer name eth0 netns {ns}"),
                format!("ip link set {host} up"),
                format!("ip -n {ns} link set eth0 address {}", Vms::mac(n)),
                format!("ip -n {ns} addr add 10.{TAG}.0.{n}/24 dev eth0"),
                format!("ip -n {ns} link set eth0 up"),
                format!("ip -n {ns} link set lo up"),
            ] {
                let (ok, out) = sh(&c);
                assert!(ok, "{c}: {out}");
            }
        }
        Vms
    }
    fn teardown() {
        for n in 1..=2u8 {
            sh(&format!("ip netns del {}", Vms::ns(n)));
            sh(&format!("ip link del {}", Vms::host_if(n)));
        }
    }
    fn ping(count: u32) -> (bool, String) {
        sh(&format!(
            "ip netns exec {} ping -c {count} -i 0.2 -W 1 10.{TAG}.0.2",
            Vms::ns(1)
        ))
    }
}

impl Drop for Vms {
    fn drop(&mut self) {
        Vms::teardown();
    }
}

/// The two daemons and, with `link`, the overlay between the VMs (thesis Figure 2's rules on
/// each side: deliver to the VM, broadcast to it, send its frames over the link).
fn program(link: bool) -> String {
    let (d1, d2) = (format!("127.{NET}.0.1"), format!("127.{NET}.0.2"));
    let (i1, i2) = (Vms::host_if(1), Vms::host_if(2));
    let (m1, m2) = (Vms::mac(1), Vms::mac(2));
    let mut p = format!("BEGIN\nHOST root AT {d1} 7000 {i1}\nHOST root AT {d2} 7000 {i2}\n");
    if link {
        p.push_str(&format!(
            "ADD\n    LINK TCP {d2} {d1} {d2}\n\
             FORWARD INTERFACE {d1} ANY {m1} {i1}\n\
             FORWARD INTERFACE {d1} NOT {m1} ff:ff:ff:ff:ff:ff {i1}\n\
             FORWARD EDGE {d1} {m1} NONE {d1} {d2}\n\
             FORWARD INTERFACE {d2} ANY {m2} {i2}\n\
             FORWARD INTERFACE {d2} NOT {m2} ff:ff:ff:ff:ff:ff {i2}\n\
             FORWARD EDGE {d2} {m2} NONE {d2} {d1}\n"
        ));
    }
    p.push_str("END\n");
    p
}

#[test]
fn vms_ping_through_daemons_that_vnetc_started_and_configured() {
    if let Some(why) = skip_reason() {
        println!("skipping: {why}");
        return;
    }
    let _vms = Vms::new();
    let mut w = World::new("netns", NET);
    let linked = w.write("linked.vnet", &program(true));
    let apart = w.write("apart.vnet", &program(false));
    let out = w.vnetc(&["up", "--iface-kind", "packet", &apart]);
    expect_code(&out, 0);

    let (ok, out) = Vms::ping(2);
    assert!(
        !ok,
        "the VMs reach each other before any link exists:\n{out}"
    );

    let out = w.vnetc(&["apply", "--wait", &linked]);
    expect_code(&out, 0);
    let (ok, out) = Vms::ping(3);
    assert!(ok, "no ping across the overlay after apply --wait:\n{out}");

    let out = w.vnetc(&["apply", &apart]);
    expect_code(&out, 0);
    let (ok, out) = Vms::ping(2);
    assert!(
        !ok,
        "the VMs still reach each other after the link was removed:\n{out}"
    );
    expect_code(&w.vnetc(&["down", &apart]), 0);
    assert!(w.daemon_pids().is_empty());
}
