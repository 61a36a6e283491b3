//! The runtimes tickwire's streams and servers run on, and who drives the streams' one.
//!
//! Two ways to run the streams' I/O:
//! - **threads**: a multi-thread runtime with its own workers; a waiting consumer sleeps on the
//!   queue and the I/O thread wakes it. Reading and Python work overlap on different cores.
//! - **inline**: a current-thread runtime driven by the consumer's own thread while it waits
//!   (GIL released), so a frame goes from the socket to the consumer with no thread hop, as in
//!   a single-threaded client. A background thread drives it whenever no consumer has waited
//!   for [`GRACE`]: pings, timers and reading go on while Python is busy, and asyncio
//!   consumers (which never wait here) are served by it alone.
//!
//! `auto` picks inline when the process may run on one CPU only (`taskset`, a pinned service,
//! a one-CPU container): there a second thread cannot run alongside the consumer, so each hand
//! over is a context switch and nothing else. Measured in BENCHMARKS.md.
//!
//! After `fork()` the child must not touch its parent's runtimes: their threads did not come
//! along, and their epoll sets are shared with the parent (a registration made, changed or
//! removed in the child changes the parent's set, and an event for a socket the child
//! registered reaches the parent carrying a pointer that is valid only in the child: the
//! parent's SIGSEGV). So the child forgets them (leaked, never dropped: dropping would
//! deregister the parent's sockets) and makes fresh ones on first use; see [`install_fork_hooks`].

use std::future::Future;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::{Handle, Runtime};
use tokio::sync::Notify;

/// How long the consumer may stay away (in Python) before the background thread takes over.
const GRACE: Duration = Duration::from_millis(1);

/// Worker threads in `threads` mode unless `TICKWIRE_IO_THREADS` says otherwise.
const DEFAULT_IO_THREADS: usize = 1;

/// The streams' runtime and how it is driven.
pub(crate) struct Io {
    rt: Runtime,
    inline: Option<Inline>,
}

/// Bookkeeping of an inline runtime: who wants its core.
struct Inline {
    /// Consumers inside (or entering) [`Io::wait`].
    inside: AtomicUsize,
    /// When the last consumer left [`Io::wait`], in ns since `epoch`.
    left_at: AtomicU64,
    /// Tells the background thread to hand the core back.
    wanted: Notify,
    epoch: Instant,
}

impl Inline {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Completes once a consumer wants the core.
    async fn until_wanted(&self) {
        loop {
            let wanted = self.wanted.notified();
            tokio::pin!(wanted);
            // Registered before the check, so a consumer arriving in between still wakes us.
            wanted.as_mut().enable();
            if self.inside.load(Ordering::Acquire) > 0 {
                return;
            }
            wanted.await;
        }
    }

    /// The background thread: drives the runtime while no consumer has waited for [`GRACE`].
    fn background(&self, rt: &Runtime) -> ! {
        let grace = u64::try_from(GRACE.as_nanos()).unwrap_or(u64::MAX);
        loop {
            let away = self
                .now()
                .saturating_sub(self.left_at.load(Ordering::Acquire));
            if self.inside.load(Ordering::Acquire) == 0 && away >= grace {
                rt.block_on(self.until_wanted());
            } else {
                // A consumer is driving, or just left and will likely be back: look again a
                // grace later (a busy consumer's reader starts about 1.5 ms after it left,
                // measured; the scheduler can stretch that to a few ms).
                std::thread::sleep(GRACE);
            }
        }
    }
}

impl Io {
    fn new(mode: Mode) -> Io {
        match mode {
            Mode::Threads(n) => Io {
                rt: tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(n)
                    .thread_name("tickwire-io")
                    .enable_all()
                    .build()
                    .expect("tickwire: cannot start the I/O runtime"),
                inline: None,
            },
            Mode::Inline => Io {
                rt: tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tickwire: cannot start the I/O runtime"),
                inline: Some(Inline {
                    inside: AtomicUsize::new(0),
                    left_at: AtomicU64::new(0),
                    wanted: Notify::new(),
                    epoch: Instant::now(),
                }),
            },
        }
    }

    pub(crate) fn handle(&self) -> &Handle {
        self.rt.handle()
    }

    #[cfg(feature = "async-runtimes")]
    pub(crate) fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// The runtime as a consumer drives it, in inline mode (`None`: an I/O thread drives it).
    pub(crate) fn inline(&self) -> Option<InlineIo<'_>> {
        self.inline.as_ref().map(|state| InlineIo {
            rt: &self.rt,
            state,
        })
    }

    /// `"inline"` or `"threads"`.
    pub(crate) fn mode(&self) -> &'static str {
        match self.inline {
            Some(_) => "inline",
            None => "threads",
        }
    }
}

