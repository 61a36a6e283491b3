//! The book store: every `book` / `book_l3` book of one stream, maintained from the batches
//! in the order the consumer receives them, with `BookReset` / `BookSynced` put into the batch
//! where they happen.
//!
//! - Snapshots gate updates: an update before its book's first snapshot, or while the book is
//!   invalid, is not applied (and is counted in [`BookStats::updates_dropped`]); the message
//!   itself is still delivered.
//! - A snapshot replaces the book; one that makes an invalid (or new) book valid is followed by
//!   `BookSynced`.
//! - A `Gap` on a book's stream, a book crossed by a message, and `Disconnected` make a valid
//!   book invalid: `BookReset` right after the `Gap` (so before the message that revealed it),
//!   right before the crossing message, right after `Disconnected`. An invalid book keeps the
//!   levels it had; it is valid again after its next snapshot.
//! - `Switched` (make-before-break, or a refresh): each book restarts from the successor's
//!   own snapshot, which the connection delivers advanced past the old connection's last
//!   message of that book, before any successor update of it (`feed::book_handover`). Until
//!   then a book keeps the old connection's state; the snapshot replaces a valid book quietly
//!   and makes an invalid one valid (`BookSynced`). A valid book whose first message after
//!   the switch is an update cannot be known to continue: `BookReset(reason="switch")`.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::{L2Book, L3Book};
use crate::model::{BookKind, Envelope, Key, Msg};

/// The maintained book types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BookType {
    /// `book`: full-depth L2.
    L2,
    /// `book_l3`: orders.
    L3,
}

impl BookType {
    /// The wire type.
    pub fn wire(self) -> &'static str {
        match self {
            BookType::L2 => "book",
            BookType::L3 => "book_l3",
        }
    }

    /// From the wire type; `book5`/`book20`/`book50` are snapshots already and not maintained.
    pub fn from_wire(s: &str) -> Option<Self> {
        match s {
            "book" => Some(BookType::L2),
            "book_l3" => Some(BookType::L3),
            _ => None,
        }
    }
}

/// Counters of the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BookStats {
    /// Updates applied to a valid book.
    pub updates_applied: u64,
    /// Updates not applied: before their book's first snapshot, or while it was invalid.
    pub updates_dropped: u64,
    /// Levels or orders that could not be one (negative or non-finite size or price, a
    /// reduction of an unknown order), skipped.
    pub bad_entries: u64,
    /// `BookReset` events put into batches.
    pub resets: u64,
    /// `BookSynced` events put into batches.
    pub synced: u64,
}

/// A book that went invalid while connected and needs fresh snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Resync {
    pub book_type: BookType,
    pub symbol_id: Key,
}

/// One maintained book of either type.
#[derive(Clone, Debug, PartialEq)]
pub enum AnyBook {
    L2(L2Book),
    L3(L3Book),
}

impl AnyBook {
    fn valid(&self) -> bool {
        match self {
            AnyBook::L2(b) => b.valid,
            AnyBook::L3(b) => b.valid,
        }
    }

    fn set_valid(&mut self, v: bool) {
        match self {
            AnyBook::L2(b) => b.valid = v,
            AnyBook::L3(b) => b.valid = v,
        }
    }
}

/// Every book of one stream.
///
/// Bound: one book per (type, symbol) the feed sent a snapshot for; each as large as the feed
/// lists (levels, live orders). The resync list holds at most one entry per book.
#[derive(Default)]
pub struct BookStore {
    books: HashMap<(BookType, Key), AnyBook, foldhash::fast::RandomState>,
    /// Books waiting, after a `Switched`, for their first message from the successor (at
    /// most one entry per book).
    pending_switch: HashSet<(BookType, Key), foldhash::fast::RandomState>,
    resync: Vec<Resync>,
    wanted: HashSet<(BookType, Key), foldhash::fast::RandomState>,
    pub stats: BookStats,
}

/// A book event to put into the batch at `at` (an index of the original batch; `len` for
/// the end).
struct Insert {
    at: usize,
    env: Envelope,
}

