//! The schema-aware decoder: one pass over the frame's bytes straight into the message, no tape.
//!
//! It accepts only a strict, common subset of JSON — compact (no whitespace), strings of
//! printable ASCII without escapes, numbers that simd-json's exact fast path converts (at most
//! 17 digits; decimals with a significand below 2**53 and a power of ten within ±22, computed by
//! the same single multiplication or division, so the results are the same bits), at most
//! [`MAX_DEPTH`] levels in members it does not model — and for each known type only values of
//! the kinds the general decoder would accept. Everything else (an error, an unknown type, an
//! escape, a duplicate of a modelled member, a value the general decoder turns into an error)
//! answers `None`, and the frame goes through the general decoder, which stays the reference:
//! for any frame the fast path accepts, the general one gives an equal message (tests and the
//! `decoder_diff` fuzz target check this).

use crate::model::{
    time, Book, BookKind, Index, Level, Msg, OrderEvent, OrderEventKind, PriceUpdate, Quote, Trade,
};

use super::{moment::valid_msg_number, Interner, MAX_SEQUENCE};

/// Nesting accepted inside members the fast path skips; deeper frames take the general path.
const MAX_DEPTH: u32 = 32;

/// Reused per connection: book levels are collected here, then copied once into a `Vec` of
/// exactly their number (one allocation per side, as the model needs).
#[derive(Default)]
pub struct Scratch {
    levels: Vec<Level>,
}

/// A JSON number as simd-json represents it.
#[derive(Clone, Copy)]
enum Num {
    U(u64),
    I(i64),
    F(f64),
}

impl Num {
    /// As simd-json's `cast_f64`.
    #[allow(clippy::cast_precision_loss)]
    fn f64(self) -> f64 {
        match self {
            Num::U(u) => u as f64,
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

/// Powers of ten exact in an f64.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// The largest significand the exact fast path takes (simd-json's bound, 2**53 - 1).
const MAX_SIGNIFICAND: u64 = (1 << 53) - 1;

/// A read position in one frame. Every method answers `None` for "not in the fast subset".
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    #[inline]
    fn eat_lit(&mut self, lit: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + lit.len())? == lit {
            self.i += lit.len();
            Some(())
        } else {
            None
        }
    }

    /// A string of printable ASCII without escapes (valid UTF-8, and the same text simd-json
    /// gives), as bytes.
    #[inline]
    fn bytes(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = self.b.get(start..)?;
        let n = string_end(rest)?;
        if rest[n] != b'"' {
            return None;
        }
        self.i = start + n + 1;
        Some(&rest[..n])
    }

    #[inline]
    fn str(&mut self) -> Option<&'a str> {
        // ASCII checked by `bytes`; this check is a few instructions on short strings.
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// `null` as `None`, else a string.
    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        if self.peek()? == b'n' {
            self.eat_lit(b"null")?;
            Some(None)
        } else {
            self.str().map(Some)
        }
    }

