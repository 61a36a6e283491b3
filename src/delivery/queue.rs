//! The bounded batch queue between the I/O task and the consumer.
//!
//! The producer appends messages (merging into the newest queued batch while it has room, so a
//! lagging consumer gets big batches instead of many small ones); the consumer pops whole
//! batches. Capacity counts messages and tickwire's own events alike, and a second bound counts
//! their bytes (an estimate of the heap each holds, see [`weight`]). What happens at either
//! bound is the [`Overflow`] policy.
//!
//! Whatever the policy, consecutive `ParseError`s fold into one event with a `count`, so a flood
//! of malformed frames takes one slot. Under `drop_oldest` every message and every `Gap` or
//! `ParseError` can be dropped (a `Gap` together with the message it precedes); only the
//! connection's own milestones (`Connected`, `Disconnected`, `Stale`, `Switched`) are kept, and
//! `Dropped` events next to each other merge, so a stalled consumer finds one `Dropped` per
//! stretch between milestones. Every dropped item is counted once: a message or a `Gap` as 1, a
//! `ParseError` as its `count`; `Dropped.count` and `stats().dropped` say the same.

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
    /// Keep only the newest queued message per (type, key) of state-like types (quotes,
    /// top-N books, index values, exchange rates, prices); never trades or order events.
    /// When only those fill the queue, reading pauses as with `Block`.
    Conflate,
}

