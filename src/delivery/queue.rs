//! The bounded batch queue between the I/O task and the consumer.
//!
//! The producer appends messages (merging into the newest queued batch while it has room, so a
//! lagging consumer gets big batches instead of many small ones); the consumer pops whole
//! batches. Capacity counts messages. What happens at capacity is the [`Overflow`] policy.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::Notify;

use super::stats::Stats;
use super::wake::WakePipe;
use crate::model::{Envelope, Msg};

/// What to do when the consumer falls `capacity` messages behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Stop reading the socket until there is room (TCP backpressure; nothing is dropped).
    Block,
    /// Drop the oldest queued messages and put a `Dropped` event where they were.
    DropOldest,
}

/// Why a stream ended, as the consumer will see it once the queue is drained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEnd {
    /// The server closed and no reconnect was asked for: iteration ends normally.
    Finished,
    /// The consumer called `close()`.
    ClosedByUser,
    /// A failure to raise: the key was refused.
    Auth(String),
    /// A failure to raise: could not connect (and no policy or retries exhausted).
    Connect(String),
    /// A failure to raise: the server broke the protocol.
    Protocol(String),
}

/// One `pop` result.
#[derive(Debug)]
pub enum Pop {
    Batch(Vec<Envelope>),
    /// Nothing arrived within the timeout (or nothing is ready, for a non-blocking pop).
    Empty,
    /// The stream is over and everything queued was delivered.
    End(StreamEnd),
}

#[derive(Default)]
struct State {
    batches: VecDeque<Vec<Envelope>>,
    queued: usize,
    end: Option<StreamEnd>,
    /// An asyncio consumer is waiting on the pipe.
    armed: bool,
    /// Set once the first connection attempt settled (connected, or failed for good).
    settled: bool,
}

/// The queue shared by one stream's I/O task and its consumer.
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    space: Notify,
    capacity: usize,
    batch_size: usize,
    overflow: Overflow,
    wake: Option<WakePipe>,
    pub stats: Stats,
}

