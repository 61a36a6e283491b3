//! What a relayed message looks like on NATS: its subject, its message id and its payload.
//!
//! Payload (version 2, chosen by measurement: docs/nats.md): one version byte, one venue byte,
//! then one record: trades, quotes, L2 books and indexes in the compact binary form of
//! [`super::binary`]; every other type as the tag [`super::binary::JSON`] and the venue's own
//! JSON text as it was received, decoded by the consumer with the decoder a direct connection
//! uses. Either way the consumer gets the same typed message. Version 1 (the venue byte, then
//! the JSON text alone) is still read.
//!
//! Subject: `tickwire.<venue>.<type>.<key>`; an exchange rate's key is two tokens
//! (`<base>.<quote>`). Each token keeps ASCII letters, digits, `_` and `-`; every other byte
//! (`.`, `*`, `>`, spaces, `/`, `~`, non-ASCII) becomes `~` and two upper-case hex digits, so a
//! token never splits, never acts as a wildcard, and decodes back unambiguously.

use super::binary;
use crate::model::Msg;

/// The payload format version this build writes.
pub const VERSION: u8 = 2;
/// The earlier version, still read: the venue byte, then the JSON text.
pub const VERSION_JSON: u8 = 1;

/// The venue a relayed message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Venue {
    CoinApi = 1,
    Moment = 2,
}

impl Venue {
    /// The subject token.
    pub fn token(self) -> &'static str {
        match self {
            Venue::CoinApi => "coinapi",
            Venue::Moment => "moment",
        }
    }

    fn from_byte(b: u8) -> Option<Venue> {
        match b {
            1 => Some(Venue::CoinApi),
            2 => Some(Venue::Moment),
            _ => None,
        }
    }
}

/// Appends `text` to `out` as one subject token (see the module's escaping rule).
pub fn escape_token(text: &str, out: &mut String) {
    if text.is_empty() {
        // An empty token is not a valid subject; `~` alone cannot come from escaping.
        out.push('~');
        return;
    }
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(b as char);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            out.push('~');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 15)] as char);
        }
    }
}

/// Whether tickwire relays `msg`: venue data, not tickwire's own events nor the connection's
/// control traffic (heartbeats, notices, errors, subscription answers).
pub fn relayed(msg: &Msg) -> bool {
    matches!(
        msg,
        Msg::Trade(_)
            | Msg::Quote(_)
            | Msg::Book(_)
            | Msg::BookL3(_)
            | Msg::Ohlcv(_)
            | Msg::Exrate(_)
            | Msg::Index(_)
            | Msg::Metadata(_)
            | Msg::Unknown(_)
            | Msg::PriceUpdate(_)
            | Msg::OrderEvent(_)
    )
}

/// The subject `msg` is published on.
pub fn subject(venue: Venue, msg: &Msg) -> String {
    let mut s = String::with_capacity(64);
    s.push_str("tickwire.");
    s.push_str(venue.token());
    s.push('.');
    escape_token(msg.type_name(), &mut s);
    s.push('.');
    match msg {
        Msg::Trade(m) => escape_token(&m.symbol_id, &mut s),
        Msg::Quote(m) => escape_token(&m.symbol_id, &mut s),
        Msg::Book(m) => escape_token(&m.symbol_id, &mut s),
        Msg::BookL3(m) => escape_token(&m.symbol_id, &mut s),
        Msg::Ohlcv(m) => escape_token(&m.symbol_id, &mut s),
        Msg::Index(m) => escape_token(&m.index_id, &mut s),
        Msg::Exrate(m) => {
            escape_token(&m.asset_id_base, &mut s);
            s.push('.');
            escape_token(&m.asset_id_quote, &mut s);
        }
        Msg::PriceUpdate(m) => escape_token(&m.instrument_id, &mut s),
        Msg::OrderEvent(m) => escape_token(m.order_id.as_deref().unwrap_or(""), &mut s),
        _ => escape_token("", &mut s),
    }
    s
}

/// The `Nats-Msg-Id` of a message: a trade's `uuid`, a Moment order event's `msg_number`,
/// otherwise a hash of its raw text without its per-connection `sequence` field, so the same
/// venue message read by two relays gets the same id.
pub fn message_id(venue: Venue, msg: &Msg, raw: &str) -> String {
    match msg {
        Msg::Trade(t) => format!("{}:t:{}", venue.token(), t.uuid),
        Msg::OrderEvent(o) => format!("{}:o:{}", venue.token(), o.msg_number),
        _ => {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let (before, after) = without_sequence(raw);
            ctx.update(before.as_bytes());
            ctx.update(after.as_bytes());
            let digest = ctx.finish();
            let mut id = String::with_capacity(48);
            id.push_str(venue.token());
            id.push_str(":h:");
            for b in &digest.as_ref()[..16] {
                id.push_str(&format!("{b:02x}"));
            }
            id
        }
    }
}

