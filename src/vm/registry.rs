//! The VMs vnetc knows and how to move each (issue 12): one JSON file per VM in
//! `STATE_DIR/vms/NAME.json`, written whole (a temporary file renamed over the old one), so a
//! reader never sees half a record and concurrent writers of different VMs never collide.
//!
//! A record names the VM, its MAC, the daemon (HOST machine) it runs behind now and its
//! driver: how a live migration to another daemon's `dgram` interface is done.
//! - `patterns`: a user-space VM of `vnet-patterns vm --control SOCKET`; moving it is one
//!   `attach HOST:PORT` line on its control socket (its card then sends to the new interface
//!   and announces itself there).
//! - `qemu`: a QEMU guest started by vnetc's VM manager and detached from it; moving it starts
//!   its next QEMU process on the new daemon's interface and migrates over QMP
//!   ([`super::manager::Detached::migrate`]).
//! - `libvirt`: a libvirt domain with a UDP interface, moved by `virsh migrate --live` to the
//!   libvirt connection of the new daemon's host, its interface repointed in the migration XML
//!   (see [`super::libvirt`]).
//! - `none`: nothing here can move it; an adaptation reports it for an operator.

use super::manager::{Detached, MigrateOptions};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use vnet_grammar::Mac;

/// One VM as vnetc knows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmRecord {
    /// Letters, digits, `-`, `_` and `.` (it names the file).
    pub name: String,
    pub mac: Mac,
    /// The daemon (a HOST line's machine) whose interface the VM is attached to now.
    pub host: String,
    pub driver: Driver,
    /// The VM's share of a host's compute capacity (SPEC 5.3's `vms[].compute`).
    #[serde(default = "one")]
    pub compute: f64,
    /// Never move it.
    #[serde(default)]
    pub pinned: bool,
}

fn one() -> f64 {
    1.0
}

/// How a VM is moved to another daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Driver {
    /// `vnet-patterns vm --control SOCKET`.
    Patterns { control: PathBuf },
    /// A QEMU guest started by vnetc's VM manager and detached (`Vm::detach`).
    Qemu { vm: Detached },
    /// A libvirt domain on the connection `uri` (e.g. `qemu:///system`); `hosts` is the
    /// libvirt connection of each daemon's host it may move to (`virsh migrate`'s destination).
    Libvirt {
        domain: String,
        uri: String,
        #[serde(default)]
        hosts: std::collections::BTreeMap<String, String>,
    },
    /// No way to move it from here.
    None,
}

impl Driver {
    pub fn kind(&self) -> &'static str {
        match self {
            Driver::Patterns { .. } => "patterns",
            Driver::Qemu { .. } => "qemu",
            Driver::Libvirt { .. } => "libvirt",
            Driver::None => "none",
        }
    }
}

#[derive(Debug, PartialEq)]
pub enum Error {
    /// A record's file could not be read or written (path and why).
    Io(String),
    /// A record's file is not a record (path and the field at fault).
    Malformed(String),
    /// Bad input from the caller, named.
    Invalid(String),
    /// The driver could not move the VM; it runs on where it was.
    Migration { vm: String, detail: String },
    /// No driver here can move this VM: an operator must.
    Unsupported { vm: String, detail: String },
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Io(e) | Error::Malformed(e) | Error::Invalid(e) => f.write_str(e),
            Error::Migration { vm, detail } => write!(f, "migrating VM {vm}: {detail}"),
            Error::Unsupported { vm, detail } => {
                write!(f, "VM {vm} must be moved by an operator: {detail}")
            }
        }
    }
}

impl std::error::Error for Error {}

/// The registry: the directory of records.
#[derive(Clone, Debug)]
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    /// The registry of the state directory `state_dir` (vnetc's, see `live::config`).
    pub fn open(state_dir: &Path) -> Registry {
        Registry {
            dir: state_dir.join("vms"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn file(&self, name: &str) -> Result<PathBuf, Error> {
        let plain = !name.is_empty()
            && !name.starts_with('.')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !plain {
            return Err(Error::Invalid(format!(
                "VM name `{name}`: use letters, digits, `-`, `_` and `.` (not first)"
            )));
        }
        Ok(self.dir.join(format!("{name}.json")))
    }

    /// Adds the VM, or replaces its record.
    pub fn register(&self, vm: &VmRecord) -> Result<(), Error> {
        let path = self.file(&vm.name)?;
        if vm.host.is_empty() {
            return Err(Error::Invalid(format!("VM {}: empty host", vm.name)));
        }
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| Error::Io(format!("{}: {e}", self.dir.display())))?;
        let mut text = serde_json::to_string_pretty(vm)
            .map_err(|e| Error::Invalid(format!("VM {}: {e}", vm.name)))?;
        text.push('\n');
        let tmp = self
            .dir
            .join(format!(".{}.{}.tmp", vm.name, std::process::id()));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                Error::Io(format!("{}: {e}", path.display()))
            })
    }

    /// The record of `name`, if registered.
    pub fn get(&self, name: &str) -> Result<Option<VmRecord>, Error> {
        let path = self.file(name)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&path, &text).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::Io(format!("{}: {e}", path.display()))),
        }
    }

    /// Every record, by name. A missing directory is an empty registry.
    pub fn list(&self) -> Result<Vec<VmRecord>, Error> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::Io(format!("{}: {e}", self.dir.display()))),
        };
        let mut vms = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| Error::Io(format!("{}: {e}", self.dir.display())))?
                .path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
            vms.push(parse(&path, &text)?);
        }
        vms.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(vms)
    }

    /// Records that `name` now runs behind `host`.
    pub fn update_host(&self, name: &str, host: &str) -> Result<VmRecord, Error> {
        let mut vm = self
            .get(name)?
            .ok_or_else(|| Error::Invalid(format!("no VM `{name}` in {}", self.dir.display())))?;
        vm.host = host.to_string();
        self.register(&vm)?;
        Ok(vm)
    }

    /// Forgets `name`; whether it was there.
    pub fn remove(&self, name: &str) -> Result<bool, Error> {
        let path = self.file(name)?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::Io(format!("{}: {e}", path.display()))),
        }
    }
}

