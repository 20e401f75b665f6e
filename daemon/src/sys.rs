//! Small system helpers: for the data-plane threads, waiting on a descriptor, socket timeouts
//! and options, and the scheduling attributes of a forwarding thread; for async code, running
//! blocking work without stalling the runtime's other tasks.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// How long a data-plane thread blocks before it looks at the stop flag again. Frames wake it
/// at once; this only bounds how long an idle thread takes to notice a shutdown.
pub const IDLE_WAKE: Duration = Duration::from_millis(250);

/// Waits until `fd` is ready for `events` (`libc::POLLIN`, `libc::POLLOUT`) or `timeout`
/// passes; true when ready (or in error, so the caller's next call reports it).
pub fn wait(fd: RawFd, events: i16, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let r = unsafe { libc::poll(&mut p, 1, timeout.as_millis().min(i32::MAX as u128) as i32) };
    r > 0
}

pub fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: a valid fd and an int option value.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `SO_RCVTIMEO` / `SO_SNDTIMEO`.
pub fn set_timeout(fd: RawFd, name: i32, d: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as libc::time_t,
        tv_usec: d.subsec_micros() as libc::suseconds_t,
    };
    // SAFETY: a valid fd and a timeval of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            name,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The time slice a forwarding thread asks the scheduler for. Under EEVDF (Linux 6.6+; custom
/// slices since 6.12) a task with a short slice gets an early deadline, so when a frame wakes it
/// it preempts a CPU-bound task (a compiler, a busy VM) instead of waiting for that task's
/// slice to end. It asks for no more CPU than before and needs no privilege.
pub const FORWARDING_SLICE: Duration = Duration::from_micros(100);

/// Marks the calling thread as a forwarding thread: a short scheduler slice (see
/// [`FORWARDING_SLICE`]). Best effort: older kernels ignore or refuse it.
pub fn forwarding_thread() {
    let slice = std::env::var("VNETD_SLICE_US")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_micros)
        .unwrap_or(FORWARDING_SLICE);
    if slice.is_zero() {
        return;
    }
    // SAFETY: sched_attr is plain data; zero is a valid start.
    let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
    attr.size = std::mem::size_of::<libc::sched_attr>() as u32;
    attr.sched_policy = libc::SCHED_OTHER as u32;
    attr.sched_runtime = slice.as_nanos() as u64;
    // Keep the thread's nice value (sched_setattr sets it too).
    // SAFETY: getpriority has no memory effects; errno is cleared first to tell -1 from an error.
    attr.sched_nice = unsafe {
        *libc::__errno_location() = 0;
        libc::getpriority(libc::PRIO_PROCESS, 0)
    };
    // SAFETY: sched_setattr on the calling thread (pid 0) with a valid attribute of its size.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_setattr,
            0,
            &attr as *const libc::sched_attr,
            0,
        )
    };
    if r != 0 {
        tracing::debug!(
            "sched_setattr (slice {:?}): {}",
            FORWARDING_SLICE,
            io::Error::last_os_error()
        );
    }
}

/// Asks the kernel to keep every CPU's wake-up latency at zero (PM QoS through
/// `/dev/cpu_dma_latency`): idle CPUs then poll instead of halting, so waking a thread on one
/// costs no exit from a sleep state (on a virtual machine, no trip through the hypervisor).
/// Machine-wide and held while the returned file is open; needs root.
pub fn cpu_latency_hint() -> io::Result<std::fs::File> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/cpu_dma_latency")?;
    f.write_all(&0i32.to_ne_bytes())?;
    Ok(f)
}

/// How many CPUs a `cpu_set_t` can name.
const CPU_SET_CAPACITY: usize = 8 * std::mem::size_of::<libc::cpu_set_t>();

/// The CPUs this process may run on (its affinity mask), in ascending order.
pub fn allowed_cpus() -> io::Result<Vec<u32>> {
    // SAFETY: cpu_set_t is plain data; zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: sched_getaffinity of the calling thread into a set of its own size.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: CPU_ISSET reads the set within its size.
    Ok((0..CPU_SET_CAPACITY)
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .map(|i| i as u32)
        .collect())
}

/// Keeps the calling thread to these CPUs (`--forward-cpu`).
pub fn pin_to_cpus(cpus: &[u32]) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        if cpu as usize >= CPU_SET_CAPACITY {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: CPU_SET writes within the set (cpu < its capacity, checked).
        unsafe { libc::CPU_SET(cpu as usize, &mut set) };
    }
    // SAFETY: sched_setaffinity of the calling thread with a set of its own size.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Runs blocking work on this worker after handing its other tasks to another one (a
/// current-thread runtime runs it as it is).
pub(crate) fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
