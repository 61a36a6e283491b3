//! CoinAPI market-data frames to [`Msg`]: every documented type, both heartbeat spellings,
//! `Unknown` for the rest.

use simd_json::prelude::*;
use simd_json::tape::Value;

use super::fields::Fields;
use super::{DecodeError, FrameDecoder, Interner, Venue};
use crate::model::{
    Book, BookKind, BookL3, Exrate, Index, L3Entry, Level, Metadata, Msg, Ohlcv, Quote,
    ReconnectNotice, ServerError, Trade, Unknown,
};

/// The CoinAPI market-data venue: frames keyed by `type`.
pub struct CoinApi;

/// A CoinAPI frame decoder (one per connection).
pub type CoinApiDecoder = FrameDecoder<CoinApi>;

impl Venue for CoinApi {
    fn decode_value(
        root: Value<'_, '_>,
        wire: &[u8],
        interner: &mut Interner,
    ) -> Result<Msg, DecodeError> {
        decode_value(root, wire, interner)
    }

    fn decode_fast(
        frame: &[u8],
        interner: &mut Interner,
        scratch: &mut super::fast::Scratch,
    ) -> Option<Msg> {
        super::fast::coinapi(frame, interner, scratch)
    }
}

/// `wire` is the frame as received, for the messages that keep their text.
fn decode_value(
    root: Value<'_, '_>,
    wire: &[u8],
    interner: &mut Interner,
) -> Result<Msg, DecodeError> {
    let obj = root
        .as_object()
        .ok_or_else(|| DecodeError("not a JSON object".into()))?;
    let kind = match obj.get("type") {
        None => return Err(DecodeError("missing field `type`".into())),
        Some(v) => v
            .into_string()
            .ok_or_else(|| DecodeError("field `type` is not a string".into()))?,
    };
    let book_kind = match kind {
        "book" => Some(BookKind::Full),
        "book5" => Some(BookKind::Top5),
        "book20" => Some(BookKind::Top20),
        "book50" => Some(BookKind::Top50),
        _ => None,
    };
    if let Some(bk) = book_kind {
        return decode_book(Fields::new("book", obj), bk, interner).map(Msg::Book);
    }
    let msg = match kind {
        "trade" => {
            let f = Fields::new("trade", obj);
            Msg::Trade(Trade {
                symbol_id: interner.intern(f.str("symbol_id")?),
                sequence: f.sequence("sequence")?,
                time_exchange: f.time("time_exchange")?,
                time_coinapi: f.time("time_coinapi")?,
                uuid: f.str("uuid")?.into(),
                price: f.f64("price")?,
                size: f.f64("size")?,
                taker_side: interner.intern(f.opt_str("taker_side")?.unwrap_or("UNKNOWN")),
            })
        }
        "quote" => {
            let f = Fields::new("quote", obj);
            Msg::Quote(Quote {
                symbol_id: interner.intern(f.str("symbol_id")?),
                sequence: f.sequence("sequence")?,
                time_exchange: f.time("time_exchange")?,
                time_coinapi: f.time("time_coinapi")?,
                ask_price: f.f64("ask_price")?,
                ask_size: f.f64("ask_size")?,
                bid_price: f.f64("bid_price")?,
                bid_size: f.f64("bid_size")?,
            })
        }
        "book_l3" => {
            let f = Fields::new("book_l3", obj);
            Msg::BookL3(Box::new(BookL3 {
                symbol_id: interner.intern(f.str("symbol_id")?),
                sequence: f.sequence("sequence")?,
                time_exchange: f.time("time_exchange")?,
                time_coinapi: f.time("time_coinapi")?,
                is_snapshot: f.bool("is_snapshot")?,
                asks: l3_side(&f, "asks", interner)?,
                bids: l3_side(&f, "bids", interner)?,
            }))
        }
        "ohlcv" => {
            let f = Fields::new("ohlcv", obj);
            Msg::Ohlcv(Box::new(Ohlcv {
                symbol_id: interner.intern(f.str("symbol_id")?),
                sequence: f.sequence("sequence")?,
                // The docs' own example omits it; bars without it are still bars.
                period_id: f.opt_str("period_id")?.map(|p| interner.intern(p)),
                time_period_start: f.time("time_period_start")?,
                time_period_end: f.time("time_period_end")?,
                time_open: f.opt_time("time_open")?,
                time_close: f.opt_time("time_close")?,
                price_open: f.opt_f64("price_open")?,
                price_high: f.opt_f64("price_high")?,
                price_low: f.opt_f64("price_low")?,
                price_close: f.opt_f64("price_close")?,
                volume_traded: f.f64("volume_traded")?,
                trades_count: f.u64("trades_count")?,
            }))
        }
        "exrate" => {
            let f = Fields::new("exrate", obj);
            Msg::Exrate(Exrate {
                asset_id_base: interner.intern(f.str("asset_id_base")?),
                asset_id_quote: interner.intern(f.str("asset_id_quote")?),
                rate_type: interner.intern(f.opt_str("rate_type")?.unwrap_or("")),
                time: f.time("time")?,
                rate: f.f64("rate")?,
            })
        }
        "index" => {
            let f = Fields::new("index", obj);
            Msg::Index(Index {
                index_id: interner.intern(f.str("index_id")?),
                sequence: f.sequence("sequence")?,
                time_coinapi: f.time("time_coinapi")?,
                value: f.f64("value")?,
            })
        }
        // The market-data docs and official SDKs spell it `hearbeat`; the Indexes docs
        // `heartbeat`. Both are the same message.
        "heartbeat" | "hearbeat" => Msg::Heartbeat,
        "reconnect" => {
            let f = Fields::new("reconnect", obj);
            Msg::Reconnect(ReconnectNotice {
                within_seconds: f.i64("within_seconds")?,
                before_time: f.time("before_time")?,
            })
        }
        "error" => {
            let f = Fields::new("error", obj);
            Msg::Error(ServerError {
                message: f.opt_str("message")?.unwrap_or("").into(),
                error_type: None,
            })
        }
        "asset" | "exchange" | "symbol" => {
            // Metadata is decoded again in Python (`fields`), whose recursive parser must not
            // meet what it cannot take: deeper than this is not metadata but an attack.
            if nesting_depth(wire) > MAX_METADATA_DEPTH {
                return Err(DecodeError(format!(
                    "{kind} message nested deeper than {MAX_METADATA_DEPTH} levels"
                )));
            }
            Msg::Metadata(Metadata {
                kind: interner.intern(kind),
                json: String::from_utf8_lossy(wire).into(),
            })
        }
        other => Msg::Unknown(Unknown {
            kind: other.into(),
            raw: String::from_utf8_lossy(wire).into(),
        }),
    };
    Ok(msg)
}