fn parse(path: &Path, text: &str) -> Result<VmRecord, Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let vm: VmRecord = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        Error::Malformed(format!("{}: {}: {}", path.display(), e.path(), e.inner()))
    })?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if vm.name != stem {
        return Err(Error::Malformed(format!(
            "{}: name `{}` differs from the file's name",
            path.display(),
            vm.name
        )));
    }
    Ok(vm)
}

/// Where a VM goes: the daemon and the address of its `dgram` interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    pub host: String,
    pub dgram: SocketAddr,
}

/// What a migration took.
#[derive(Clone, Debug, PartialEq)]
pub struct Moved {
    pub vm: String,
    pub from: String,
    pub to: String,
    /// The guest's pause as its driver reports it (`None` when the driver cannot tell).
    pub downtime_ms: Option<f64>,
    pub wall_ms: u64,
    /// The VM's record at its new place (a QEMU guest has a new process).
    pub record: VmRecord,
}

/// Moves `vm` live to `to` with its driver. The registry is not written here: the caller
/// registers `Moved::record` once the overlay follows.
pub fn migrate(vm: &VmRecord, to: &Destination, timeout: Duration) -> Result<Moved, Error> {
    let started = Instant::now();
    let fail = |detail: String| Error::Migration {
        vm: vm.name.clone(),
        detail,
    };
    let mut record = vm.clone();
    record.host = to.host.clone();
    let downtime_ms = match &vm.driver {
        Driver::Patterns { control } => {
            attach_patterns(control, to.dgram, timeout)
                .map_err(|d| fail(format!("control socket {}: {d}", control.display())))?;
            None
        }
        Driver::Qemu { vm: qemu } => {
            let o = MigrateOptions {
                timeout,
                ..MigrateOptions::default()
            };
            let (next, m) = qemu
                .migrate(vm.mac, to.dgram, &o)
                .map_err(|e| fail(e.to_string()))?;
            record.driver = Driver::Qemu { vm: next };
            Some(m.downtime_ms)
        }
        Driver::Libvirt { domain, uri, hosts } => {
            let dest = hosts.get(&to.host).ok_or_else(|| Error::Unsupported {
                vm: vm.name.clone(),
                detail: format!(
                    "its record names no libvirt connection for daemon {}",
                    to.host
                ),
            })?;
            let local = super::Attachment::beside(to.dgram).map_err(|e| fail(e.to_string()))?;
            let scratch = std::env::temp_dir();
            let downtime =
                super::libvirt::migrate(uri, dest, domain, vm.mac, to.dgram, local.local, &scratch)
                    .map_err(fail)?;
            record.driver = Driver::Libvirt {
                domain: domain.clone(),
                uri: dest.clone(),
                hosts: hosts.clone(),
            };
            downtime.map(|ms| ms as f64)
        }
        other => {
            return Err(Error::Unsupported {
                vm: vm.name.clone(),
                detail: format!("its driver `{}` cannot be driven from here", other.kind()),
            })
        }
    };
    Ok(Moved {
        vm: vm.name.clone(),
        from: vm.host.clone(),
        to: to.host.clone(),
        downtime_ms,
        wall_ms: started.elapsed().as_millis() as u64,
        record,
    })
}

/// Whether [`migrate`] can move VMs of this driver.
pub fn can_migrate(d: &Driver) -> bool {
    !matches!(d, Driver::None)
}

/// `attach ADDR` on a user-space VM's control socket; the answer must confirm it.
fn attach_patterns(control: &Path, to: SocketAddr, timeout: Duration) -> Result<(), String> {
    let line = ask_patterns(control, &format!("attach {to}"), timeout)?;
    if line == format!("ok attached {to}") {
        Ok(())
    } else {
        Err(format!("answered `{line}`"))
    }
}

