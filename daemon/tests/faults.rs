//! Faults: daemons killed and restarted, garbage on the control port and on links.

mod common;

use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};
use vnet_daemon::auth::{hex, unhex};
use vnet_daemon::{framing, wire, LinkSpec};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::{LinkDef, Match};
use vnet_grammar::Mac;

const WAIT: Duration = Duration::from_secs(5);

/// a —TCP (a dials)— b —UDP (c dials)— c; vm1 on a, vm2 on b, vm3 on c.
fn chain(net: u8, dir: &TempDir) -> (Vnetd, Vnetd, Vnetd, Vm, Vm, Vm) {
    let a = loopback_vnetd(dir.path(), net, 1, "a");
    let b = loopback_vnetd(dir.path(), net, 2, "b");
    let c = loopback_vnetd(dir.path(), net, 3, "c");
    connect(Transport::Tcp, &a, &b);
    connect(Transport::Udp, &c, &b);
    let vm1 = loopback_vm(net, 1, mac(1));
    let vm2 = loopback_vm(net, 2, mac(2));
    let vm3 = loopback_vm(net, 3, mac(3));
    let mut ca = a.client();
    ca.add_rule(to_iface(&a, Match::Any, Match::Exact(mac(1)), "vm"))
        .unwrap();
    ca.add_rule(edge(&a, Match::Any, Match::None, &b)).unwrap();
    let mut cb = b.client();
    cb.add_rule(to_iface(&b, Match::Any, Match::Exact(mac(2)), "vm"))
        .unwrap();
    cb.add_rule(edge(&b, Match::Any, Match::Exact(mac(1)), &a))
        .unwrap();
    cb.add_rule(edge(&b, Match::Any, Match::Exact(mac(3)), &c))
        .unwrap();
    let mut cc = c.client();
    cc.add_rule(to_iface(&c, Match::Any, Match::Exact(mac(3)), "vm"))
        .unwrap();
    cc.add_rule(edge(&c, Match::Any, Match::None, &b)).unwrap();
    wait_links_up(&[&a, &b, &c], Duration::from_secs(10));
    announce(&[&vm1, &vm2, &vm3]);
    (a, b, c, vm1, vm2, vm3)
}

/// Sends until one arrives (links may take a moment to come back).
fn eventually(from: &Vm, to: &Vm, dst: Mac, tag: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut i = 0;
    while Instant::now() < deadline {
        let p = format!("{tag} {i}");
        from.send(dst, p.as_bytes());
        if to.expect(p.as_bytes(), Duration::from_millis(200)) {
            return true;
        }
        i += 1;
    }
    false
}

#[test]
fn a_killed_daemon_comes_back_and_its_links_with_it() {
    let dir = TempDir::new("kill");
    let (mut a, mut b, c, vm1, vm2, vm3) = chain(31, &dir);
    assert!(eventually(&vm1, &vm3, mac(3), "before", WAIT));
    // Kill the middle daemon (the listener of both links) and start it again.
    b.kill();
    std::thread::sleep(Duration::from_millis(300));
    b.spawn(&[]);
    // vm2's address is learned again from its first frame.
    vm2.send(mac(99), b"hello again");
    wait_links_up(&[&a, &b, &c], Duration::from_secs(15));
    assert!(
        eventually(
            &vm1,
            &vm3,
            mac(3),
            "after b restart",
            Duration::from_secs(10)
        ),
        "{}",
        b.log_text()
    );
    assert!(eventually(
        &vm3,
        &vm1,
        mac(1),
        "back",
        Duration::from_secs(10)
    ));
    assert!(eventually(
        &vm1,
        &vm2,
        mac(2),
        "to b",
        Duration::from_secs(10)
    ));
    // Kill a dialer: it redials by itself when it comes back.
    a.kill();
    a.spawn(&[]);
    vm1.send(mac(99), b"hello again");
    wait_links_up(&[&a, &b, &c], Duration::from_secs(15));
    assert!(eventually(
        &vm3,
        &vm1,
        mac(1),
        "after a restart",
        Duration::from_secs(10)
    ));
    let la = links_of(&a);
    assert!(la[0].up);
}

