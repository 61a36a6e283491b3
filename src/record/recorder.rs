//! The recorder: a dedicated writer thread fed by the connection task over a bounded channel,
//! so compressing and writing never happen on the I/O task.
//!
//! When the disk cannot keep up, the connection task does not wait (its pings and reads must
//! not stall behind a disk): records that do not fit the channel are counted, and the count is
//! written as a `Lost` record where they were lost, so a replay says so (as `Dropped`) instead
//! of losing them silently.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{self, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use parking_lot::{Condvar, Mutex};

use super::format::{scrub, Event, Meta, Record, Stamp, NO_CONN};
use super::write::{Recording, Rotation, BLOCK_AGE};
use crate::feed::machine::Clock;
use crate::protocol::moment::MomentStream;
use crate::protocol::Session;

/// The most batches of records (one per turn of the connection task's loop) waiting for the
/// writer thread (one per 1.2 µs between two of its ticks)...
pub const CHANNEL_BATCHES: usize = 8192;
/// ...and the most bytes they may hold (payloads are shared with the reader, not copied, but
/// they stay alive until written). Past either bound records are counted as lost.
pub const IN_FLIGHT_BYTES: usize = 64 << 20;

enum ToWriter {
    Records(Vec<Record>, usize),
    Finish,
}

/// The writer thread's end state, for `wait_finished`.
#[derive(Default)]
struct Done {
    finished: Mutex<Option<Result<(), String>>>,
    cv: Condvar,
}

/// A recording being written by its own thread. Shared by the stream's task (which hands it
/// records) and the Python stream (which waits for it on close).
pub struct Recorder {
    tx: SyncSender<ToWriter>,
    in_flight: Arc<AtomicUsize>,
    /// Records lost since the last `Lost` record was sent.
    lost: AtomicU64,
    /// Records lost in all.
    lost_total: AtomicU64,
    next_conn: AtomicU32,
    /// The writer thread stopped (an I/O error): nothing more is sent.
    failed: Arc<AtomicBool>,
    finish_sent: AtomicBool,
    done: Arc<Done>,
    path: PathBuf,
    /// [`IN_FLIGHT_BYTES`] unless a test says otherwise.
    max_in_flight: usize,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("path", &self.path)
            .finish()
    }
}

/// The header metadata of a stream's recording.
pub fn meta_for(session: &Session, shown_url: &str) -> Meta {
    let (venue, feed) = match session {
        Session::CoinApi(_) => ("coinapi", "coinapi"),
        Session::Moment(s) if s.stream == MomentStream::Prices => ("moment", "prices"),
        Session::Moment(_) => ("moment", "orders"),
    };
    Meta {
        venue: venue.into(),
        feed: feed.into(),
        url: shown_url.into(),
        scope: session
            .opening()
            .iter()
            .map(|t| scrub(t))
            .collect::<Vec<_>>()
            .join("\n"),
        tickwire: env!("CARGO_PKG_VERSION").into(),
        created_ns: 0,
        part: 0,
    }
}

fn wall_ns() -> i64 {
    crate::client::wall_ns()
}

impl Recorder {
    /// Creates the recording's first file and starts its writer thread.
    ///
    /// # Errors
    /// The file cannot be created, or the thread cannot be started.
    pub fn start(path: &Path, rotation: Rotation, meta: Meta) -> std::io::Result<Arc<Recorder>> {
        Self::start_bounded(path, rotation, meta, IN_FLIGHT_BYTES)
    }