impl BookStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The book of `symbol_id`, if a snapshot for it ever arrived.
    pub fn get(&self, book_type: BookType, symbol_id: &str) -> Option<&AnyBook> {
        self.books.get(&(book_type, Key::from(symbol_id)))
    }

    /// The L2 book of `symbol_id`.
    pub fn l2(&self, symbol_id: &str) -> Option<&L2Book> {
        match self.get(BookType::L2, symbol_id) {
            Some(AnyBook::L2(b)) => Some(b),
            _ => None,
        }
    }

    /// The L3 book of `symbol_id`.
    pub fn l3(&self, symbol_id: &str) -> Option<&L3Book> {
        match self.get(BookType::L3, symbol_id) {
            Some(AnyBook::L3(b)) => Some(b),
            _ => None,
        }
    }

    /// Every book, by type then symbol.
    pub fn all(&self) -> Vec<(BookType, &Key, &AnyBook)> {
        let mut v: Vec<_> = self.books.iter().map(|((t, k), b)| (*t, k, b)).collect();
        v.sort_by(|a, b| (a.0, &**a.1).cmp(&(b.0, &**b.1)));
        v
    }

    /// Books that went invalid while connected since the last call (each once until it is
    /// valid again).
    pub fn take_resyncs(&mut self) -> Vec<Resync> {
        std::mem::take(&mut self.resync)
    }

    /// Whether the book is valid (false for an unknown book).
    pub fn is_valid(&self, book_type: BookType, symbol_id: &Key) -> bool {
        self.books
            .get(&(book_type, symbol_id.clone()))
            .is_some_and(AnyBook::valid)
    }

    fn reset(
        &mut self,
        id: &(BookType, Key),
        reason: &'static str,
        at: usize,
        recv_ns: i64,
        resync: bool,
        out: &mut Vec<Insert>,
    ) {
        let Some(book) = self.books.get_mut(id) else {
            return;
        };
        self.pending_switch.remove(id);
        if !book.valid() {
            return;
        }
        book.set_valid(false);
        self.stats.resets += 1;
        out.push(Insert {
            at,
            env: Envelope::event(
                recv_ns,
                Msg::BookReset {
                    book_type: id.0.wire(),
                    symbol_id: id.1.clone(),
                    reason,
                },
            ),
        });
        if resync {
            self.want(id);
        }
    }

    fn want(&mut self, id: &(BookType, Key)) {
        if self.wanted.insert(id.clone()) {
            self.resync.push(Resync {
                book_type: id.0,
                symbol_id: id.1.clone(),
            });
        }
    }

    fn synced(&mut self, id: &(BookType, Key), at: usize, recv_ns: i64, out: &mut Vec<Insert>) {
        self.wanted.remove(id);
        self.stats.synced += 1;
        out.push(Insert {
            at,
            env: Envelope::event(
                recv_ns,
                Msg::BookSynced {
                    book_type: id.0.wire(),
                    symbol_id: id.1.clone(),
                },
            ),
        });
    }

    /// One book message at index `i`.
    fn on_book(
        &mut self,
        id: (BookType, Key),
        snapshot: bool,
        i: usize,
        env: &Envelope,
        out: &mut Vec<Insert>,
    ) {
        let recv_ns = env.recv_ns;
        if self.pending_switch.remove(&id) && !snapshot {
            // Not anchored in a snapshot of the new connection.
            self.reset(&id, "switch", i, recv_ns, true, out);
        }
        if snapshot {
            let book = self.books.entry(id.clone()).or_insert_with(|| match id.0 {
                BookType::L2 => AnyBook::L2(L2Book::default()),
                BookType::L3 => AnyBook::L3(L3Book::default()),
            });
            let was_valid = book.valid();
            let (bad, crossed) = match (book, &env.msg) {
                (AnyBook::L2(b), Msg::Book(m)) => {
                    let bad = b.snapshot(&m.bids, &m.asks);
                    b.sequence = m.sequence;
                    b.time_exchange = m.time_exchange;
                    (bad, b.crossed())
                }
                (AnyBook::L3(b), Msg::BookL3(m)) => {
                    let bad = b.snapshot(&m.bids, &m.asks);
                    b.sequence = m.sequence;
                    b.time_exchange = m.time_exchange;
                    (bad, b.crossed())
                }
                _ => return,
            };
            self.stats.bad_entries += bad;
            if crossed {
                self.reset(&id, "crossed", i, recv_ns, true, out);
                self.want(&id);
            } else if !was_valid {
                if let Some(b) = self.books.get_mut(&id) {
                    b.set_valid(true);
                }
                self.synced(&id, i + 1, recv_ns, out);
            }
            return;
        }
        let Some(book) = self.books.get_mut(&id).filter(|b| b.valid()) else {
            self.stats.updates_dropped += 1;
            return;
        };
        let (bad, crossed) = match (book, &env.msg) {
            (AnyBook::L2(b), Msg::Book(m)) => {
                let bad = b.update(&m.bids, &m.asks);
                b.sequence = m.sequence;
                b.time_exchange = m.time_exchange;
                (bad, b.crossed())
            }
            (AnyBook::L3(b), Msg::BookL3(m)) => {
                let bad = b.update(&m.bids, &m.asks);
                b.sequence = m.sequence;
                b.time_exchange = m.time_exchange;
                (bad, b.crossed())
            }
            _ => return,
        };
        self.stats.updates_applied += 1;
        self.stats.bad_entries += bad;
        if crossed {
            self.reset(&id, "crossed", i, recv_ns, true, out);
        }
    }

    /// Maintains the books from `items` (one batch, in order) and puts the book events into
    /// it where they happen.
    pub fn apply(&mut self, items: &mut Vec<Envelope>) {
        let mut out: Vec<Insert> = Vec::new();
        for (i, env) in items.iter().enumerate() {
            match &env.msg {
                Msg::Book(b) if b.kind == BookKind::Full => {
                    let id = (BookType::L2, b.symbol_id.clone());
                    self.on_book(id, b.is_snapshot, i, env, &mut out);
                }
                Msg::BookL3(b) => {
                    let id = (BookType::L3, b.symbol_id.clone());
                    self.on_book(id, b.is_snapshot, i, env, &mut out);
                }
                Msg::Gap(g) => {
                    if let Some(t) = BookType::from_wire(g.msg_type) {
                        let id = (t, g.key.clone());
                        self.reset(&id, "gap", i + 1, env.recv_ns, true, &mut out);
                    }
                }
                Msg::Disconnected { .. } => {
                    // The next connection starts every book with a snapshot of its own.
                    let mut ids: Vec<_> = self
                        .books
                        .iter()
                        .filter(|(_, b)| b.valid())
                        .map(|(id, _)| id.clone())
                        .collect();
                    ids.sort();
                    for id in ids {
                        self.reset(&id, "disconnected", i + 1, env.recv_ns, false, &mut out);
                    }
                    self.pending_switch.clear();
                    // Resyncs asked of the old connection are moot.
                    self.wanted.clear();
                    self.resync.clear();
                }
                Msg::Switched { .. } => {
                    self.pending_switch = self
                        .books
                        .iter()
                        .filter(|(_, b)| b.valid())
                        .map(|(id, _)| id.clone())
                        .collect();
                }
                _ => {}
            }
        }
        if out.is_empty() {
            return;
        }
        let old = std::mem::take(items);
        items.reserve(old.len() + out.len());
        let mut ins = out.into_iter().peekable();
        for (i, env) in old.into_iter().enumerate() {
            while let Some(x) = ins.next_if(|x| x.at <= i) {
                items.push(x.env);
            }
            items.push(env);
        }
        items.extend(ins.map(|x| x.env));
    }

    /// A resync request is no longer outstanding (it was refused or given up).
    pub fn forget_resync(&mut self, book_type: BookType, symbol_id: &Key) {
        self.wanted.remove(&(book_type, symbol_id.clone()));
    }
}