    /// A key and its colon.
    #[inline]
    fn key(&mut self) -> Option<&'a [u8]> {
        let k = self.bytes()?;
        self.eat(b':')?;
        Some(k)
    }

    /// After the first member of an object: the next key, or `Some(None)` at its end.
    #[inline]
    fn next_key(&mut self) -> Option<Option<&'a [u8]>> {
        match self.peek()? {
            b',' => {
                self.i += 1;
                self.key().map(Some)
            }
            b'}' => {
                self.i += 1;
                Some(None)
            }
            _ => None,
        }
    }

    /// Just after `{`: the first key, or `Some(None)` for `{}`.
    fn first_key(&mut self) -> Option<Option<&'a [u8]>> {
        if self.peek()? == b'}' {
            self.i += 1;
            Some(None)
        } else {
            self.key().map(Some)
        }
    }

    /// A number in the exact subset (see the module's doc).
    #[inline]
    fn num(&mut self) -> Option<Num> {
        let neg = self.peek()? == b'-';
        if neg {
            self.i += 1;
        }
        let b = self.b;
        let mut i = self.i;
        let mut m: u64 = 0;
        let int_start = i;
        while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            m = m.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            i += 1;
        }
        let int_digits = i - int_start;
        // JSON: at least one digit, and no leading zero before another digit.
        if int_digits == 0 || (int_digits > 1 && b[int_start] == b'0') {
            return None;
        }
        let mut digits = int_digits;
        let mut exp: i64 = 0;
        let mut float = false;
        if b.get(i) == Some(&b'.') {
            float = true;
            i += 1;
            let frac_start = i;
            while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                m = m.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                i += 1;
            }
            let frac = i - frac_start;
            if frac == 0 {
                return None;
            }
            digits += frac;
            exp = -(frac as i64);
        }
        // Beyond 17 digits the significand may have wrapped, and simd-json takes other paths.
        if digits > 17 {
            return None;
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            float = true;
            i += 1;
            let neg_exp = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let e_start = i;
            let mut e: i64 = 0;
            while let Some(&c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                e = e * 10 + i64::from(c - b'0');
                i += 1;
                if i - e_start > 3 {
                    return None;
                }
            }
            if i == e_start {
                return None;
            }
            exp += if neg_exp { -e } else { e };
        }
        // The terminator: what may follow a value in the compact subset.
        if !matches!(b.get(i), Some(b',' | b'}' | b']')) {
            return None;
        }
        self.i = i;
        if !float {
            return Some(if neg {
                #[allow(clippy::cast_possible_wrap)]
                Num::I((m as i64).wrapping_neg())
            } else {
                Num::U(m)
            });
        }
        if !(-22..=22).contains(&exp) || m > MAX_SIGNIFICAND {
            return None;
        }
        #[allow(clippy::cast_precision_loss, clippy::cast_sign_loss)]
        let mut f = m as f64;
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)]
        if exp < 0 {
            f /= POW10[(-exp) as usize];
        } else {
            f *= POW10[exp as usize];
        }
        Some(Num::F(if neg { -f } else { f }))
    }

    /// A number as `Fields::f64` takes it (the subset is always finite).
    #[inline]
    fn f64(&mut self) -> Option<f64> {
        self.num().map(Num::f64)
    }

    /// `null` as `None`, else a number.
    fn opt_f64(&mut self) -> Option<Option<f64>> {
        if self.peek()? == b'n' {
            self.eat_lit(b"null")?;
            Some(None)
        } else {
            self.f64().map(Some)
        }
    }

    /// A CoinAPI sequence: an unsigned integer no larger than [`MAX_SEQUENCE`].
    #[inline]
    fn sequence(&mut self) -> Option<u64> {
        match self.num()? {
            Num::U(u) if u <= MAX_SEQUENCE => Some(u),
            Num::I(0) => Some(0),
            _ => None,
        }
    }

    /// A timestamp string, by the general decoder's own parser.
    #[inline]
    fn time(&mut self) -> Option<i64> {
        time::parse_ns(self.str()?).ok()
    }

    /// `null` as `None`, else a timestamp.
    fn opt_time(&mut self) -> Option<Option<i64>> {
        if self.peek()? == b'n' {
            self.eat_lit(b"null")?;
            Some(None)
        } else {
            self.time().map(Some)
        }
    }

    fn bool(&mut self) -> Option<bool> {
        match self.peek()? {
            b't' => self.eat_lit(b"true").map(|()| true),
            b'f' => self.eat_lit(b"false").map(|()| false),
            _ => None,
        }
    }

    /// Any value in the subset, validated and dropped.
    fn skip(&mut self, depth: u32) -> Option<()> {
        match self.peek()? {
            b'"' => self.bytes().map(drop),
            b'-' | b'0'..=b'9' => self.num().map(drop),
            b't' => self.eat_lit(b"true"),
            b'f' => self.eat_lit(b"false"),
            b'n' => self.eat_lit(b"null"),
            b'[' if depth < MAX_DEPTH => {
                self.i += 1;
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.skip(depth + 1)?;
                    match self.peek()? {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'{' if depth < MAX_DEPTH => {
                self.i += 1;
                let mut key = self.first_key()?;
                while key.is_some() {
                    self.skip(depth + 1)?;
                    key = self.next_key()?;
                }
                Some(())
            }
            _ => None,
        }
    }

    /// The frame ends right after the root object's `}`.
    #[inline]
    fn at_end(&self) -> Option<()> {
        (self.i == self.b.len()).then_some(())
    }
}

/// The index of the first byte of `s` that is `"`, `\\`, a control character or not ASCII;
/// eight bytes at a time (SWAR), since most of a frame's bytes are inside strings.
#[inline]
fn string_end(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = s.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().ok()?);
        // A zero byte of `x` sets its high bit in `zero(x)`; bits above the first hit may be
        // false positives (borrows), never below it, so the lowest set bit is exact.
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        let hit = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
            | (w & HIGH);
        if hit != 0 {
            return Some(i + (hit.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c))
        .map(|n| i + n)
}

/// Stores `v` in an empty slot; a modelled member met twice leaves the fast path.
#[inline]
fn put<T>(slot: &mut Option<T>, v: T) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v);
    Some(())
}