    /// [`Recorder::start`] with another in-flight byte bound.
    ///
    /// # Errors
    /// As [`Recorder::start`].
    pub fn start_bounded(
        path: &Path,
        rotation: Rotation,
        meta: Meta,
        max_in_flight: usize,
    ) -> std::io::Result<Arc<Recorder>> {
        let origin = Instant::now();
        let recording = Recording::create(path, rotation, meta, Duration::ZERO, wall_ns())?;
        let (tx, rx) = mpsc::sync_channel(CHANNEL_BATCHES);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicBool::new(false));
        let done = Arc::new(Done::default());
        let shown = path.display().to_string();
        {
            let in_flight = in_flight.clone();
            let failed = failed.clone();
            let done = done.clone();
            std::thread::Builder::new()
                .name("tickwire-recorder".into())
                .spawn(move || {
                    let r = write_loop(recording, &rx, &in_flight, origin);
                    if let Err(e) = &r {
                        failed.store(true, Relaxed);
                        log::error!("recording to {shown} stopped: {e}");
                    }
                    *done.finished.lock() = Some(r);
                    done.cv.notify_all();
                })?;
        }
        Ok(Arc::new(Recorder {
            tx,
            in_flight,
            lost: AtomicU64::new(0),
            lost_total: AtomicU64::new(0),
            next_conn: AtomicU32::new(0),
            failed,
            finish_sent: AtomicBool::new(false),
            done,
            path: path.to_path_buf(),
            max_in_flight,
        }))
    }

    /// A new connection's number.
    pub fn new_conn(&self) -> u32 {
        self.next_conn.fetch_add(1, Relaxed)
    }

    /// Records lost to a full channel so far.
    pub fn lost(&self) -> u64 {
        self.lost_total.load(Relaxed)
    }

    /// Hands records to the writer without waiting; what does not fit is counted as lost
    /// and marked in the file before the next records that fit.
    pub fn send(&self, mut batch: Vec<Record>) {
        if batch.is_empty() || self.failed.load(Relaxed) || self.finish_sent.load(Relaxed) {
            return;
        }
        let weight: usize = batch.iter().map(Record::weight).sum();
        let n = batch.len() as u64;
        if self.in_flight.load(Relaxed) + weight > self.max_in_flight {
            self.count_lost(n);
            return;
        }
        let lost = self.lost.swap(0, Relaxed);
        if lost > 0 {
            let at = batch[0].at;
            batch.insert(
                0,
                Record {
                    conn: NO_CONN,
                    at: Stamp {
                        wall_ns: at.wall_ns,
                        mono_ns: 0,
                    },
                    event: Event::Lost { records: lost },
                },
            );
        }
        self.in_flight.fetch_add(weight, Relaxed);
        match self.tx.try_send(ToWriter::Records(batch, weight)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.in_flight.fetch_sub(weight, Relaxed);
                self.lost.fetch_add(lost, Relaxed);
                self.count_lost(n);
            }
        }
    }

    fn count_lost(&self, n: u64) {
        self.lost.fetch_add(n, Relaxed);
        self.lost_total.fetch_add(n, Relaxed);
    }

    /// Tells the writer that no more records come: it writes the last block and the index.
    /// Waits for channel space (the stream's task is ending; this loses nothing).
    pub fn finish(&self) {
        if self.finish_sent.swap(true, Relaxed) {
            return;
        }
        let lost = self.lost.swap(0, Relaxed);
        if lost > 0 {
            let rec = Record {
                conn: NO_CONN,
                at: Stamp {
                    wall_ns: wall_ns(),
                    mono_ns: 0,
                },
                event: Event::Lost { records: lost },
            };
            let _ = self.tx.send(ToWriter::Records(vec![rec], 0));
        }
        let _ = self.tx.send(ToWriter::Finish);
    }

    /// Waits up to `timeout` for the writer to have finished the recording; `None` if it has
    /// not, else its outcome (an I/O error's text).
    pub fn wait_finished(&self, timeout: Duration) -> Option<Result<(), String>> {
        let until = Instant::now() + timeout;
        let mut g = self.done.finished.lock();
        while g.is_none() {
            if self.done.cv.wait_until(&mut g, until).timed_out() {
                break;
            }
        }
        g.clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.finish();
    }
}

/// How often the writer thread takes what the channel holds. It polls rather than sleeping on
/// the channel: a receiver asleep in `recv` would make every hand-over (one per turn of the
/// connection task's loop) a futex wake-up and a context switch on the hot path.
pub const TICK: Duration = Duration::from_millis(10);

