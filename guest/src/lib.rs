//! The guest a VM boots, without root and without downloading anything: the host's Debian
//! kernel from /boot and an initramfs of busybox-static, the kernel's own virtio-net modules
//! (in `modules.dep` order) and a small init that brings up `eth0` and runs the caller's
//! script. The archive is written here in the kernel's `newc` cpio format.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Why a guest cannot be made here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A prerequisite is missing here (the text names it and its package).
    Missing(String),
    /// A file or process could not be made or read (the text names it).
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing(what) => write!(f, "VMs need {what}"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

/// A bootable guest: kernel and initramfs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestImage {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// What goes into the initramfs besides busybox, the modules and init.
#[derive(Clone, Debug, Default)]
pub struct ImageSpec {
    /// Shell run by init once `eth0` is up (as `/etc/vnet/run`). Kernel arguments
    /// `vnet.KEY=VALUE` are shell variables `vnet_KEY` there; `vnet.ip=ADDR/PREFIX` is also
    /// assigned to `eth0`.
    pub run: String,
    /// Extra files: (source on this computer, absolute path in the guest).
    pub files: Vec<(PathBuf, String)>,
}

pub const QEMU: &str = "qemu-system-x86_64";
const BUSYBOX: &str = "/bin/busybox";

/// Why VMs cannot run here, naming the missing package; `Ok` with the kernel and its version.
pub fn prerequisites() -> Result<(PathBuf, String), Error> {
    if !on_path(QEMU) {
        return Err(Error::Missing(format!(
            "{QEMU} (Debian package qemu-system-x86)"
        )));
    }
    if !static_busybox() {
        return Err(Error::Missing(
            "a static /bin/busybox (Debian package busybox-static)".into(),
        ));
    }
    host_kernel().ok_or_else(|| {
        Error::Missing("a readable /boot/vmlinuz-* (Debian package linux-image-cloud-amd64)".into())
    })
}

fn on_path(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

fn static_busybox() -> bool {
    // A static ELF has no PT_INTERP: `ldd` says "not a dynamic executable" (or fails).
    Path::new(BUSYBOX).is_file()
        && Command::new("ldd")
            .arg(BUSYBOX)
            .stderr(Stdio::null())
            .output()
            .map(|o| {
                !o.status.success() || String::from_utf8_lossy(&o.stdout).contains("not a dynamic")
            })
            .unwrap_or(false)
}

/// The newest readable /boot/vmlinuz-VERSION, and VERSION. "Newest" compares versions as
/// `sort -V` does, so 6.1.0-10 comes after 6.1.0-9 (as a string it would not), and an
/// unreadable newest kernel gives way to the next one.
pub fn host_kernel() -> Option<(PathBuf, String)> {
    let mut found: Vec<(String, PathBuf)> = std::fs::read_dir("/boot")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            Some((name.strip_prefix("vmlinuz-")?.to_string(), e.path()))
        })
        .collect();
    found.sort_by(|a, b| version_order(&a.0, &b.0).then_with(|| a.0.cmp(&b.0)));
    found
        .into_iter()
        .rev()
        .find(|(_, path)| std::fs::File::open(path).is_ok())
        .map(|(version, path)| (path, version))
}

/// Orders version strings by their runs: runs of digits by value, other runs bytewise.
fn version_order(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (runs(a), runs(b));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let digits = |r: &str| r.bytes().all(|c| c.is_ascii_digit());
                let order = match digits(x) && digits(y) {
                    true => {
                        let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                        x.len().cmp(&y.len()).then(x.cmp(y))
                    }
                    false => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
        }
    }
}

/// A string cut where it changes between digits and other characters.
fn runs(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = s;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let end = rest
            .find(|c: char| c.is_ascii_digit() != first.is_ascii_digit())
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some(run)
    })
}