/// Paces resyncs: per book, attempts back off from `initial` by `factor` up to `max`; across
/// books at most `burst` start within any `window`. State: one entry per book that needed a
/// resync, dropped once it is valid again.
#[derive(Debug)]
pub struct ResyncLimiter {
    initial: Duration,
    max: Duration,
    factor: u32,
    burst: usize,
    window: Duration,
    per_book: HashMap<(BookType, Key), (u32, Instant), foldhash::fast::RandomState>,
    recent: std::collections::VecDeque<Instant>,
    /// Requests waiting for their turn.
    waiting: Vec<Resync>,
}

impl Default for ResyncLimiter {
    fn default() -> Self {
        ResyncLimiter::new(
            Duration::from_millis(200),
            Duration::from_secs(30),
            2,
            10,
            Duration::from_secs(1),
        )
    }
}

impl ResyncLimiter {
    pub fn new(
        initial: Duration,
        max: Duration,
        factor: u32,
        burst: usize,
        window: Duration,
    ) -> Self {
        ResyncLimiter {
            initial,
            max,
            factor: factor.max(1),
            burst: burst.max(1),
            window,
            per_book: HashMap::default(),
            recent: std::collections::VecDeque::new(),
            waiting: Vec::new(),
        }
    }

    /// Takes new requests, drops those whose book is valid again, and returns those whose
    /// turn has come at `now`.
    pub fn due(
        &mut self,
        now: Instant,
        new: Vec<Resync>,
        still_needed: impl Fn(&Resync) -> bool,
    ) -> Vec<Resync> {
        for r in new {
            if !self.waiting.contains(&r) {
                self.waiting.push(r);
            }
        }
        self.per_book.retain(|(t, k), _| {
            still_needed(&Resync {
                book_type: *t,
                symbol_id: k.clone(),
            })
        });
        self.waiting.retain(&still_needed);
        // A resync whose backoff ran out with the book still invalid goes again.
        for ((t, k), (_, at)) in &self.per_book {
            let r = Resync {
                book_type: *t,
                symbol_id: k.clone(),
            };
            if now >= *at && !self.waiting.contains(&r) {
                self.waiting.push(r);
            }
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.recent.pop_front();
        }
        let mut go = Vec::new();
        let mut i = 0;
        while i < self.waiting.len() {
            if self.recent.len() >= self.burst {
                break;
            }
            let id = (self.waiting[i].book_type, self.waiting[i].symbol_id.clone());
            let ready = self.per_book.get(&id).is_none_or(|(_, at)| now >= *at);
            if ready {
                let n = self.per_book.get(&id).map_or(0, |(n, _)| *n);
                let wait = self
                    .initial
                    .saturating_mul(self.factor.saturating_pow(n))
                    .min(self.max);
                self.per_book.insert(id, (n.saturating_add(1), now + wait));
                self.recent.push_back(now);
                go.push(self.waiting.remove(i));
            } else {
                i += 1;
            }
        }
        go
    }

