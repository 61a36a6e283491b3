//! The bodies of the fuzz targets (`fuzz/fuzz_targets/`), kept in the crate so that `cargo test`
//! runs the committed corpus (`fuzz/corpus/<target>/`) through exactly the code the fuzzer
//! runs. Each function takes arbitrary bytes and panics only when an invariant breaks.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};

use crate::codec::{CoinApiDecoder, MomentDecoder};
use crate::delivery::{Overflow, Pop, Queue};
use crate::feed::msgnum::MsgNumberTracker;
use crate::feed::sequence::{SeqCheck, SequenceTracker};
use crate::model::{self, Envelope, Gap, Key, Msg, PARSE_ERROR_RAW_MAX};
use crate::protocol::coinapi::{CoinApiSession, Scope};
use crate::protocol::moment::{MomentSession, MomentStream};
use crate::protocol::{ScopeChange, Session};

/// One fuzz target's body.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/fuzz_targets/<name>.rs` and `fuzz/corpus/<name>/` call them.
pub const TARGETS: [(&str, Target); 5] = [
    ("codec_coinapi", codec_coinapi),
    ("codec_moment", codec_moment),
    ("protocol_sessions", protocol_sessions),
    ("queue_accounting", queue_accounting),
    ("relay_payload", relay_payload),
];

/// A CoinAPI frame: decoding never panics, and a failure's `ParseError.raw` stays within its cap.
pub fn codec_coinapi(data: &[u8]) {
    let mut d = CoinApiDecoder::default();
    let first = d.decode(data);
    // A reused decoder (scratch buffers, interner) answers the same as a fresh one.
    assert_eq!(first, d.decode(data));
    assert!(model::parse_error_raw(data).len() <= PARSE_ERROR_RAW_MAX);
}

/// A Moment frame, as [`codec_coinapi`].
pub fn codec_moment(data: &[u8]) {
    let mut d = MomentDecoder::default();
    let first = d.decode(data);
    assert_eq!(first, d.decode(data));
}

/// A relayed NATS payload, as a `Nats` consumer reads it: reading never panics, and a binary
/// record that reads as a message writes back to bytes that read as the same message (compared
/// as bytes, so NaN prices count as equal).
pub fn relay_payload(data: &[u8]) {
    use crate::codec::Interner;
    use crate::relay::binary;
    use crate::relay::wire::{self, Body};

    let mut keys = Interner::default();
    match wire::decode(data) {
        Ok((_, Body::Json(json))) => {
            let _ = CoinApiDecoder::default().decode(json);
            let _ = MomentDecoder::default().decode(json);
        }
        Ok((_, Body::Binary(record))) => {
            if let Ok(msg) = binary::read(record, &mut keys) {
                let mut first = Vec::new();
                assert!(binary::write(&msg, &mut first), "a binary record's type");
                let again = binary::read(&first, &mut keys).expect("a record it wrote");
                let mut second = Vec::new();
                binary::write(&again, &mut second);
                assert_eq!(first, second);
            }
        }
        Err(_) => {}
    }
}

/// Splits fuzz input into pieces at `0xff` bytes (never part of valid UTF-8 text).
fn pieces(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == 0xff)
}

fn is_json(text: &str) -> bool {
    let mut bytes = text.as_bytes().to_vec();
    let ok = simd_json::to_borrowed_value(&mut bytes).is_ok();
    ok
}

/// Both venues' sessions fed frames and scope changes taken from the input: every request they
/// produce is JSON, classification never panics, and the sequence trackers obey their rules (a
/// number that was accepted is a duplicate the second time; a gap names the number due).
pub fn protocol_sessions(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let mut session = match head % 3 {
        0 => Session::CoinApi(CoinApiSession::new(Scope {
            data_types: vec!["trade".into(), "quote".into()],
            heartbeat: head & 0x10 != 0,
            ..Scope::default()
        })),
        1 => Session::Moment(MomentSession::new(
            MomentStream::Prices,
            vec![],
            false,
            None,
        )),
        _ => Session::Moment(MomentSession::new(
            MomentStream::Orders,
            vec![],
            false,
            None,
        )),
    };
    let base = url::Url::parse("wss://example.invalid/v1/").expect("a valid URL");
    let mut decoder = session.decoder();
    let mut seqs = SequenceTracker::default();
    let mut orders = MsgNumberTracker::default();
    for req in session.opening() {
        assert!(is_json(&req), "{req}");
    }
    for piece in pieces(rest) {
        match piece.first() {
            // A scope change whose names come from the input.
            Some(b'+' | b'-') => {
                let names: Vec<String> = String::from_utf8_lossy(&piece[1..])
                    .split(',')
                    .map(str::to_string)
                    .collect();
                let change = match session {
                    Session::CoinApi(_) => ScopeChange::CoinApi(Scope {
                        symbols: names,
                        ..Scope::default()
                    }),
                    Session::Moment(_) => ScopeChange::Instruments {
                        ids: names,
                        all: piece.len() % 2 == 0,
                    },
                };
                if let Ok(reqs) = session.apply(&change, piece[0] == b'+') {
                    for req in reqs {
                        assert!(is_json(&req), "{req}");
                    }
                }
                for req in session.opening() {
                    assert!(is_json(&req), "{req}");
                }
            }
            _ => {
                let Ok(msg) = decoder.decode(piece) else {
                    continue;
                };
                let _ = session.classify(&msg);
                if let Some((kind, key, seq)) = msg.sequence_key() {
                    check_rules(seqs.check(kind, key, seq), seq);
                    assert_eq!(seqs.check(kind, key, seq), SeqCheck::Duplicate);
                }
                if let Msg::OrderEvent(o) = &msg {
                    check_rules(orders.check(o.msg_number), o.msg_number);
                    assert_eq!(orders.check(o.msg_number), SeqCheck::Duplicate);
                    let url = session.connect_url(&base, orders.last());
                    assert!(url.as_str().starts_with("wss://example.invalid/"));
                }
            }
        }
    }
}