fn write_loop(
    mut recording: Recording,
    rx: &mpsc::Receiver<ToWriter>,
    in_flight: &AtomicUsize,
    origin: Instant,
) -> Result<(), String> {
    let err = |e: std::io::Error| e.to_string();
    // When the block being filled got its first record.
    let mut block_started: Option<Instant> = None;
    loop {
        let mut finished = false;
        loop {
            match rx.try_recv() {
                Ok(ToWriter::Records(batch, weight)) => {
                    let now = origin.elapsed();
                    let wall = wall_ns();
                    let result = batch.iter().try_for_each(|r| recording.push(r, now, wall));
                    in_flight.fetch_sub(weight, Relaxed);
                    result.map_err(err)?;
                    if !recording.pending() {
                        block_started = None;
                    } else if block_started.is_none() {
                        block_started = Some(Instant::now());
                    }
                }
                Ok(ToWriter::Finish) | Err(TryRecvError::Disconnected) => {
                    finished = true;
                    break;
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        if finished {
            break;
        }
        if block_started.is_none_or(|s| s.elapsed() >= BLOCK_AGE) {
            recording.flush(origin.elapsed(), wall_ns()).map_err(err)?;
            block_started = None;
        }
        std::thread::sleep(TICK);
    }
    recording.finish().map_err(err)
}

/// A connection task's records between two hand-overs to the writer: one channel send per
/// turn of the task's loop rather than per frame.
pub struct Tap {
    recorder: Arc<Recorder>,
    pending: Vec<Record>,
    /// Where payloads are copied: one allocation per [`ARENA`] bytes instead of one per frame
    /// (each record's payload shares it, and it is freed once the writer dropped them all).
    arena: BytesMut,
}

/// The size of a payload arena's allocation.
const ARENA: usize = 256 << 10;

impl Tap {
    pub fn new(recorder: Arc<Recorder>) -> Self {
        Tap {
            recorder,
            pending: Vec::new(),
            arena: BytesMut::new(),
        }
    }

    /// A copy of `payload` for a record. A copy, not a share of the transport's buffer: that
    /// would stay alive until the writer took it, so the transport could not reuse it and
    /// would read in small pieces (measured: the I/O thread's CPU per message went up
    /// sixfold).
    pub fn copy(&mut self, payload: &[u8]) -> Bytes {
        if self.arena.capacity() - self.arena.len() < payload.len() {
            self.arena = BytesMut::with_capacity(ARENA.max(payload.len()));
        }
        self.arena.extend_from_slice(payload);
        self.arena.split().freeze()
    }

    pub fn recorder(&self) -> &Arc<Recorder> {
        &self.recorder
    }

    /// Adds one record made at `now`.
    pub fn push(&mut self, conn: u32, now: Clock, event: Event) {
        self.pending.push(Record {
            conn,
            at: stamp(now),
            event,
        });
    }

    /// Hands what was gathered to the writer.
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            let cap = self.pending.capacity().min(4096);
            let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(cap));
            self.recorder.send(batch);
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.flush();
    }
}

/// A machine clock as a record's stamp.
pub fn stamp(now: Clock) -> Stamp {
    Stamp {
        wall_ns: now.wall_ns,
        mono_ns: u64::try_from(now.mono.as_nanos()).unwrap_or(u64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::read::Reader;

    #[test]
    fn records_reach_the_file_and_finish_completes_it() {
        let dir = std::env::temp_dir().join(format!("tickwire-recorder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.twr");
        let rec = Recorder::start(&path, Rotation::default(), Meta::default()).unwrap();
        let mut tap = Tap::new(rec.clone());
        let c = rec.new_conn();
        for i in 0..1000u64 {
            tap.push(
                c,
                Clock {
                    mono: Duration::from_micros(i),
                    wall_ns: 1_000 + i as i64,
                },
                Event::Data {
                    payload: Bytes::from(format!("{{\"n\":{i}}}")),
                    binary: false,
                },
            );
            if i % 100 == 0 {
                tap.flush();
            }
        }
        drop(tap);
        rec.finish();
        assert_eq!(rec.wait_finished(Duration::from_secs(10)), Some(Ok(())));
        let r = Reader::open(&path).unwrap();
        assert!(r.finished());
        let recs: Vec<Record> = r.map(Result::unwrap).collect();
        assert_eq!(recs.len(), 1000);
        assert_eq!(rec.lost(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_that_do_not_fit_are_counted_and_marked_where_they_were_lost() {
        let dir = std::env::temp_dir().join(format!("tickwire-lost-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.twr");
        let rec =
            Recorder::start_bounded(&path, Rotation::default(), Meta::default(), 1000).unwrap();
        let data = |n: usize, wall_ns: i64| Record {
            conn: 0,
            at: Stamp {
                wall_ns,
                mono_ns: 0,
            },
            event: Event::Data {
                payload: Bytes::from(vec![b'x'; n]),
                binary: false,
            },
        };
        rec.send(vec![data(10, 1)]);
        // Over the bound: not sent, counted.
        rec.send(vec![data(2_000, 2), data(10, 3)]);
        assert_eq!(rec.lost(), 2);
        rec.send(vec![data(10, 4)]);
        rec.finish();
        assert_eq!(rec.wait_finished(Duration::from_secs(10)), Some(Ok(())));
        let recs: Vec<Event> = Reader::open(&path)
            .unwrap()
            .map(|r| r.unwrap().event)
            .collect();
        assert!(matches!(recs[0], Event::Data { .. }));
        assert_eq!(recs[1], Event::Lost { records: 2 });
        assert!(matches!(recs[2], Event::Data { .. }));
        assert_eq!(recs.len(), 3);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