/// The modules (paths relative to /lib/modules/VERSION) that virtio-net over PCI needs, each
/// after its dependencies, read from `modules.dep`; empty when they are built in.
pub fn virtio_modules(modules_dep: &str) -> Vec<String> {
    let deps: HashMap<&str, Vec<&str>> = modules_dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m, d.split_whitespace().collect()))
        .collect();
    fn visit<'a>(
        m: &'a str,
        deps: &HashMap<&'a str, Vec<&'a str>>,
        seen: &mut HashSet<&'a str>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(m) {
            return;
        }
        for d in deps.get(m).into_iter().flatten() {
            visit(d, deps, seen, out);
        }
        out.push(m.to_string());
    }
    let mut names: Vec<&str> = deps.keys().copied().collect();
    names.sort_unstable();
    let (mut out, mut seen) = (Vec::new(), HashSet::new());
    for want in ["virtio_pci", "virtio_net"] {
        let path = names.iter().find(|k| {
            Path::new(k)
                .file_name()
                .is_some_and(|n| n.to_string_lossy().split('.').next() == Some(want))
        });
        if let Some(p) = path {
            visit(p, &deps, &mut seen, &mut out);
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
for m in $(cat /modules.order); do insmod /modules/$m 2>/dev/null; done
for a in $(cat /proc/cmdline); do
  case "$a" in
    vnet.*=*) k=${a%%=*}; k=${k#vnet.}; eval "vnet_$k=\${a#*=}" ;;
  esac
done
ip link set lo up
ip link set eth0 up
[ -n "$vnet_ip" ] && ip addr add "$vnet_ip" dev eth0
echo VNET-VM-UP
. /etc/vnet/run
while true; do sleep 1000; done
"#;

/// Builds `DIR/initrd.cpio` for the kernel VERSION.
pub fn build(
    dir: &Path,
    kernel: &Path,
    version: &str,
    spec: &ImageSpec,
) -> Result<GuestImage, Error> {
    let io = |what: String| move |e: std::io::Error| Error::Io(format!("{what}: {e}"));
    let mut entries = vec![
        Entry::dir("bin"),
        Entry::dir("modules"),
        Entry::dir("etc"),
        Entry::dir("etc/vnet"),
        Entry::file(
            "bin/busybox",
            0o755,
            std::fs::read(BUSYBOX).map_err(io(BUSYBOX.into()))?,
        ),
        Entry::file("init", 0o755, INIT.as_bytes().to_vec()),
        Entry::file("etc/vnet/run", 0o644, spec.run.as_bytes().to_vec()),
    ];
    let base = Path::new("/lib/modules").join(version);
    let dep = std::fs::read_to_string(base.join("modules.dep")).unwrap_or_default();
    let mut order = String::new();
    for m in virtio_modules(&dep) {
        let (name, data) = module(&base.join(&m))?;
        order.push_str(&name);
        order.push('\n');
        entries.push(Entry::file(&format!("modules/{name}"), 0o644, data));
    }
    entries.push(Entry::file("modules.order", 0o644, order.into_bytes()));
    let mut made: HashSet<String> = entries.iter().map(|e| e.path.clone()).collect();
    for (src, dst) in &spec.files {
        let rel = dst.trim_start_matches('/');
        let mut parent = Path::new(rel).parent();
        let mut dirs = Vec::new();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            let p_s = p.to_string_lossy().into_owned();
            if made.insert(p_s.clone()) {
                dirs.push(Entry::dir(&p_s));
            }
            parent = p.parent();
        }
        entries.extend(dirs.into_iter().rev());
        let data = std::fs::read(src).map_err(io(src.display().to_string()))?;
        entries.push(Entry::file(rel, 0o755, data));
    }
    let initrd = dir.join("initrd.cpio");
    std::fs::write(&initrd, newc(&entries)).map_err(io(initrd.display().to_string()))?;
    Ok(GuestImage {
        kernel: kernel.to_path_buf(),
        initrd,
    })
}

/// The files that run `program` in the guest at `at`: the program itself (stripped into
/// `scratch` when binutils' `strip` is there: a debug build's symbols would fill the guest's
/// memory) and, when it is dynamically linked, its loader and the libraries `ldd` resolves,
/// each at its own path (the guest is busybox only). A static build (`-C
/// target-feature=+crt-static`) needs none, but the ordinary cargo build then runs in the
/// guest too, with no second target to build.
pub fn program_files(
    program: &Path,
    at: &str,
    scratch: &Path,
) -> Result<Vec<(PathBuf, String)>, Error> {
    let program = program
        .canonicalize()
        .map_err(|e| Error::Missing(format!("{}: {e}", program.display())))?;
    let name = program.file_name().unwrap_or_default();
    let small = scratch.join(name).with_extension("stripped");
    let stripped = Command::new("strip")
        .arg("-o")
        .arg(&small)
        .arg(&program)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let out = Command::new("ldd")
        .arg(&program)
        .stderr(Stdio::null())
        .output()
        .map_err(|e| Error::Missing(format!("ldd (Debian package libc-bin): {e}")))?;
    let mut files = vec![(if stripped { small } else { program }, at.to_string())];
    // ldd fails or says "not a dynamic executable" for a static program.
    if out.status.success() {
        for lib in shared_libraries(&String::from_utf8_lossy(&out.stdout)) {
            let to = lib.display().to_string();
            files.push((lib, to));
        }
    }
    Ok(files)
}

/// The absolute paths in `ldd`'s answer: `libc.so.6 => /lib/.../libc.so.6 (0x...)` and the
/// loader's `/lib64/ld-linux-x86-64.so.2 (0x...)`; the kernel's vDSO has none.
pub fn shared_libraries(ldd: &str) -> Vec<PathBuf> {
    ldd.lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = l.split_once("=> ").map_or(l, |(_, p)| p);
            let path = path.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A module's plain name and bytes (busybox insmod takes plain `.ko`, so compressed ones are
/// unpacked with their tool).
fn module(path: &Path) -> Result<(String, Vec<u8>), Error> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let tool = match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("xz") => Some("xz"),
        Some("zst") => Some("zstd"),
        Some("gz") => Some("gzip"),
        _ => None,
    };
    let Some(tool) = tool else {
        let data =
            std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        return Ok((name, data));
    };
    let out = Command::new(tool)
        .arg("-dc")
        .arg(path)
        .output()
        .map_err(|e| Error::Io(format!("running {tool} on {}: {e}", path.display())))?;
    if !out.status.success() {
        return Err(Error::Io(format!(
            "{tool} could not unpack {}",
            path.display()
        )));
    }
    let plain = name
        .rsplit_once('.')
        .map(|(p, _)| p.to_string())
        .unwrap_or(name);
    Ok((plain, out.stdout))
}