/// An inline runtime, for a consumer to drive while it waits.
#[derive(Clone, Copy)]
pub(crate) struct InlineIo<'a> {
    rt: &'a Runtime,
    state: &'a Inline,
}

impl InlineIo<'_> {
    /// Runs `f` to completion on the calling thread, driving the runtime meanwhile (taking it
    /// over from the background thread if need be). Call without the GIL.
    pub(crate) fn wait<F: Future>(self, f: F) -> F::Output {
        let st = self.state;
        st.inside.fetch_add(1, Ordering::AcqRel);
        st.wanted.notify_waiters();
        let out = self.rt.block_on(f);
        st.left_at.store(st.now(), Ordering::Release);
        st.inside.fetch_sub(1, Ordering::AcqRel);
        out
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Inline,
    Threads(usize),
}

/// How many forks this process is away from the one that imported tickwire: bumped in each
/// child, so a stream can tell it was made before the fork.
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// The streams' runtime of this process (null until first use, and again in a forked child).
static IO: AtomicPtr<Io> = AtomicPtr::new(std::ptr::null_mut());

/// The servers' runtime, likewise.
static SERVERS: AtomicPtr<Runtime> = AtomicPtr::new(std::ptr::null_mut());

/// The fork generation now; a stream records it when made.
pub(crate) fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Acquire)
}

/// The value in `slot`, made by `make` on first use. Lock-free, so a fork can never leave it
/// locked: of two threads racing, the loser drops its fresh, unused value.
fn get_or_make<T>(slot: &'static AtomicPtr<T>, make: impl FnOnce() -> T) -> (&'static T, bool) {
    let current = slot.load(Ordering::Acquire);
    if !current.is_null() {
        // SAFETY: a non-null slot holds a leaked Box that is never freed.
        return (unsafe { &*current }, false);
    }
    let fresh = Box::into_raw(Box::new(make()));
    match slot.compare_exchange(
        std::ptr::null_mut(),
        fresh,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        // SAFETY: just leaked; from now on it is never freed.
        Ok(_) => (unsafe { &*fresh }, true),
        Err(winner) => {
            // SAFETY: `fresh` was never shared; `winner` is a leaked Box as above.
            drop(unsafe { Box::from_raw(fresh) });
            (unsafe { &*winner }, false)
        }
    }
}

/// The process-wide runtime every stream runs on (`TICKWIRE_IO`, `TICKWIRE_IO_THREADS`).
/// A consumer's wake-ups: the pipe the stream's queue writes to and, with inline I/O, the
/// readiness set its loop watches instead (the pipe and the stream's socket), which the
/// stream's task keeps pointed at the socket it reads.
///
/// # Errors
/// When the process is out of file descriptors.
pub(crate) fn wake_ups() -> std::io::Result<(
    crate::delivery::wake::WakePipe,
    Option<std::sync::Arc<crate::transport::watch::SocketWatch>>,
)> {
    let pipe = crate::delivery::wake::WakePipe::new()?;
    let watch = match io().inline() {
        Some(_) => Some(std::sync::Arc::new(
            crate::transport::watch::SocketWatch::new(pipe.read_fd())?,
        )),
        None => None,
    };
    Ok((pipe, watch))
}

pub(crate) fn io() -> &'static Io {
    let (io, made) = get_or_make(&IO, || Io::new(mode_from_env()));
    if made {
        if let Some(inline) = &io.inline {
            std::thread::Builder::new()
                .name("tickwire-io".into())
                .spawn(move || inline.background(&io.rt))
                .expect("tickwire: cannot start the I/O thread");
        }
    }
    io
}

/// The runtime of tickwire's own servers (simulator, pre-rendered load), apart from the streams' so
/// that an in-process server never takes a stream's I/O thread.
pub(crate) fn server_runtime() -> &'static Runtime {
    get_or_make(&SERVERS, || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tickwire-sim")
            .enable_all()
            .build()
            .expect("tickwire: cannot start the servers' runtime")
    })
    .0
}

