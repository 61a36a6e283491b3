//! The sockets of tickwire's open connections, so that a forked child can close its copies of
//! them and nothing else: the child never reads them, and a copy left open would keep the
//! parent's connection alive after the parent closed it.

use std::os::fd::RawFd;

use parking_lot::Mutex;

/// The descriptors of the connections open now: one or two per stream (two while a successor
/// takes over), each removed when its connection is dropped.
static OPEN: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// A socket's place in the registry, held by its connection; dropping it takes the socket out.
#[derive(Debug)]
pub struct Registered(RawFd);

impl Registered {
    /// Adds `fd` to the registry.
    pub fn new(fd: RawFd) -> Registered {
        OPEN.lock().push(fd);
        Registered(fd)
    }

    /// The registered descriptor.
    pub fn fd(&self) -> RawFd {
        self.0
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut open = OPEN.lock();
        if let Some(i) = open.iter().position(|&fd| fd == self.0) {
            open.swap_remove(i);
        }
    }
}

/// Takes the registry's lock across a fork, so the child finds it free and whole.
pub fn before_fork() {
    std::mem::forget(OPEN.lock());
}

/// Releases the lock [`before_fork`] took; in the child (`child`), closes every registered
/// socket first and forgets them. Async-signal-safe: `close` and an unlock, no allocation.
pub fn after_fork(child: bool) {
    if child {
        // SAFETY: `before_fork` holds the lock on this thread; nothing else runs in the child.
        let open = unsafe { &mut *OPEN.data_ptr() };
        for &fd in open.iter() {
            // SAFETY: the child's copy of a socket it will never use; the parent's copy (and
            // the parent's epoll registration of it) is unaffected.
            unsafe { libc::close(fd) };
        }
        open.clear();
    }
    // SAFETY: locked by `before_fork` on this thread, its guard forgotten.
    unsafe { OPEN.force_unlock() };
}