/// The identity under which a newer message supersedes an older one, for state-like types.
fn conflation_key(msg: &Msg) -> Option<(&'static str, &str, Option<&str>)> {
    match msg {
        Msg::Quote(q) => Some(("quote", &q.symbol_id, None)),
        Msg::Book(b) if b.kind != crate::model::BookKind::Full => {
            Some((b.kind.wire(), &b.symbol_id, None))
        }
        Msg::Index(i) => Some(("index", &i.index_id, None)),
        Msg::Exrate(x) => Some(("exrate", &x.asset_id_base, Some(&x.asset_id_quote))),
        Msg::PriceUpdate(p) => Some(("price_update", &p.instrument_id, None)),
        _ => None,
    }
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
    /// A failure to raise: a replayed recording is damaged (the text names the offset).
    Recording(String),
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

/// The default byte bound (`queue_bytes`), 256 MiB.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

/// An estimate of the memory one queued envelope holds: its own slot plus what it owns on the
/// heap (raw text, strings, book levels). Interned keys are shared, so they are not counted.
pub fn weight(e: &Envelope) -> usize {
    use crate::model::L3Entry;
    let heap = match &e.msg {
        Msg::Trade(t) => t.uuid.len(),
        Msg::Book(b) => (b.asks.capacity() + b.bids.capacity()) * size_of::<crate::model::Level>(),
        Msg::BookL3(b) => {
            size_of::<crate::model::BookL3>()
                + (b.asks.capacity() + b.bids.capacity()) * size_of::<L3Entry>()
                + b.asks
                    .iter()
                    .chain(&b.bids)
                    .map(|l| l.id.as_ref().map_or(0, |i| i.len()))
                    .sum::<usize>()
        }
        Msg::Ohlcv(_) => size_of::<crate::model::Ohlcv>(),
        Msg::Error(x) => x.message.len() + x.error_type.as_ref().map_or(0, |t| t.len()),
        Msg::Metadata(m) => m.json.len(),
        Msg::Unknown(u) => u.kind.len() + u.raw.len(),
        Msg::PriceUpdate(p) => size_of::<crate::model::PriceUpdate>() + p.json.len(),
        Msg::OrderEvent(o) => {
            size_of::<crate::model::OrderEvent>()
                + o.json.len()
                + o.order_id.as_ref().map_or(0, |i| i.len())
        }
        Msg::Success { msg } => msg.len(),
        Msg::Subscription { instrument_id, msg } => {
            msg.len() + instrument_id.as_ref().map_or(0, |i| i.len())
        }
        Msg::Connected { url, .. } => url.len(),
        Msg::Disconnected { reason, .. } | Msg::Dropped { reason, .. } => reason.len(),
        Msg::ParseError { reason, raw, .. } => reason.len() + raw.len(),
        Msg::Quote(_)
        | Msg::Exrate(_)
        | Msg::Index(_)
        | Msg::Heartbeat
        | Msg::Reconnect(_)
        | Msg::Gap(_)
        | Msg::Stale { .. }
        | Msg::Switched { .. }
        // Made on the consumer's side (books), after the queue; they hold shared keys only.
        | Msg::BookReset { .. }
        | Msg::BookSynced { .. } => 0,
    };
    size_of::<Envelope>() + heap + e.raw.as_ref().map_or(0, |r| r.len())
}

/// How many dropped items an envelope stands for if the drop policy removes it; `None` for the
/// milestones that are never dropped (and `Dropped` itself, which merges instead).
fn droppable(msg: &Msg) -> Option<u64> {
    match msg {
        Msg::ParseError { count, .. } => Some(*count),
        Msg::Connected { .. }
        | Msg::Disconnected { .. }
        | Msg::Stale { .. }
        | Msg::Switched { .. }
        | Msg::Dropped { .. } => None,
        _ => Some(1),
    }
}

/// Folds consecutive `ParseError`s of `items` into the first of their run (and into `prev`, the
/// newest envelope already queued, when the run continues one there). Returns how many
/// envelopes went.
fn fold_parse_errors(mut prev: Option<&mut Envelope>, items: &mut Vec<Envelope>) -> usize {
    if !items
        .iter()
        .any(|e| matches!(e.msg, Msg::ParseError { .. }))
    {
        return 0;
    }
    let before = items.len();
    let mut kept: Vec<Envelope> = Vec::with_capacity(before);
    for e in items.drain(..) {
        let Msg::ParseError { count: n, .. } = e.msg else {
            kept.push(e);
            continue;
        };
        let into = match kept.last_mut() {
            Some(last) => Some(last),
            None => prev.as_deref_mut(),
        };
        if let Some(Envelope {
            msg: Msg::ParseError { count, .. },
            ..
        }) = into
        {
            *count += n;
            continue;
        }
        kept.push(e);
    }
    *items = kept;
    before - items.len()
}

#[derive(Default)]
struct State {
    batches: VecDeque<Vec<Envelope>>,
    queued: usize,
    /// The summed [`weight`] of everything queued.
    bytes: usize,
    /// The most envelopes queued at once.
    high_water: usize,
    end: Option<StreamEnd>,
    /// An asyncio consumer is waiting on the pipe.
    armed: bool,
    /// A wake-up byte was written and not yet drained.
    signalled: bool,
    /// Set once the first connection attempt settled (connected, or failed for good).
    settled: bool,
}

/// The queue shared by one stream's I/O task and its consumer.
pub struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    space: Notify,
    capacity: usize,
    max_bytes: usize,
    batch_size: usize,
    overflow: Overflow,
    wake: Option<WakePipe>,
    /// Wakes `pop_async` (a consumer driving the runtime itself).
    ready_async: Notify,
    pub stats: Stats,
}

impl Queue {
    /// A queue bounded by `capacity` envelopes and [`DEFAULT_MAX_BYTES`].
    pub fn new(
        capacity: usize,
        batch_size: usize,
        overflow: Overflow,
        wake: Option<WakePipe>,
    ) -> Arc<Self> {
        Self::with_max_bytes(capacity, DEFAULT_MAX_BYTES, batch_size, overflow, wake)
    }

    /// A queue bounded by `capacity` envelopes and `max_bytes` of their [`weight`]. Under
    /// `block` and `conflate` a single push larger than either bound is still taken into an
    /// empty queue (a batch is at most `batch_size`), so those exceed the bounds by at most one
    /// batch; `drop_oldest` trims even that.
    pub fn with_max_bytes(
        capacity: usize,
        max_bytes: usize,
        batch_size: usize,
        overflow: Overflow,
        wake: Option<WakePipe>,
    ) -> Arc<Self> {
        Arc::new(Queue {
            state: Mutex::new(State::default()),
            ready: Condvar::new(),
            space: Notify::new(),
            capacity: capacity.max(1),
            max_bytes: max_bytes.max(1),
            batch_size: batch_size.max(1),
            overflow,
            wake,
            ready_async: Notify::new(),
            stats: Stats::default(),
        })
    }

