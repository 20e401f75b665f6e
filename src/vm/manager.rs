//! Starting QEMU guests on a vnetd `dgram` interface and migrating them live to another
//! daemon's. Every QEMU process is owned by a handle that kills it when dropped, also on every
//! error path; its files (QMP socket, console, stderr, migration socket) live in the caller's
//! directory.

use super::image::{GuestImage, QEMU};
use super::qmp::{self, Announce, MigrateParameters, MigrationInfo, Qmp, StatusInfo};
use super::Error;
use serde::{Deserialize, Serialize};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use vnet_grammar::Mac;

/// One VM's definition; a migration starts the new QEMU process from the same one.
#[derive(Clone, Debug)]
pub struct VmSpec {
    /// Letters, digits, `-`, `_` and `.`; names the VM's files.
    pub name: String,
    pub mac: Mac,
    pub memory_mb: u32,
    pub image: GuestImage,
    /// Kernel arguments `vnet.KEY=VALUE`, seen by the guest's script as `$vnet_KEY`.
    pub args: Vec<(String, String)>,
    /// How long QEMU may take to answer on QMP, and each QMP command.
    pub timeout: Duration,
}

impl VmSpec {
    /// Enough for the Debian kernel, busybox and a small workload.
    pub const DEFAULT_MEMORY_MB: u32 = 128;

    pub fn new(name: &str, mac: Mac, image: GuestImage) -> VmSpec {
        VmSpec {
            name: name.to_string(),
            mac,
            memory_mb: VmSpec::DEFAULT_MEMORY_MB,
            image,
            args: Vec::new(),
            timeout: Duration::from_secs(20),
        }
    }

    pub fn arg(mut self, key: &str, value: &str) -> VmSpec {
        self.args.push((key.to_string(), value.to_string()));
        self
    }

    fn check(&self) -> Result<(), Error> {
        let plain = |s: &str, extra: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        };
        if !plain(&self.name, "-_.") {
            return Err(Error::Invalid(format!(
                "VM name `{}`: use letters, digits, `-`, `_` and `.`",
                self.name
            )));
        }
        for (k, v) in &self.args {
            if !plain(k, "_") || !plain(v, "-_.:/") {
                return Err(Error::Invalid(format!(
                    "kernel argument vnet.{k}={v} of VM {}: keys are letters, digits and `_`; values also `-._:/`",
                    self.name
                )));
            }
        }
        Ok(())
    }

    fn append(&self) -> String {
        // no_timer_check: on a busy host TCG's timer may miss the kernel's IO-APIC check,
        // which then panics ("IO-APIC + timer doesn't work").
        let mut s = String::from("console=ttyS0 quiet panic=-1 no_timer_check");
        for (k, v) in &self.args {
            s.push_str(&format!(" vnet.{k}={v}"));
        }
        s
    }
}

/// Where a VM plugs into the overlay: the daemon's `dgram` interface, and the VM's own end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub iface: SocketAddr,
    pub local: SocketAddr,
}

impl Attachment {
    /// The VM's end on a free UDP port of the interface's own address.
    pub fn beside(iface: SocketAddr) -> Result<Attachment, Error> {
        let probe = UdpSocket::bind((iface.ip(), 0))
            .map_err(|e| Error::Io(format!("finding a free UDP port on {}: {e}", iface.ip())))?;
        let local = probe
            .local_addr()
            .map_err(|e| Error::Io(format!("finding a free UDP port on {}: {e}", iface.ip())))?;
        Ok(Attachment { iface, local })
    }

    fn netdev(&self) -> String {
        format!(
            "dgram,id=n0,local.type=inet,local.host={},local.port={},remote.type=inet,remote.host={},remote.port={}",
            self.local.ip(),
            self.local.port(),
            self.iface.ip(),
            self.iface.port()
        )
    }
}

