//! Moment real-time frames (Orders and Prices) to [`Msg`]. Where the wire shape is our
//! interpretation (PROTOCOLS.md 2.7) the documented variants are accepted: order fields nested
//! under `order` or flat, `msg_number` as a string or an integer, prices nullable.

use simd_json::prelude::*;
use simd_json::tape::Value;

use super::fields::Fields;
use super::{DecodeError, FrameDecoder, Interner, Venue};
use crate::model::{time, Msg, OrderEvent, OrderEventKind, PriceUpdate, ServerError, Unknown};

/// The Moment real-time venue: frames keyed by `msg_type`.
pub struct Moment;

/// A Moment frame decoder (one per connection).
pub type MomentDecoder = FrameDecoder<Moment>;

impl Venue for Moment {
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
        _scratch: &mut super::fast::Scratch,
    ) -> Option<Msg> {
        super::fast::moment(frame, interner)
    }
}

/// A `msg_number` is `YYYYMMDD` followed by a 10-digit counter: 18 digits whose first eight
/// are a real date. Anything else would become a baseline (or a resume point) that no real
/// message could follow.
pub(crate) fn valid_msg_number(n: u64) -> bool {
    let date = n / 10_000_000_000;
    let (year, month, day) = (date / 10_000, date / 100 % 100, date % 100);
    (1000..=9999).contains(&year) && time::is_date(year, month, day)
}

/// `YYYYMMDD` + 10-digit counter, from a string (documented) or an integer.
fn msg_number(f: &Fields<'_, '_>) -> Result<u64, DecodeError> {
    let v = f
        .obj
        .get("msg_number")
        .ok_or_else(|| DecodeError(format!("{}: missing field `msg_number`", f.what)))?;
    let n = match v.as_u64() {
        Some(n) => n,
        None => v
            .into_string()
            .filter(|s| !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                DecodeError(format!(
                    "{}: field `msg_number` is not a decimal message number",
                    f.what
                ))
            })?,
    };
    if !valid_msg_number(n) {
        return Err(DecodeError(format!(
            "{}: field `msg_number` {n} does not start with a date (YYYYMMDD + 10 digits)",
            f.what
        )));
    }
    Ok(n)
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
    let kind = match obj.get("msg_type") {
        None => return Err(DecodeError("missing field `msg_type`".into())),
        Some(v) => v
            .into_string()
            .ok_or_else(|| DecodeError("field `msg_type` is not a string".into()))?,
    };
    let json = || -> Box<str> { String::from_utf8_lossy(wire).into() };
    let msg = match kind {
        "success" => {
            let f = Fields::new("success", obj);
            Msg::Success {
                msg: f.opt_str("msg")?.unwrap_or("").into(),
            }
        }
        "subscription" => {
            let f = Fields::new("subscription", obj);
            Msg::Subscription {
                instrument_id: f.opt_str("instrument_id")?.map(Into::into),
                msg: f.opt_str("msg")?.unwrap_or("").into(),
            }
        }
        "error" => {
            let f = Fields::new("error", obj);
            // Moment's REST envelope says `error`; the stream's control message `msg`.
            let message = match f.opt_str("msg")? {
                Some(m) => m,
                None => f.opt_str("error")?.unwrap_or(""),
            };
            Msg::Error(ServerError {
                message: message.into(),
                error_type: f.opt_str("error_type")?.map(Into::into),
            })
        }
        "price_update" => {
            let f = Fields::new("price_update", obj);
            let cusip = f.opt_str("cusip")?;
            let isin = f.opt_str("isin")?;
            let id = f
                .opt_str("instrument_id")?
                .or(cusip)
                .or(isin)
                .ok_or_else(|| DecodeError("price_update: missing field `instrument_id`".into()))?;
            Msg::PriceUpdate(Box::new(PriceUpdate {
                instrument_id: interner.intern(id),
                isin: isin.map(|s| interner.intern(s)),
                cusip: cusip.map(|s| interner.intern(s)),
                timestamp: f.opt_time("timestamp")?,
                price: f.opt_f64("price")?,
                yield_to_worst: f.opt_f64("yield_to_worst")?,
                yield_to_maturity: f.opt_f64("yield_to_maturity")?,
                bid_price: f.opt_f64("bid_price")?,
                bid_size: f.opt_f64("bid_size")?,
                ask_price: f.opt_f64("ask_price")?,
                ask_size: f.opt_f64("ask_size")?,
                json: json(),
            }))
        }
        "order_update" => order_event(OrderEventKind::Order, root, interner, json())?,
        "allocation_update" => order_event(OrderEventKind::Allocation, root, interner, json())?,
        "system_update" => order_event(OrderEventKind::System, root, interner, json())?,
        other => Msg::Unknown(Unknown {
            kind: other.into(),
            raw: json(),
        }),
    };
    Ok(msg)
}