/// A member that may be `null`: `seen` tracks presence, so a repeat is still caught.
#[inline]
fn put_opt<T>(slot: &mut Option<Option<T>>, v: Option<T>) -> Option<()> {
    put(slot, v)
}

/// The fast path for a CoinAPI frame; `None` sends it to the general decoder.
pub(crate) fn coinapi(frame: &[u8], interner: &mut Interner, scratch: &mut Scratch) -> Option<Msg> {
    let mut c = Cursor { b: frame, i: 0 };
    c.eat_lit(b"{\"type\":")?;
    let kind = c.bytes()?;
    let msg = match kind {
        b"trade" => trade(&mut c, interner)?,
        b"quote" => quote(&mut c, interner)?,
        b"book" => Msg::Book(book(&mut c, BookKind::Full, interner, scratch)?),
        b"book5" => Msg::Book(book(&mut c, BookKind::Top5, interner, scratch)?),
        b"book20" => Msg::Book(book(&mut c, BookKind::Top20, interner, scratch)?),
        b"book50" => Msg::Book(book(&mut c, BookKind::Top50, interner, scratch)?),
        b"index" => index(&mut c, interner)?,
        b"heartbeat" | b"hearbeat" => {
            while c.next_key()?.is_some() {
                c.skip(1)?;
            }
            Msg::Heartbeat
        }
        _ => return None,
    };
    c.at_end()?;
    Some(msg)
}

fn trade(c: &mut Cursor<'_>, interner: &mut Interner) -> Option<Msg> {
    let (mut symbol, mut sequence, mut tex, mut tca) = (None, None, None, None);
    let (mut uuid, mut price, mut size, mut side) = (None, None, None, None);
    while let Some(k) = c.next_key()? {
        match k {
            b"symbol_id" => put(&mut symbol, c.str()?)?,
            b"sequence" => put(&mut sequence, c.sequence()?)?,
            b"time_exchange" => put(&mut tex, c.time()?)?,
            b"time_coinapi" => put(&mut tca, c.time()?)?,
            b"uuid" => put(&mut uuid, c.str()?)?,
            b"price" => put(&mut price, c.f64()?)?,
            b"size" => put(&mut size, c.f64()?)?,
            b"taker_side" => put_opt(&mut side, c.opt_str()?)?,
            b"type" => return None,
            _ => c.skip(1)?,
        }
    }
    Some(Msg::Trade(Trade {
        symbol_id: interner.intern(symbol?),
        sequence: sequence?,
        time_exchange: tex?,
        time_coinapi: tca?,
        uuid: uuid?.into(),
        price: price?,
        size: size?,
        taker_side: interner.intern(side.flatten().unwrap_or("UNKNOWN")),
    }))
}

