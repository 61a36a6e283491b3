//! Book streams (`book`, `book_l3`) across a switch to a successor connection.
//!
//! Each book restarts from the successor's own snapshot, but that snapshot can be older than
//! what the old connection already delivered: delivering it and the successor's updates after
//! it would repeat updates, and dropping the repeated updates alone would lose them from the
//! book the snapshot starts. So the successor's messages of a book are not delivered as they
//! come: its snapshot is advanced by its updates up to the old connection's last delivered
//! message of that book (matched by identity: type, symbol, `time_exchange`, `time_coinapi`)
//! and delivered then, as one snapshot; its later updates follow. What the consumer sees of
//! each book is the old connection's messages, then one snapshot from the successor (the
//! sequence and times of the last message folded into it; `raw` is `None` when it was
//! advanced), then the successor's updates the old connection did not deliver.
//!
//! - A snapshot newer than anything the old connection delivered (its next update is not one
//!   the old connection delivered) is delivered as it is, followed by what follows it. If that
//!   update was one the old connection lost (its `Gap` came before), the updates after it that
//!   the old connection did deliver are delivered again: the snapshot's book needs them.
//! - Updates before a book's successor snapshot are dropped.
//! - A gap in the successor's stream while a snapshot is being advanced spoils it: the `Gap`
//!   is delivered (the book is reset and resynchronised), the advanced snapshot is dropped,
//!   and the successor's messages the old connection delivered are still dropped.
//! - Bound: one entry per book stream either connection carried, each holding one book until
//!   its snapshot is delivered; a snapshot is advanced by at most `limit` updates, then
//!   delivered as it stands (the updates after it may then repeat the old connection's). The
//!   hand-over ends after `limit` messages of the new connection: a snapshot still held then
//!   (a book quiet since) is delivered as it stands, and books still without one are left to
//!   the consumer's rule (an update first after a switch resets the book).

use std::collections::{HashMap, HashSet};

use super::machine::{identity, Identity};
use crate::book::{AnyBook, L2Book, L3Book};
use crate::model::{Book, BookKind, BookL3, Envelope, Key, Msg};