fn order_event(
    kind: OrderEventKind,
    root: Value<'_, '_>,
    interner: &mut Interner,
    json: Box<str>,
) -> Result<Msg, DecodeError> {
    let what = kind.wire();
    let object = || {
        root.as_object()
            .ok_or_else(|| DecodeError("not a JSON object".into()))
    };
    let f = Fields::new(what, object()?);
    let msg_number = msg_number(&f)?;
    let event_type = f
        .opt_str("event_type")?
        .or(f.opt_str("event")?)
        .ok_or_else(|| DecodeError(format!("{what}: missing field `event_type`")))?;
    // Order fields: nested under `order` when present, else on the message itself.
    let order = match f.obj.get("order") {
        Some(v) if v.as_null().is_none() => v
            .as_object()
            .ok_or_else(|| DecodeError(format!("{what}: field `order` is not an object")))?,
        _ => object()?,
    };
    let o = Fields::new(what, order);
    let key = |s: Option<&str>, i: &mut Interner| s.map(|s| i.intern(s));
    Ok(Msg::OrderEvent(Box::new(OrderEvent {
        kind,
        msg_number,
        event_type: interner.intern(event_type),
        order_id: o.opt_str("id")?.or(o.opt_str("order_id")?).map(Into::into),
        status: key(o.opt_str("status")?, interner),
        side: key(o.opt_str("side")?, interner),
        order_type: key(o.opt_str("type")?, interner),
        cusip: key(o.opt_str("cusip")?, interner),
        isin: key(o.opt_str("isin")?, interner),
        limit_price: o.opt_f64("limit_price")?,
        filled_amount: amount(&o, "filled_amount")?,
        filled_avg_price: o.opt_f64("filled_avg_price")?,
        json,
    })))
}