fn quote(c: &mut Cursor<'_>, interner: &mut Interner) -> Option<Msg> {
    let (mut symbol, mut sequence, mut tex, mut tca) = (None, None, None, None);
    let (mut ap, mut asz, mut bp, mut bsz) = (None, None, None, None);
    while let Some(k) = c.next_key()? {
        match k {
            b"symbol_id" => put(&mut symbol, c.str()?)?,
            b"sequence" => put(&mut sequence, c.sequence()?)?,
            b"time_exchange" => put(&mut tex, c.time()?)?,
            b"time_coinapi" => put(&mut tca, c.time()?)?,
            b"ask_price" => put(&mut ap, c.f64()?)?,
            b"ask_size" => put(&mut asz, c.f64()?)?,
            b"bid_price" => put(&mut bp, c.f64()?)?,
            b"bid_size" => put(&mut bsz, c.f64()?)?,
            b"type" => return None,
            _ => c.skip(1)?,
        }
    }
    Some(Msg::Quote(Quote {
        symbol_id: interner.intern(symbol?),
        sequence: sequence?,
        time_exchange: tex?,
        time_coinapi: tca?,
        ask_price: ap?,
        ask_size: asz?,
        bid_price: bp?,
        bid_size: bsz?,
    }))
}

fn index(c: &mut Cursor<'_>, interner: &mut Interner) -> Option<Msg> {
    let (mut id, mut sequence, mut tca, mut value) = (None, None, None, None);
    while let Some(k) = c.next_key()? {
        match k {
            b"index_id" => put(&mut id, c.str()?)?,
            b"sequence" => put(&mut sequence, c.sequence()?)?,
            b"time_coinapi" => put(&mut tca, c.time()?)?,
            b"value" => put(&mut value, c.f64()?)?,
            b"type" => return None,
            _ => c.skip(1)?,
        }
    }
    Some(Msg::Index(Index {
        index_id: interner.intern(id?),
        sequence: sequence?,
        time_coinapi: tca?,
        value: value?,
    }))
}

fn book(
    c: &mut Cursor<'_>,
    kind: BookKind,
    interner: &mut Interner,
    scratch: &mut Scratch,
) -> Option<Book> {
    let (mut symbol, mut sequence, mut tex, mut tca) = (None, None, None, None);
    let (mut snapshot, mut asks, mut bids) = (None, None, None);
    while let Some(k) = c.next_key()? {
        match k {
            b"symbol_id" => put(&mut symbol, c.str()?)?,
            b"sequence" => put(&mut sequence, c.sequence()?)?,
            b"time_exchange" => put(&mut tex, c.time()?)?,
            b"time_coinapi" => put(&mut tca, c.time()?)?,
            // Top-N books ignore it whatever it holds; the general path handles that case.
            b"is_snapshot" if kind == BookKind::Full => put(&mut snapshot, c.bool()?)?,
            b"asks" => put(&mut asks, levels(c, scratch)?)?,
            b"bids" => put(&mut bids, levels(c, scratch)?)?,
            b"type" | b"is_snapshot" => return None,
            _ => c.skip(1)?,
        }
    }
    Some(Book {
        kind,
        symbol_id: interner.intern(symbol?),
        sequence: sequence?,
        time_exchange: tex?,
        time_coinapi: tca?,
        is_snapshot: match kind {
            BookKind::Full => snapshot?,
            _ => true,
        },
        asks: asks.unwrap_or_default(),
        bids: bids.unwrap_or_default(),
    })
}

/// `[{"price":p,"size":s},...]`.
fn levels(c: &mut Cursor<'_>, scratch: &mut Scratch) -> Option<Vec<Level>> {
    c.eat(b'[')?;
    if c.peek()? == b']' {
        c.i += 1;
        return Some(Vec::new());
    }
    let out = &mut scratch.levels;
    out.clear();
    loop {
        c.eat(b'{')?;
        let (mut price, mut size) = (None, None);
        let mut key = c.first_key()?;
        while let Some(k) = key {
            match k {
                b"price" => put(&mut price, c.f64()?)?,
                b"size" => put(&mut size, c.f64()?)?,
                _ => c.skip(2)?,
            }
            key = c.next_key()?;
        }
        out.push((price?, size?));
        match c.peek()? {
            b',' => c.i += 1,
            b']' => {
                c.i += 1;
                return Some(out.as_slice().to_vec());
            }
            _ => return None,
        }
    }
}