    pub fn wake_fd(&self) -> Option<i32> {
        self.wake.as_ref().map(WakePipe::read_fd)
    }

    /// The socket an inline consumer's loop should watch from now on (`None`: disconnected).
    pub fn watch_socket(&self, fd: Option<i32>) {
        if let Some(w) = &self.wake {
            w.watch_socket(fd);
        }
    }

    /// For an inline asyncio consumer about to look for work: clears the loop's pending edges
    /// and disarms the pipe (its own reading needs no wake-up byte). True if data arrived
    /// since the last look: then the consumer should read it itself (and so take the runtime
    /// back from the background thread, if that one got there first).
    pub fn wants_inline_read(&self) -> bool {
        if !self.wake.as_ref().is_some_and(WakePipe::harvest) {
            return false;
        }
        let mut st = self.state.lock();
        st.armed = false;
        self.drain_wake(&mut st);
        true
    }

    /// Whether a batch (or the end) is waiting.
    pub fn has_ready(&self) -> bool {
        let st = self.state.lock();
        !st.batches.is_empty() || st.end.is_some()
    }

    fn signal(&self, st: &mut State) {
        self.ready.notify_all();
        self.ready_async.notify_waiters();
        if st.armed {
            st.armed = false;
            if let Some(w) = &self.wake {
                w.wake();
                st.signalled = true;
            }
        }
    }

    fn append(&self, st: &mut State, mut items: Vec<Envelope>, bytes: usize) {
        st.queued += items.len();
        st.bytes += bytes;
        if let Some(last) = st.batches.back_mut() {
            if last.len() + items.len() <= self.batch_size {
                last.append(&mut items);
                return;
            }
        }
        st.batches.push_back(items);
    }

    /// True when `n` more envelopes of `bytes` fit under both bounds (an empty queue takes
    /// anything, so one oversized batch cannot wedge a blocking stream; `drop_oldest` then
    /// trims it).
    fn fits(&self, st: &State, n: usize, bytes: usize) -> bool {
        (st.queued == 0 && self.overflow != Overflow::DropOldest)
            || (st.queued + n <= self.capacity && st.bytes + bytes <= self.max_bytes)
    }

    /// Drops the oldest droppable envelopes until the queue is within its bounds, and says so in a `Dropped` event where the first of them was, merged with a `Dropped`
    /// right before it. Milestones stay, in order; a `Gap` goes with the message after it.
    /// Only the front of the queue is touched: the batches it empties are freed and the one
    /// it stops in is compacted, so no half-empty batch keeps a large allocation.
    fn drop_oldest(&self, st: &mut State) {
        let over = |st: &State| st.queued > self.capacity || st.bytes > self.max_bytes;
        if !over(st) {
            return;
        }
        // What stays of the dropped stretch: milestones and Dropped events, in order.
        let mut head: Vec<Envelope> = Vec::new();
        let mut dropped = 0u64;
        // The message a dropped Gap announced goes too, even once there is room.
        let mut partner = false;
        while over(st) || partner {
            let Some(mut batch) = st.batches.pop_front() else {
                break;
            };
            // How far into this batch the drop reaches.
            let mut cut = 0usize;
            for e in &batch {
                if partner && !e.msg.is_data() {
                    partner = false;
                }
                if !(over(st) || partner) {
                    break;
                }
                cut += 1;
                st.queued -= 1;
                st.bytes -= weight(e);
                partner = matches!(e.msg, Msg::Gap(_));
            }
            for e in batch.drain(..cut) {
                let last = head.last_mut().and_then(|l| match &mut l.msg {
                    Msg::Dropped { count, .. } => Some(count),
                    _ => None,
                });
                match (droppable(&e.msg), &e.msg, last) {
                    (Some(n), _, Some(count)) => {
                        dropped += n;
                        *count += n;
                    }
                    (Some(n), _, None) => {
                        dropped += n;
                        head.push(Envelope::event(
                            e.recv_ns,
                            Msg::Dropped {
                                count: n,
                                reason: "queue full (overflow=drop_oldest)".into(),
                            },
                        ));
                    }
                    (None, Msg::Dropped { count: n, .. }, Some(count)) => *count += n,
                    (None, _, _) => head.push(e),
                }
            }
            if !batch.is_empty() {
                // A batch that lost most of its messages gives back its allocation: many
                // half-empty batches were how a stalled consumer's queue outgrew its bound.
                if batch.len() < batch.capacity() / 4 {
                    batch.shrink_to_fit();
                }
                st.batches.push_front(batch);
                break;
            }
        }
        Stats::add(&self.stats.dropped, dropped);
        // A Dropped at the end of the head merges with one at the front of what stays.
        if let Some(Envelope {
            msg: Msg::Dropped { count: n, .. },
            ..
        }) = head.last()
        {
            if let Some(Envelope {
                msg: Msg::Dropped { count, .. },
                ..
            }) = st.batches.front_mut().and_then(|b| b.first_mut())
            {
                *count += n;
                head.pop();
            }
        }
        if head.is_empty() {
            return;
        }
        st.queued += head.len();
        st.bytes += head.iter().map(weight).sum::<usize>();
        match st.batches.front_mut() {
            Some(b) if b.len() + head.len() <= self.batch_size => {
                b.splice(0..0, head);
            }
            _ => st.batches.push_front(head),
        }
    }