fn check_rules(verdict: SeqCheck, seq: u64) {
    if let SeqCheck::Gap { expected, received } = verdict {
        assert_eq!(received, seq);
        assert!(expected < received);
    }
}

/// What the queue was given and what came out, in the units `Dropped.count` counts: a message
/// or `Gap` is 1, a `ParseError` its `count`; milestones (`Connected`) separately.
#[derive(Default, Debug, PartialEq)]
struct Tally {
    units: u64,
    milestones: u64,
}

/// Polls `fut` once with a waker that does nothing: the queue's futures are driven by hand.
fn poll_once<F: Future>(fut: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    fut.poll(&mut Context::from_waker(std::task::Waker::noop()))
}

/// Records one popped batch; checks the order rules a consumer relies on.
/// `folded`: consecutive ParseErrors must have been folded (conflation may later remove what
/// stood between two, so not under `conflate`).
fn take(batch: &[Envelope], out: &mut Tally, dropped: &mut u64, folded: bool) {
    for (i, e) in batch.iter().enumerate() {
        match &e.msg {
            Msg::Dropped { count, .. } => {
                *dropped += count;
                assert!(
                    !matches!(batch.get(i + 1).map(|n| &n.msg), Some(Msg::Dropped { .. })),
                    "adjacent Dropped events are merged"
                );
            }
            Msg::ParseError { count, raw, .. } => {
                out.units += count;
                assert!(raw.len() <= PARSE_ERROR_RAW_MAX);
                assert!(
                    !folded
                        || !matches!(
                            batch.get(i + 1).map(|n| &n.msg),
                            Some(Msg::ParseError { .. })
                        ),
                    "a run of ParseErrors is folded: {:?}",
                    batch.iter().map(|e| e.msg.type_name()).collect::<Vec<_>>()
                );
            }
            Msg::Connected { .. } => out.milestones += 1,
            Msg::Gap(g) => {
                out.units += 1;
                // A Gap is always delivered right before the message it announces.
                let next = batch.get(i + 1).and_then(|n| n.msg.sequence_key());
                assert_eq!(
                    next.map(|(_, k, s)| (k.to_string(), s)),
                    Some((g.key.to_string(), g.received)),
                    "a Gap without its message"
                );
            }
            _ => out.units += 1,
        }
    }
}

