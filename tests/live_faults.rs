//! Faults: a daemon killed in the middle of an apply (exit 1, a precise account of what was
//! and was not applied, no rule left on a removed link, and a re-run after the restart
//! converges), stale saved plans, and garbage from something that is not a daemon.

mod live_common;

use live_common::*;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use vnet_grammar::model::Target;
use vnet_proto::{Client, Key};

/// A real `vnetd` named `name` listening at `real`, behind a TCP relay at `front` (the address
/// its HOST line gives). When armed, the relay kills the daemon (SIGKILL) the moment a change
/// request reaches it, before passing it on: a daemon dying in the middle of an apply.
struct Relayed {
    child: Arc<Mutex<Option<Child>>>,
    armed: Arc<AtomicBool>,
    spawn: Box<dyn Fn() -> Child + Send>,
}

impl Relayed {
    fn start(w: &World, name: &str, front: &str, real: &str) -> Relayed {
        let (name, real_addr) = (name.to_string(), real.to_string());
        let key = w.key_file();
        let state = w.path(&format!("relayed-{name}"));
        let log = w.path(&format!("relayed-{name}.log"));
        let spawn = move || {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .unwrap();
            Command::new(vnetd_path())
                .args([
                    "--name",
                    &name,
                    "--listen",
                    &real_addr,
                    "--iface",
                    "vm=dgram:127.0.0.1:0",
                ])
                .arg("--key-file")
                .arg(&key)
                .arg("--state-dir")
                .arg(&state)
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start vnetd")
        };
        let r = Relayed {
            child: Arc::new(Mutex::new(Some(spawn()))),
            armed: Arc::new(AtomicBool::new(false)),
            spawn: Box::new(spawn),
        };
        let listener = TcpListener::bind(front).expect("relay bind");
        let (child, armed, real) = (r.child.clone(), r.armed.clone(), real.to_string());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let Ok(upstream) = TcpStream::connect(&real) else {
                    continue;
                };
                let (child, armed) = (child.clone(), armed.clone());
                let (down_r, up_w) = (conn.try_clone().unwrap(), upstream.try_clone().unwrap());
                // Daemon → client: copied as is.
                let (mut up_r, mut down_w) = (upstream, conn);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut up_r, &mut down_w);
                    let _ = down_w.shutdown(std::net::Shutdown::Both);
                });
                // Client → daemon: frame by frame, watching for change requests.
                std::thread::spawn(move || relay_frames(down_r, up_w, &child, &armed));
            }
        });
        r.wait_ready(w, front);
        r
    }

    fn wait_ready(&self, w: &World, front: &str) {
        let key = Key::load(&w.key_file()).unwrap();
        assert!(
            wait_until(Duration::from_secs(10), || {
                Client::connect_timeout(front, &key, Duration::from_millis(300)).is_ok()
            }),
            "the relayed daemon did not come up"
        );
    }

    fn restart(&self) {
        let mut c = self.child.lock().unwrap();
        if let Some(mut old) = c.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        *c = Some((self.spawn)());
    }
}