/// Registers the fork handlers, once per process. The prepare handler takes the locks a
/// child needs (the log buffer, the socket registry), so no other thread holds them at the
/// moment of the fork; both sides release them after. In the child, only async-signal-safe
/// work happens: the inherited sockets are closed (the parent's stay open: a descriptor
/// closed in one process does not affect another's, nor the parent's epoll sets), the
/// runtimes are forgotten, and the generation moves on.
pub(crate) fn install_fork_hooks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        extern "C" fn prepare() {
            super::logs::before_fork();
            crate::transport::fds::before_fork();
        }
        extern "C" fn parent() {
            crate::transport::fds::after_fork(false);
            super::logs::after_fork();
        }
        extern "C" fn child() {
            crate::transport::fds::after_fork(true);
            super::logs::after_fork();
            IO.store(std::ptr::null_mut(), Ordering::Release);
            SERVERS.store(std::ptr::null_mut(), Ordering::Release);
            FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
        }
        // SAFETY: three plain functions that live as long as the process.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        if rc != 0 {
            log::warn!("cannot register tickwire's fork handlers (error {rc})");
        }
    });
}

fn mode_from_env() -> Mode {
    let threads = io_threads(std::env::var("TICKWIRE_IO_THREADS").ok().as_deref());
    let wanted = std::env::var("TICKWIRE_IO").ok();
    parse_mode(wanted.as_deref(), threads, one_cpu)
}

/// `TICKWIRE_IO`: `inline`, `threads`, or `auto`/unset (inline on one CPU); anything else is
/// logged and taken as `auto`.
fn parse_mode(value: Option<&str>, threads: usize, one_cpu: fn() -> bool) -> Mode {
    match value.map(str::trim) {
        Some("inline") => Mode::Inline,
        Some("threads") => Mode::Threads(threads),
        None | Some("auto" | "") => {
            if one_cpu() {
                Mode::Inline
            } else {
                Mode::Threads(threads)
            }
        }
        Some(other) => {
            log::warn!("TICKWIRE_IO={other:?} is not inline, threads or auto; using auto");
            parse_mode(None, threads, one_cpu)
        }
    }
}

/// `TICKWIRE_IO_THREADS` (1-16), else 1; a value out of range is logged and ignored.
fn io_threads(value: Option<&str>) -> usize {
    let Some(v) = value else {
        return DEFAULT_IO_THREADS;
    };
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=16).contains(&n) => n,
        _ => {
            log::warn!(
                "TICKWIRE_IO_THREADS={v:?} is not a number from 1 to 16; using {DEFAULT_IO_THREADS}"
            );
            DEFAULT_IO_THREADS
        }
    }
}

/// Whether this process may run on one CPU only (its affinity mask).
fn one_cpu() -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set, filled in by the call.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size is the set's own.
    let ok =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    // SAFETY: counts bits of the set just filled in.
    ok == 0 && unsafe { libc::CPU_COUNT(&set) } == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_follows_the_variable_and_the_cpu_mask() {
        assert_eq!(parse_mode(Some("inline"), 2, || false), Mode::Inline);
        assert_eq!(parse_mode(Some("threads"), 2, || true), Mode::Threads(2));
        assert_eq!(parse_mode(None, 1, || true), Mode::Inline);
        assert_eq!(parse_mode(None, 1, || false), Mode::Threads(1));
        assert_eq!(parse_mode(Some("auto"), 3, || false), Mode::Threads(3));
        assert_eq!(parse_mode(Some("fast"), 1, || true), Mode::Inline);
    }

    #[test]
    fn thread_count_is_bounded() {
        assert_eq!(io_threads(None), 1);
        assert_eq!(io_threads(Some(" 4 ")), 4);
        assert_eq!(io_threads(Some("0")), 1);
        assert_eq!(io_threads(Some("17")), 1);
        assert_eq!(io_threads(Some("many")), 1);
    }

    #[test]
    fn inline_wait_and_background_share_the_runtime() {
        let io: &'static Io = Box::leak(Box::new(Io::new(Mode::Inline)));
        let inline = io.inline.as_ref().expect("inline");
        std::thread::spawn(move || inline.background(&io.rt));
        // A task spawned from outside runs although no consumer waits (the background drives).
        let (tx, rx) = std::sync::mpsc::channel();
        io.handle().spawn(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("background drove the task");
        // A waiting consumer takes the core over from the background thread, repeatedly.
        for i in 0..50u64 {
            let got = io.inline().expect("inline").wait(async move {
                tokio::time::sleep(Duration::from_micros(100)).await;
                i
            });
            assert_eq!(got, i);
        }
        assert_eq!(inline.inside.load(Ordering::Acquire), 0);
    }
}
