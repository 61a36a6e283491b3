//! A pipe whose read end an asyncio loop watches: the I/O task writes one byte when a batch
//! lands for an armed (waiting) consumer, so the loop wakes once per ready batch and the I/O
//! thread never touches the interpreter.
//!
//! With inline I/O the loop watches an epoll set instead, holding the pipe and the stream's
//! current socket (edge-triggered): the loop then also wakes when data arrives, and its own
//! thread reads it, with no thread in between. The set is private to the stream, so
//! registrations follow reconnects without the loop ever holding a socket's fd number.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use parking_lot::Mutex;

/// Both ends of the wake-up pipe, and the epoll set of inline I/O.
#[derive(Debug)]
pub struct WakePipe {
    reader: std::io::PipeReader,
    writer: std::io::PipeWriter,
    watch: Option<SocketWatch>,
}

/// The epoll set the loop watches with inline I/O, and the socket now in it.
#[derive(Debug)]
struct SocketWatch {
    epoll: OwnedFd,
    socket: Mutex<Option<RawFd>>,
}

impl SocketWatch {
    fn new(pipe: RawFd) -> std::io::Result<Self> {
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
        watch.ctl(libc::EPOLL_CTL_ADD, pipe)?;
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

    fn set_socket(&self, fd: Option<RawFd>) {
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
    fn harvest(&self) -> bool {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
        // SAFETY: the buffer holds as many events as the length passed.
        unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), 4, 0) > 0 }
    }
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on a descriptor we own, with flags read from it first.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl WakePipe {
    /// # Errors
    /// When the process is out of file descriptors.
    pub fn new() -> std::io::Result<Self> {
        let (reader, writer) = std::io::pipe()?;
        // Neither side may ever block: a full pipe already means "wake up".
        set_nonblocking(reader.as_raw_fd())?;
        set_nonblocking(writer.as_raw_fd())?;
        Ok(WakePipe {
            reader,
            writer,
            watch: None,
        })
    }

    /// A wake-up pipe whose loop also watches the stream's socket (inline I/O).
    ///
    /// # Errors
    /// When the process is out of file descriptors.
    pub fn with_socket_watch() -> std::io::Result<Self> {
        let mut pipe = WakePipe::new()?;
        pipe.watch = Some(SocketWatch::new(pipe.reader.as_raw_fd())?);
        Ok(pipe)
    }

    /// The descriptor for `loop.add_reader`.
    pub fn read_fd(&self) -> RawFd {
        match &self.watch {
            Some(w) => w.epoll.as_raw_fd(),
            None => self.reader.as_raw_fd(),
        }
    }

    /// The socket the loop should watch from now on (`None`: no connection).
    pub fn watch_socket(&self, fd: Option<RawFd>) {
        if let Some(w) = &self.watch {
            w.set_socket(fd);
        }
    }

    /// Clears the epoll set's pending edges (before the consumer looks for work); true if
    /// something arrived since the last call.
    pub fn harvest(&self) -> bool {
        self.watch.as_ref().is_some_and(SocketWatch::harvest)
    }

    /// Signals the waiter.
    pub fn wake(&self) {
        let _ = (&self.writer).write(&[1]);
    }

    /// Empties the pipe (after a wake-up was seen).
    pub fn drain(&self) {
        let mut buf = [0u8; 64];
        while let Ok(n) = (&self.reader).read(&mut buf) {
            if n < buf.len() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn the_watch_set_reports_each_new_arrival_once() {
        let pipe = WakePipe::with_socket_watch().unwrap();
        let (mut far, near) = UnixStream::pair().unwrap();
        assert!(!pipe.harvest(), "nothing arrived yet");
        pipe.watch_socket(Some(near.as_raw_fd()));
        far.write_all(b"tick").unwrap();
        assert!(pipe.harvest());
        // Edge-triggered: unread data does not report again until more arrives.
        assert!(!pipe.harvest());
        far.write_all(b"tock").unwrap();
        assert!(pipe.harvest());
        pipe.wake();
        assert!(pipe.harvest(), "the wake-up pipe is in the set too");
        pipe.drain();
        // A socket no longer watched (the connection ended) reports nothing.
        pipe.watch_socket(None);
        far.write_all(b"late").unwrap();
        assert!(!pipe.harvest());
    }

    #[test]
    fn a_plain_pipe_has_no_watch_set() {
        let pipe = WakePipe::new().unwrap();
        pipe.watch_socket(Some(0));
        pipe.wake();
        assert!(!pipe.harvest());
        pipe.drain();
    }
}