/// `end` on a user-space VM's control socket: a run of a given duration ends now (rank 0's
/// request is the one that counts); the answer must confirm it.
pub fn end_patterns(control: &Path, timeout: Duration) -> Result<(), String> {
    match ask_patterns(control, "end", timeout)?.as_str() {
        "ok ending" => Ok(()),
        line => Err(format!("answered `{line}`")),
    }
}

/// One command line to a user-space VM's control socket, and its one-line answer.
fn ask_patterns(control: &Path, command: &str, timeout: Duration) -> Result<String, String> {
    let stream = UnixStream::connect(control).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let mut out = stream.try_clone().map_err(|e| e.to_string())?;
    out.write_all(format!("{command}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    // One short line is the whole answer; a longer one is not a Patterns VM.
    std::io::Read::take(BufReader::new(stream), 512)
        .read_line(&mut line)
        .map_err(|e| format!("no answer: {e}"))?;
    Ok(line.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vnetc-registry-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn record(name: &str, driver: Driver) -> VmRecord {
        VmRecord {
            name: name.into(),
            mac: Mac([2, 0, 0, 0, 0, 1]),
            host: "127.0.0.1".into(),
            driver,
            compute: 1.0,
            pinned: false,
        }
    }

    #[test]
    fn register_list_update_remove() {
        let dir = temp("crud");
        let r = Registry::open(&dir);
        assert_eq!(r.list().unwrap(), vec![]);
        let a = record(
            "vm-a",
            Driver::Patterns {
                control: "/tmp/a.sock".into(),
            },
        );
        let b = record(
            "vm-b",
            Driver::Libvirt {
                domain: "b".into(),
                uri: "qemu:///system".into(),
                hosts: [("127.0.0.2".to_string(), "qemu+ssh://h2/system".to_string())].into(),
            },
        );
        r.register(&b).unwrap();
        r.register(&a).unwrap();
        assert_eq!(r.list().unwrap(), vec![a.clone(), b.clone()]);
        let moved = r.update_host("vm-a", "127.0.0.2").unwrap();
        assert_eq!(r.get("vm-a").unwrap().unwrap().host, "127.0.0.2");
        assert_eq!(moved.driver, a.driver);
        assert!(r.remove("vm-b").unwrap());
        assert!(!r.remove("vm-b").unwrap());
        assert_eq!(r.list().unwrap().len(), 1);
        assert!(r.update_host("vm-b", "x").is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_names_and_files_are_named() {
        let dir = temp("bad");
        let r = Registry::open(&dir);
        for bad in ["", "../x", "a b", ".hidden"] {
            let e = r.register(&record(bad, Driver::None)).unwrap_err();
            assert!(e.to_string().contains("VM name"), "{e}");
        }
        std::fs::create_dir_all(r.dir()).unwrap();
        std::fs::write(
            r.dir().join("x.json"),
            r#"{"name":"x","mac":"zz","host":"h","driver":{"kind":"none"}}"#,
        )
        .unwrap();
        let e = r.list().unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("mac"), "{e}");
        std::fs::write(
            r.dir().join("x.json"),
            r#"{"name":"y","mac":"02:00:00:00:00:01","host":"h","driver":{"kind":"none"}}"#,
        )
        .unwrap();
        let e = r.list().unwrap_err().to_string();
        assert!(e.contains("differs"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The Patterns driver speaks the VM's control protocol (here a listener that answers as
    /// `vnet-patterns vm` does; the live test drives the real one).
    #[test]
    fn the_patterns_driver_sends_attach_and_checks_the_answer() {
        let dir = temp("attach");
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("c.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let mut got = Vec::new();
            for answer in ["ok attached 127.0.0.9:6000", "error nope"] {
                let (conn, _) = listener.accept().unwrap();
                let mut line = String::new();
                BufReader::new(conn.try_clone().unwrap())
                    .read_line(&mut line)
                    .unwrap();
                got.push(line);
                writeln!(&conn, "{answer}").unwrap();
            }
            got
        });
        let vm = record("p", Driver::Patterns { control: sock });
        let to = Destination {
            host: "127.0.0.9".into(),
            dgram: "127.0.0.9:6000".parse().unwrap(),
        };
        let moved = migrate(&vm, &to, Duration::from_secs(5)).unwrap();
        assert_eq!(
            (moved.from.as_str(), moved.to.as_str()),
            ("127.0.0.1", "127.0.0.9")
        );
        let e = migrate(&vm, &to, Duration::from_secs(5)).unwrap_err();
        assert!(e.to_string().contains("answered `error nope`"), "{e}");
        assert_eq!(server.join().unwrap(), vec!["attach 127.0.0.9:6000\n"; 2]);
        let e = migrate(&record("n", Driver::None), &to, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(e, Error::Unsupported { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
