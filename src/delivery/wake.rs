//! A pipe whose read end an asyncio loop watches: the I/O task writes one byte when a batch
//! lands for an armed (waiting) consumer, so the loop wakes once per ready batch and the I/O
//! thread never touches the interpreter. (With inline I/O the loop watches an epoll set that
//! holds this pipe and the socket: `transport::watch`.)

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};

/// Both ends of the wake-up pipe.
#[derive(Debug)]
pub struct WakePipe {
    reader: std::io::PipeReader,
    writer: std::io::PipeWriter,
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
        Ok(WakePipe { reader, writer })
    }

    /// The descriptor for `loop.add_reader`.
    pub fn read_fd(&self) -> RawFd {
        self.reader.as_raw_fd()
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

    fn readable(fd: RawFd) -> bool {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd, a zero timeout.
        unsafe { libc::poll(&raw mut p, 1, 0) > 0 }
    }

    #[test]
    fn a_wake_up_is_readable_until_drained() {
        let pipe = WakePipe::new().unwrap();
        assert!(!readable(pipe.read_fd()));
        pipe.wake();
        pipe.wake();
        assert!(readable(pipe.read_fd()));
        pipe.drain();
        assert!(!readable(pipe.read_fd()));
    }
}