#[derive(Clone, Debug)]
pub struct MigrateOptions {
    /// Give up (and cancel) after this long; the VM then runs on at its source.
    pub timeout: Duration,
    /// Bytes per second for the migration stream (QEMU's default is far below a local
    /// socket's).
    pub max_bandwidth: u64,
    /// The pause QEMU aims for.
    pub downtime_limit: Duration,
    /// How often to ask QEMU how far it is.
    pub poll: Duration,
}

impl Default for MigrateOptions {
    fn default() -> MigrateOptions {
        MigrateOptions {
            timeout: Duration::from_secs(120),
            max_bandwidth: 1 << 30,
            downtime_limit: Duration::from_millis(300),
            poll: Duration::from_millis(10),
        }
    }
}

/// What a completed migration took.
#[derive(Clone, Debug, PartialEq)]
pub struct Migration {
    pub vm: String,
    pub from: Attachment,
    pub to: Attachment,
    /// The guest's pause, from QEMU's own event stamps: the source's `STOP` to the
    /// destination's `RESUME` (microsecond resolution). Without both events, QEMU's
    /// `downtime`.
    pub downtime_ms: f64,
    /// QEMU's `downtime` of `query-migrate`: whole milliseconds, measured at the source until
    /// it has sent the last state (so it can read 0 on a fast machine).
    pub qemu_downtime_ms: Option<u64>,
    /// QEMU's `total-time`: from `migrate` to completion.
    pub total_ms: u64,
    /// Ours: from starting the new QEMU until it runs the guest and the source is gone.
    pub wall_ms: u64,
    pub ram_transferred: u64,
    /// Whether our `announce-self` was accepted (QEMU also announces on its own).
    pub announced: bool,
}

/// One QEMU process, killed on drop unless handed over to a later vnetc (`keep`).
struct Qemu {
    child: Child,
    qmp: Qmp,
    at: Attachment,
    console: PathBuf,
    stderr: PathBuf,
    keep: bool,
}

impl Qemu {
    /// Starts QEMU incarnation `n` of the VM and connects to its QMP socket.
    fn spawn(
        dir: &Path,
        spec: &VmSpec,
        at: Attachment,
        n: u32,
        incoming: Option<&Path>,
    ) -> Result<Qemu, Error> {
        let file = |ext: &str| dir.join(format!("{}.{n}.{ext}", spec.name));
        let (qmp_path, console, stderr) = (file("qmp"), file("console"), file("stderr"));
        for p in [Some(qmp_path.as_path()), incoming].into_iter().flatten() {
            socket_path_ok(p)?;
            let _ = std::fs::remove_file(p);
        }
        let err_file = std::fs::File::create(&stderr)
            .map_err(|e| Error::Io(format!("{}: {e}", stderr.display())))?;
        let mut cmd = Command::new(QEMU);
        cmd.args(["-name", &spec.name, "-accel", "tcg", "-smp", "1"])
            .args(["-m", &spec.memory_mb.to_string()])
            .args([
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-no-reboot",
            ])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(&spec.image.kernel)
            .arg("-initrd")
            .arg(&spec.image.initrd)
            .args(["-append", &spec.append()])
            .args(["-netdev", &at.netdev()])
            .args([
                "-device",
                &format!("virtio-net-pci,netdev=n0,mac={}", spec.mac),
            ])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp_path.display()));
        if let Some(p) = incoming {
            cmd.arg("-incoming").arg(format!("unix:{}", p.display()));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err_file)
            .spawn()
            .map_err(|e| Error::Qemu {
                vm: spec.name.clone(),
                detail: format!("cannot run {QEMU}: {e}"),
            })?;
        match connect(&mut child, &qmp_path, spec.timeout) {
            Ok(qmp) => Ok(Qemu {
                child,
                qmp,
                at,
                console,
                stderr,
                keep: false,
            }),
            Err(detail) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(Error::Qemu {
                    vm: spec.name.clone(),
                    detail: format!("{detail}{}", tail(&stderr)),
                })
            }
        }
    }

    /// Exited already? Then why, for an error message.
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("exited ({status}){}", tail(&self.stderr))),
            _ => None,
        }
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if !self.keep {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Waits for QEMU's QMP socket, noticing an early exit.
fn connect(child: &mut Child, path: &Path, timeout: Duration) -> Result<Qmp, String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited at start ({status})"));
        }
        let last = match Qmp::connect(path, timeout) {
            Ok(q) => return Ok(q),
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(format!("no QMP within {timeout:?}: {last}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn socket_path_ok(p: &Path) -> Result<(), Error> {
    let s = p.to_string_lossy();
    // sun_path holds 108 bytes with the NUL; QEMU's option syntax splits at commas.
    if s.len() > 100 || s.contains(',') {
        return Err(Error::Invalid(format!(
            "{s}: the VM directory must give socket paths under 100 bytes without commas"
        )));
    }
    Ok(())
}

/// The last lines of QEMU's stderr, for error messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    if lines.is_empty() {
        return String::new();
    }
    let lines: Vec<&str> = lines.into_iter().rev().collect();
    format!("; QEMU said: {}", lines.join(" | "))
}