    /// Books with a resync sent and not yet valid.
    pub fn in_flight(&self) -> impl Iterator<Item = (BookType, &Key, Instant)> {
        self.per_book.iter().map(|((t, k), (_, at))| (*t, k, *at))
    }
}

/// Paces refreshes, the resync of books in a filtered scope: a new connection with the same
/// scope whose fresh snapshots replace every book. At most one refresh per `interval`; the
/// interval starts at `initial` and doubles (up to `max`) each time a refresh is asked for
/// while the previous one has not completed (no `Switched` or `Connected` since), and goes
/// back to `initial` when one completes. Constant state.
#[derive(Debug)]
pub struct RefreshGate {
    initial: Duration,
    max: Duration,
    interval: Duration,
    next: Option<Instant>,
    outstanding: bool,
}

impl Default for RefreshGate {
    fn default() -> Self {
        RefreshGate::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl RefreshGate {
    pub fn new(initial: Duration, max: Duration) -> Self {
        RefreshGate {
            initial,
            max: max.max(initial),
            interval: initial,
            next: None,
            outstanding: false,
        }
    }

    /// Whether to ask for a refresh at `now`, given whether a book needs one.
    pub fn due(&mut self, now: Instant, needed: bool) -> bool {
        if !needed || self.next.is_some_and(|t| now < t) {
            return false;
        }
        if self.outstanding {
            self.interval = self.interval.saturating_mul(2).min(self.max);
        }
        self.outstanding = true;
        self.next = Some(now + self.interval);
        true
    }

    /// A new connection took over (a switch or a reconnect): the last refresh completed.
    pub fn completed(&mut self) {
        self.outstanding = false;
        self.interval = self.initial;
    }

    /// The wait after the latest refresh.
    pub fn interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Book, BookL3, Gap, L3Entry, Level};
    use std::sync::Arc;

    fn key(s: &str) -> Key {
        Arc::from(s)
    }

    fn book(sym: &str, seq: u64, snap: bool, bids: &[Level], asks: &[Level]) -> Envelope {
        Envelope::event(
            seq as i64,
            Msg::Book(Book {
                kind: BookKind::Full,
                symbol_id: key(sym),
                sequence: seq,
                time_exchange: seq as i64 * 10,
                time_coinapi: 0,
                is_snapshot: snap,
                asks: asks.to_vec(),
                bids: bids.to_vec(),
            }),
        )
    }

    fn gap(sym: &str, t: &'static str) -> Envelope {
        Envelope::event(
            0,
            Msg::Gap(Gap {
                msg_type: t,
                key: key(sym),
                expected: 1,
                received: 3,
            }),
        )
    }

    fn types(items: &[Envelope]) -> Vec<String> {
        items
            .iter()
            .map(|e| match &e.msg {
                Msg::BookReset { reason, .. } => format!("reset:{reason}"),
                m => m.type_name().to_string(),
            })
            .collect()
    }

    #[test]
    fn snapshots_gate_updates_and_events_land_in_place() {
        let mut s = BookStore::new();
        let mut b = vec![
            book("X", 1, false, &[(1.0, 1.0)], &[]),
            book("X", 2, true, &[(9.0, 1.0)], &[(11.0, 1.0)]),
            book("X", 3, false, &[(10.0, 2.0)], &[]),
        ];
        s.apply(&mut b);
        assert_eq!(types(&b), ["book", "book", "book_synced", "book"]);
        assert_eq!(s.stats.updates_dropped, 1);
        let x = s.l2("X").expect("book");
        assert!(x.valid);
        assert_eq!(x.sequence, 3);
        assert_eq!(x.time_exchange, 30);
        assert_eq!(x.bids.best(), Some((10.0, 2.0)));

        // Gap: reset after the gap, before the revealing update, which is not applied.
        let mut b = vec![gap("X", "book"), book("X", 5, false, &[(10.0, 0.0)], &[])];
        s.apply(&mut b);
        assert_eq!(types(&b), ["gap", "reset:gap", "book"]);
        let x = s.l2("X").expect("book");
        assert!(!x.valid);
        assert_eq!(x.bids.best(), Some((10.0, 2.0)), "stale levels kept");
        assert_eq!(s.take_resyncs().len(), 1);
        assert!(s.take_resyncs().is_empty(), "asked once");

        // A snapshot mid-stream replaces the book (no ghost levels) and syncs it.
        let mut b = vec![book("X", 6, true, &[(8.0, 1.0)], &[(12.0, 1.0)])];
        s.apply(&mut b);
        assert_eq!(types(&b), ["book", "book_synced"]);
        let x = s.l2("X").expect("book");
        assert_eq!(x.bids.iter().copied().collect::<Vec<_>>(), vec![(8.0, 1.0)]);
        // A snapshot of a valid book replaces it quietly.
        let mut b = vec![book("X", 7, true, &[(8.5, 1.0)], &[(12.0, 1.0)])];
        s.apply(&mut b);
        assert_eq!(types(&b), ["book"]);
    }

    #[test]
    fn crossing_disconnect_and_other_types() {
        let mut s = BookStore::new();
        let mut b = vec![
            book("X", 1, true, &[(9.0, 1.0)], &[(11.0, 1.0)]),
            book("Y", 1, true, &[(9.0, 1.0)], &[(11.0, 1.0)]),
            gap("X", "trade"),
            book("X", 2, false, &[(11.0, 1.0)], &[]),
        ];
        s.apply(&mut b);
        assert_eq!(
            types(&b),
            [
                "book",
                "book_synced",
                "book",
                "book_synced",
                "gap",
                "reset:crossed",
                "book"
            ]
        );
        assert!(!s.l2("X").expect("X").valid);
        let mut b = vec![Envelope::event(
            0,
            Msg::Disconnected {
                reason: "x".into(),
                code: None,
            },
        )];
        s.apply(&mut b);
        assert_eq!(types(&b), ["disconnected", "reset:disconnected"]);
        assert!(!s.l2("Y").expect("Y").valid);
        // book5 is a snapshot type of its own and is not maintained.
        let mut top = book("Z", 1, true, &[(1.0, 1.0)], &[]);
        if let Msg::Book(b) = &mut top.msg {
            b.kind = BookKind::Top5;
        }
        s.apply(&mut vec![top]);
        assert!(s.l2("Z").is_none());
    }

    #[test]
    fn switch_takes_successor_snapshots_whenever_they_come_and_resets_on_an_update() {
        let mut s = BookStore::new();
        let mut b = vec![
            book("A", 1, true, &[(9.0, 1.0)], &[(11.0, 1.0)]),
            book("B", 1, true, &[(9.0, 1.0)], &[(11.0, 1.0)]),
            book("C", 1, true, &[(9.0, 1.0)], &[(11.0, 1.0)]),
            book("D", 1, true, &[(9.0, 1.0)], &[(11.0, 1.0)]),
            gap("D", "book"),
        ];
        s.apply(&mut b);
        assert!(!s.l2("D").expect("D").valid);
        s.take_resyncs();
        let mut b = vec![
            Envelope::event(
                0,
                Msg::Switched {
                    held: 2,
                    overlap_dropped: 0,
                },
            ),
            book("A", 70, true, &[(9.5, 1.0)], &[(11.0, 1.0)]),
            book("B", 90, false, &[(9.0, 2.0)], &[]),
            book("D", 40, true, &[(9.25, 1.0)], &[(11.0, 1.0)]),
        ];
        s.apply(&mut b);
        assert_eq!(
            types(&b),
            [
                "switched",
                "book",
                "reset:switch",
                "book",
                "book",
                "book_synced"
            ]
        );
        let a = s.l2("A").expect("A");
        assert!(a.valid);
        assert_eq!((a.sequence, a.bids.best()), (70, Some((9.5, 1.0))));
        assert_eq!(
            s.l2("B").expect("B").bids.best(),
            Some((9.0, 1.0)),
            "not applied"
        );
        assert!(!s.l2("B").expect("B").valid);
        assert!(
            s.l2("D").expect("D").valid,
            "the successor's snapshot heals"
        );
        // C's snapshot comes in a later batch (the connection advances it first): C keeps
        // the old connection's state meanwhile and takes the snapshot quietly.
        assert!(s.l2("C").expect("C").valid);
        let mut b = vec![book("C", 33, true, &[(9.75, 1.0)], &[(11.0, 1.0)])];
        s.apply(&mut b);
        assert_eq!(types(&b), ["book"]);
        assert_eq!(s.l2("C").expect("C").sequence, 33);
        let r: Vec<String> = s
            .take_resyncs()
            .iter()
            .map(|r| r.symbol_id.to_string())
            .collect();
        assert_eq!(r, ["B"]);
    }

    #[test]
    fn l3_books_are_kept_apart_from_l2() {
        let mut s = BookStore::new();
        let entry = |id: &str, p: f64, sz: f64, t: Option<&str>| L3Entry {
            id: Some(id.into()),
            price: p,
            size: sz,
            update_type: t.map(Arc::from),
        };
        let l3 = |seq: u64, snap: bool, bids: Vec<L3Entry>| {
            Envelope::event(
                0,
                Msg::BookL3(Box::new(BookL3 {
                    symbol_id: key("X"),
                    sequence: seq,
                    time_exchange: 0,
                    time_coinapi: 0,
                    is_snapshot: snap,
                    asks: vec![entry("s", 20.0, 1.0, None)],
                    bids,
                })),
            )
        };
        let mut b = vec![
            l3(1, true, vec![entry("a", 10.0, 1.0, None)]),
            l3(2, false, vec![entry("b", 10.0, 2.0, Some("ADD"))]),
            gap("X", "book"),
        ];
        s.apply(&mut b);
        assert_eq!(types(&b), ["book_l3", "book_synced", "book_l3", "gap"]);
        let x = s.l3("X").expect("l3");
        assert_eq!(x.bids.best(), Some((10.0, 3.0)));
        assert_eq!(x.order_count(), 3);
        assert!(s.l2("X").is_none());
    }

    #[test]
    fn refreshes_are_spaced_and_back_off_until_one_completes() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut g = RefreshGate::new(s(1), s(4));
        assert!(!g.due(t0, false), "nothing needs one");
        assert!(g.due(t0, true));
        assert!(!g.due(t0 + Duration::from_millis(999), true));
        // Not completed: 2 s, then 4 s (the cap), then 4 s.
        assert!(g.due(t0 + s(1), true));
        assert_eq!(g.interval(), s(2));
        assert!(!g.due(t0 + Duration::from_millis(2999), true));
        assert!(g.due(t0 + s(3), true));
        assert_eq!(g.interval(), s(4));
        assert!(g.due(t0 + s(7), true));
        assert_eq!(g.interval(), s(4));
        // One completes: back to 1 s after the current wait.
        g.completed();
        assert!(!g.due(t0 + s(10), true));
        assert!(g.due(t0 + s(11), true));
        assert_eq!(g.interval(), s(1));
        assert!(g.due(t0 + s(12), true));
    }