/// One member of a cpio archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

impl Entry {
    pub fn dir(path: &str) -> Entry {
        Entry {
            path: path.to_string(),
            mode: 0o040755,
            data: Vec::new(),
        }
    }
    pub fn file(path: &str, perm: u32, data: Vec<u8>) -> Entry {
        Entry {
            path: path.to_string(),
            mode: 0o100000 | perm,
            data,
        }
    }
}

/// The "newc" (SVR4, no checksum) cpio archive the kernel unpacks as initramfs: per member a
/// 110-byte ASCII header, the name with its NUL padded to 4 bytes, the data padded to 4;
/// then the `TRAILER!!!` member.
pub fn newc(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    let trailer = Entry {
        path: "TRAILER!!!".into(),
        mode: 0,
        data: Vec::new(),
    };
    for (ino, e) in entries.iter().chain([&trailer]).enumerate() {
        let nlink = if e.mode & 0o040000 != 0 { 2 } else { 1 };
        let fields = [
            ino as u32 + 1,
            e.mode,
            0,
            0,
            nlink,
            0,
            e.data.len() as u32,
            0,
            0,
            0,
            0,
            e.path.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(e.path.as_bytes());
        out.push(0);
        pad4(&mut out);
        out.extend_from_slice(&e.data);
        pad4(&mut out);
    }
    out
}

fn pad4(v: &mut Vec<u8>) {
    v.resize(v.len().next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions_compare_by_their_numbers() {
        let mut versions = vec![
            "6.1.0-9-cloud-amd64",
            "6.1.0-10-cloud-amd64",
            "5.10.0-28-cloud-amd64",
            "6.1.0-10-amd64",
            "6.12.3",
        ];
        versions.sort_by(|a, b| version_order(a, b));
        assert_eq!(
            versions,
            [
                "5.10.0-28-cloud-amd64",
                "6.1.0-9-cloud-amd64",
                "6.1.0-10-amd64",
                "6.1.0-10-cloud-amd64",
                "6.12.3",
            ]
        );
        assert_eq!(
            runs("6.1.0-10a").collect::<Vec<_>>(),
            ["6", ".", "1", ".", "0", "-", "10", "a"]
        );
        assert_eq!(version_order("", "1"), Ordering::Less);
    }

    #[test]
    fn modules_follow_their_dependencies() {
        let dep = "kernel/drivers/virtio/virtio.ko:\n\
            kernel/drivers/virtio/virtio_ring.ko:\n\
            kernel/net/core/failover.ko:\n\
            kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
            kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
            kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko\n\
            kernel/drivers/net/dummy.ko:\n";
        let m = virtio_modules(dep);
        let pos = |s: &str| m.iter().position(|x| x.ends_with(s)).unwrap();
        assert_eq!(m.len(), 6, "{m:?}");
        assert!(pos("/virtio.ko") < pos("virtio_pci.ko"));
        assert!(pos("/failover.ko") < pos("net_failover.ko"));
        assert!(pos("net_failover.ko") < pos("virtio_net.ko.xz"));
        assert!(virtio_modules("").is_empty());
    }

    #[test]
    fn ldd_answers_give_the_loader_and_libraries() {
        let ldd = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f01)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f03)\n";
        let libs = shared_libraries(ldd);
        let want = [
            "/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib64/ld-linux-x86-64.so.2",
        ];
        assert_eq!(libs, want.map(PathBuf::from));
        assert!(shared_libraries("\tnot a dynamic executable\n").is_empty());
    }

    #[test]
    fn newc_layout() {
        let a = newc(&[Entry::file("init", 0o755, b"hello".to_vec())]);
        assert_eq!(&a[..6], b"070701");
        // mode of the first member, then the name after the 110-byte header.
        assert_eq!(&a[14..22], b"000081ed");
        assert_eq!(&a[110..115], b"init\0");
        let data_at = (110 + 5usize).div_ceil(4) * 4;
        assert_eq!(&a[data_at..data_at + 5], b"hello");
        assert_eq!(a.len() % 4, 0);
        let trailer = a.windows(10).position(|w| w == b"TRAILER!!!");
        assert!(trailer.is_some());
    }

    /// The system's own cpio reads the archive back (when installed).
    #[test]
    fn newc_reads_back_with_cpio() {
        let a = newc(&[
            Entry::dir("etc"),
            Entry::file("etc/x", 0o644, b"abc".to_vec()),
            Entry::file("y", 0o755, Vec::new()),
        ]);
        let Ok(mut child) = Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        else {
            eprintln!("skipping: no cpio");
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(&a).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "etc\netc/x\ny\n");
    }
}