    /// Drops every queued state-like message that a newer queued one (or one in `incoming`)
    /// supersedes; records them as one `Dropped` event at the front. Returns how many went.
    /// O(queued), but it runs only when the queue is full and usually frees much of it.
    fn conflate(&self, st: &mut State, incoming: &[Envelope]) -> usize {
        let mut seen: std::collections::HashSet<(&'static str, String, Option<String>)> =
            std::collections::HashSet::new();
        for e in incoming.iter().rev() {
            if let Some((t, k, q)) = conflation_key(&e.msg) {
                seen.insert((t, k.to_string(), q.map(str::to_string)));
            }
        }
        let mut removed = 0usize;
        for batch in st.batches.iter_mut().rev() {
            let before = batch.len();
            let mut keep = vec![true; before];
            for (i, e) in batch.iter().enumerate().rev() {
                if let Some((t, k, q)) = conflation_key(&e.msg) {
                    let id = (t, k.to_string(), q.map(str::to_string));
                    if !seen.insert(id) {
                        keep[i] = false;
                    }
                }
            }
            let mut it = keep.iter();
            let mut freed = 0usize;
            batch.retain(|e| {
                let keep = *it.next().unwrap_or(&true);
                if !keep {
                    freed += weight(e);
                }
                keep
            });
            st.bytes -= freed;
            removed += before - batch.len();
        }
        st.batches.retain(|b| !b.is_empty());
        st.queued -= removed;
        if removed > 0 {
            Stats::add(&self.stats.dropped, removed as u64);
            self.note_dropped(st, removed as u64, "conflated (overflow=conflate)");
        }
        removed
    }

    /// Tells the consumer of `count` dropped messages: a `Dropped` event at the front of the
    /// queue (merged with one already there). The caller has counted them in the stats.
    fn note_dropped(&self, st: &mut State, count: u64, reason: &str) {
        let recv_ns = st
            .batches
            .front()
            .and_then(|b| b.first())
            .map_or(0, |e| e.recv_ns);
        match st.batches.front_mut().and_then(|b| b.first_mut()) {
            Some(Envelope {
                msg: Msg::Dropped { count: c, .. },
                ..
            }) => *c += count,
            _ => {
                let ev = Envelope::event(
                    recv_ns,
                    Msg::Dropped {
                        count,
                        reason: reason.into(),
                    },
                );
                st.queued += 1;
                st.bytes += weight(&ev);
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
    pub async fn push(&self, mut items: Vec<Envelope>) -> bool {
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
                // Folding needs no room, so a run of bad frames never waits on the consumer.
                let prev = st.batches.back_mut().and_then(|b| b.last_mut());
                fold_parse_errors(prev, &mut items);
                if items.is_empty() {
                    return true;
                }
                let bytes: usize = items.iter().map(weight).sum();
                let mut fits = self.fits(&st, items.len(), bytes);
                if !fits
                    && self.overflow == Overflow::Conflate
                    && self.conflate(&mut st, &items) > 0
                {
                    fits = self.fits(&st, items.len(), bytes);
                    // The Dropped event must reach the consumer even if reading now pauses.
                    self.signal(&mut st);
                }
                if fits || self.overflow == Overflow::DropOldest {
                    self.append(&mut st, items, bytes);
                    if !fits {
                        // Oldest first, the new messages included: a single push larger than
                        // the bounds loses its own oldest part too.
                        self.drop_oldest(&mut st);
                    }
                    st.high_water = st.high_water.max(st.queued);
                    self.signal(&mut st);
                    return true;
                }
            }
            notified.await;
        }
    }

    /// Checks the queue's own books against its contents: `(queued, bytes, milestones)` as
    /// counted and as recounted, `milestones` being the envelopes no policy drops. For the
    /// property tests and fuzz targets.
    #[doc(hidden)]
    pub fn audit(&self) -> ((usize, usize), (usize, usize), usize) {
        let st = self.state.lock();
        let all = st.batches.iter().flatten();
        let recount = (all.clone().count(), all.clone().map(weight).sum());
        let kept = all.filter(|e| droppable(&e.msg).is_none()).count();
        ((st.queued, st.bytes), recount, kept)
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
        st.bytes = 0;
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
            st.bytes -= b.iter().map(weight).sum::<usize>();
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

    /// The next batch (or the end) if one is ready, without waiting.
    pub fn try_pop(&self) -> Option<Pop> {
        self.take(&mut self.state.lock())
    }

    /// Takes the next batch, waiting on the I/O runtime (a consumer driving it inline, or the
    /// pyo3-async-runtimes bridge).
    pub async fn pop_async(&self) -> Pop {
        loop {
            let notified = self.ready_async.notified();
            tokio::pin!(notified);
            // Registered before looking, so a push between the look and the await still wakes.
            notified.as_mut().enable();
            if let Some(p) = self.take(&mut self.state.lock()) {
                return p;
            }
            notified.await;
        }
    }

    /// Spins up to `limit` for a batch (or the end) without sleeping; `None` if nothing came.
    /// For a consumer with a core of its own: it skips the futex sleep and wake-up (tens of
    /// microseconds on a VM) at the price of a busy CPU. Call without the GIL.
    pub fn spin_pop(&self, limit: Duration) -> Option<Pop> {
        let until = Instant::now() + limit;
        loop {
            // try_lock: a spinning consumer must never queue behind the producer's push.
            if let Some(mut st) = self.state.try_lock() {
                if let Some(p) = self.take(&mut st) {
                    self.drain_wake(&mut st);
                    return Some(p);
                }
            }
            if Instant::now() >= until {
                return None;
            }
            for _ in 0..64 {
                std::hint::spin_loop();
            }
        }
    }

    /// Empties the wake-up pipe if a byte was written since the last drain (a syscall only
    /// then, not on every poll).
    fn drain_wake(&self, st: &mut State) {
        if st.signalled {
            st.signalled = false;
            if let Some(w) = &self.wake {
                w.drain();
            }
        }
    }

    /// Takes the next batch if one is ready; otherwise arms the wake pipe and returns
    /// [`Pop::Empty`], so the producer's next batch wakes the loop.
    pub fn pop_or_arm(&self) -> Pop {
        let mut st = self.state.lock();
        self.drain_wake(&mut st);
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
        let mut st = self.state.lock();
        self.drain_wake(&mut st);
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

    /// Envelopes queued now, the most queued at once, and the [`weight`] queued now.
    pub fn depth(&self) -> (usize, usize, usize) {
        let st = self.state.lock();
        (st.queued, st.high_water, st.bytes)
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
            q.push(vec![Envelope::event(
                0,
                Msg::Connected {
                    url: "ws://x".into(),
                    attempt: 0,
                },
            )])
            .await;
            for _ in 0..7 {
                q.push(msgs(3)).await;
            }
        });
        let Pop::Batch(b) = q.pop(Some(Duration::ZERO)) else {
            panic!("expected a batch")
        };
        assert!(
            matches!(b[0].msg, Msg::Connected { .. }),
            "events are never dropped"
        );
        let Msg::Dropped { count, .. } = b[1].msg else {
            panic!("expected Dropped where the hole is, got {:?}", b[1].msg)
        };
        let delivered = b.len() as u64 - 2;
        assert_eq!(count + delivered, 21);
        assert_eq!(q.stats.snapshot().dropped, count);
        assert!(b.len() <= 12);
    }

    fn quote(sym: &str, seq: u64) -> Envelope {
        Envelope::event(
            0,
            Msg::Quote(crate::model::Quote {
                symbol_id: std::sync::Arc::from(sym),
                sequence: seq,
                time_exchange: 0,
                time_coinapi: 0,
                ask_price: seq as f64,
                ask_size: 1.0,
                bid_price: 1.0,
                bid_size: 1.0,
            }),
        )
    }

    #[test]
    fn conflate_keeps_the_newest_per_key_and_counts_the_rest() {
        let q = Queue::new(4, 1000, Overflow::Conflate, None);
        block_on(async {
            for seq in 0..10 {
                q.push(vec![quote("A", seq), quote("B", seq)]).await;
            }
        });
        let Pop::Batch(b) = q.pop(Some(Duration::ZERO)) else {
            panic!("expected a batch")
        };
        let Msg::Dropped { count, .. } = b[0].msg else {
            panic!("expected Dropped first, got {:?}", b[0].msg)
        };
        let delivered = b.len() as u64 - 1;
        assert_eq!(count + delivered, 20);
        let last: Vec<u64> = b[1..]
            .iter()
            .filter_map(|e| e.msg.sequence_key().map(|k| k.2))
            .collect();
        assert!(last.ends_with(&[9, 9]), "{last:?}");
    }

    #[test]
    fn conflate_never_drops_trades_and_blocks_instead() {
        let q = Queue::new(2, 1000, Overflow::Conflate, None);
        block_on(async { q.push(msgs(2)).await });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let blocked = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), q.push(msgs(1)))
                .await
                .is_err()
        });
        assert!(
            blocked,
            "a queue of non-state messages must block, not drop"
        );
        assert_eq!(q.stats.snapshot().dropped, 0);
    }

    #[test]
    fn block_waits_for_room() {
        let q = Queue::new(3, 10, Overflow::Block, None);
        block_on(async { q.push(msgs(3)).await });
        use std::future::Future as _;
        // Polled by hand: the second push is pending (no room) until a pop makes room.
        let waker = futures::task::noop_waker();
        let mut cx = std::task::Context::from_waker(&waker);
        let mut second = Box::pin(q.push(msgs(3)));
        assert!(
            second.as_mut().poll(&mut cx).is_pending(),
            "second push must wait"
        );
        assert_eq!(q.queued(), 3);
        assert!(matches!(q.pop(None), Pop::Batch(b) if b.len() == 3));
        assert_eq!(second.as_mut().poll(&mut cx), std::task::Poll::Ready(true));
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

    fn trade(sym: &str, seq: u64) -> Envelope {
        Envelope::event(
            0,
            Msg::Trade(crate::model::Trade {
                symbol_id: std::sync::Arc::from(sym),
                sequence: seq,
                time_exchange: 0,
                time_coinapi: 0,
                uuid: "u".into(),
                price: 1.0,
                size: 1.0,
                taker_side: std::sync::Arc::from("BUY"),
            }),
        )
    }

    fn gap(sym: &str, expected: u64, received: u64) -> Envelope {
        Envelope::event(
            0,
            Msg::Gap(crate::model::Gap {
                msg_type: "trade",
                key: std::sync::Arc::from(sym),
                expected,
                received,
            }),
        )
    }

    fn parse_error(raw: &str) -> Envelope {
        Envelope::event(
            0,
            Msg::ParseError {
                reason: "bad".into(),
                raw: raw.into(),
                count: 1,
            },
        )
    }

    fn drain(q: &Queue) -> Vec<Envelope> {
        let mut all = Vec::new();
        while let Some(Pop::Batch(b)) = q.try_pop() {
            all.extend(b);
        }
        all
    }

    #[test]
    fn a_gap_is_dropped_with_its_message_and_both_counted() {
        let q = Queue::new(3, 100, Overflow::DropOldest, None);
        block_on(async {
            q.push(vec![trade("A", 1), gap("A", 2, 5), trade("A", 5)])
                .await;
            // Two slots are needed: the trade goes, then the gap, which takes its message along.
            q.push(vec![trade("A", 6), trade("A", 7)]).await;
        });
        let got = drain(&q);
        let kinds: Vec<&str> = got.iter().map(|e| e.msg.type_name()).collect();
        assert_eq!(kinds, ["dropped", "trade", "trade"], "{got:?}");
        assert!(matches!(got[0].msg, Msg::Dropped { count: 3, .. }));
        assert_eq!(q.stats.snapshot().dropped, 3);
    }

    #[test]
    fn parse_errors_fold_into_the_first_of_their_run() {
        let q = Queue::new(100, 100, Overflow::Block, None);
        block_on(async {
            q.push(vec![parse_error("first"), parse_error("second")])
                .await;
            q.push(vec![parse_error("third")]).await;
            q.push(vec![trade("A", 1), parse_error("fourth")]).await;
        });
        let got = drain(&q);
        assert_eq!(got.len(), 3);
        assert!(matches!(&got[0].msg, Msg::ParseError { raw, count: 3, .. } if &**raw == "first"));
        assert!(matches!(&got[2].msg, Msg::ParseError { count: 1, .. }));
    }

    /// A stalled consumer under a flood (data, gaps, bad frames) finds one Dropped event, and
    /// every message is either delivered or counted.
    #[test]
    fn a_long_stall_leaves_one_dropped_event_and_exact_counts() {
        let q = Queue::new(1000, 64, Overflow::DropOldest, None);
        let mut pushed = 0u64;
        block_on(async {
            q.push(vec![Envelope::event(
                0,
                Msg::Connected {
                    url: "ws://x".into(),
                    attempt: 0,
                },
            )])
            .await;
            for round in 0..2000u64 {
                let mut items: Vec<Envelope> =
                    (0..50).map(|i| trade("A", round * 100 + i)).collect();
                items.push(gap("B", 1, 3));
                items.push(trade("B", 3));
                items.push(parse_error("x"));
                pushed += 53;
                q.push(items).await;
                assert!(q.queued() <= 1000 + 2);
            }
        });
        let got = drain(&q);
        let dropped_events: Vec<u64> = got
            .iter()
            .filter_map(|e| match e.msg {
                Msg::Dropped { count, .. } => Some(count),
                _ => None,
            })
            .collect();
        assert_eq!(dropped_events.len(), 1, "{dropped_events:?}");
        let delivered: u64 = got
            .iter()
            .map(|e| match e.msg {
                Msg::ParseError { count, .. } => count,
                Msg::Dropped { .. } | Msg::Connected { .. } => 0,
                _ => 1,
            })
            .sum();
        assert_eq!(delivered + dropped_events[0], pushed);
        assert_eq!(q.stats.snapshot().dropped, dropped_events[0]);
        assert!(matches!(got[0].msg, Msg::Connected { .. }));
    }

    #[test]
    fn the_byte_bound_holds_with_few_messages() {
        let big = "x".repeat(10_000);
        let q = Queue::with_max_bytes(1_000_000, 50_000, 100, Overflow::DropOldest, None);
        block_on(async {
            for _ in 0..100 {
                q.push(vec![Envelope::event(
                    0,
                    Msg::Unknown(crate::model::Unknown {
                        kind: "x".into(),
                        raw: big.as_str().into(),
                    }),
                )])
                .await;
                let (_, _, bytes) = q.depth();
                assert!(bytes <= 50_000, "{bytes}");
            }
        });
        let (queued, high, _) = q.depth();
        assert!(queued <= 5, "{queued}");
        assert!(high <= 6);
        // Blocking obeys the byte bound too: a push that does not fit waits.
        let b = Queue::with_max_bytes(1_000_000, 15_000, 100, Overflow::Block, None);
        let unknown = || {
            vec![Envelope::event(
                0,
                Msg::Unknown(crate::model::Unknown {
                    kind: "x".into(),
                    raw: big.as_str().into(),
                }),
            )]
        };
        block_on(async { b.push(unknown()).await });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let waited = rt.block_on(async {
            tokio::time::timeout(Duration::from_millis(50), b.push(unknown()))
                .await
                .is_err()
        });
        assert!(waited);
    }
}
