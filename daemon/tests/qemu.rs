//! Real VMs, without root: two QEMU guests (TCG) on `-netdev dgram`, attached to two daemons'
//! dgram interfaces, ping each other through the overlay. The guest is the host's Debian
//! kernel with a busybox-static initramfs built here (virtio_net loaded from the kernel's
//! own modules when it is not built in).

mod common;

use common::*;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vnet_grammar::ast::Transport;
use vnet_grammar::model::Match;
use vnet_grammar::Mac;

const TAG: u8 = 51;

fn kernel() -> Option<(PathBuf, String)> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    let k = found.pop()?;
    let version = k.file_name()?.to_string_lossy()["vmlinuz-".len()..].to_string();
    std::fs::File::open(&k).ok()?;
    Some((k, version))
}

fn prerequisites() -> Result<(PathBuf, String), String> {
    if !have("qemu-system-x86_64") {
        return Err("needs qemu-system-x86_64 (Debian package qemu-system-x86)".into());
    }
    if !have("cpio") {
        return Err("needs cpio".into());
    }
    let static_busybox = Command::new("ldd")
        .arg("/bin/busybox")
        .output()
        .map(|o| {
            !o.status.success() || String::from_utf8_lossy(&o.stdout).contains("not a dynamic")
        })
        .unwrap_or(false);
    if !Path::new("/bin/busybox").exists() || !static_busybox {
        return Err("needs a static /bin/busybox (Debian package busybox-static)".into());
    }
    kernel().ok_or_else(|| {
        "needs a readable /boot/vmlinuz-* (Debian package linux-image-cloud-amd64)".into()
    })
}

/// The modules (paths relative to /lib/modules/VERSION) needed for virtio-net over PCI, in
/// load order; empty when they are built in.
fn modules(version: &str) -> Vec<String> {
    let base = PathBuf::from("/lib/modules").join(version);
    let Ok(dep) = std::fs::read_to_string(base.join("modules.dep")) else {
        return Vec::new();
    };
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    for line in dep.lines() {
        if let Some((m, d)) = line.split_once(':') {
            deps.insert(
                m.to_string(),
                d.split_whitespace().map(String::from).collect(),
            );
        }
    }
    fn visit(
        m: &str,
        deps: &HashMap<String, Vec<String>>,
        seen: &mut HashSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(m.to_string()) {
            return;
        }
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, seen, out);
        }
        out.push(m.to_string());
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for want in ["virtio_pci", "virtio_net"] {
        let path = deps.keys().find(|k| {
            Path::new(k)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().split('.').next() == Some(want))
        });
        if let Some(p) = path.cloned() {
            visit(&p, &deps, &mut seen, &mut out);
        }
    }
    out
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox --install -s /bin
for m in $(cat /modules.order); do insmod /modules/$(basename $m) 2>/dev/null; done
ip link set lo up
ip link set eth0 up
ip addr add 10.77.0.$vnetn/24 dev eth0
echo VNET-VM-UP $vnetn
if [ "$vnetn" = 1 ]; then
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
while true; do sleep 1000; done
"#;

fn initramfs(dir: &Path, version: &str) -> PathBuf {
    let root = dir.join("initramfs");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::create_dir_all(root.join("modules")).unwrap();
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    let init = root.join("init");
    std::fs::write(&init, INIT).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mods = modules(version);
    let mut order = String::new();
    for m in &mods {
        let src = PathBuf::from("/lib/modules").join(version).join(m);
        let name = src.file_name().unwrap().to_string_lossy().to_string();
        // Compressed modules are unpacked (busybox insmod takes plain .ko).
        if name.ends_with(".xz") || name.ends_with(".zst") || name.ends_with(".gz") {
            let plain = name.rsplit_once('.').unwrap().0.to_string();
            let tool = match name.rsplit_once('.').unwrap().1 {
                "xz" => "xz -dc",
                "zst" => "zstd -dc",
                _ => "gzip -dc",
            };
            let ok = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "{tool} '{}' > '{}'",
                    src.display(),
                    root.join("modules").join(&plain).display()
                ))
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "unpacking {name}");
            order.push_str(&plain);
        } else {
            std::fs::copy(&src, root.join("modules").join(&name)).unwrap();
            order.push_str(&name);
        }
        order.push('\n');
    }
    std::fs::write(root.join("modules.order"), order).unwrap();
    let out = dir.join("initrd.cpio");
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "cd '{}' && find . | cpio -o -H newc --quiet > '{}'",
            root.display(),
            out.display()
        ))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "cpio");
    out
}

struct Qemu {
    child: Child,
    log: PathBuf,
}

impl Qemu {
    fn start(
        dir: &Path,
        n: u8,
        kernel: &Path,
        initrd: &Path,
        mac: Mac,
        local: &str,
        remote: &str,
    ) -> Qemu {
        let log = dir.join(format!("vm{n}.log"));
        let (lh, lp) = local.rsplit_once(':').unwrap();
        let (rh, rp) = remote.rsplit_once(':').unwrap();
        let child = Command::new("qemu-system-x86_64")
            .args(["-accel", "tcg", "-m", "256", "-smp", "1", "-nographic", "-no-reboot", "-nodefaults"])
            .args(["-serial", &format!("file:{}", log.display())])
            .arg("-kernel")
            .arg(kernel)
            .arg("-initrd")
            .arg(initrd)
            .args(["-append", &format!("console=ttyS0 quiet panic=-1 vnetn={n}")])
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
    let (kernel, version) = match prerequisites() {
        Ok(k) => k,
        Err(why) => {
            eprintln!("skipping: {why}");
            return;
        }
    };
    let dir = TempDir::new("qemu");
    let initrd = initramfs(dir.path(), &version);
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
        &kernel,
        &initrd,
        m2,
        &format!("{}:6001", ip(2)),
        &format!("{}:6000", ip(2)),
    );
    let mut vm1 = Qemu::start(
        dir.path(),
        1,
        &kernel,
        &initrd,
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
