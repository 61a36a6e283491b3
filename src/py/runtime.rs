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

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
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

/// The process-wide runtime every stream runs on (`TICKWIRE_IO`, `TICKWIRE_IO_THREADS`).
pub(crate) fn io() -> &'static Io {
    static IO: OnceLock<Io> = OnceLock::new();
    static STARTED: std::sync::Once = std::sync::Once::new();
    let io = IO.get_or_init(|| Io::new(mode_from_env()));
    STARTED.call_once(|| {
        if let Some(inline) = &io.inline {
            std::thread::Builder::new()
                .name("tickwire-io".into())
                .spawn(move || inline.background(&io.rt))
                .expect("tickwire: cannot start the I/O thread");
        }
    });
    io
}

/// The runtime of tickwire's own servers (simulator, replay load), apart from the streams' so
/// that an in-process server never takes a stream's I/O thread.
pub(crate) fn server_runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tickwire-sim")
            .enable_all()
            .build()
            .expect("tickwire: cannot start the servers' runtime")
    })
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
