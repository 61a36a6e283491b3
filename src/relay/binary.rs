//! The compact binary form of the relay's most frequent messages (payload version 2): trades,
//! quotes, L2 books and indexes, the decoded fields written as they are, so a consumer builds
//! the typed message without parsing JSON. Chosen by measurement (docs/nats.md,
//! `benches/nats_payload.rs`): 0.29x the JSON's bytes and 0.34x the consumer's CPU per
//! message.
//!
//! Every record starts with a tag byte; the fields follow in struct order:
//! - strings (keys, odd uuids, odd taker sides): a LEB128 length, then UTF-8 bytes;
//! - sequences and level counts: LEB128;
//! - times: i64 nanoseconds, numbers: f64, both little-endian (numbers round-trip exactly);
//! - a trade's uuid: 16 bytes when it is a canonical 36-character uuid in one case (the case
//!   in the tag), else a string; its taker side: one byte for the five documented values, else
//!   255 and a string;
//! - a book: its kind and `is_snapshot` as bytes, each side as a count and (price, size) pairs.
//!
//! Reading checks every length against what is left, so a bad payload is an error, never a
//! panic nor an allocation larger than the payload.

use crate::codec::Interner;
use crate::model::{Book, BookKind, Index, Msg, Quote, Trade};

/// The tag of a JSON record: the venue's text follows (every type without a binary form).
pub const JSON: u8 = 0;
const TRADE_UPPER_UUID: u8 = 1;
const TRADE_LOWER_UUID: u8 = 2;
const TRADE_TEXT_UUID: u8 = 3;
const QUOTE: u8 = 4;
const BOOK: u8 = 5;
const INDEX: u8 = 6;

/// Taker sides as CoinAPI documents them; byte 255 means a string follows.
const SIDES: [&str; 5] = ["BUY", "SELL", "BUY_ESTIMATED", "SELL_ESTIMATED", "UNKNOWN"];
const OTHER_SIDE: u8 = 255;

