//! How the forwarding thread waits (`epoll`) and how the control plane hands it new TCP
//! link connections (a channel and an eventfd in the epoll set).

use super::NewTcp;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{mpsc as std_mpsc, Mutex};
use std::time::Duration;

/// How the control plane reaches the forwarding thread.
pub(super) struct PlaneHandle {
    pub(super) tx: std_mpsc::Sender<NewTcp>,
    pub(super) rx: Mutex<Option<std_mpsc::Receiver<NewTcp>>>,
    /// An eventfd in the thread's epoll set: written after sending it something.
    pub(super) wake: OwnedFd,
}

impl PlaneHandle {
    pub(super) fn new() -> io::Result<PlaneHandle> {
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let (tx, rx) = std_mpsc::channel();
        Ok(PlaneHandle {
            tx,
            rx: Mutex::new(Some(rx)),
            // SAFETY: a descriptor we just created and nobody else owns.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    pub(super) fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: an eventfd and an 8-byte value.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

pub(super) struct Epoll(OwnedFd);

impl Epoll {
    pub(super) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 returns a new descriptor or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor we just created and nobody else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub(super) fn ctl(&self, op: i32, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: a valid epoll descriptor and event.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    pub(super) fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> usize {
        // SAFETY: a valid epoll descriptor and event buffer of the given length.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32,
            )
        };
        n.max(0) as usize
    }
}