/// The fast path for a Moment frame; `None` sends it to the general decoder.
pub(crate) fn moment(frame: &[u8], interner: &mut Interner) -> Option<Msg> {
    let mut c = Cursor { b: frame, i: 0 };
    c.eat_lit(b"{\"msg_type\":")?;
    let kind = c.bytes()?;
    let msg = match kind {
        b"price_update" => price_update(&mut c, interner)?,
        b"order_update" => order_event(&mut c, OrderEventKind::Order, interner)?,
        b"allocation_update" => order_event(&mut c, OrderEventKind::Allocation, interner)?,
        b"system_update" => order_event(&mut c, OrderEventKind::System, interner)?,
        _ => return None,
    };
    Some(msg)
}

/// The whole frame as text (the fast subset is ASCII).
fn json(frame: &[u8]) -> Option<Box<str>> {
    std::str::from_utf8(frame).ok().map(Into::into)
}

fn price_update(c: &mut Cursor<'_>, interner: &mut Interner) -> Option<Msg> {
    let (mut id, mut isin, mut cusip, mut ts) = (None, None, None, None);
    let (mut price, mut ytw, mut ytm) = (None, None, None);
    let (mut bp, mut bsz, mut ap, mut asz) = (None, None, None, None);
    while let Some(k) = c.next_key()? {
        match k {
            b"instrument_id" => put_opt(&mut id, c.opt_str()?)?,
            b"isin" => put_opt(&mut isin, c.opt_str()?)?,
            b"cusip" => put_opt(&mut cusip, c.opt_str()?)?,
            b"timestamp" => put_opt(&mut ts, c.opt_time()?)?,
            b"price" => put_opt(&mut price, c.opt_f64()?)?,
            b"yield_to_worst" => put_opt(&mut ytw, c.opt_f64()?)?,
            b"yield_to_maturity" => put_opt(&mut ytm, c.opt_f64()?)?,
            b"bid_price" => put_opt(&mut bp, c.opt_f64()?)?,
            b"bid_size" => put_opt(&mut bsz, c.opt_f64()?)?,
            b"ask_price" => put_opt(&mut ap, c.opt_f64()?)?,
            b"ask_size" => put_opt(&mut asz, c.opt_f64()?)?,
            b"msg_type" => return None,
            _ => c.skip(1)?,
        }
    }
    c.at_end()?;
    let (isin, cusip) = (isin.flatten(), cusip.flatten());
    let id = id.flatten().or(cusip).or(isin)?;
    Some(Msg::PriceUpdate(Box::new(PriceUpdate {
        instrument_id: interner.intern(id),
        isin: isin.map(|s| interner.intern(s)),
        cusip: cusip.map(|s| interner.intern(s)),
        timestamp: ts.flatten(),
        price: price.flatten(),
        yield_to_worst: ytw.flatten(),
        yield_to_maturity: ytm.flatten(),
        bid_price: bp.flatten(),
        bid_size: bsz.flatten(),
        ask_price: ap.flatten(),
        ask_size: asz.flatten(),
        json: json(c.b)?,
    })))
}

/// The order fields of an order event, from the nested `order` object or the message itself.
#[derive(Default)]
struct OrderFields<'a> {
    id: Option<Option<&'a str>>,
    order_id: Option<Option<&'a str>>,
    status: Option<Option<&'a str>>,
    side: Option<Option<&'a str>>,
    order_type: Option<Option<&'a str>>,
    cusip: Option<Option<&'a str>>,
    isin: Option<Option<&'a str>>,
    limit_price: Option<Option<f64>>,
    filled_amount: Option<Option<f64>>,
    filled_avg_price: Option<Option<f64>>,
}

impl<'a> OrderFields<'a> {
    /// Reads the member `k` if it is an order field; `Some(false)` if it is not one.
    fn member(&mut self, k: &[u8], c: &mut Cursor<'a>) -> Option<bool> {
        match k {
            b"id" => put_opt(&mut self.id, c.opt_str()?)?,
            b"order_id" => put_opt(&mut self.order_id, c.opt_str()?)?,
            b"status" => put_opt(&mut self.status, c.opt_str()?)?,
            b"side" => put_opt(&mut self.side, c.opt_str()?)?,
            b"type" => put_opt(&mut self.order_type, c.opt_str()?)?,
            b"cusip" => put_opt(&mut self.cusip, c.opt_str()?)?,
            b"isin" => put_opt(&mut self.isin, c.opt_str()?)?,
            b"limit_price" => put_opt(&mut self.limit_price, c.opt_f64()?)?,
            b"filled_amount" => put_opt(&mut self.filled_amount, amount(c)?)?,
            b"filled_avg_price" => put_opt(&mut self.filled_avg_price, c.opt_f64()?)?,
            _ => return Some(false),
        }
        Some(true)
    }
}

