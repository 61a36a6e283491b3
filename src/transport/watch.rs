//! Readiness for inline I/O: an epoll set that an asyncio loop watches in place of the
//! consumer's wake-up pipe, holding that pipe and the stream's current socket
//! (edge-triggered). The loop then also wakes when data arrives on the socket, and its own
//! thread reads it, with no thread in between.
//!
//! The set is private to the stream, so registrations follow reconnects and switches without
//! the loop ever holding a socket's fd number. The connection task says which socket is
//! current ([`SocketWatch::set_socket`]); the consumer's side takes the edges
//! ([`SocketWatch::harvest`]). The delivery queue knows nothing of it.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use parking_lot::Mutex;

/// The epoll set of one stream's inline consumer, and the socket now in it.
#[derive(Debug)]
pub struct SocketWatch {
    epoll: OwnedFd,
    /// At most one socket: the connection the stream reads now.
    socket: Mutex<Option<RawFd>>,
}

impl SocketWatch {
    /// A set that holds `wake` (the consumer's wake-up pipe) and, later, the stream's socket.
    ///
    /// # Errors
    /// When the process is out of file descriptors.
    pub fn new(wake: RawFd) -> std::io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before it is owned.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let watch = SocketWatch {
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            socket: Mutex::new(None),
        };
        watch.ctl(libc::EPOLL_CTL_ADD, wake)?;
        Ok(watch)
    }

    fn ctl(&self, op: i32, fd: RawFd) -> std::io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLET) as u32,
            u64: 0,
        };
        // SAFETY: both descriptors are open (a closed `fd` fails with an error, not UB).
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &raw mut ev) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// The descriptor for `loop.add_reader`.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// The socket the loop should watch from now on (`None`: no connection).
    pub fn set_socket(&self, fd: Option<RawFd>) {
        let mut current = self.socket.lock();
        if let Some(old) = current.take() {
            // Closing a socket already took it out of the set: ENOENT/EBADF are expected.
            let _ = self.ctl(libc::EPOLL_CTL_DEL, old);
        }
        if let Some(new) = fd {
            match self.ctl(libc::EPOLL_CTL_ADD, new) {
                Ok(()) => *current = Some(new),
                // The loop then wakes through the pipe only, as with threaded I/O.
                Err(e) => log::debug!("socket not watched for inline I/O: {e}"),
            }
        }
    }

    /// Takes the pending edges off the set, so the loop sleeps until something new arrives;
    /// true if there were any.
    pub fn harvest(&self) -> bool {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: the buffer holds as many events as the length passed.
        unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 4, 0) > 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::wake::WakePipe;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_watch_set_reports_each_new_arrival_once() {
        let pipe = WakePipe::new().unwrap();
        let watch = SocketWatch::new(pipe.read_fd()).unwrap();
        let (mut far, near) = UnixStream::pair().unwrap();
        assert!(!watch.harvest(), "nothing arrived yet");
        watch.set_socket(Some(near.as_raw_fd()));
        far.write_all(b"tick").unwrap();
        assert!(watch.harvest());
        // Edge-triggered: unread data does not report again until more arrives.
        assert!(!watch.harvest());
        far.write_all(b"tock").unwrap();
        assert!(watch.harvest());
        pipe.wake();
        assert!(watch.harvest(), "the wake-up pipe is in the set too");
        pipe.drain();
        // A socket no longer watched (the connection ended) reports nothing.
        watch.set_socket(None);
        far.write_all(b"late").unwrap();
        assert!(!watch.harvest());
    }

    #[test]
    fn a_new_socket_replaces_the_old_one() {
        let pipe = WakePipe::new().unwrap();
        let watch = SocketWatch::new(pipe.read_fd()).unwrap();
        let (mut far_a, near_a) = UnixStream::pair().unwrap();
        let (mut far_b, near_b) = UnixStream::pair().unwrap();
        watch.set_socket(Some(near_a.as_raw_fd()));
        // A switch: the successor's socket is watched, the old one's is not.
        watch.set_socket(Some(near_b.as_raw_fd()));
        far_a.write_all(b"old").unwrap();
        assert!(!watch.harvest());
        far_b.write_all(b"new").unwrap();
        assert!(watch.harvest());
        // A socket that cannot be watched (closed) leaves the pipe watched alone.
        watch.set_socket(Some(-1));
        pipe.wake();
        assert!(watch.harvest());
    }
}