/// `raw` split around its top-level-looking `"sequence":<digits>` member (the text before it
/// and after it); the whole text and "" when there is none.
fn without_sequence(raw: &str) -> (&str, &str) {
    const FIELD: &str = "\"sequence\":";
    let Some(start) = raw.find(FIELD) else {
        return (raw, "");
    };
    let rest = &raw[start + FIELD.len()..];
    let digits = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b' ')
        .count();
    (&raw[..start], &rest[digits..])
}

/// The payload of one relayed message: `msg` as the relay's stream decoded it from `raw`.
pub fn encode(venue: Venue, msg: &Msg, raw: &str) -> Vec<u8> {
    // Binary records are at most about the JSON's size; the reserve is one allocation.
    let mut out = Vec::with_capacity(raw.len() + 3);
    out.extend_from_slice(&[VERSION, venue as u8]);
    if !binary::write(msg, &mut out) {
        out.push(binary::JSON);
        out.extend_from_slice(raw.as_bytes());
    }
    out
}

/// The payload of one relayed message as JSON text whatever its type (what [`encode`] does
/// for types without a binary form; the benches compare the two).
pub fn encode_json(venue: Venue, raw: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 3);
    out.extend_from_slice(&[VERSION, venue as u8, binary::JSON]);
    out.extend_from_slice(raw.as_bytes());
    out
}

