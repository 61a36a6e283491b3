//! What a relayed message looks like on NATS: its subject, its message id and its payload.
//!
//! Payload (version 1): one version byte, one venue byte, then the venue's own JSON text of
//! the message as it was received, so a consumer decodes it with the same decoder a direct
//! connection uses and gets the same typed message.
//!
//! Subject: `tickwire.<venue>.<type>.<key>`; an exchange rate's key is two tokens
//! (`<base>.<quote>`). Each token keeps ASCII letters, digits, `_` and `-`; every other byte
//! (`.`, `*`, `>`, spaces, `/`, `~`, non-ASCII) becomes `~` and two upper-case hex digits, so a
//! token never splits, never acts as a wildcard, and decodes back unambiguously.

use crate::model::Msg;

/// The payload format version this build writes and reads.
pub const VERSION: u8 = 1;

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

/// The payload of one relayed message.
pub fn encode(venue: Venue, raw: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 2);
    out.push(VERSION);
    out.push(venue as u8);
    out.extend_from_slice(raw.as_bytes());
    out
}

/// A payload's venue and JSON text.
///
/// # Errors
/// A text saying why the payload is not a version-1 tickwire message.
pub fn decode(payload: &[u8]) -> Result<(Venue, &[u8]), String> {
    match payload {
        [VERSION, venue, json @ ..] => Venue::from_byte(*venue)
            .map(|v| (v, json))
            .ok_or_else(|| format!("unknown venue byte {venue}")),
        [v, ..] => Err(format!("unknown payload version {v}")),
        [] => Err("empty payload".into()),
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
        let p = encode(Venue::Moment, "{}");
        assert_eq!(decode(&p), Ok((Venue::Moment, &b"{}"[..])));
        assert!(decode(&[2, 1, b'{']).is_err());
        assert!(decode(&[1, 9]).is_err());
        assert!(decode(&[]).is_err());
    }
}