/// The queue under any sequence of pushes, pops and each policy: everything pushed is
/// delivered or counted as dropped, exactly; milestones are never dropped; the books balance;
/// and the queue stays within its bounds (plus one push, plus the milestones it must keep).
pub fn queue_accounting(data: &[u8]) {
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next();
    let (Some(p), Some(c), Some(b), Some(m)) = (next(), next(), next(), next()) else {
        return;
    };
    let policy = match p % 3 {
        0 => Overflow::Block,
        1 => Overflow::DropOldest,
        _ => Overflow::Conflate,
    };
    let capacity = 1 + usize::from(c % 32);
    let batch_size = 1 + usize::from(b % 16);
    let max_bytes = 128 + usize::from(m) * 64;
    let q = Queue::with_max_bytes(capacity, max_bytes, batch_size, policy, None);
    let folded = policy != Overflow::Conflate;
    let keys: Vec<Key> = ["A", "B", "C", "D"].map(Key::from).into();
    let mut seq = [0u64; 4];
    let (mut pushed, mut out, mut dropped) = (Tally::default(), Tally::default(), 0u64);
    let mut biggest_push = (0usize, 0usize);
    while let Some(op) = next() {
        if op % 4 == 3 {
            if let Some(Pop::Batch(batch)) = q.try_pop() {
                take(&batch, &mut out, &mut dropped, folded);
            }
            continue;
        }
        let mut items = Vec::new();
        for _ in 0..=(op % 8) {
            let kind = next().unwrap_or(0);
            let k = usize::from(kind >> 6);
            let key = keys[k].clone();
            seq[k] += 1;
            let trade = |s: u64| {
                Envelope::event(
                    0,
                    Msg::Trade(model::Trade {
                        symbol_id: key.clone(),
                        sequence: s,
                        time_exchange: 0,
                        time_coinapi: 0,
                        uuid: "u".into(),
                        price: 1.0,
                        size: 1.0,
                        taker_side: key.clone(),
                    }),
                )
            };
            match kind % 6 {
                0 | 1 => {
                    items.push(trade(seq[k]));
                    pushed.units += 1;
                }
                2 => {
                    items.push(Envelope::event(
                        0,
                        Msg::Quote(model::Quote {
                            symbol_id: key.clone(),
                            sequence: seq[k],
                            time_exchange: 0,
                            time_coinapi: 0,
                            ask_price: 1.0,
                            ask_size: 1.0,
                            bid_price: 1.0,
                            bid_size: 1.0,
                        }),
                    ));
                    pushed.units += 1;
                }
                3 => {
                    seq[k] += 2;
                    items.push(Envelope::event(
                        0,
                        Msg::Gap(Gap {
                            msg_type: "trade",
                            key: key.clone(),
                            expected: seq[k] - 2,
                            received: seq[k],
                        }),
                    ));
                    items.push(trade(seq[k]));
                    pushed.units += 2;
                }
                4 => {
                    let raw = vec![b'x'; usize::from(next().unwrap_or(0)) * 8];
                    items.push(Envelope::event(
                        0,
                        Msg::ParseError {
                            reason: "bad".into(),
                            raw: model::parse_error_raw(&raw),
                            count: 1,
                        },
                    ));
                    pushed.units += 1;
                }
                _ => {
                    items.push(Envelope::event(
                        0,
                        Msg::Connected {
                            url: "ws://127.0.0.1/".into(),
                            attempt: 0,
                        },
                    ));
                    pushed.milestones += 1;
                }
            }
        }
        let size: usize = items.iter().map(crate::delivery::queue::weight).sum();
        biggest_push = (biggest_push.0.max(items.len()), biggest_push.1.max(size));
        let mut push = pin!(q.push(items));
        loop {
            match poll_once(push.as_mut()) {
                Poll::Ready(accepted) => {
                    assert!(accepted);
                    break;
                }
                // Blocked: the consumer makes room, as a real one eventually does.
                Poll::Pending => match q.try_pop() {
                    Some(Pop::Batch(batch)) => take(&batch, &mut out, &mut dropped, folded),
                    other => panic!("a push waits on an empty queue: {other:?}"),
                },
            }
        }
        let ((queued, held), recount, kept) = q.audit();
        assert_eq!(
            (queued, held),
            recount,
            "the queue's counters match its contents"
        );
        // Milestones (and one Dropped before each, and one after the last) are never dropped.
        assert!(
            queued <= capacity.max(biggest_push.0) + 2 * kept + 1,
            "{queued} queued, capacity {capacity}, {kept} kept"
        );
        let milestone = crate::delivery::queue::weight(&Envelope::event(
            0,
            Msg::Dropped {
                count: 0,
                reason: "queue full (overflow=drop_oldest)".into(),
            },
        ));
        assert!(
            held <= max_bytes.max(biggest_push.1) + (2 * kept + 1) * milestone,
            "{held} bytes, bound {max_bytes}"
        );
    }
    while let Some(Pop::Batch(batch)) = q.try_pop() {
        take(&batch, &mut out, &mut dropped, folded);
    }
    assert_eq!(
        out.milestones, pushed.milestones,
        "milestones are never dropped"
    );
    assert_eq!(
        out.units + dropped,
        pushed.units,
        "delivered + dropped = pushed"
    );
    assert_eq!(
        q.stats().dropped,
        dropped,
        "stats().dropped = sum of Dropped.count"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed corpus file through its target, as the fuzzer would run it.
    #[test]
    fn corpus_runs_clean() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let mut ran = 0;
        for (name, target) in TARGETS {
            let dir = root.join(name);
            let entries = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .collect::<Result<Vec<_>, _>>()
                .expect("a readable corpus");
            assert!(!entries.is_empty(), "{name} has a corpus");
            for entry in entries {
                let data = std::fs::read(entry.path()).expect("a readable corpus file");
                target(&data);
                ran += 1;
            }
        }
        assert!(ran >= TARGETS.len());
    }

    /// The relay payload seeds reach the round trip: every binary one but the bad one reads.
    #[test]
    fn relay_payload_seeds_are_valid_records() {
        use crate::relay::wire::{self, Body};
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/relay_payload");
        let mut records = 0;
        for entry in std::fs::read_dir(dir).expect("the corpus") {
            let path = entry.expect("an entry").path();
            let data = std::fs::read(&path).expect("a seed");
            if let Ok((_, Body::Binary(record))) = wire::decode(&data) {
                let mut keys = crate::codec::Interner::default();
                crate::relay::binary::read(record, &mut keys)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                records += 1;
            }
        }
        assert!(records >= 5, "{records} binary seeds");
    }

    /// A quick pseudo-random sweep of the queue target, beyond the corpus.
    #[test]
    fn queue_accounting_random_sweep() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000 {
            let data: Vec<u8> = (0..(len % 300))
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            queue_accounting(&data);
        }
    }
}