impl Drop for Relayed {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn relay_frames(
    mut from: TcpStream,
    mut to: TcpStream,
    child: &Mutex<Option<Child>>,
    armed: &AtomicBool,
) {
    loop {
        let mut len = [0u8; 4];
        if from.read_exact(&mut len).is_err() {
            break;
        }
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        if from.read_exact(&mut body).is_err() {
            break;
        }
        let text = String::from_utf8_lossy(&body);
        if text.contains("\"request\":\"change\"") && armed.swap(false, Ordering::SeqCst) {
            if let Some(mut c) = child.lock().unwrap().take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            break;
        }
        if to
            .write_all(&len)
            .and_then(|_| to.write_all(&body))
            .is_err()
        {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}

/// No daemon holds a rule over a link it does not have.
fn assert_no_rule_on_a_missing_link(w: &World, hosts: &[String]) {
    let key = Key::load(&w.key_file()).unwrap();
    for h in hosts {
        let Ok(mut c) = Client::connect_timeout(format!("{h}:7000"), &key, Duration::from_secs(2))
        else {
            continue;
        };
        let links: Vec<String> = c
            .list_links()
            .unwrap()
            .into_iter()
            .map(|l| l.peer)
            .collect();
        for r in c.list_rules().unwrap() {
            if let Target::Link { peer } = &r.rule.target {
                assert!(
                    links.iter().any(|l| l == peer),
                    "{h} has rule `{}` over a link it does not have",
                    r.rule
                );
            }
        }
    }
}

#[test]
fn a_daemon_killed_midway_is_reported_precisely_and_a_rerun_converges() {
    let mut w = World::new("kill", 154);
    let n = 4;
    let star = w.write("star.vnet", &topology(154, n, 7000, Shape::Star));
    let empty = w.write("empty.vnet", &topology(154, n, 7000, Shape::Empty));
    std::fs::write(w.key_file(), "the-fault-test-key-0123456789abcdef").unwrap();
    let victim = w.addr(2);
    let relayed = Relayed::start(&w, &victim, &format!("{victim}:7000"), "127.154.1.3:7000");
    // The others are ordinary daemons (the victim already answers, so up leaves it alone).
    let out = w.vnetc(&[&["up", &star][..], &DGRAM].concat());
    expect_code(&out, 0);
    assert!(
        stdout(&out).contains(&format!("{victim}: already running")),
        "{}",
        stdout(&out)
    );
    let hosts: Vec<String> = (0..n).map(|i| w.addr(i)).collect();

    // The victim dies on its first change request.
    relayed.armed.store(true, Ordering::SeqCst);
    let out = w.vnetc(&["apply", &star]);
    expect_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("error: apply failed:"), "{err}");
    assert!(
        err.contains(&format!(
            "daemon {victim}: 0 of 4 applied, the rest NOT applied:"
        )),
        "{err}"
    );
    assert!(err.contains("UNKNOWN"), "{err}");
    assert!(err.contains("it may or may not have been applied"), "{err}");
    // Every one of its four steps is listed: in the batch that was in flight (UNKNOWN), or
    // not sent because it stopped answering (which of the two depends on how the steps were
    // batched, which depends on timing).
    // The Proxy's two rules towards the victim's VM wait for the victim to deliver it
    // (paths are built from their end), so they are not applied either, and say why.
    let listed =
        err.matches("      UNKNOWN      ").count() + err.matches("      not applied  ").count();
    assert_eq!(listed, 4 + 2, "{err}");
    assert!(err.contains("daemon 127.154.0.1: 9 of 11 applied"), "{err}");
    let waiting = format!("on daemon {victim}, which was not applied");
    assert_eq!(err.matches(&waiting).count(), 2, "{err}");
    assert!(err.contains("daemon 127.154.0.2: 4 of 4 applied"), "{err}");
    assert!(err.contains("it converges"), "{err}");
    assert_no_rule_on_a_missing_link(&w, &hosts);
    // While it is down, diff is an error naming it.
    let out = w.vnetc(&["diff", "--detailed-exitcode", &star]);
    expect_code(&out, 1);
    assert!(
        stderr(&out).contains(&format!("daemon {victim}")),
        "{}",
        stderr(&out)
    );

    // Back up: the re-run converges.
    relayed.restart();
    relayed.wait_ready(&w, &format!("{victim}:7000"));
    expect_code(&w.vnetc(&["apply", "--wait", &star]), 0);
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &star]), 0);

    // Dying while links are taken down: rules go first everywhere, nothing points at a
    // removed link, and again a re-run converges.
    relayed.armed.store(true, Ordering::SeqCst);
    let out = w.vnetc(&["apply", &empty]);
    expect_code(&out, 1);
    let err = stderr(&out);
    assert!(
        err.contains(&format!("on daemon {victim}, which was not applied")),
        "{err}"
    );
    assert_no_rule_on_a_missing_link(&w, &hosts);
    relayed.restart();
    relayed.wait_ready(&w, &format!("{victim}:7000"));
    expect_code(&w.vnetc(&["apply", &empty]), 0);
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &empty]), 0);
}

