//! The table lease: one control connection at a time may change the tables while it holds the
//! lease; others are refused with who holds it and since when; it ends on release, on
//! disconnect, or when its time to live runs out.

mod common;

use common::*;
use std::time::Duration;
use vnet_daemon::proto::ErrorCode;
use vnet_grammar::model::Match;

#[test]
fn a_lease_excludes_other_writers_until_released_disconnected_or_expired() {
    let dir = TempDir::new("lease");
    let d = Vnetd::start(
        dir.path(),
        "a",
        "127.41.0.1:7000",
        &["vm=dgram:127.41.0.1:0"],
    );
    let rule = |n: u8| to_iface(&d, Match::Any, Match::Exact(mac(n)), "vm");
    let mut alice = d.client();
    let mut bob = d.client();
    let ttl = Duration::from_secs(30);
    let lease = alice.lease("alice@box pid 1 (vnetc apply)", ttl).unwrap();
    assert_eq!(lease.holder, "alice@box pid 1 (vnetc apply)");
    assert!(lease.expires_in_ms > 29_000);
    // The holder changes the tables; another connection may read but not change them.
    alice.add_rule(rule(1)).unwrap();
    let e = bob.add_rule(rule(2)).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Locked), "{e}");
    assert!(
        e.to_string()
            .contains("leased by alice@box pid 1 (vnetc apply) since 20"),
        "{e}"
    );
    assert_eq!(bob.list_rules().unwrap().len(), 1);
    let e = bob.lease("bob", ttl).unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Locked));
    assert_eq!(
        bob.status().unwrap().lease.map(|l| l.holder),
        Some("alice@box pid 1 (vnetc apply)".to_string())
    );
    // Renewal keeps it; release gives it up.
    alice.lease("alice@box pid 1 (vnetc apply)", ttl).unwrap();
    assert!(!bob.release().unwrap());
    assert!(alice.release().unwrap());
    bob.add_rule(rule(2)).unwrap();
    // A lease ends with its connection (a crashed client does not hold it).
    bob.lease("bob", ttl).unwrap();
    drop(bob);
    let mut carol = d.client();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match carol.lease("carol", Duration::from_millis(300)) {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(e.code(), Some(ErrorCode::Locked));
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the lease outlived its connection: {e}"),
        }
    }
    // A lease that is not renewed expires even while its connection stays open.
    std::thread::sleep(Duration::from_millis(450));
    alice.add_rule(rule(3)).unwrap();
    assert!(alice.status().unwrap().lease.is_none());
    assert_eq!(alice.list_rules().unwrap().len(), 3);
}