/// What a payload holds.
#[derive(Debug, PartialEq)]
pub enum Body<'a> {
    /// The venue's JSON text, for the venue's decoder.
    Json(&'a [u8]),
    /// A binary record, for [`binary::read`].
    Binary(&'a [u8]),
}

/// A payload's venue and body.
///
/// # Errors
/// A text saying why the payload is not a tickwire message of a version this build reads.
pub fn decode(payload: &[u8]) -> Result<(Venue, Body<'_>), String> {
    let venue = |b: u8| Venue::from_byte(b).ok_or_else(|| format!("unknown venue byte {b}"));
    match payload {
        [VERSION, v, binary::JSON, json @ ..] => Ok((venue(*v)?, Body::Json(json))),
        [VERSION, v, record @ ..] if !record.is_empty() => Ok((venue(*v)?, Body::Binary(record))),
        [VERSION_JSON, v, json @ ..] => Ok((venue(*v)?, Body::Json(json))),
        [v, ..] if *v != VERSION && *v != VERSION_JSON => {
            Err(format!("unknown payload version {v}"))
        }
        [] => Err("empty payload".into()),
        _ => Err("payload too short".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::CoinApiDecoder;

    #[test]
    fn tokens_escape_separators_wildcards_and_spaces() {
        let mut s = String::new();
        escape_token("A.B*C>D E/~é", &mut s);
        assert_eq!(s, "A~2EB~2AC~3ED~20E~2F~7E~C3~A9");
        let mut s = String::new();
        escape_token("BINANCE_SPOT_BTC_USDT-1", &mut s);
        assert_eq!(s, "BINANCE_SPOT_BTC_USDT-1");
        let mut s = String::new();
        escape_token("", &mut s);
        assert_eq!(s, "~");
    }

    #[test]
    fn ids_ignore_the_per_connection_sequence() {
        let a = r#"{"type":"quote","symbol_id":"X","sequence":5,"ask_price":1.0,"ask_size":1,"bid_price":0.5,"bid_size":1,"time_exchange":"2024-01-01T00:00:00.0000000Z","time_coinapi":"2024-01-01T00:00:00.0000000Z"}"#;
        let b = a.replace("\"sequence\":5", "\"sequence\":912");
        let mut d = CoinApiDecoder::default();
        let msg = d.decode(a.as_bytes()).expect("quote");
        assert_eq!(
            message_id(Venue::CoinApi, &msg, a),
            message_id(Venue::CoinApi, &msg, &b)
        );
        let c = a.replace("1.0", "2.0");
        assert_ne!(
            message_id(Venue::CoinApi, &msg, a),
            message_id(Venue::CoinApi, &msg, &c)
        );
        assert_eq!(subject(Venue::CoinApi, &msg), "tickwire.coinapi.quote.X");
    }

    /// The simulator broadcasts one market to every connection, each with its own sequence
    /// counters: two connections' copies of a message must get one id, and two different
    /// messages two ids.
    #[test]
    fn two_connections_give_each_message_one_id() {
        use crate::sim::coinapi::Renderer;
        use crate::sim::market::{Kind, Market, Universe};
        use std::collections::{HashMap, HashSet};
        use std::sync::Arc;

        let u = Arc::new(Universe::new(8));
        let mut market = Market::new(11, u.clone());
        let (mut first, mut second) = (Renderer::new(&u, 1), Renderer::new(&u, 2));
        let (mut a, mut b) = (String::new(), String::new());
        let mut decoder = CoinApiDecoder::default();
        let mut ids: HashMap<String, String> = HashMap::new();
        let mut kinds: HashSet<String> = HashSet::new();
        for i in 0..20_000 {
            let ev = market.next_event(1_700_000_000_000_000_000 + i);
            first.render(&ev, false, &mut a);
            second.render(&ev, false, &mut b);
            let msg = decoder.decode(a.as_bytes()).expect("simulated message");
            let other = decoder.decode(b.as_bytes()).expect("simulated message");
            let id = message_id(Venue::CoinApi, &msg, &a);
            assert_eq!(id, message_id(Venue::CoinApi, &other, &b), "{a}\n{b}");
            if matches!(ev.kind, Kind::Trade | Kind::Quote | Kind::Book5) {
                // Different messages never share an id (the text without the sequence differs).
                assert!(ids.insert(id, a.clone()).is_none(), "{a}");
            }
            kinds.insert(msg.type_name().to_owned());
        }
        for kind in [
            "trade", "quote", "book", "book5", "book_l3", "ohlcv", "exrate", "index",
        ] {
            assert!(kinds.contains(kind), "{kind} not generated");
        }
    }

    #[test]
    fn payloads_round_trip_and_refuse_other_versions() {
        let p = encode(Venue::Moment, &Msg::Heartbeat, "{}");
        assert_eq!(decode(&p), Ok((Venue::Moment, Body::Json(&b"{}"[..]))));
        assert_eq!(p, encode_json(Venue::Moment, "{}"));
        // Version 1: the JSON right after the venue byte.
        assert_eq!(
            decode(&[1, 1, b'{']),
            Ok((Venue::CoinApi, Body::Json(&b"{"[..])))
        );
        assert!(decode(&[3, 1, b'{']).is_err());
        assert!(decode(&[1, 9]).is_err());
        assert!(decode(&[2, 1]).is_err());
        assert!(decode(&[2]).is_err());
        assert!(decode(&[]).is_err());
    }

    /// Every type the simulator makes comes back from its payload as the message the JSON
    /// decoder made of the text: binary for trades, quotes, L2 books and indexes, JSON for the
    /// rest.
    #[test]
    fn every_simulated_message_round_trips() {
        use crate::codec::Interner;
        use crate::sim::coinapi::Renderer;
        use crate::sim::market::{Market, Universe};
        use std::sync::Arc;

        let u = Arc::new(Universe::new(8));
        let mut market = Market::new(12, u.clone());
        let mut renderer = Renderer::new(&u, 1);
        let (mut text, mut decoder, mut back) = (
            String::new(),
            CoinApiDecoder::default(),
            CoinApiDecoder::default(),
        );
        let mut keys = Interner::default();
        let (mut binary, mut json) = (0, 0);
        for i in 0..20_000 {
            let ev = market.next_event(1_700_000_000_000_000_000 + i);
            renderer.render(&ev, false, &mut text);
            let msg = decoder.decode(text.as_bytes()).expect("simulated message");
            let payload = encode(Venue::CoinApi, &msg, &text);
            let again = match decode(&payload).expect("its own payload") {
                (Venue::CoinApi, Body::Binary(record)) => {
                    binary += 1;
                    binary::read(record, &mut keys).expect("its own record")
                }
                (Venue::CoinApi, Body::Json(j)) => {
                    json += 1;
                    back.decode(j).expect("its own text")
                }
                other => panic!("{other:?}"),
            };
            assert_eq!(again, msg, "{text}");
        }
        assert!(binary > 0 && json > 0, "{binary} binary, {json} JSON");
    }
}