#[test]
fn a_stale_saved_plan_is_refused() {
    let mut w = World::new("stale", 156);
    let star = w.write("star.vnet", &topology(156, 3, 7000, Shape::Star));
    let fast = w.write("fast.vnet", &topology(156, 3, 7000, Shape::AllToAll));
    expect_code(&w.vnetc(&[&["up", &star][..], &DGRAM].concat()), 0);
    let plan = w.path("star.plan").to_string_lossy().into_owned();
    let out = w.vnetc(&["plan", "-o", &plan, &star]);
    expect_code(&out, 0);
    assert!(stdout(&out).contains("Saved the plan"));
    // Someone changes the daemons after the plan was made: the plan is refused.
    expect_code(&w.vnetc(&["apply", &fast]), 0);
    let out = w.vnetc(&["apply", &plan]);
    expect_code(&out, 1);
    let err = stderr(&out);
    assert!(err.contains("is stale"), "{err}");
    assert!(err.contains("generation"), "{err}");
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &fast]), 0);
    // A fresh plan runs exactly, once; then it is stale itself.
    expect_code(&w.vnetc(&["plan", "-o", &plan, &star]), 0);
    expect_code(&w.vnetc(&["apply", &plan]), 0);
    expect_code(&w.vnetc(&["diff", "--detailed-exitcode", &star]), 0);
    // A restart makes a plan stale even at the same generation.
    expect_code(&w.vnetc(&["plan", "-o", &plan, &fast]), 0);
    expect_code(&w.vnetc(&["down", &star]), 0);
    expect_code(&w.vnetc(&[&["up", &star][..], &DGRAM].concat()), 0);
    let out = w.vnetc(&["apply", &plan]);
    expect_code(&out, 1);
    assert!(stderr(&out).contains("restarted"), "{}", stderr(&out));
    // A damaged plan is a usage error, not a .vnet file.
    let broken = w.write("broken.plan", "{\"format\": \"vnet-plan\", \"version\": 1}");
    let out = w.vnetc(&["apply", &broken]);
    expect_code(&out, 2);
    assert!(stderr(&out).contains("damaged plan"), "{}", stderr(&out));
}

#[test]
fn garbage_from_a_fake_daemon_is_a_clear_error() {
    let mut w = World::new("garbage", 157);
    std::fs::write(w.key_file(), "the-garbage-test-key-0123456789abcdef").unwrap();
    let file = w.write("two.vnet", &topology(157, 2, 7000, Shape::Star));
    // One fake answers like a web server; the other frames its garbage properly.
    let http = TcpListener::bind("127.157.0.1:7000").unwrap();
    let framed = TcpListener::bind("127.157.0.2:7000").unwrap();
    std::thread::spawn(move || {
        for mut c in http.incoming().flatten() {
            let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    std::thread::spawn(move || {
        for mut c in framed.incoming().flatten() {
            let mut buf = [0u8; 512];
            let _ = c.read(&mut buf);
            let _ = c.write_all(&[0, 0, 0, 7]);
            let _ = c.write_all(b"garbage");
        }
    });
    for args in [
        vec!["show", &file],
        vec!["diff", "--detailed-exitcode", &file],
        vec!["apply", &file],
    ] {
        let out = w.vnetc(&args);
        expect_code(&out, 1);
        let err = stderr(&out);
        assert!(
            err.contains("daemon 127.157.0.1: sent something that is not the VNET control protocol at 127.157.0.1:7000"),
            "{args:?}: {err}"
        );
        assert!(
            err.contains("daemon 127.157.0.2: sent something that is not the VNET control protocol at 127.157.0.2:7000"),
            "{args:?}: {err}"
        );
    }
}