/// A maintained book stream: wire type and symbol.
pub(crate) type BookId = (&'static str, Key);

/// The maintained-book stream a message belongs to, with whether it is a snapshot.
pub(crate) fn book_stream(msg: &Msg) -> Option<(BookId, bool)> {
    match msg {
        Msg::Book(b) if b.kind == BookKind::Full => {
            Some((("book", b.symbol_id.clone()), b.is_snapshot))
        }
        Msg::BookL3(b) => Some((("book_l3", b.symbol_id.clone()), b.is_snapshot)),
        _ => None,
    }
}

/// Where a book's successor stream is in the hand-over.
enum Hand {
    /// No successor snapshot yet.
    AwaitSnapshot,
    /// The successor's snapshot (`first`, as received) and the book it has been advanced to.
    /// (Boxed: these are large next to the other states.)
    Advancing {
        first: Box<Envelope>,
        book: Box<AnyBook>,
        /// The last message folded in (its sequence and times stamp the snapshot delivered).
        last: Option<Box<Envelope>>,
        folded: usize,
        /// A message the old connection delivered has been met: the snapshot was behind.
        behind: bool,
    },
    /// A gap spoiled the advance: drop what the old connection delivered, pass the rest.
    Skipping,
}

struct Entry {
    hand: Hand,
    /// The old connection's last delivered message of this book.
    target: Option<Identity>,
}

/// The hand-over of every book stream after one switch.
#[derive(Default)]
pub(crate) struct BookHandover {
    books: HashMap<BookId, Entry>,
    /// Identities of the book messages the old connection delivered since the notice.
    seen: HashSet<Identity>,
    limit: usize,
    /// Messages passed through so far.
    passed: usize,
    /// Successor messages not delivered (repeats, folded into a snapshot, before a snapshot).
    pub dropped: u64,
}

impl BookHandover {
    /// `streams`: every book stream either connection carried since the notice, with the
    /// old connection's last delivered message of it; `seen`: what the old one delivered.
    pub(crate) fn new(
        streams: impl IntoIterator<Item = (BookId, Option<Identity>)>,
        seen: &HashSet<Identity>,
        limit: usize,
    ) -> Self {
        let books: HashMap<BookId, Entry> = streams
            .into_iter()
            .map(|(id, target)| {
                (
                    id,
                    Entry {
                        hand: Hand::AwaitSnapshot,
                        target,
                    },
                )
            })
            .collect();
        let seen = if books.is_empty() {
            HashSet::new()
        } else {
            seen.iter()
                .filter(|i| matches!(i, Identity::Other("book" | "book_l3", ..)))
                .cloned()
                .collect()
        };
        BookHandover {
            books,
            seen,
            limit: limit.max(1),
            passed: 0,
            dropped: 0,
        }
    }

    /// Nothing left to hand over.
    pub(crate) fn is_done(&self) -> bool {
        self.books.is_empty()
    }

    /// Whether the hand-over has run its course (see the module's bound); then call
    /// [`BookHandover::finish`].
    pub(crate) fn expired(&self) -> bool {
        self.passed >= self.limit
    }

    /// Ends the hand-over: snapshots still held are delivered as they stand.
    pub(crate) fn finish(&mut self, out: &mut Vec<Envelope>) {
        let mut held: Vec<(BookId, Entry)> = self.books.drain().collect();
        held.sort_by(|a, b| a.0.cmp(&b.0));
        for (id, e) in held {
            if let Hand::Advancing {
                first, book, last, ..
            } = e.hand
            {
                log::warn!(
                    "book hand-over: the {} book of {} is delivered as it stands (nothing newer \
                     came from the new connection)",
                    id.0,
                    id.1
                );
                match advanced(&book, last.as_deref()) {
                    Some(snap) => out.push(snap),
                    None => out.push(*first),
                }
            }
        }
    }

    /// Passes one successor message on to `out`, holds it, or drops it.
    pub(crate) fn pass(&mut self, env: Envelope, out: &mut Vec<Envelope>) {
        self.passed += 1;
        if let Msg::Gap(g) = &env.msg {
            if let Some(e) = self.books.get_mut(&(g.msg_type, g.key.clone())) {
                if matches!(e.hand, Hand::Advancing { .. }) {
                    e.hand = Hand::Skipping;
                }
            }
            out.push(env);
            return;
        }
        let Some((id, snapshot)) = book_stream(&env.msg) else {
            out.push(env);
            return;
        };
        let Some(entry) = self.books.get_mut(&id) else {
            out.push(env);
            return;
        };
        let ident = identity(&env.msg);
        let is_target = ident.is_some() && ident == entry.target;
        let in_seen = ident.as_ref().is_some_and(|i| self.seen.contains(i));
        match &mut entry.hand {
            Hand::AwaitSnapshot => {
                if !snapshot {
                    self.dropped += 1;
                } else if entry.target.is_none() || is_target {
                    // Nothing of the old connection's to fold in.
                    self.books.remove(&id);
                    out.push(env);
                } else if let Some(book) = start(&env.msg) {
                    entry.hand = Hand::Advancing {
                        first: Box::new(env),
                        book: Box::new(book),
                        last: None,
                        folded: 0,
                        behind: in_seen,
                    };
                } else {
                    out.push(env);
                }
            }
            Hand::Advancing {
                first,
                book,
                last,
                folded,
                behind,
            } => {
                if !*behind && !in_seen {
                    // The snapshot was at least as new as the old connection's deliveries.
                    let first = std::mem::replace(&mut **first, Envelope::event(0, Msg::Heartbeat));
                    self.books.remove(&id);
                    out.push(first);
                    out.push(env);
                    return;
                }
                *behind = true;
                fold(book, &env.msg);
                *folded += 1;
                self.dropped += 1;
                *last = Some(Box::new(env));
                if is_target || *folded >= self.limit {
                    if !is_target {
                        log::warn!(
                            "book hand-over: the {} book of {} was advanced {} times without \
                             meeting the old connection's last message; delivered as it stands",
                            id.0,
                            id.1,
                            folded
                        );
                    }
                    let snap = advanced(book, last.as_deref());
                    // The successor's own snapshot is not delivered either.
                    self.dropped += 1;
                    self.books.remove(&id);
                    out.extend(snap);
                }
            }
            Hand::Skipping => {
                if in_seen {
                    self.dropped += 1;
                    if is_target {
                        self.books.remove(&id);
                    }
                } else {
                    self.books.remove(&id);
                    out.push(env);
                }
            }
        }
    }
}

/// A book started from a snapshot message.
fn start(msg: &Msg) -> Option<AnyBook> {
    let mut b = match msg {
        Msg::Book(_) => AnyBook::L2(L2Book::default()),
        Msg::BookL3(_) => AnyBook::L3(L3Book::default()),
        _ => return None,
    };
    fold(&mut b, msg);
    Some(b)
}

/// Applies a snapshot or an update.
fn fold(book: &mut AnyBook, msg: &Msg) {
    match (book, msg) {
        (AnyBook::L2(b), Msg::Book(m)) if m.is_snapshot => {
            b.snapshot(&m.bids, &m.asks);
        }
        (AnyBook::L2(b), Msg::Book(m)) => {
            b.update(&m.bids, &m.asks);
        }
        (AnyBook::L3(b), Msg::BookL3(m)) if m.is_snapshot => {
            b.snapshot(&m.bids, &m.asks);
        }
        (AnyBook::L3(b), Msg::BookL3(m)) => {
            b.update(&m.bids, &m.asks);
        }
        _ => {}
    }
}

/// The advanced book as one snapshot message, stamped as the last message folded into it.
fn advanced(book: &AnyBook, last: Option<&Envelope>) -> Option<Envelope> {
    let last = last?;
    let msg = match (book, &last.msg) {
        (AnyBook::L2(b), Msg::Book(m)) => {
            let (bids, asks) = b.to_snapshot();
            Msg::Book(Book {
                kind: BookKind::Full,
                symbol_id: m.symbol_id.clone(),
                sequence: m.sequence,
                time_exchange: m.time_exchange,
                time_coinapi: m.time_coinapi,
                is_snapshot: true,
                asks,
                bids,
            })
        }
        (AnyBook::L3(b), Msg::BookL3(m)) => {
            let (bids, asks) = b.to_snapshot();
            Msg::BookL3(Box::new(BookL3 {
                symbol_id: m.symbol_id.clone(),
                sequence: m.sequence,
                time_exchange: m.time_exchange,
                time_coinapi: m.time_coinapi,
                is_snapshot: true,
                asks,
                bids,
            }))
        }
        _ => return None,
    };
    Some(Envelope::event(last.recv_ns, msg))
}

/// The hand-over driven through the connection machine, with time passed in.
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::book::{BookStore, L2Book};
    use crate::feed::machine::{
        Action, Clock, Input, Machine, OnNotice, Request, Settings, State, Wire,
    };
    use crate::feed::msgnum::MsgNumberTracker;
    use crate::model::{Envelope, Level, Msg};
    use crate::protocol::coinapi::{CoinApiSession, Scope};
    use crate::protocol::Session;

    const BASE_NS: i64 = 1_893_456_000 * 1_000_000_000;

    fn at(ms: u64) -> Clock {
        Clock {
            mono: Duration::from_millis(ms),
            wall_ns: BASE_NS + i64::try_from(ms).unwrap() * 1_000_000,
        }
    }

    fn machine() -> Machine {
        machine_holding_at_most(1000)
    }

    fn machine_holding_at_most(hold_limit: usize) -> Machine {
        let session = Session::CoinApi(CoinApiSession::new(Scope {
            data_types: vec!["book".into()],
            exchanges: vec!["EX".into()],
            heartbeat: true,
            ..Scope::default()
        }));
        let settings = Settings {
            heartbeat_timeout: Some(Duration::from_secs(30)),
            ping_timeout: None,
            connect_timeout: Duration::from_secs(10),
            on_notice: OnNotice::MakeBeforeBreak,
            hold_limit,
            batch_size: 1024,
            keep_raw: false,
            shown_url: "ws://127.0.0.1:1/v1/".into(),
            attempt: 0,
            answer_expected: true,
        };
        let mut m = Machine::new(session, settings, MsgNumberTracker::default(), at(0));
        drain(&mut m);
        m
    }

    /// The exchange's book after its `n`th change (change 0 is the starting book): change
    /// `n` sets the bid at `100 - n % 7` to size `n`, and removes the ask at `200 + n % 5`
    /// when `n` is a multiple of 3.
    fn change(n: u64) -> (Vec<Level>, Vec<Level>) {
        if n == 0 {
            let bids = (1..=7).map(|i| (100.0 - f64::from(i), 1.0)).collect();
            let asks = (0..5).map(|i| (200.0 + f64::from(i), 1.0)).collect();
            return (bids, asks);
        }
        let bids = vec![(100.0 - (n % 7) as f64, n as f64)];
        let asks = if n.is_multiple_of(3) {
            vec![(200.0 + (n % 5) as f64, 0.0)]
        } else {
            vec![]
        };
        (bids, asks)
    }

    fn truth(upto: u64) -> L2Book {
        let mut b = L2Book::default();
        let (bids, asks) = change(0);
        b.snapshot(&bids, &asks);
        for n in 1..=upto {
            let (bids, asks) = change(n);
            b.update(&bids, &asks);
        }
        b
    }

    fn levels(v: &[Level]) -> String {
        let parts: Vec<String> = v
            .iter()
            .map(|(p, s)| format!(r#"{{"price":{p},"size":{s}}}"#))
            .collect();
        format!("[{}]", parts.join(","))
    }

    /// The `book` message of change `n` with sequence `seq`: an update, or a snapshot of the
    /// book after it (as a new subscription gets it: stamped with that change's times).
    fn frame(n: u64, seq: u64, snapshot: bool) -> String {
        let (bids, asks) = if snapshot {
            let b = truth(n);
            b.to_snapshot()
        } else {
            change(n)
        };
        let t = format!("2030-01-01T00:00:00.{:03}0000Z", n);
        format!(
            r#"{{"type":"book","symbol_id":"EX_SPOT_A_B","sequence":{seq},"time_exchange":"{t}","time_coinapi":"{t}","is_snapshot":{snapshot},"asks":{},"bids":{}}}"#,
            levels(&asks),
            levels(&bids)
        )
    }

    fn drain(m: &mut Machine) -> Vec<Action> {
        std::iter::from_fn(|| m.poll()).collect()
    }

    fn burst(m: &mut Machine, wire: Wire, frames: &[String], ms: u64) -> Vec<Envelope> {
        for f in frames {
            if !m.on_frame(wire, Input::Data(f.as_bytes()), at(ms)) {
                break;
            }
        }
        m.end_burst(at(ms));
        delivered(drain(m))
    }

    fn delivered(actions: Vec<Action>) -> Vec<Envelope> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Deliver(b) => Some(b),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// `(change, is_snapshot)` of each delivered book message (the change is read back from
    /// the time).
    fn book_changes(items: &[Envelope]) -> Vec<(u64, bool)> {
        items
            .iter()
            .filter_map(|e| match &e.msg {
                Msg::Book(b) => Some((
                    u64::try_from((b.time_exchange - BASE_NS) / 1_000_000).unwrap(),
                    b.is_snapshot,
                )),
                _ => None,
            })
            .collect()
    }

    /// Open on the old connection with changes 0..=5 delivered (1..=5 after a notice or
    /// refresh at 1 s), the successor connected.
    fn holding(refresh: bool) -> (Machine, Vec<Envelope>) {
        holding_with(machine(), refresh)
    }

    fn holding_with(mut m: Machine, refresh: bool) -> (Machine, Vec<Envelope>) {
        let mut out = burst(&mut m, Wire::Primary, &[frame(0, 10, true)], 0);
        if refresh {
            m.on_request(Request::Refresh, at(1000));
            let a = drain(&mut m);
            assert!(a
                .iter()
                .any(|a| matches!(a, Action::OpenSuccessor { paced: false })));
        } else {
            let notice = r#"{"type":"reconnect","within_seconds":10,"before_time":"2030-01-01T00:00:10.0000000Z"}"#;
            out.extend(burst(&mut m, Wire::Primary, &[notice.into()], 1000));
        }
        assert_eq!(m.state(), State::Holding);
        m.on_successor_connected(at(1100));
        drain(&mut m);
        let ups: Vec<String> = (1..=5).map(|n| frame(n, 10 + n, false)).collect();
        out.extend(burst(&mut m, Wire::Primary, &ups, 1200));
        (m, out)
    }

    /// Applies everything delivered, as the consumer would, and checks the book.
    fn consumer_book(items: &[Envelope]) -> L2Book {
        let mut store = BookStore::new();
        let mut v = items.to_vec();
        store.apply(&mut v);
        assert!(
            !v.iter().any(|e| matches!(e.msg, Msg::BookReset { .. })),
            "no reset: {:?}",
            book_changes(&v)
        );
        store.l2("EX_SPOT_A_B").expect("book").clone()
    }

    #[test]
    fn a_snapshot_behind_the_old_connection_is_advanced_so_no_update_repeats() {
        for refresh in [false, true] {
            let (mut m, mut out) = holding(refresh);
            // The successor's snapshot is of change 2 (the old connection delivered up to
            // 5); its 3 overlaps and switches.
            let succ: Vec<String> = [frame(2, 500, true)]
                .into_iter()
                .chain((3..=7).map(|n| frame(n, 498 + n, false)))
                .collect();
            let a = burst(&mut m, Wire::Successor, &succ, 1300);
            assert!(a.iter().any(|e| matches!(e.msg, Msg::Switched { .. })));
            out.extend(a);
            // The rest is read from the new primary.
            let rest: Vec<String> = (4..=8).map(|n| frame(n, 498 + n, false)).collect();
            out.extend(burst(&mut m, Wire::Primary, &rest, 1400));
            assert_eq!(
                book_changes(&out),
                [
                    (0, true),
                    (1, false),
                    (2, false),
                    (3, false),
                    (4, false),
                    (5, false),
                    (5, true),
                    (6, false),
                    (7, false),
                    (8, false)
                ],
                "refresh={refresh}"
            );
            let advanced = out
                .iter()
                .find_map(|e| match &e.msg {
                    Msg::Book(b) if b.is_snapshot && b.sequence == 503 => Some(b),
                    _ => None,
                })
                .expect("the advanced snapshot carries change 5's successor sequence");
            assert_eq!(
                (advanced.bids.clone(), advanced.asks.clone()),
                truth(5).to_snapshot()
            );
            let book = consumer_book(&out);
            assert_eq!((&book.bids, &book.asks), (&truth(8).bids, &truth(8).asks));
            assert_eq!(book.sequence, 506);
            // Not delivered: 3 from the hold; 4, 5 and the successor's snapshot of 2 (folded
            // into the one delivered) after the switch.
            let overlap = out.iter().find_map(|e| match e.msg {
                Msg::Switched {
                    overlap_dropped, ..
                } => Some(overlap_dropped),
                _ => None,
            });
            assert_eq!(overlap, Some(1));
            assert_eq!(m.take_counts().duplicates, 3);
            assert_eq!(
                m.state(),
                State::Open,
                "a book-only scope has nothing else to filter"
            );
        }
    }

    #[test]
    fn a_snapshot_ahead_of_the_old_connection_is_delivered_as_it_is() {
        let (mut m, mut out) = holding(false);
        // Changes 6 and 7 never came on the old connection: the successor's snapshot is of 7.
        out.extend(burst(
            &mut m,
            Wire::Successor,
            &[frame(7, 900, true), frame(8, 901, false)],
            1300,
        ));
        // Nothing overlaps: the switch comes at notice + 5 s.
        m.on_deadline(at(6000));
        out.extend(delivered(drain(&mut m)));
        out.extend(burst(&mut m, Wire::Primary, &[frame(9, 902, false)], 6100));
        assert_eq!(book_changes(&out)[6..], [(7, true), (8, false), (9, false)]);
        let book = consumer_book(&out);
        assert_eq!((&book.bids, &book.asks), (&truth(9).bids, &truth(9).asks));
    }

    #[test]
    fn a_gap_while_advancing_is_delivered_and_nothing_repeats() {
        let (mut m, mut out) = holding(false);
        // Successor: snapshot of 2, then 3; 4 is lost on it (sequence 503 skipped).
        let a = burst(
            &mut m,
            Wire::Successor,
            &[frame(2, 500, true), frame(3, 501, false)],
            1300,
        );
        out.extend(a);
        let rest = [frame(5, 503, false), frame(6, 504, false)];
        out.extend(burst(&mut m, Wire::Primary, &rest, 1400));
        assert_eq!(book_changes(&out)[6..], [(6, false)]);
        let mut items = out.clone();
        let mut store = BookStore::new();
        store.apply(&mut items);
        assert!(items
            .iter()
            .any(|e| matches!(&e.msg, Msg::BookReset { reason: "gap", .. })));
    }

    #[test]
    fn a_snapshot_of_a_book_gone_quiet_is_delivered_when_the_hand_over_ends() {
        let (mut m, _) = holding_with(machine_holding_at_most(8), false);
        let other = |n: u64, seq: u64, snap: bool| frame(n, seq, snap).replace("A_B", "C_D");
        // The successor's snapshot of 4, then 5 (the old connection's last): that book is
        // quiet from there, but 5 is the target, so it is delivered at once...
        let a = burst(
            &mut m,
            Wire::Successor,
            &[frame(4, 500, true), frame(5, 501, false)],
            1300,
        );
        assert!(a.iter().any(|e| matches!(e.msg, Msg::Switched { .. })));
        assert_eq!(book_changes(&a), [(5, true)]);
        // ...while a book whose snapshot is behind and which then goes quiet is held until
        // the hand-over ends (8 messages of the new connection).
        let mut m = machine_holding_at_most(8);
        let notice = r#"{"type":"reconnect","within_seconds":10,"before_time":"2030-01-01T00:00:10.0000000Z"}"#;
        burst(
            &mut m,
            Wire::Primary,
            &[frame(0, 10, true), notice.into()],
            0,
        );
        m.on_successor_connected(at(100));
        drain(&mut m);
        let ups: Vec<String> = (1..=3).map(|n| frame(n, 10 + n, false)).collect();
        let mut out = burst(&mut m, Wire::Primary, &ups, 200);
        let a = burst(
            &mut m,
            Wire::Successor,
            &[frame(1, 500, true), frame(2, 501, false)],
            300,
        );
        assert!(a.iter().any(|e| matches!(e.msg, Msg::Switched { .. })));
        out.extend(a);
        assert_eq!(book_changes(&out), [(1, false), (2, false), (3, false)]);
        let quiet: Vec<String> = [other(0, 7, true)]
            .into_iter()
            .chain((1..=5).map(|n| other(n, 7 + n, false)))
            .collect();
        let a = burst(&mut m, Wire::Primary, &quiet, 400);
        let last = a.last().expect("delivered");
        match &last.msg {
            Msg::Book(b) => {
                assert!(b.is_snapshot);
                assert_eq!(&*b.symbol_id, "EX_SPOT_A_B");
                assert_eq!((b.bids.clone(), b.asks.clone()), truth(2).to_snapshot());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refresh_is_ignored_unless_open_and_its_failure_is_no_disconnect_reason() {
        let mut m = machine();
        m.on_request(Request::Refresh, at(0));
        assert!(drain(&mut m).is_empty(), "not open yet");
        burst(&mut m, Wire::Primary, &[frame(0, 10, true)], 10);
        m.on_request(Request::Refresh, at(20));
        assert!(matches!(
            drain(&mut m).as_slice(),
            [Action::OpenSuccessor { paced: false }]
        ));
        m.on_request(Request::Refresh, at(30));
        assert!(drain(&mut m).is_empty(), "one at a time");
        m.on_successor_failed("connection refused", at(40));
        assert_eq!(m.state(), State::Open);
        m.on_frame(
            Wire::Primary,
            Input::Close {
                code: Some(1001),
                reason: "",
            },
            at(50),
        );
        m.end_burst(at(50));
        let end = drain(&mut m).into_iter().find_map(|a| match a {
            Action::End(e) => Some(format!("{e:?}")),
            _ => None,
        });
        let end = end.expect("ended");
        assert!(!end.contains("make-before-break"), "{end}");
    }
}