    #[test]
    fn limiter_backs_off_per_book_and_caps_bursts() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let r = |s: &str| Resync {
            book_type: BookType::L2,
            symbol_id: key(s),
        };
        let all = |_: &Resync| true;
        let mut l = ResyncLimiter::new(ms(1000), ms(4000), 2, 2, ms(1000));
        assert_eq!(
            l.due(t0, vec![r("A"), r("B"), r("C")], all).len(),
            2,
            "burst cap"
        );
        assert!(l.due(t0 + ms(10), vec![], all).is_empty());
        assert_eq!(l.due(t0 + ms(999), vec![], all).len(), 0);

        // Backoff alone (no burst cap in the way): 1 s, then 2 s, then 4 s (the cap).
        let mut l = ResyncLimiter::new(ms(1000), ms(4000), 2, 100, ms(1000));
        assert_eq!(l.due(t0, vec![r("A")], all), vec![r("A")]);
        assert!(
            l.due(t0 + ms(999), vec![r("A")], all).is_empty(),
            "asked again: waits"
        );
        assert_eq!(l.due(t0 + ms(1000), vec![], all), vec![r("A")]);
        assert!(l.due(t0 + ms(2999), vec![], all).is_empty());
        assert_eq!(l.due(t0 + ms(3000), vec![], all), vec![r("A")]);
        assert!(l.due(t0 + ms(6999), vec![], all).is_empty());
        assert_eq!(l.due(t0 + ms(7000), vec![], all), vec![r("A")]);
        // Valid again: forgotten, and a later loss starts from the first delay.
        let none = |_: &Resync| false;
        assert!(l.due(t0 + ms(8000), vec![], none).is_empty());
        assert_eq!(l.in_flight().count(), 0);
        assert_eq!(l.due(t0 + ms(8001), vec![r("A")], all), vec![r("A")]);
        assert_eq!(l.due(t0 + ms(9001), vec![], all).len(), 1);
    }
}