#[test]
fn garbage_on_the_control_port_and_on_links_changes_nothing() {
    let dir = TempDir::new("garbage");
    let (_a, b, c, vm1, _vm2, vm3) = chain(32, &dir);
    let rules_before = b.client().list_rules().unwrap();
    let gen_before = b.client().status().unwrap().generation;
    let mut rand = xorshift(0x1234_5678_9abc_def0);
    spray_control_port(b.addr, &mut rand, Instant::now() + Duration::from_secs(20));
    spray_udp_port(b.addr, &mut rand);
    // Still serving, tables intact, traffic flowing.
    let mut cb = b.client();
    assert_eq!(cb.list_rules().unwrap(), rules_before);
    assert_eq!(cb.status().unwrap().generation, gen_before);
    assert!(eventually(&vm1, &vm3, mac(3), "after garbage", WAIT));
    let stats = cb.stats().unwrap();
    assert!(
        stats.drops.get("malformed").copied().unwrap_or(0) > 0,
        "{stats:?}"
    );
    a_rogue_link_peer_is_refused_and_counted(&b, &mut cb);
    assert!(eventually(&vm3, &vm1, mac(1), "still", WAIT));
    let _ = c;
}

/// A reproducible stream of pseudo-random numbers (xorshift64).
fn xorshift(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}