/// Writes `msg`'s binary record into `out`; false (nothing written) for a type without one.
pub fn write(msg: &Msg, out: &mut Vec<u8>) -> bool {
    match msg {
        Msg::Trade(t) => {
            let uuid = uuid_bytes(&t.uuid);
            out.push(match uuid {
                Some((_, true)) => TRADE_UPPER_UUID,
                Some((_, false)) => TRADE_LOWER_UUID,
                None => TRADE_TEXT_UUID,
            });
            put_str(out, &t.symbol_id);
            put_varint(out, t.sequence);
            out.extend_from_slice(&t.time_exchange.to_le_bytes());
            out.extend_from_slice(&t.time_coinapi.to_le_bytes());
            match uuid {
                Some((bytes, _)) => out.extend_from_slice(&bytes),
                None => put_str(out, &t.uuid),
            }
            out.extend_from_slice(&t.price.to_le_bytes());
            out.extend_from_slice(&t.size.to_le_bytes());
            match SIDES.iter().position(|s| **s == *t.taker_side) {
                Some(i) => out.push(i as u8),
                None => {
                    out.push(OTHER_SIDE);
                    put_str(out, &t.taker_side);
                }
            }
        }
        Msg::Quote(q) => {
            out.push(QUOTE);
            put_str(out, &q.symbol_id);
            put_varint(out, q.sequence);
            out.extend_from_slice(&q.time_exchange.to_le_bytes());
            out.extend_from_slice(&q.time_coinapi.to_le_bytes());
            for v in [q.ask_price, q.ask_size, q.bid_price, q.bid_size] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Msg::Book(b) => {
            out.push(BOOK);
            out.push(match b.kind {
                BookKind::Full => 0,
                BookKind::Top5 => 1,
                BookKind::Top20 => 2,
                BookKind::Top50 => 3,
            });
            out.push(u8::from(b.is_snapshot));
            put_str(out, &b.symbol_id);
            put_varint(out, b.sequence);
            out.extend_from_slice(&b.time_exchange.to_le_bytes());
            out.extend_from_slice(&b.time_coinapi.to_le_bytes());
            for side in [&b.asks, &b.bids] {
                put_varint(out, side.len() as u64);
                for (price, size) in side {
                    out.extend_from_slice(&price.to_le_bytes());
                    out.extend_from_slice(&size.to_le_bytes());
                }
            }
        }
        Msg::Index(i) => {
            out.push(INDEX);
            put_str(out, &i.index_id);
            put_varint(out, i.sequence);
            out.extend_from_slice(&i.time_coinapi.to_le_bytes());
            out.extend_from_slice(&i.value.to_le_bytes());
        }
        _ => return false,
    }
    true
}

/// The typed message of a binary record (`record` starts with its tag, not [`JSON`]); keys
/// are interned in `keys`, as the JSON decoders do.
///
/// # Errors
/// A text saying why `record` is not a valid record (unknown tag, truncated, bad UTF-8,
/// trailing bytes).
pub fn read(record: &[u8], keys: &mut Interner) -> Result<Msg, String> {
    let mut r = Reader(record);
    let msg = match r.u8()? {
        tag @ (TRADE_UPPER_UUID | TRADE_LOWER_UUID | TRADE_TEXT_UUID) => {
            let symbol_id = keys.intern(r.str()?);
            let sequence = r.varint()?;
            let (time_exchange, time_coinapi) = (r.i64()?, r.i64()?);
            let uuid = match tag {
                TRADE_TEXT_UUID => r.str()?.into(),
                _ => uuid_text(r.bytes(16)?, tag == TRADE_UPPER_UUID),
            };
            let (price, size) = (r.f64()?, r.f64()?);
            let side = match r.u8()? {
                OTHER_SIDE => r.str()?,
                i => SIDES
                    .get(usize::from(i))
                    .ok_or_else(|| format!("unknown taker side byte {i}"))?,
            };
            Msg::Trade(Trade {
                symbol_id,
                sequence,
                time_exchange,
                time_coinapi,
                uuid,
                price,
                size,
                taker_side: keys.intern(side),
            })
        }
        QUOTE => Msg::Quote(Quote {
            symbol_id: keys.intern(r.str()?),
            sequence: r.varint()?,
            time_exchange: r.i64()?,
            time_coinapi: r.i64()?,
            ask_price: r.f64()?,
            ask_size: r.f64()?,
            bid_price: r.f64()?,
            bid_size: r.f64()?,
        }),
        BOOK => {
            let kind = match r.u8()? {
                0 => BookKind::Full,
                1 => BookKind::Top5,
                2 => BookKind::Top20,
                3 => BookKind::Top50,
                k => return Err(format!("unknown book kind byte {k}")),
            };
            let is_snapshot = match r.u8()? {
                0 => false,
                1 => true,
                b => return Err(format!("is_snapshot byte {b}")),
            };
            let symbol_id = keys.intern(r.str()?);
            let sequence = r.varint()?;
            let (time_exchange, time_coinapi) = (r.i64()?, r.i64()?);
            let asks = r.levels()?;
            let bids = r.levels()?;
            Msg::Book(Book {
                kind,
                symbol_id,
                sequence,
                time_exchange,
                time_coinapi,
                is_snapshot,
                asks,
                bids,
            })
        }
        INDEX => Msg::Index(Index {
            index_id: keys.intern(r.str()?),
            sequence: r.varint()?,
            time_coinapi: r.i64()?,
            value: r.f64()?,
        }),
        tag => return Err(format!("unknown record tag {tag}")),
    };
    if r.0.is_empty() {
        Ok(msg)
    } else {
        Err(format!("{} bytes after the record", r.0.len()))
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// A canonical uuid (`8-4-4-4-12` hex digits) as 16 bytes, and whether its letters are
/// upper-case; `None` for anything else, mixed case included (it travels as text).
fn uuid_bytes(s: &str) -> Option<([u8; 16], bool)> {
    let text = s.as_bytes();
    if text.len() != 36 {
        return None;
    }
    let mut out = [0u8; 16];
    let (mut n, mut upper, mut lower) = (0, false, false);
    let mut high: Option<u8> = None;
    for (i, &c) in text.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            if c != b'-' {
                return None;
            }
            continue;
        }
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'F' => {
                upper = true;
                c - b'A' + 10
            }
            b'a'..=b'f' => {
                lower = true;
                c - b'a' + 10
            }
            _ => return None,
        };
        match high.take() {
            None => high = Some(v),
            Some(h) => {
                out[n] = h << 4 | v;
                n += 1;
            }
        }
    }
    // Digits only: either case writes it back; upper-case is CoinAPI's.
    (!(upper && lower)).then_some((out, !lower))
}