/// An amount: `null`, a number, or an object whose first value is a number.
fn amount(c: &mut Cursor<'_>) -> Option<Option<f64>> {
    match c.peek()? {
        b'{' => {
            c.i += 1;
            c.first_key()??;
            let v = c.f64()?;
            while c.next_key()?.is_some() {
                c.skip(2)?;
            }
            Some(Some(v))
        }
        _ => c.opt_f64(),
    }
}

fn order_event(c: &mut Cursor<'_>, kind: OrderEventKind, interner: &mut Interner) -> Option<Msg> {
    let (mut number, mut event_type, mut event) = (None, None, None);
    let mut root = OrderFields::default();
    // `Some(None)`: `order` was null, so the fields are the message's own.
    let mut nested: Option<Option<OrderFields<'_>>> = None;
    while let Some(k) = c.next_key()? {
        match k {
            b"msg_number" => {
                let s = c.bytes()?;
                let n = parse_digits(s)?;
                put(&mut number, valid_msg_number(n).then_some(n)?)?;
            }
            b"event_type" => put_opt(&mut event_type, c.opt_str()?)?,
            b"event" => put_opt(&mut event, c.opt_str()?)?,
            b"order" => {
                if c.peek()? == b'n' {
                    c.eat_lit(b"null")?;
                    put(&mut nested, None)?;
                } else {
                    c.eat(b'{')?;
                    let mut o = OrderFields::default();
                    let mut key = c.first_key()?;
                    while let Some(k) = key {
                        if !o.member(k, c)? {
                            c.skip(2)?;
                        }
                        key = c.next_key()?;
                    }
                    put(&mut nested, Some(o))?;
                }
            }
            b"msg_type" => return None,
            _ => {
                if !root.member(k, c)? {
                    c.skip(1)?;
                }
            }
        }
    }
    c.at_end()?;
    let event_type = event_type.flatten().or(event.flatten())?;
    let o = nested.flatten().unwrap_or(root);
    let mut key = |s: Option<Option<&str>>| s.flatten().map(|s| interner.intern(s));
    let (status, side, order_type) = (key(o.status), key(o.side), key(o.order_type));
    let (cusip, isin) = (key(o.cusip), key(o.isin));
    Some(Msg::OrderEvent(Box::new(OrderEvent {
        kind,
        msg_number: number?,
        event_type: interner.intern(event_type),
        order_id: o.id.flatten().or(o.order_id.flatten()).map(Into::into),
        status,
        side,
        order_type,
        cusip,
        isin,
        limit_price: o.limit_price.flatten(),
        filled_amount: o.filled_amount.flatten(),
        filled_avg_price: o.filled_avg_price.flatten(),
        json: json(c.b)?,
    })))
}

/// 1 to 19 ASCII digits as a u64 (the general decoder's rule for a string `msg_number`).
fn parse_digits(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| {
        d.is_ascii_digit()
            .then_some(())
            .and_then(|()| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::string_end;

    /// The eight-at-a-time scan finds the same first stop byte as a byte-by-byte one, for
    /// every stop byte at every position of strings up to 40 bytes.
    #[test]
    fn string_end_matches_the_plain_scan() {
        let plain = |s: &[u8]| {
            s.iter()
                .position(|&c| c == b'"' || c == b'\\' || !(0x20..0x80).contains(&c))
        };
        for len in 0..40 {
            for at in 0..=len {
                for stop in (0u8..=255).filter(|&c| plain(&[c]).is_some()) {
                    for fill in [b'a', b'!', b'~', 0x7f, b' '] {
                        let mut s = vec![fill; len];
                        if at < len {
                            s[at] = stop;
                        }
                        assert_eq!(string_end(&s), plain(&s), "{s:?}");
                    }
                }
            }
        }
    }
}