/// The control port gets random bytes, oversized lengths, JSON junk, a hello then junk.
fn spray_control_port(addr: SocketAddr, rand: &mut impl FnMut() -> u64, deadline: Instant) {
    for i in 0..200 {
        if Instant::now() > deadline {
            break;
        }
        let Ok(mut s) = TcpStream::connect(addr) else {
            continue;
        };
        let _ = s.set_write_timeout(Some(Duration::from_millis(200)));
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        let junk: Vec<u8> = (0..(rand() % 300)).map(|_| rand() as u8).collect();
        let msg: Vec<u8> = match i % 5 {
            0 => junk,
            1 => [&(u32::MAX).to_be_bytes()[..], &junk].concat(),
            2 => frame(b"{\"request\":\"change\",\"changes\":[{\"op\":\"delete_rule\"}]}"),
            3 => [frame(format!(r#"{{"protocol":"vnet-control","version":{},"client_nonce":"00112233445566778899aabbccddeeff"}}"#, vnet_daemon::proto::PROTOCOL_VERSION).as_bytes()), frame(br#"{"proof":"00"}"#), frame(br#"{"id":1,"request":"shutdown"}"#)].concat(),
            _ => [frame(&[wire::MAGIC, wire::KIND_HELLO, 0, 0]), junk].concat(),
        };
        let _ = s.write_all(&msg);
        let mut sink = [0u8; 256];
        let _ = s.read(&mut sink);
    }
}

/// The UDP port gets random datagrams, half of them with the link magic.
fn spray_udp_port(addr: SocketAddr, rand: &mut impl FnMut() -> u64) {
    let u = UdpSocket::bind("127.32.0.9:0").unwrap();
    for i in 0..2000 {
        let mut d: Vec<u8> = (0..(rand() % 200 + 1)).map(|_| rand() as u8).collect();
        if i % 2 == 0 {
            d[0] = wire::MAGIC;
        }
        let _ = u.send_to(&d, addr);
    }
}

/// An authenticated but misbehaving link peer: a clear handshake is a downgrade; malformed
/// and forged records are dropped and counted; a clear message closes the stream.
fn a_rogue_link_peer_is_refused_and_counted(b: &Vnetd, cb: &mut vnet_daemon::Client) {
    let rogue_keys = vnet_seal::KeyPair::generate().unwrap();
    let rogue_link = LinkDef::new(Transport::Tcp, "rogue", "b", "rogue");
    cb.add_link(LinkSpec {
        link: rogue_link,
        peer_addr: "127.32.0.8:7000".into(),
        peer_key: Some(rogue_keys.public.to_string()),
    })
    .unwrap();
    let downgrades = cb.stats().unwrap().drops.get("downgrade").copied();
    assert!(
        rogue_handshake(b, None).is_none(),
        "a clear link was accepted"
    );
    let now = cb.stats().unwrap().drops.get("downgrade").copied();
    assert_eq!(now, Some(downgrades.unwrap_or(0) + 1));
    let (mut s, mut keys) = rogue_handshake(b, Some(&rogue_keys)).expect("sealed handshake");
    // A frame too short to be Ethernet, sealed, then bad magic.
    let mut sealed = |clear: &[u8]| {
        let mut rec = vec![0u8; clear.len() + vnet_seal::OVERHEAD];
        let n = keys.seal(clear, &mut rec).unwrap();
        frame(&rec[..n])
    };
    s.write_all(&sealed(&[wire::MAGIC, wire::KIND_FRAME, 16, 0, 1, 2, 3]))
        .unwrap();
    let rogue = rogue_after_a_while(cb);
    assert!(rogue.up);
    assert_eq!(rogue.counters.drops.get("malformed"), Some(&1));
    // A sealed record with a flipped bit: dropped as a bad record, the stream goes on.
    let mut forged = sealed(&[wire::MAGIC, wire::KIND_FRAME, 16, 0, 1, 2, 3]);
    forged[30] ^= 1;
    s.write_all(&forged).unwrap();
    let rogue = rogue_after_a_while(cb);
    assert!(rogue.up);
    assert_eq!(rogue.counters.drops.get("bad_record"), Some(&1));
    // A message in clear on the sealed link: the stream is closed.
    s.write_all(&frame(&[0xde, 0xad, 0xbe, 0xef, 0, 0, 0]))
        .unwrap();
    let rogue = rogue_after_a_while(cb);
    assert!(!rogue.up, "a stream with a clear message is closed");
    assert_eq!(rogue.counters.drops.get("downgrade"), Some(&1));
}

fn frame(payload: &[u8]) -> Vec<u8> {
    framing::encode(payload)
}

fn read_msg(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    framing::read_frame(s, &mut buf, 1 << 20).unwrap();
    buf
}

/// A link control message as a peer writes it: header, then the JSON body (written out here
/// rather than with the daemon's types, so that a change of the wire format fails this test).
fn link_msg(kind: u8, body: serde_json::Value) -> Vec<u8> {
    [&[wire::MAGIC, kind, 0, 0][..], body.to_string().as_bytes()].concat()
}

/// Dials `b` as the daemon "rogue", holding the key, and completes the link handshake.
/// The rogue link's state once what was just written had time to arrive.
fn rogue_after_a_while(c: &mut vnet_daemon::Client) -> vnet_daemon::proto::LinkInfo {
    std::thread::sleep(Duration::from_millis(200));
    c.list_links()
        .unwrap()
        .into_iter()
        .find(|l| l.peer == "rogue")
        .unwrap()
}

/// A TCP link handshake as daemon `rogue` (which knows the control key) with `b`: with
/// `keys`, the Noise handshake too; the stream and the record keys when `b` accepted.
fn rogue_handshake(
    b: &Vnetd,
    keys: Option<&vnet_seal::KeyPair>,
) -> Option<(TcpStream, vnet_seal::Session)> {
    let key = key();
    let mut s = TcpStream::connect(b.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let nd = [7u8; 32];
    let b_key = vnet_seal::PublicKey::parse(&b.public_key()).unwrap();
    let offer = vnet_seal::Offer {
        mode: vnet_seal::Mode::Sealed,
        epoch: 0,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let init = keys.map(|k| vnet_seal::Initiator::new(k, &b_key, offer, now).unwrap());
    let mut hello =
        serde_json::json!({"from": "rogue", "to": "b", "transport": "tcp", "nonce": hex(&nd)});
    if let Some((_, msg)) = &init {
        hello["noise"] = hex(msg).into();
    }
    s.write_all(&frame(&link_msg(wire::KIND_HELLO, hello)))
        .unwrap();
    let m = read_msg(&mut s);
    if m[1] == wire::KIND_REFUSED {
        return None;
    }
    assert_eq!(m[1], wire::KIND_CHALLENGE);
    let c: serde_json::Value = serde_json::from_slice(&m[4..]).unwrap();
    assert_eq!(c["from"], "b");
    let nl = unhex(c["nonce"].as_str().unwrap()).unwrap();
    let reply = unhex(c["noise"].as_str()?).unwrap();
    let session = init?.0.on_reply(&reply).unwrap().session;
    let proof = key.sign("vnet-link-dialer", &[b"rogue", b"b", &nd, &nl]);
    let p = serde_json::json!({"from": "rogue", "proof": hex(&proof)});
    s.write_all(&frame(&link_msg(wire::KIND_PROOF, p))).unwrap();
    let m = read_msg(&mut s);
    assert_eq!(m[1], wire::KIND_READY);
    Some((s, session))
}