fn uuid_text(bytes: &[u8], upper: bool) -> Box<str> {
    let hex: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    let mut s = String::with_capacity(36);
    for (i, b) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(hex[usize::from(b >> 4)] as char);
        s.push(hex[usize::from(b & 15)] as char);
    }
    s.into_boxed_str()
}

/// A cursor over a record; every read checks what is left.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("truncated record".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes(1)?[0])
    }

    fn array8(&mut self) -> Result<[u8; 8], String> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.bytes(8)?);
        Ok(a)
    }

    fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array8()?))
    }

    fn f64(&mut self) -> Result<f64, String> {
        Ok(f64::from_le_bytes(self.array8()?))
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err("varint longer than 64 bits".into())
    }

    fn str(&mut self) -> Result<&'a str, String> {
        let n = usize::try_from(self.varint()?).map_err(|_| "string length".to_owned())?;
        std::str::from_utf8(self.bytes(n)?).map_err(|_| "string not UTF-8".into())
    }

    fn levels(&mut self) -> Result<Vec<(f64, f64)>, String> {
        let n = usize::try_from(self.varint()?).map_err(|_| "level count".to_owned())?;
        // Each level is 16 bytes: a count past what is left is a bad record, not an allocation.
        if n > self.0.len() / 16 {
            return Err("truncated book levels".into());
        }
        (0..n).map(|_| Ok((self.f64()?, self.f64()?))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CoinApiDecoder;

    fn round_trip(msg: &Msg) -> Msg {
        let mut out = Vec::new();
        assert!(write(msg, &mut out), "{msg:?} has a binary form");
        read(&out, &mut Interner::default()).expect("its own record")
    }

    #[test]
    fn odd_uuids_and_sides_travel_as_text() {
        let mut d = CoinApiDecoder::default();
        for (uuid, side) in [
            ("770C7A3B-7258-4441-8182-83740F3E2457", "BUY"),
            ("770c7a3b-7258-4441-8182-83740f3e2457", "SELL_ESTIMATED"),
            ("770C7A3B-7258-4441-8182-83740f3e2457", "UNKNOWN"),
            ("12345678-1234-1234-1234-123456789012", "BUY"),
            ("not-a-uuid", "SIDEWAYS"),
            ("", "BUY"),
        ] {
            let json = format!(
                r#"{{"type":"trade","symbol_id":"A_B","sequence":7,"time_exchange":"2024-01-01T00:00:00.0000000Z","time_coinapi":"2024-01-01T00:00:00.0000001Z","uuid":"{uuid}","price":770.000000001,"size":0.05,"taker_side":"{side}"}}"#
            );
            let msg = d.decode(json.as_bytes()).expect("trade");
            assert_eq!(round_trip(&msg), msg, "{json}");
        }
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        let mut d = CoinApiDecoder::default();
        let json = r#"{"type":"book5","symbol_id":"X","sequence":1,"time_exchange":"2024-01-01T00:00:00.0000000Z","time_coinapi":"2024-01-01T00:00:00.0000000Z","asks":[{"price":1.5,"size":2}],"bids":[{"price":1.0,"size":3}]}"#;
        let msg = d.decode(json.as_bytes()).expect("book5");
        let mut out = Vec::new();
        assert!(write(&msg, &mut out));
        let mut keys = Interner::default();
        for cut in 0..out.len() {
            assert!(read(&out[..cut], &mut keys).is_err(), "cut at {cut}");
        }
        let mut longer = out.clone();
        longer.push(0);
        assert!(read(&longer, &mut keys).is_err());
        // A level count far past the payload.
        let mut huge = vec![BOOK, 1, 0, 1, b'X', 1];
        huge.extend_from_slice(&[0; 16]);
        huge.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x0F]);
        assert!(read(&huge, &mut keys).is_err());
        assert!(read(&[99], &mut keys).is_err());
        assert!(read(
            &[INDEX, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            &mut keys
        )
        .is_err());
        // Flipped bytes: an error or some message, never a panic.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let mut bad = out.clone();
            let at = (state % bad.len() as u64) as usize;
            bad[at] ^= (state >> 32) as u8 | 1;
            let _ = read(&bad, &mut keys);
        }
    }

    #[test]
    fn other_types_have_no_binary_form() {
        let mut out = Vec::new();
        assert!(!write(&Msg::Heartbeat, &mut out));
        assert!(out.is_empty());
    }
}
