//! Real VMs, without root: two QEMU guests (TCG) on `-netdev dgram`, attached to two daemons'
//! dgram interfaces, ping each other through the overlay. The guest is `vnet-guest`'s, as
//! `vnetc`'s VMs boot it: the host's Debian kernel with a busybox-static initramfs (virtio_net
//! loaded from the kernel's own modules when it is not built in).

mod common;

use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::Match;
use vnet_grammar::Mac;
use vnet_guest::{GuestImage, ImageSpec};

const TAG: u8 = 51;

/// VM 1 pings VM 2 until it answers (or 90 tries have failed) and says so on its console;
/// VM 2 only answers. Run by the guest's init once `eth0` has `vnet.ip`.
const RUN: &str = r#"
if [ "$vnet_n" = 1 ]; then
  i=0
  while [ $i -lt 90 ]; do
    if ping -c 1 -W 2 10.77.0.2 >/dev/null 2>&1; then
      ping -c 3 10.77.0.2
      echo VNET-PING-OK
      poweroff -f
    fi
    i=$((i+1))
  done
  echo VNET-PING-FAIL
  poweroff -f
fi
"#;

struct Qemu {
    child: Child,
    log: PathBuf,
}

impl Qemu {
    fn start(dir: &Path, n: u8, image: &GuestImage, mac: Mac, local: &str, remote: &str) -> Qemu {
        let log = dir.join(format!("vm{n}.log"));
        let (lh, lp) = local.rsplit_once(':').unwrap();
        let (rh, rp) = remote.rsplit_once(':').unwrap();
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "256", "-smp", "1", "-nographic", "-no-reboot", "-nodefaults"])
            .args(["-serial", &format!("file:{}", log.display())])
            .arg("-kernel")
            .arg(&image.kernel)
            .arg("-initrd")
            .arg(&image.initrd)
            .args([
                "-append",
                &format!("console=ttyS0 quiet panic=-1 vnet.n={n} vnet.ip=10.77.0.{n}/24"),
            ])
            .args([
                "-netdev",
                &format!(
                    "dgram,id=n0,local.type=inet,local.host={lh},local.port={lp},remote.type=inet,remote.host={rh},remote.port={rp}"
                ),
            ])
            .args(["-device", &format!("virtio-net-pci,netdev=n0,mac={mac}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start qemu");
        Qemu { child, log }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Ok(Some(_)) = self.child.try_wait() {
            if let Some(e) = self.child.stderr.as_mut() {
                let _ = e.read_to_string(&mut s);
            }
        }
        s
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn two_qemu_vms_ping_through_the_overlay() {
    let (kernel, version) = match vnet_guest::prerequisites() {
        Ok(k) => k,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let dir = TempDir::new("qemu");
    let spec = ImageSpec {
        run: RUN.into(),
        files: Vec::new(),
    };
    let image = vnet_guest::build(dir.path(), &kernel, &version, &spec).expect("guest image");
    let ip = |h: u8| format!("127.{TAG}.0.{h}");
    let a = loopback_vnetd(dir.path(), TAG, 1, "a");
    let b = loopback_vnetd(dir.path(), TAG, 2, "b");
    connect(Transport::Udp, &a, &b);
    let m1 = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x01]);
    let m2 = Mac([0x52, 0x54, 0, 0x12, 0x34, 0x02]);
    for (d, me, other, peer) in [(&a, m1, m2, &b), (&b, m2, m1, &a)] {
        deliver_here_and_send_the_rest(d, me, other, peer);
    }
    wait_links_up(&[&a, &b], Duration::from_secs(10));
    let vm2 = Qemu::start(
        dir.path(),
        2,
        &image,
        m2,
        &format!("{}:6001", ip(2)),
        &format!("{}:6000", ip(2)),
    );
    let mut vm1 = Qemu::start(
        dir.path(),
        1,
        &image,
        m1,
        &format!("{}:6001", ip(1)),
        &format!("{}:6000", ip(1)),
    );
    wait_for_the_ping(&mut vm1, &vm2, &a, &b);
    // The ping went through both daemons' dgram interfaces and the link.
    let st = a.client().stats().unwrap();
    assert!(
        st.links[0].1.tx_frames >= 3 && st.links[0].1.rx_frames >= 3,
        "{st:?}"
    );
}

/// Daemon `d` delivers `me` (and broadcasts not from `me`) to its VM and sends `other`'s
/// frames and `me`'s broadcasts to `peer`.
fn deliver_here_and_send_the_rest(d: &Vnetd, me: Mac, other: Mac, peer: &Vnetd) {
    let mut c = d.client();
    c.add_rule(to_iface(d, Match::Any, Match::Exact(me), "vm"))
        .unwrap();
    c.add_rule(edge(d, Match::Any, Match::Exact(other), peer))
        .unwrap();
    c.add_rule(to_iface(
        d,
        Match::Not(me),
        Match::Exact(Mac::BROADCAST),
        "vm",
    ))
    .unwrap();
    c.add_rule(edge(
        d,
        Match::Exact(me),
        Match::Exact(Mac::BROADCAST),
        peer,
    ))
    .unwrap();
}

/// Waits up to 240 s (TCG boots slowly) for VM 1's console to say its ping got through.
fn wait_for_the_ping(vm1: &mut Qemu, vm2: &Qemu, a: &Vnetd, b: &Vnetd) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let out = vm1.console();
        if out.contains("VNET-PING-OK") {
            eprintln!(
                "{}",
                out.lines()
                    .filter(|l| l.contains("bytes from") || l.contains("VNET"))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            break;
        }
        let failed = out.contains("VNET-PING-FAIL") || matches!(vm1.child.try_wait(), Ok(Some(_)));
        if failed || Instant::now() > deadline {
            panic!(
                "VM 1 did not reach VM 2 through the overlay\n--- vm1\n{out}\n{}\n--- vm2\n{}\n--- a\n{}\n--- b\n{}",
                vm1.stderr(),
                vm2.console(),
                a.log_text(),
                b.log_text()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