/// An amount is a number, or an object such as `{"par": 3000.0}` whose one value is taken.
fn amount(f: &Fields<'_, '_>, key: &str) -> Result<Option<f64>, DecodeError> {
    match f.obj.get(key) {
        None => Ok(None),
        Some(v) if v.as_null().is_some() => Ok(None),
        Some(v) => {
            if let Some(x) = v.cast_f64() {
                return Ok(Some(x));
            }
            let inner = v.as_object().and_then(|o| o.values().next());
            match inner.and_then(|x| x.cast_f64()) {
                Some(x) => Ok(Some(x)),
                None => Err(DecodeError(format!(
                    "{}: field `{key}` is not an amount",
                    f.what
                ))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> Result<Msg, DecodeError> {
        let mut d = MomentDecoder::default();
        crate::codec::tests_fast::assert_identical(&mut d, s.as_bytes());
        d.decode(s.as_bytes())
    }

    #[test]
    fn control_messages() {
        assert_eq!(
            decode(r#"{"msg_type":"success","msg":"connected"}"#).unwrap(),
            Msg::Success {
                msg: "connected".into()
            }
        );
        assert_eq!(
            decode(r#"{"msg_type":"subscription","instrument_id":"037833DP2","msg":"subscribed"}"#)
                .unwrap(),
            Msg::Subscription {
                instrument_id: Some("037833DP2".into()),
                msg: "subscribed".into()
            }
        );
        let Msg::Error(e) = decode(
            r#"{"msg_type":"error","msg":"unknown instrument X","error_type":"invalid_request"}"#,
        )
        .unwrap() else {
            panic!("not an error")
        };
        assert_eq!(&*e.message, "unknown instrument X");
        assert_eq!(e.error_type.as_deref(), Some("invalid_request"));
    }

    #[test]
    fn price_update_with_nulls() {
        let Msg::PriceUpdate(p) = decode(
            r#"{"msg_type":"price_update","instrument_id":"880591DM1","isin":"US880591DM12","cusip":"880591DM1","timestamp":"2024-05-01T14:30:00.123456789Z","price":null,"bid_price":null,"bid_size":null,"ask_price":101.0,"ask_size":250000}"#,
        )
        .unwrap() else {
            panic!("not a price")
        };
        assert_eq!(&*p.instrument_id, "880591DM1");
        assert_eq!(p.timestamp.unwrap() % 1_000_000_000, 123_456_789);
        assert_eq!(p.price, None);
        assert_eq!(p.bid_price, None);
        assert_eq!(p.ask_price, Some(101.0));
        assert!(p.json.contains("US880591DM12"));
    }

    #[test]
    fn order_events_nested_and_flat() {
        let Msg::OrderEvent(o) = decode(
            r#"{"msg_type":"order_update","msg_number":"202405010000000042","event_type":"execution","order":{"id":"mo_1","type":"limit","side":"buy","status":"partially_filled","cusip":"912810SS8","limit_price":99.5,"amount":{"par":3000.0},"filled_amount":{"par":1000.0},"filled_avg_price":99.4}}"#,
        )
        .unwrap() else {
            panic!("not an order event")
        };
        assert_eq!(o.msg_number, 202_405_010_000_000_042);
        assert_eq!(&*o.event_type, "execution");
        assert_eq!(o.order_id.as_deref(), Some("mo_1"));
        assert_eq!(o.order_type.as_deref(), Some("limit"));
        assert_eq!(o.filled_amount, Some(1000.0));
        let Msg::OrderEvent(s) = decode(
            r#"{"msg_type":"system_update","msg_number":202405010000000043,"event_type":"cancel_request","id":"mo_1"}"#,
        )
        .unwrap() else {
            panic!("not a system event")
        };
        assert_eq!(s.kind, OrderEventKind::System);
        assert_eq!(s.order_id.as_deref(), Some("mo_1"));
    }

    #[test]
    fn bad_input() {
        for (input, want) in [
            ("", "empty frame"),
            ("{", "invalid JSON"),
            ("[]", "not a JSON object"),
            (r#"{"msg":"x"}"#, "missing field `msg_type`"),
            (r#"{"msg_type":1}"#, "not a string"),
            (
                r#"{"msg_type":"order_update","event_type":"x"}"#,
                "missing field `msg_number`",
            ),
            (
                r#"{"msg_type":"order_update","msg_number":"20240501x","event_type":"x"}"#,
                "not a decimal",
            ),
            (
                r#"{"msg_type":"order_update","msg_number":"202405010000000001"}"#,
                "missing field `event_type`",
            ),
            (
                r#"{"msg_type":"price_update","price":1}"#,
                "missing field `instrument_id`",
            ),
            (
                r#"{"msg_type":"price_update","instrument_id":"X","price":"abc"}"#,
                "not a finite number",
            ),
        ] {
            let err = decode(input).unwrap_err();
            assert!(err.0.contains(want), "{input}: {err}");
        }
        assert!(matches!(
            decode(r#"{"msg_type":"brand_new","x":1}"#).unwrap(),
            Msg::Unknown(u) if &*u.kind == "brand_new"
        ));
    }

    /// A `msg_number` must be `YYYYMMDD` + 10 digits with a real date: anything else would
    /// become a baseline (and a resume point) that silences every later order.
    #[test]
    fn msg_number_must_start_with_a_date() {
        let order = |n: &str| {
            format!(
                r#"{{"msg_type":"order_update","msg_number":{n},"event_type":"new","order":{{"id":"mo_1"}}}}"#
            )
        };
        let date = "does not start with a date";
        for (n, want) in [
            (r#""202405010000000042""#, None),
            ("202405010000000042", None),
            (r#""202402290000000000""#, None),
            (r#""999912319999999999""#, None),
            (r#""9999999999999999999""#, Some(date)),
            ("9999999999999999999", Some(date)),
            (
                r#""18446744073709551615""#,
                Some("not a decimal message number"),
            ),
            (r#""202302290000000000""#, Some(date)),
            (r#""202413010000000000""#, Some(date)),
            (r#""202405000000000000""#, Some(date)),
            (r#""202405320000000000""#, Some(date)),
            (r#""1""#, Some(date)),
            ("0", Some(date)),
            (r#""20240501000000004""#, Some(date)),
            (r#""099912310000000000""#, Some(date)),
        ] {
            let got = decode(&order(n));
            match (want, &got) {
                (None, Ok(Msg::OrderEvent(_))) => {}
                (Some(w), Err(e)) if e.0.contains(w) => {}
                _ => panic!("{n}: {got:?}"),
            }
        }
    }

    #[test]
    fn unknown_type_is_kept() {
        assert!(matches!(
            decode(r#"{"msg_type":"brand_new","x":1}"#).unwrap(),
            Msg::Unknown(u) if &*u.kind == "brand_new"
        ));
    }
}