fn decode_book(
    f: Fields<'_, '_>,
    kind: BookKind,
    interner: &mut Interner,
) -> Result<Book, DecodeError> {
    Ok(Book {
        kind,
        symbol_id: interner.intern(f.str("symbol_id")?),
        sequence: f.sequence("sequence")?,
        time_exchange: f.time("time_exchange")?,
        time_coinapi: f.time("time_coinapi")?,
        // Only the full book has updates; top-N messages are snapshots by definition.
        is_snapshot: match kind {
            BookKind::Full => f.bool("is_snapshot")?,
            _ => true,
        },
        asks: l2_side(&f, "asks")?,
        bids: l2_side(&f, "bids")?,
    })
}

fn l2_side(f: &Fields<'_, '_>, side: &'static str) -> Result<Vec<Level>, DecodeError> {
    let Some(arr) = f.opt_array(side)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(arr.len());
    for v in arr.iter() {
        let o = v
            .as_object()
            .ok_or_else(|| DecodeError(format!("{}: `{side}` entry is not an object", f.what)))?;
        let e = Fields::new(f.what, o);
        out.push((e.f64("price")?, e.f64("size")?));
    }
    Ok(out)
}

fn l3_side(
    f: &Fields<'_, '_>,
    side: &'static str,
    interner: &mut Interner,
) -> Result<Vec<L3Entry>, DecodeError> {
    let Some(arr) = f.opt_array(side)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(arr.len());
    for v in arr.iter() {
        let o = v
            .as_object()
            .ok_or_else(|| DecodeError(format!("{}: `{side}` entry is not an object", f.what)))?;
        let e = Fields::new(f.what, o);
        out.push(L3Entry {
            id: e.opt_str("id")?.map(Into::into),
            price: e.f64("price")?,
            size: e.f64("size")?,
            update_type: e.opt_str("update_type")?.map(|s| interner.intern(s)),
        });
    }
    Ok(out)
}

/// The deepest a metadata message (`asset`, `exchange`, `symbol`) may nest; real ones are flat.
const MAX_METADATA_DEPTH: usize = 32;

/// How deeply `[`/`{` nest in a JSON text, brackets inside strings not counted.
fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod depth_tests {
    use super::*;
    use crate::codec::CoinApiDecoder;

    #[test]
    fn metadata_deeper_than_the_limit_is_a_decode_error() {
        assert_eq!(nesting_depth(br#"{"a":"[[[{{\"","b":[1,{"c":[]}]}"#), 4);
        let mut deep = br#"{"type":"asset","asset_id":"X","n":"#.to_vec();
        deep.extend(std::iter::repeat_n(b'[', 1000));
        deep.extend(std::iter::repeat_n(b']', 1000));
        deep.push(b'}');
        let err = CoinApiDecoder::default().decode(&deep).unwrap_err();
        assert!(err.0.contains("nested deeper than 32"), "{err}");
        let flat = br#"{"type":"symbol","symbol_id":"S","x":[[1]]}"#;
        assert!(matches!(
            CoinApiDecoder::default().decode(flat),
            Ok(Msg::Metadata(_))
        ));
    }
}