impl Queue {
    pub fn new(
        capacity: usize,
        batch_size: usize,
        overflow: Overflow,
        wake: Option<WakePipe>,
    ) -> Arc<Self> {
        Arc::new(Queue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            space: Notify::new(),
            capacity: capacity.max(1),
            batch_size: batch_size.max(1),
            overflow,
            wake,
            stats: Stats::default(),
        })
    }

    pub fn wake_fd(&self) -> Option<i32> {
        self.wake.as_ref().map(WakePipe::read_fd)
    }

    fn signal(&self, st: &mut State) {
        self.ready.notify_all();
        if st.armed {
            st.armed = false;
            if let Some(w) = &self.wake {
                w.wake();
            }
        }
    }

    fn append(&self, st: &mut State, mut items: Vec<Envelope>) {
        st.queued += items.len();
        if let Some(last) = st.batches.back_mut() {
            if last.len() + items.len() <= self.batch_size {
                last.append(&mut items);
                return;
            }
        }
        st.batches.push_back(items);
    }

    /// Drops the oldest messages until `incoming` more fit, recording a `Dropped` event at the
    /// front of the queue (merged with one already there).
    fn drop_oldest(&self, st: &mut State, incoming: usize) {
        let mut need = (st.queued + incoming).saturating_sub(self.capacity);
        let mut dropped = 0u64;
        let mut recv_ns = 0;
        while need > 0 {
            let Some(front) = st.batches.front_mut() else {
                break;
            };
            // Keep a leading Dropped event; drop what follows it.
            let skip = usize::from(matches!(
                front.first().map(|e| &e.msg),
                Some(Msg::Dropped { .. })
            ));
            let take = (front.len() - skip).min(need);
            if take == 0 {
                if st.batches.len() == 1 {
                    break;
                }
                // A front batch holding only the Dropped event: fold it into the next one.
                let ev = st.batches.pop_front().unwrap_or_default();
                st.queued -= ev.len();
                if let Some(Msg::Dropped { count, .. }) = ev.first().map(|e| &e.msg) {
                    dropped += count;
                }
                continue;
            }
            recv_ns = front[skip].recv_ns;
            front.drain(skip..skip + take);
            st.queued -= take;
            need -= take;
            dropped += take as u64;
        }
        if dropped == 0 {
            return;
        }
        Stats::add(&self.stats.dropped, dropped);
        let front = st.batches.front_mut();
        match front.and_then(|b| b.first_mut()) {
            Some(Envelope {
                msg: Msg::Dropped { count, .. },
                ..
            }) => *count += dropped,
            _ => {
                let ev = Envelope::event(
                    recv_ns,
                    Msg::Dropped {
                        count: dropped,
                        reason: "queue full (overflow=drop_oldest)".into(),
                    },
                );
                st.queued += 1;
                match st.batches.front_mut() {
                    Some(b) => b.insert(0, ev),
                    None => st.batches.push_back(vec![ev]),
                }
            }
        }
    }

    /// Queues messages from the I/O task. With [`Overflow::Block`] this waits until the
    /// consumer made room (the caller then stops reading the socket: TCP backpressure).
    /// Returns `false` once the consumer has closed the stream.
    pub async fn push(&self, items: Vec<Envelope>) -> bool {
        if items.is_empty() {
            return true;
        }
        loop {
            let notified = self.space.notified();
            {
                let mut st = self.state.lock();
                if st.end.is_some() {
                    return false;
                }
                let fits = st.queued + items.len() <= self.capacity || st.queued == 0;
                if fits || self.overflow == Overflow::DropOldest {
                    if !fits {
                        self.drop_oldest(&mut st, items.len());
                    }
                    self.append(&mut st, items);
                    self.signal(&mut st);
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Marks the first connection attempt as settled (for `wait_settled`).
    pub fn settle(&self) {
        let mut st = self.state.lock();
        st.settled = true;
        self.signal(&mut st);
    }

    /// Ends the stream; the consumer sees `end` after the queued batches. The first end wins.
    pub fn finish(&self, end: StreamEnd) {
        let mut st = self.state.lock();
        st.settled = true;
        if st.end.is_none() {
            st.end = Some(end);
        }
        self.signal(&mut st);
        drop(st);
        self.space.notify_waiters();
    }

    /// Closes from the consumer's side: queued batches are discarded, the producer stops.
    pub fn close(&self) {
        let mut st = self.state.lock();
        st.batches.clear();
        st.queued = 0;
        st.end = Some(StreamEnd::ClosedByUser);
        self.signal(&mut st);
        drop(st);
        self.space.notify_waiters();
    }

    pub fn is_closed_by_user(&self) -> bool {
        self.state.lock().end == Some(StreamEnd::ClosedByUser)
    }

    fn take(&self, st: &mut State) -> Option<Pop> {
        if let Some(b) = st.batches.pop_front() {
            st.queued -= b.len();
            Stats::add(&self.stats.batches, 1);
            self.space.notify_waiters();
            return Some(Pop::Batch(b));
        }
        st.end.clone().map(Pop::End)
    }

    /// Takes the next batch, waiting up to `timeout` (`None`: forever). Call without the GIL.
    pub fn pop(&self, timeout: Option<Duration>) -> Pop {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.state.lock();
        loop {
            if let Some(p) = self.take(&mut st) {
                return p;
            }
            match deadline {
                None => self.ready.wait(&mut st),
                Some(d) => {
                    if self.ready.wait_until(&mut st, d).timed_out() {
                        return self.take(&mut st).unwrap_or(Pop::Empty);
                    }
                }
            }
        }
    }

    /// Takes the next batch if one is ready; otherwise arms the wake pipe and returns
    /// [`Pop::Empty`], so the producer's next batch wakes the loop.
    pub fn pop_or_arm(&self) -> Pop {
        if let Some(w) = &self.wake {
            w.drain();
        }
        let mut st = self.state.lock();
        if let Some(p) = self.take(&mut st) {
            return p;
        }
        st.armed = true;
        Pop::Empty
    }

    /// Waits until the first connection attempt settled, up to `timeout`; true if it did.
    pub fn wait_settled(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        while !st.settled {
            if self.ready.wait_until(&mut st, deadline).timed_out() {
                return st.settled;
            }
        }
        true
    }

    /// Arms the wake pipe unless the first attempt has settled; true if already settled.
    pub fn settled_or_arm(&self) -> bool {
        if let Some(w) = &self.wake {
            w.drain();
        }
        let mut st = self.state.lock();
        if st.settled {
            return true;
        }
        st.armed = true;
        false
    }

    /// The failure the first attempt ended with, if it ended the stream.
    pub fn early_end(&self) -> Option<StreamEnd> {
        let st = self.state.lock();
        if st.batches.is_empty() {
            st.end.clone()
        } else {
            None
        }
    }

    /// Messages waiting for the consumer.
    pub fn queued(&self) -> usize {
        self.state.lock().queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(n: usize) -> Vec<Envelope> {
        (0..n)
            .map(|i| Envelope::event(i as i64, Msg::Heartbeat))
            .collect()
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn merges_small_pushes_up_to_batch_size() {
        let q = Queue::new(100, 4, Overflow::Block, None);
        block_on(async {
            assert!(q.push(msgs(2)).await);
            assert!(q.push(msgs(2)).await);
            assert!(q.push(msgs(3)).await);
        });
        assert!(matches!(q.pop(Some(Duration::ZERO)), Pop::Batch(b) if b.len() == 4));
        assert!(matches!(q.pop(Some(Duration::ZERO)), Pop::Batch(b) if b.len() == 3));
        assert!(matches!(q.pop(Some(Duration::ZERO)), Pop::Empty));
        q.finish(StreamEnd::Finished);
        assert!(matches!(q.pop(None), Pop::End(StreamEnd::Finished)));
    }

    #[test]
    fn drop_oldest_counts_exactly() {
        let q = Queue::new(10, 1000, Overflow::DropOldest, None);
        block_on(async {
            for _ in 0..7 {
                q.push(msgs(3)).await;
            }
        });
        let Pop::Batch(b) = q.pop(Some(Duration::ZERO)) else {
            panic!("expected a batch")
        };
        let Msg::Dropped { count, .. } = b[0].msg else {
            panic!("expected Dropped first, got {:?}", b[0].msg)
        };
        let delivered = b.len() as u64 - 1;
        assert_eq!(count + delivered, 21);
        assert_eq!(q.stats.snapshot().dropped, count);
        assert!(b.len() <= 11);
    }

    #[test]
    fn block_waits_for_room() {
        let q = Queue::new(3, 10, Overflow::Block, None);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let q2 = q.clone();
        let h = rt.spawn(async move {
            q2.push(msgs(3)).await;
            q2.push(msgs(3)).await;
            true
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(q.queued(), 3, "second push must wait");
        assert!(matches!(q.pop(None), Pop::Batch(b) if b.len() == 3));
        assert!(rt.block_on(h).unwrap());
        assert!(matches!(q.pop(None), Pop::Batch(b) if b.len() == 3));
    }

    #[test]
    fn close_discards_and_stops_producer() {
        let q = Queue::new(10, 10, Overflow::Block, None);
        block_on(async { q.push(msgs(2)).await });
        q.close();
        assert!(matches!(q.pop(None), Pop::End(StreamEnd::ClosedByUser)));
        assert!(!block_on(q.push(msgs(1))));
    }

    #[test]
    fn armed_consumer_is_woken_through_the_pipe() {
        let q = Queue::new(10, 10, Overflow::Block, Some(WakePipe::new().unwrap()));
        assert!(matches!(q.pop_or_arm(), Pop::Empty));
        block_on(async { q.push(msgs(1)).await });
        let fd = q.wake_fd().unwrap();
        let mut buf = [0u8; 8];
        // SAFETY: reading into a local buffer from the queue's own pipe.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(n, 1);
        assert!(matches!(q.pop_or_arm(), Pop::Batch(_)));
    }
}