/// A running VM: its current QEMU process and the consoles of all its incarnations.
pub struct Vm {
    spec: VmSpec,
    dir: PathBuf,
    incarnation: u32,
    qemu: Qemu,
    consoles: Vec<PathBuf>,
}

impl Vm {
    /// Boots the VM on `at`; its files go to `dir` (which must exist).
    pub fn start(dir: &Path, spec: VmSpec, at: Attachment) -> Result<Vm, Error> {
        spec.check()?;
        let qemu = Qemu::spawn(dir, &spec, at, 0, None)?;
        Ok(Vm {
            consoles: vec![qemu.console.clone()],
            spec,
            dir: dir.to_path_buf(),
            incarnation: 0,
            qemu,
        })
    }

    pub fn spec(&self) -> &VmSpec {
        &self.spec
    }

    pub fn attachment(&self) -> Attachment {
        self.qemu.at
    }

    /// The guest's serial console so far, over every QEMU process it ran in.
    pub fn console(&self) -> String {
        self.consoles
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    /// QEMU's status (`running`, `paused`, ...), or why QEMU is gone.
    pub fn status(&mut self) -> Result<StatusInfo, Error> {
        if let Some(why) = self.qemu.exited() {
            return Err(self.qemu_error(why));
        }
        Ok(self.qemu.qmp.query_status()?)
    }

    fn qemu_error(&self, detail: String) -> Error {
        Error::Qemu {
            vm: self.spec.name.clone(),
            detail,
        }
    }

    /// Moves the running VM live to a new QEMU process attached at `to`, keeping its MAC.
    /// On success the old process is gone; on failure the new one is, and the VM runs on
    /// where it was.
    pub fn migrate(&mut self, to: Attachment, o: &MigrateOptions) -> Result<Migration, Error> {
        let started = Instant::now();
        let n = self.incarnation + 1;
        let socket = self.dir.join(format!("{}.{n}.migrate", self.spec.name));
        let mut dest = Qemu::spawn(&self.dir, &self.spec, to, n, Some(&socket))?;
        let handed = hand_over(
            &mut self.qemu.qmp,
            &mut dest,
            &socket,
            o,
            started,
            &self.spec.name,
        )?;
        let from = self.qemu.at;
        let mut old = std::mem::replace(&mut self.qemu, dest);
        // The source is paused for good ("postmigrate"); it may exit before answering.
        let _ = old.qmp.quit();
        drop(old);
        let announced = announce(&mut self.qemu);
        self.incarnation = n;
        self.consoles.push(self.qemu.console.clone());
        Ok(migration(
            &self.spec.name,
            from,
            to,
            &handed,
            started,
            announced,
        ))
    }

    /// Lets the VM run on after this handle is gone, and returns what a later vnetc needs to
    /// migrate it (`registry::Driver::Qemu`).
    pub fn detach(mut self) -> Detached {
        self.qemu.keep = true;
        self.describe()
    }

    /// What a later vnetc needs to migrate the VM, while this handle keeps owning its
    /// current QEMU process (killed on drop unless a migration has replaced it by then).
    pub fn describe(&self) -> Detached {
        Detached {
            name: self.spec.name.clone(),
            dir: self.dir.clone(),
            incarnation: self.incarnation,
            memory_mb: self.spec.memory_mb,
            kernel: self.spec.image.kernel.clone(),
            initrd: self.spec.image.initrd.clone(),
            args: self.spec.args.clone(),
            iface: self.qemu.at.iface,
            local: self.qemu.at.local,
            pid: self.qemu.child.id(),
        }
    }

    /// Asks QEMU to exit (the handle's drop kills it anyway).
    pub fn shutdown(mut self) -> Result<(), Error> {
        Ok(self.qemu.qmp.quit()?)
    }
}

/// Polls the source until the migration completes; a failure or the timeout (then cancelled)
/// is an error.
fn converge(src: &mut Qmp, o: &MigrateOptions, started: Instant) -> Result<MigrationInfo, String> {
    loop {
        let info = src.query_migrate().map_err(|e| e.to_string())?;
        match info.status.as_deref() {
            Some("completed") => return Ok(info),
            Some("failed") | Some("cancelled") => {
                let why = info.error_desc.as_deref().unwrap_or("no reason given");
                return Err(format!(
                    "QEMU says {}: {why}",
                    info.status.unwrap_or_default()
                ));
            }
            _ if started.elapsed() > o.timeout => {
                let _ = src.migrate_cancel();
                return Err(format!("not complete after {:?}; cancelled", o.timeout));
            }
            _ => std::thread::sleep(o.poll),
        }
    }
}

/// Waits until the destination runs the guest (it starts by itself once the state is in).
fn wait_running(dest: &mut Qemu, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(why) = dest.exited() {
            return Err(format!("the destination QEMU {why}"));
        }
        let st = dest.qmp.query_status().map_err(|e| e.to_string())?;
        if st.running {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "destination still `{}` after {timeout:?}",
                st.status
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// What the source said of a completed migration, and the guest's pause it took.
struct Handover {
    info: MigrationInfo,
    pause_us: Option<u64>,
}

/// Migrates from the QEMU on `src` to the waiting `dest` (started with `-incoming` on
/// `socket`), until the destination runs the guest. On failure the source runs on.
fn hand_over(
    src: &mut Qmp,
    dest: &mut Qemu,
    socket: &Path,
    o: &MigrateOptions,
    started: Instant,
    vm: &str,
) -> Result<Handover, Error> {
    let fail = |detail: String| Error::Migration {
        vm: vm.to_string(),
        detail,
    };
    src.migrate_set_parameters(&MigrateParameters {
        max_bandwidth: Some(o.max_bandwidth),
        downtime_limit: Some(o.downtime_limit.as_millis() as u64),
    })?;
    src.migrate(&format!("unix:{}", socket.display()))?;
    let info = match converge(src, o, started) {
        Ok(info) => info,
        Err(why) => return Err(fail(format!("{why}{}", tail(&dest.stderr)))),
    };
    if let Err(why) = wait_running(dest, o.timeout.saturating_sub(started.elapsed())) {
        // The guest's state is complete at the source: run it there again.
        let resumed = src.execute_raw("cont", None).is_ok();
        return Err(fail(format!("{why}; resumed at the source: {resumed}")));
    }
    let _ = std::fs::remove_file(socket);
    Ok(Handover {
        info,
        pause_us: pause_us(src, dest),
    })
}

/// The guest's pause from the source's `STOP` to the destination's `RESUME`. QEMU sends
/// `RESUME` before it reports `running`, so it is normally in already; a few more questions
/// cover a monitor that is slower with its events.
fn pause_us(src: &Qmp, dest: &mut Qemu) -> Option<u64> {
    for _ in 0..3 {
        if let Some(p) = qmp::pause_us(&src.events, &dest.qmp.events) {
            return Some(p);
        }
        dest.qmp.query_status().ok()?;
    }
    qmp::pause_us(&src.events, &dest.qmp.events)
}

/// QEMU announces by itself after a migration; this repeats it at once. The VM runs at its
/// new place either way, so a refusal is reported, not an error.
fn announce(q: &mut Qemu) -> bool {
    q.qmp.announce_self(Announce::default()).is_ok()
}

fn migration(
    vm: &str,
    from: Attachment,
    to: Attachment,
    handed: &Handover,
    started: Instant,
    announced: bool,
) -> Migration {
    let info = &handed.info;
    let qemu_ms = info.downtime.unwrap_or(0) as f64;
    Migration {
        vm: vm.to_string(),
        from,
        to,
        downtime_ms: handed.pause_us.map_or(qemu_ms, |us| us as f64 / 1000.0),
        qemu_downtime_ms: info.downtime,
        total_ms: info.total_time.unwrap_or(0),
        wall_ms: started.elapsed().as_millis() as u64,
        ram_transferred: info.ram.as_ref().map(|r| r.transferred).unwrap_or(0),
        announced,
    }
}

/// A QEMU guest that outlives the vnetc that started it: enough to start its next
/// incarnation with the same definition and to reach the current one on QMP.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detached {
    pub name: String,
    pub dir: PathBuf,
    pub incarnation: u32,
    pub memory_mb: u32,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub args: Vec<(String, String)>,
    /// The daemon's `dgram` interface it is attached to, and its own UDP end.
    pub iface: SocketAddr,
    pub local: SocketAddr,
    /// The current QEMU process.
    pub pid: u32,
}

impl Detached {
    pub fn qmp(&self) -> PathBuf {
        self.dir
            .join(format!("{}.{}.qmp", self.name, self.incarnation))
    }

    /// Whether its current QEMU process still runs (not gone, not a zombie).
    pub fn running(&self) -> bool {
        !cmdline(self.pid).is_empty()
    }

    /// The serial console of incarnation `n`.
    pub fn console(&self, n: u32) -> PathBuf {
        self.dir.join(format!("{}.{n}.console", self.name))
    }

    /// Migrates the guest live to a new QEMU process on the `dgram` interface `iface` (its end
    /// on a free port beside it), which outlives this process; returns the new incarnation.
    pub fn migrate(
        &self,
        mac: Mac,
        iface: SocketAddr,
        o: &MigrateOptions,
    ) -> Result<(Detached, Migration), Error> {
        let started = Instant::now();
        let spec = VmSpec {
            name: self.name.clone(),
            mac,
            memory_mb: self.memory_mb,
            image: GuestImage {
                kernel: self.kernel.clone(),
                initrd: self.initrd.clone(),
            },
            args: self.args.clone(),
            timeout: Duration::from_secs(20),
        };
        spec.check()?;
        let mut src = Qmp::connect(&self.qmp(), spec.timeout)?;
        let to = Attachment::beside(iface)?;
        let n = self.incarnation + 1;
        let socket = self.dir.join(format!("{}.{n}.migrate", self.name));
        let mut dest = Qemu::spawn(&self.dir, &spec, to, n, Some(&socket))?;
        let handed = hand_over(&mut src, &mut dest, &socket, o, started, &self.name)?;
        let _ = src.quit();
        let announced = announce(&mut dest);
        dest.keep = true;
        let from = Attachment {
            iface: self.iface,
            local: self.local,
        };
        let next = Detached {
            incarnation: n,
            iface: to.iface,
            local: to.local,
            pid: dest.child.id(),
            ..self.clone()
        };
        Ok((
            next,
            migration(&self.name, from, to, &handed, started, announced),
        ))
    }
}

/// Kills every QEMU process whose command line names `dir` (a VM directory of this run):
/// the incarnations a child vnetc started and detached, and any destination a killed
/// migration left behind. Waits until each is gone or a zombie (up to 5 s); returns their pids.
pub fn stop_all_in(dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    let found: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            let cmd = cmdline(pid);
            cmd.first().is_some_and(|exe| exe.ends_with(QEMU))
                && cmd.iter().any(|a| a.contains(&needle))
        })
        .collect();
    let pid = |p: u32| nix::unistd::Pid::from_raw(p as i32);
    for &p in &found {
        let _ = nix::sys::signal::kill(pid(p), nix::sys::signal::Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while found.iter().any(|&p| !cmdline(p).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Reap those that are this process's children (detached ones); others' parents do.
    for &p in &found {
        let _ = nix::sys::wait::waitpid(pid(p), Some(nix::sys::wait::WaitPidFlag::WNOHANG));
    }
    found
}

/// A process's arguments; empty when it is gone or a zombie.
fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> VmSpec {
        let image = GuestImage {
            kernel: "/k".into(),
            initrd: "/i".into(),
        };
        VmSpec::new("vm-1", Mac([0x52, 0x54, 0, 0, 0, 1]), image)
    }

    #[test]
    fn names_and_kernel_arguments_are_checked() {
        assert!(spec().arg("ip", "10.0.0.1/24").check().is_ok());
        assert_eq!(
            spec().arg("ip", "10.0.0.1/24").append(),
            "console=ttyS0 quiet panic=-1 no_timer_check vnet.ip=10.0.0.1/24"
        );
        let e = spec().arg("run", "rm -rf /").check().unwrap_err();
        assert!(e.to_string().contains("vnet.run=rm -rf /"), "{e}");
        let e = spec().arg("a'b", "x").check().unwrap_err();
        assert!(e.to_string().contains("keys are"), "{e}");
        let mut s = spec();
        s.name = "a b".into();
        assert!(s.check().unwrap_err().to_string().contains("VM name `a b`"));
    }

    #[test]
    fn netdev_names_both_ends() {
        let at = Attachment {
            iface: "127.9.0.1:6000".parse().unwrap(),
            local: "127.9.0.1:6001".parse().unwrap(),
        };
        assert_eq!(
            at.netdev(),
            "dgram,id=n0,local.type=inet,local.host=127.9.0.1,local.port=6001,remote.type=inet,remote.host=127.9.0.1,remote.port=6000"
        );
        let b = Attachment::beside(at.iface).unwrap();
        assert_eq!(b.local.ip(), at.iface.ip());
        assert_ne!(b.local.port(), 0);
    }

    #[test]
    fn long_or_comma_socket_paths_are_refused() {
        assert!(socket_path_ok(Path::new("/tmp/a.qmp")).is_ok());
        assert!(socket_path_ok(Path::new("/tmp/a,b.qmp")).is_err());
        let long = format!("/tmp/{}.qmp", "x".repeat(120));
        assert!(socket_path_ok(Path::new(&long)).is_err());
    }

    #[test]
    fn a_missing_qemu_or_kernel_is_a_clear_error() {
        let dir = std::env::temp_dir().join(format!("vnetc-vm-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let at = Attachment {
            iface: "127.0.0.1:9".parse().unwrap(),
            local: "127.0.0.1:0".parse().unwrap(),
        };
        let mut s = spec();
        s.timeout = Duration::from_secs(10);
        // With QEMU installed it exits at once on the missing kernel; without, it cannot run.
        let e = Vm::start(&dir, s, at).err().expect("no VM from /k");
        assert!(matches!(e, Error::Qemu { .. }), "{e}");
        assert!(e.to_string().contains("QEMU of VM vm-1"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
