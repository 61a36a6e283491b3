//! Moment side of the simulator (sans-I/O): instruments, the price generator, price-stream
//! requests, and the order-event log with its paper-environment scenarios (PROTOCOLS.md 2.7).
//!
//! Shapes marked [I] in PROTOCOLS.md are this simulator's interpretation:
//! - `subscribe`/`unsubscribe` reply `{"msg_type":"subscription","instrument_id":"<id>",
//!   "msg":"subscribed"|"unsubscribed"}`; `subscribe_all`/`unsubscribe_all` reply
//!   `{"msg_type":"subscription","msg":"subscribed_all"|"unsubscribed_all"}` (no instrument).
//! - Bad requests get `{"msg_type":"error","msg":...,"error_type":"invalid_request"}` and the
//!   connection stays open.
//! - `price_update` carries `instrument_id` in the form the client subscribed with (CUSIP or
//!   ISIN; CUSIP after `subscribe_all`).
//! - Order events nest the order: `{"msg_type":"order_update","msg_number":"...",
//!   "event_type":"...","order":{...}}`; allocation events nest `allocation`; system events
//!   carry `order_id`.

use std::collections::HashMap;
use std::sync::Arc;

use crate::sim::conn::{Ctrl, LinkScope};
use crate::sim::fmt::{push_fixed, push_json_str, push_ts, push_u64, push_uuid, yyyymmdd};
use crate::sim::market::{Event, Kind, SimRng};

/// `{"msg_type":"success","msg":"connected"}`.
pub(crate) fn welcome_json() -> String {
    "{\"msg_type\":\"success\",\"msg\":\"connected\"}".to_owned()
}

/// `{"msg_type":"error","msg":...,"error_type":...}`.
pub(crate) fn error_json(msg: &str, error_type: &str) -> String {
    let mut s = String::from("{\"msg_type\":\"error\",\"msg\":");
    push_json_str(&mut s, msg);
    s.push_str(",\"error_type\":");
    push_json_str(&mut s, error_type);
    s.push('}');
    s
}

/// Which quote sides an instrument has (the paper environment's special CUSIPs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Quotes {
    Both,
    None,
    BidsOnly,
    OffersOnly,
}

/// How a client named an instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdForm {
    Cusip,
    Isin,
}

#[derive(Clone, Debug)]
pub(crate) struct Instrument {
    pub cusip: String,
    pub isin: String,
    pub quotes: Quotes,
    /// Coupon in 10^-3 percent.
    pub coupon_milli: i64,
}

/// The instrument universe; record keys are CUSIPs (`0..n`), then ISINs (`n..2n`).
#[derive(Debug)]
pub(crate) struct Instruments {
    pub list: Vec<Instrument>,
    by_id: HashMap<String, (usize, IdForm)>,
}

fn cusip_value(c: char) -> u32 {
    match c {
        '0'..='9' => c as u32 - '0' as u32,
        'A'..='Z' => c as u32 - 'A' as u32 + 10,
        '*' => 36,
        '@' => 37,
        '#' => 38,
        _ => 0,
    }
}

/// The CUSIP check digit of an 8-character base.
pub(crate) fn cusip_check(base: &str) -> char {
    let mut sum = 0;
    for (i, c) in base.chars().take(8).enumerate() {
        let mut v = cusip_value(c);
        if i % 2 == 1 {
            v *= 2;
        }
        sum += v / 10 + v % 10;
    }
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

/// The ISIN of a US CUSIP (`US` + CUSIP + Luhn check digit).
pub(crate) fn isin_of(cusip: &str) -> String {
    let body = format!("US{cusip}");
    let mut digits = Vec::with_capacity(24);
    for c in body.chars() {
        let v = cusip_value(c);
        if v >= 10 {
            digits.push(v / 10);
        }
        digits.push(v % 10);
    }
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let v = if i % 2 == 0 { d * 2 } else { *d };
        sum += v / 10 + v % 10;
    }
    format!("{body}{}", (10 - sum % 10) % 10)
}

/// The paper environment's scenario CUSIPs (PROTOCOLS.md 2.7), then Apple's 037833DP2.
const SCENARIO_CUSIPS: [(&str, Quotes); 9] = [
    ("912810SX7", Quotes::Both),
    ("912810SU3", Quotes::Both),
    ("912810SS8", Quotes::Both),
    ("912810RY6", Quotes::Both),
    ("912810UK2", Quotes::Both),
    ("880591DM1", Quotes::None),
    ("3130A6RM1", Quotes::BidsOnly),
    ("3130A2UW4", Quotes::OffersOnly),
    ("037833DP2", Quotes::Both),
];

/// Real issuer prefixes for the rest of the universe.
/// The most instruments a simulator makes (`symbols` above it is clamped): far above any real
/// bond universe, and bounded so the generator always ends.
pub(crate) const MAX_INSTRUMENTS: usize = 10_000_000;

const ISSUERS: [&str; 14] = [
    "037833", "594918", "023135", "38141G", "46647P", "060505", "172967", "931142", "717081",
    "459200", "91282C", "912828", "912810", "3130AK",
];

impl Instruments {
    /// `n` instruments (at least the scenario ones).
    pub(crate) fn new(n: usize) -> Self {
        let mut list: Vec<Instrument> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut push = |list: &mut Vec<Instrument>, cusip: String, quotes: Quotes| {
            if seen.insert(cusip.clone()) {
                let coupon_milli =
                    1_000 + (cusip_value(cusip.chars().nth(7).unwrap_or('0')) as i64 * 137) % 5_000;
                list.push(Instrument {
                    isin: isin_of(&cusip),
                    cusip,
                    quotes,
                    coupon_milli,
                });
            }
        };
        for (c, q) in SCENARIO_CUSIPS {
            push(&mut list, c.to_owned(), q);
        }
        let alpha: Vec<char> = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789".chars().collect();
        let pairs = alpha.len() * alpha.len();
        let two = |i: usize| {
            [
                alpha[(i / alpha.len()) % alpha.len()],
                alpha[i % alpha.len()],
            ]
        };
        let want = n.clamp(SCENARIO_CUSIPS.len(), MAX_INSTRUMENTS);
        let mut k = 0usize;
        // Two issue characters give each issuer 34^2 instruments; past that lap, the issuer's
        // last two characters vary too, so any count up to MAX_INSTRUMENTS is reached (a
        // variant that happens to equal another issuer's code is skipped by `seen`).
        while list.len() < want && k < ISSUERS.len() * pairs * (pairs + 1) {
            let j = k / ISSUERS.len();
            let (lap, issue) = (j / pairs, two(j % pairs));
            let real = ISSUERS[k % ISSUERS.len()];
            let issuer: String = if lap == 0 {
                real.to_owned()
            } else {
                real[..4].chars().chain(two(lap - 1)).collect()
            };
            let base: String = issuer.chars().chain(issue).collect();
            let cusip = format!("{base}{}", cusip_check(&base));
            push(&mut list, cusip, Quotes::Both);
            k += 1;
        }
        let mut by_id = HashMap::new();
        for (i, ins) in list.iter().enumerate() {
            by_id.insert(ins.cusip.clone(), (i, IdForm::Cusip));
            by_id.insert(ins.isin.clone(), (i, IdForm::Isin));
        }
        Self { list, by_id }
    }

    pub(crate) fn lookup(&self, id: &str) -> Option<(usize, IdForm)> {
        self.by_id.get(id).copied()
    }

    pub(crate) fn index_of_cusip(&self, cusip: &str) -> Option<usize> {
        self.lookup(cusip).map(|x| x.0)
    }

    /// The initial record key table: CUSIPs then ISINs.
    pub(crate) fn keys(&self) -> Vec<Arc<str>> {
        let mut k: Vec<Arc<str>> = self.list.iter().map(|i| i.cusip.as_str().into()).collect();
        k.extend(self.list.iter().map(|i| i.isin.as_str().into()));
        k
    }
}

/// A price-stream connection's subscriptions: per instrument, the id form it used.
#[derive(Clone, Debug)]
pub(crate) struct PriceScope {
    pub subs: Vec<Option<IdForm>>,
    pub instruments: Arc<Instruments>,
}

impl PriceScope {
    pub(crate) fn matches(&self, ev: &Event) -> bool {
        ev.kind == Kind::PriceUpdate && self.subs.get(ev.key as usize).is_some_and(Option::is_some)
    }

    fn nonempty(&self) -> bool {
        self.subs.iter().any(Option::is_some)
    }
}

/// Renders a `price_update` with the connection's id form; returns its record key.
pub(crate) fn render_price(ev: &Event, scope: &PriceScope, out: &mut String) -> u32 {
    let i = ev.key as usize;
    let n = scope.instruments.list.len();
    out.clear();
    out.push_str(&ev.head);
    let (id, key) = match (
        scope.subs.get(i).copied().flatten(),
        scope.instruments.list.get(i),
    ) {
        (Some(IdForm::Isin), Some(ins)) => (ins.isin.as_str(), i + n),
        (_, Some(ins)) => (ins.cusip.as_str(), i),
        (_, None) => ("", i),
    };
    out.push_str(id);
    out.push_str(&ev.tail);
    u32::try_from(key).unwrap_or(u32::MAX)
}

/// The reading half of a price-stream connection.
pub(crate) struct PriceSession {
    scope: PriceScope,
}

impl PriceSession {
    pub(crate) fn new(instruments: Arc<Instruments>) -> Self {
        Self {
            scope: PriceScope {
                subs: vec![None; instruments.list.len()],
                instruments,
            },
        }
    }

    fn install(&self, reply: String) -> Vec<Ctrl> {
        vec![Ctrl::Install {
            scope: if self.scope.nonempty() {
                LinkScope::Prices(Arc::new(self.scope.clone()))
            } else {
                LinkScope::Nothing
            },
            heartbeat: None,
            nonempty: self.scope.nonempty(),
            reply: Some(reply),
        }]
    }

    /// Handles one client text frame.
    pub(crate) fn on_text(&mut self, text: &str) -> Vec<Ctrl> {
        use simd_json::prelude::*;
        let invalid = |m: &str| vec![Ctrl::Reply(error_json(m, "invalid_request"))];
        let mut bytes = text.as_bytes().to_vec();
        let Ok(v) = simd_json::to_borrowed_value(&mut bytes) else {
            return invalid("malformed request: invalid JSON");
        };
        let Some(msg_type) = v.get("msg_type").and_then(|m| m.as_str()) else {
            return invalid("malformed request: missing msg_type");
        };
        match msg_type {
            "subscribe" | "unsubscribe" => {
                let Some(id) = v.get("instrument_id").and_then(|m| m.as_str()) else {
                    return invalid("malformed request: instrument_id must be a string");
                };
                let Some((i, form)) = self.scope.instruments.lookup(id) else {
                    return invalid(&format!("unknown instrument {id}"));
                };
                let sub = msg_type == "subscribe";
                self.scope.subs[i] = sub.then_some(form);
                let mut reply = String::from("{\"msg_type\":\"subscription\",\"instrument_id\":");
                push_json_str(&mut reply, id);
                reply.push_str(if sub {
                    ",\"msg\":\"subscribed\"}"
                } else {
                    ",\"msg\":\"unsubscribed\"}"
                });
                self.install(reply)
            }
            "subscribe_all" => {
                for s in &mut self.scope.subs {
                    s.get_or_insert(IdForm::Cusip);
                }
                self.install("{\"msg_type\":\"subscription\",\"msg\":\"subscribed_all\"}".into())
            }
            "unsubscribe_all" => {
                self.scope.subs.iter_mut().for_each(|s| *s = None);
                self.install("{\"msg_type\":\"subscription\",\"msg\":\"unsubscribed_all\"}".into())
            }
            other => invalid(&format!("unknown msg_type {other}")),
        }
    }
}

/// The price generator: one `price_update` per event for a random instrument.
pub(crate) struct PriceGen {
    rng: SimRng,
    instruments: Arc<Instruments>,
    /// Bid per instrument, in 10^-9 percent of par.
    bids: Vec<i64>,
    next_no: u64,
}

const PRICE_HEAD: &str = "{\"msg_type\":\"price_update\",\"instrument_id\":\"";

impl PriceGen {
    pub(crate) fn new(seed: u64, instruments: Arc<Instruments>) -> Self {
        let mut rng = SimRng::new(seed ^ 0x4D4F_4D45_4E54);
        let bids = instruments
            .list
            .iter()
            .map(|_| 99_500_000_000 + rng.below(1_000) as i64 * 1_000_000)
            .collect();
        Self {
            rng,
            instruments,
            bids,
            next_no: 0,
        }
    }

    /// The next `price_update` at wall time `now_ns`.
    pub(crate) fn next_event(&mut self, now_ns: i64) -> Event {
        let no = self.next_no;
        self.next_no += 1;
        let i = self.rng.below(self.instruments.list.len() as u64) as usize;
        // Mean-reverting walk around the paper environment's bid 100 / offer 101.
        let b = &mut self.bids[i];
        let pull = (100_000_000_000 - *b) / 20;
        *b = (*b + pull + (self.rng.below(21) as i64 - 10) * 5_000_000).max(90_000_000_000);
        let bid = *b / 1_000_000 * 1_000_000;
        let ask = bid + 1_000_000_000 + (self.rng.below(11) as i64 - 5) * 5_000_000;
        let ins = &self.instruments.list[i];
        let (bid, ask) = match ins.quotes {
            Quotes::Both => (Some(bid), Some(ask)),
            Quotes::None => (None, None),
            Quotes::BidsOnly => (Some(bid), None),
            Quotes::OffersOnly => (None, Some(ask)),
        };
        let price = match (bid, ask) {
            (Some(b), Some(a)) => Some((b + a) / 2 / 1_000_000 * 1_000_000),
            (b, a) => b.or(a),
        };
        let mut tail = String::with_capacity(300);
        tail.push_str("\",\"isin\":\"");
        tail.push_str(&ins.isin);
        tail.push_str("\",\"cusip\":\"");
        tail.push_str(&ins.cusip);
        tail.push_str("\",\"timestamp\":\"");
        push_ts(&mut tail, now_ns, 9);
        tail.push('"');
        let num = |t: &mut String, field: &str, v: Option<i64>| {
            t.push_str(",\"");
            t.push_str(field);
            t.push_str("\":");
            match v {
                Some(v) => push_fixed(t, v, 3),
                None => t.push_str("null"),
            }
        };
        num(&mut tail, "price", price);
        // A rough yield: coupon plus the discount spread over ten years.
        let y = price.map(|p| ins.coupon_milli * 1_000_000 + (100_000_000_000 - p) / 10);
        num(&mut tail, "yield_to_worst", y.map(|y| y - 2_000_000));
        num(&mut tail, "yield_to_maturity", y);
        let size = |rng: &mut SimRng| rng.range(1, 500) as i64 * 1_000 * 1_000_000_000;
        let (bs, as_) = (size(&mut self.rng), size(&mut self.rng));
        num(&mut tail, "bid_price", bid);
        tail.push_str(",\"bid_size\":");
        match bid {
            Some(_) => push_u64(&mut tail, (bs / 1_000_000_000) as u64),
            None => tail.push_str("null"),
        }
        num(&mut tail, "ask_price", ask);
        tail.push_str(",\"ask_size\":");
        match ask {
            Some(_) => push_u64(&mut tail, (as_ / 1_000_000_000) as u64),
            None => tail.push_str("null"),
        }
        tail.push('}');
        Event {
            no,
            kind: Kind::PriceUpdate,
            key: i as u32,
            rec_key: i as u32,
            period: 0,
            head: PRICE_HEAD.to_owned(),
            tail,
            snapshot_tail: None,
            book: None,
            prev: None,
            fixed_seq: None,
            uuid: None,
        }
    }
}

/// One step of an order scenario.
#[derive(Clone, Copy, Debug)]
enum Step {
    Order(&'static str, Effect),
    System(&'static str),
    Alloc(&'static str, &'static str),
    /// Let this many other events pass first.
    Wait(u32),
}

#[derive(Clone, Copy, Debug)]
enum Effect {
    Request,
    Approve,
    Reject,
    FillHalf,
    FillAll,
    Cancel(&'static str),
}

use Effect::*;
use Step::*;

/// (fixed CUSIP or none for a random instrument, steps). From the paper environment: 912810SX7
/// fills after approval, 912810SU3 fills later, 912810SS8 fills in two parts, 912810RY6 hangs
/// then expires, 912810UK2 is cancelled by the venue; plus rejection, cancel requests and
/// block allocations.
const SCENARIOS: [(Option<&str>, &[Step]); 9] = [
    (
        Some("912810SX7"),
        &[
            Order("request", Request),
            Order("approve", Approve),
            Order("execution", FillAll),
        ],
    ),
    (
        Some("912810SS8"),
        &[
            Order("request", Request),
            Order("approve", Approve),
            Order("execution", FillHalf),
            Order("execution", FillAll),
        ],
    ),
    (
        Some("912810UK2"),
        &[
            Order("request", Request),
            Order("approve", Approve),
            Order("cancel", Cancel("canceled")),
        ],
    ),
    (
        Some("912810SU3"),
        &[
            Order("request", Request),
            Order("approve", Approve),
            Wait(12),
            Order("execution", FillAll),
        ],
    ),
    (None, &[Order("request", Request), Order("reject", Reject)]),
    (
        Some("912810RY6"),
        &[
            Order("request", Request),
            Order("approve", Approve),
            Wait(20),
            Order("cancel", Cancel("expired")),
        ],
    ),
    (
        None,
        &[
            Order("request", Request),
            Order("approve", Approve),
            System("cancel_request"),
            Order("cancel", Cancel("canceled")),
        ],
    ),
    (
        None,
        &[
            Order("request", Request),
            Order("approve", Approve),
            System("cancel_request"),
            System("cancel_reject"),
            Order("execution", FillAll),
        ],
    ),
    (
        None,
        &[
            Order("request", Request),
            Order("approve", Approve),
            Order("execution", FillAll),
            Alloc("allocation_create", "created"),
            Alloc("allocation_calculate", "calculated"),
            Alloc("allocation_submit", "submitted"),
            Alloc("allocation_approve", "approved"),
        ],
    ),
];

#[derive(Clone, Debug)]
struct OrderState {
    id: String,
    key: u32,
    account: usize,
    instrument: usize,
    created: i64,
    approved: Option<i64>,
    filled: Option<i64>,
    canceled: Option<i64>,
    /// Par amount in whole units.
    par: i64,
    buy: bool,
    /// Limit price in 10^-9 percent of par.
    limit: i64,
    filled_par: i64,
    status: &'static str,
    alloc_id: Option<String>,
}

#[derive(Clone, Debug)]
struct Active {
    order: OrderState,
    steps: &'static [Step],
    pos: usize,
    hold: u32,
}

/// The order-event generator behind the order log (a connection may start anywhere in it).
pub(crate) struct OrderGen {
    rng: SimRng,
    instruments: Arc<Instruments>,
    accounts: Vec<String>,
    active: Vec<Active>,
    next_scenario: usize,
    date: u64,
    counter: u64,
    next_no: u64,
}

const MAX_ACTIVE: usize = 4;
const NANOID: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// `msg_number` as a u64: `YYYYMMDD` * 10^10 + counter.
pub(crate) fn msg_number(date: u64, counter: u64) -> u64 {
    date * 10_000_000_000 + counter
}

impl OrderGen {
    pub(crate) fn new(seed: u64, instruments: Arc<Instruments>) -> Self {
        let mut rng = SimRng::new(seed ^ 0x4F52_4445_5253);
        let accounts = (0..3)
            .map(|_| {
                let mut s = String::new();
                push_uuid(&mut s, rng.u128(), false);
                s
            })
            .collect();
        Self {
            rng,
            instruments,
            accounts,
            active: Vec::new(),
            next_scenario: 0,
            date: 0,
            counter: 0,
            next_no: 0,
        }
    }

    fn nanoid(&mut self, prefix: &str) -> String {
        let mut s = String::from(prefix);
        for _ in 0..21 {
            s.push(char::from(NANOID[self.rng.below(64) as usize]));
        }
        s
    }

    fn start_scenario(&mut self, now_ns: i64, intern: &mut dyn FnMut(&str) -> u32) {
        let (cusip, steps) = SCENARIOS[self.next_scenario % SCENARIOS.len()];
        self.next_scenario += 1;
        let n = self.instruments.list.len();
        let instrument = cusip
            .and_then(|c| self.instruments.index_of_cusip(c))
            .unwrap_or_else(|| {
                // Any instrument with two-sided quotes.
                loop {
                    let i = self.rng.below(n as u64) as usize;
                    if self.instruments.list[i].quotes == Quotes::Both {
                        break i;
                    }
                }
            });
        let id = self.nanoid("mo_");
        let key = intern(&id);
        let order = OrderState {
            id,
            key,
            account: self.rng.below(self.accounts.len() as u64) as usize,
            instrument,
            created: now_ns,
            approved: None,
            filled: None,
            canceled: None,
            par: self.rng.range(1, 500) as i64 * 1_000,
            buy: self.rng.chance(0.5),
            limit: 99_000_000_000 + self.rng.below(2_000) as i64 * 1_000_000,
            filled_par: 0,
            status: "pending_approval",
            alloc_id: None,
        };
        self.active.push(Active {
            order,
            steps,
            pos: 0,
            hold: 0,
        });
    }

    /// The next order-log event at wall time `now_ns`. `intern` adds a new order id to the
    /// record key table and returns its index.
    pub(crate) fn next_event(&mut self, now_ns: i64, intern: &mut dyn FnMut(&str) -> u32) -> Event {
        // Skip Wait steps: they become holds.
        loop {
            let eligible = self.active.iter().filter(|a| a.hold == 0).count();
            if self.active.len() < MAX_ACTIVE && (eligible == 0 || self.rng.chance(0.3)) {
                self.start_scenario(now_ns, intern);
            } else if eligible == 0 {
                if let Some(a) = self.active.iter_mut().min_by_key(|a| a.hold) {
                    a.hold = 0;
                }
            }
            let eligible: Vec<usize> = (0..self.active.len())
                .filter(|&i| self.active[i].hold == 0)
                .collect();
            let pick = eligible[self.rng.below(eligible.len() as u64) as usize];
            let a = &mut self.active[pick];
            match a.steps[a.pos] {
                Wait(n) => {
                    a.hold = n;
                    a.pos += 1;
                    continue;
                }
                step => {
                    a.pos += 1;
                    let done = a.pos >= a.steps.len();
                    let ev = self.emit(pick, step, now_ns);
                    if done {
                        self.active.remove(pick);
                    }
                    for a in &mut self.active {
                        a.hold = a.hold.saturating_sub(1);
                    }
                    return ev;
                }
            }
        }
    }

    fn emit(&mut self, pick: usize, step: Step, now_ns: i64) -> Event {
        let date = yyyymmdd(now_ns);
        if date != self.date {
            self.date = date;
            self.counter = 0;
        }
        let number = msg_number(date, self.counter);
        self.counter += 1;
        let no = self.next_no;
        self.next_no += 1;
        let alloc_id = match step {
            Alloc(..) if self.active[pick].order.alloc_id.is_none() => Some(self.nanoid("ma_")),
            _ => None,
        };
        let fill_px = {
            let o = &self.active[pick].order;
            o.limit - self.rng.below(200) as i64 * 1_000_000 * if o.buy { 1 } else { -1 }
        };
        let o = &mut self.active[pick].order;
        if let Some(id) = alloc_id {
            o.alloc_id = Some(id);
        }
        let (kind, event_type) = match step {
            Order(t, _) => (Kind::OrderUpdate, t),
            System(t) => (Kind::SystemUpdate, t),
            Alloc(t, _) => (Kind::AllocationUpdate, t),
            Wait(_) => (Kind::SystemUpdate, "noop"),
        };
        if let Order(_, effect) = step {
            match effect {
                Request => o.status = "pending_approval",
                Approve => {
                    o.approved = Some(now_ns);
                    o.status = "pending_execution";
                }
                Reject => o.status = "rejected",
                FillHalf => {
                    o.filled_par = o.par / 2;
                    o.status = "partially_filled";
                }
                FillAll => {
                    o.filled_par = o.par;
                    o.filled = Some(now_ns);
                    o.status = "filled";
                }
                Cancel(status) => {
                    o.canceled = Some(now_ns);
                    o.status = status;
                }
            }
        }
        let mut s = String::with_capacity(700);
        s.push_str("{\"msg_type\":\"");
        s.push_str(kind.name());
        s.push_str("\",\"msg_number\":\"");
        push_u64(&mut s, number);
        s.push_str("\",\"event_type\":\"");
        s.push_str(event_type);
        s.push('"');
        let o = &self.active[pick].order;
        match step {
            Order(..) => {
                s.push_str(",\"order\":");
                self.order_json(&mut s, o, fill_px);
            }
            System(_) => {
                s.push_str(",\"order_id\":");
                push_json_str(&mut s, &o.id);
                s.push_str(",\"timestamp\":\"");
                push_ts(&mut s, now_ns, 6);
                s.push('"');
            }
            Alloc(_, status) => {
                s.push_str(",\"allocation\":{\"id\":");
                push_json_str(&mut s, o.alloc_id.as_deref().unwrap_or(""));
                s.push_str(",\"order_id\":");
                push_json_str(&mut s, &o.id);
                s.push_str(",\"status\":\"");
                s.push_str(status);
                s.push_str("\",\"created_at\":\"");
                push_ts(&mut s, now_ns, 6);
                s.push_str("\",\"allocations\":[");
                let half = o.filled_par / 2;
                for (i, (acct, par)) in [(0usize, half), (1, o.filled_par - half)]
                    .iter()
                    .enumerate()
                {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str("{\"account_id\":");
                    push_json_str(
                        &mut s,
                        &self.accounts[(o.account + acct) % self.accounts.len()],
                    );
                    s.push_str(",\"amount\":{\"par\":");
                    push_u64(&mut s, *par as u64);
                    s.push_str(".0}}");
                }
                s.push_str("]}");
            }
            Wait(_) => {}
        }
        s.push('}');
        Event {
            no,
            kind,
            key: 0,
            rec_key: o.key,
            period: 0,
            head: s,
            tail: String::new(),
            snapshot_tail: None,
            book: None,
            prev: None,
            fixed_seq: Some(number),
            uuid: None,
        }
    }

    fn order_json(&self, s: &mut String, o: &OrderState, fill_px: i64) {
        let ins = &self.instruments.list[o.instrument];
        let ts = |s: &mut String, field: &str, v: Option<i64>| {
            s.push_str(",\"");
            s.push_str(field);
            s.push_str("\":");
            match v {
                Some(t) => {
                    s.push('"');
                    push_ts(s, t, 6);
                    s.push('"');
                }
                None => s.push_str("null"),
            }
        };
        s.push_str("{\"id\":");
        push_json_str(s, &o.id);
        s.push_str(",\"account_id\":");
        push_json_str(s, &self.accounts[o.account]);
        ts(s, "created_at", Some(o.created));
        ts(s, "approved_at", o.approved);
        ts(s, "filled_at", o.filled);
        ts(s, "canceled_at", o.canceled);
        s.push_str(",\"isin\":\"");
        s.push_str(&ins.isin);
        s.push_str("\",\"cusip\":\"");
        s.push_str(&ins.cusip);
        s.push_str("\",\"amount\":{\"par\":");
        push_u64(s, o.par as u64);
        s.push_str(".0},\"type\":\"limit\",\"side\":\"");
        s.push_str(if o.buy { "buy" } else { "sell" });
        s.push_str("\",\"limit_price\":");
        push_fixed(s, o.limit, 3);
        s.push_str(",\"extended_hours\":false,\"filled_amount\":{\"par\":");
        push_u64(s, o.filled_par as u64);
        s.push_str(".0},\"filled_avg_price\":");
        if o.filled_par > 0 {
            push_fixed(s, fill_px, 3);
        } else {
            s.push_str("null");
        }
        s.push_str(",\"status\":\"");
        s.push_str(o.status);
        s.push_str("\"}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simd_json::prelude::*;

    fn parse(s: &str) -> simd_json::OwnedValue {
        let mut b = s.as_bytes().to_vec();
        simd_json::to_owned_value(&mut b).unwrap_or_else(|e| panic!("{e}: {s}"))
    }

    #[test]
    fn identifiers() {
        assert_eq!(isin_of("037833DP2"), "US037833DP29");
        assert_eq!(isin_of("037833100"), "US0378331005");
        assert_eq!(cusip_check("03783310"), '0');
        assert_eq!(cusip_check("037833DP"), '2');
        let ins = Instruments::new(100);
        assert_eq!(ins.list.len(), 100);
        assert_eq!(ins.lookup("912810SX7"), Some((0, IdForm::Cusip)));
        assert_eq!(ins.lookup("US037833DP29"), Some((8, IdForm::Isin)));
        for i in &ins.list[SCENARIO_CUSIPS.len()..] {
            assert_eq!(i.cusip.len(), 9);
            assert_eq!(
                cusip_check(&i.cusip[..8]),
                i.cusip.chars().nth(8).unwrap_or(' ')
            );
        }
        assert_eq!(Instruments::new(0).list.len(), SCENARIO_CUSIPS.len());
    }

    /// Past 14 issuers x 34^2 issues (16,184) the generator once looped forever, so a CoinAPI
    /// simulator with 30,000 symbols never started (it builds both universes).
    #[test]
    fn any_count_of_instruments_is_reached_with_unique_valid_ids() {
        let n = 40_000;
        let ins = Instruments::new(n);
        assert_eq!(ins.list.len(), n);
        assert_eq!(ins.by_id.len(), 2 * n, "every CUSIP and ISIN unique");
        for i in ins.list.iter().step_by(997) {
            assert_eq!(i.cusip.len(), 9);
            assert_eq!(
                cusip_check(&i.cusip[..8]),
                i.cusip.chars().nth(8).unwrap_or(' ')
            );
        }
    }

    #[test]
    fn price_updates_follow_the_paper_scenarios() {
        let ins = Arc::new(Instruments::new(20));
        let mut g = PriceGen::new(1, ins.clone());
        let scope = PriceScope {
            subs: vec![Some(IdForm::Isin); 20],
            instruments: ins.clone(),
        };
        let mut out = String::new();
        let mut seen = [false; 4];
        for i in 0..2_000 {
            let ev = g.next_event(1_714_573_800_123_456_789 + i);
            let key = render_price(&ev, &scope, &mut out);
            assert_eq!(key as usize, ev.key as usize + 20);
            let v = parse(&out);
            assert_eq!(v.get_str("msg_type"), Some("price_update"));
            let cusip = v.get_str("cusip").unwrap_or_default().to_owned();
            assert_eq!(v.get_str("instrument_id"), Some(isin_of(&cusip).as_str()));
            let ts = v.get_str("timestamp").unwrap_or_default();
            assert_eq!(ts.len(), "2024-05-01T14:30:00.123456789Z".len(), "{ts}");
            let has = |f: &str| v.get(f).is_some_and(|x| !x.is_null());
            match cusip.as_str() {
                "880591DM1" => {
                    seen[0] = true;
                    assert!(
                        !has("bid_price") && !has("ask_price") && !has("price"),
                        "{out}"
                    );
                    assert!(v.get("bid_price").is_some(), "null, not absent");
                }
                "3130A6RM1" => {
                    seen[1] = true;
                    assert!(has("bid_price") && !has("ask_price"), "{out}");
                }
                "3130A2UW4" => {
                    seen[2] = true;
                    assert!(!has("bid_price") && has("ask_price"), "{out}");
                }
                _ => {
                    seen[3] = true;
                    let bid = v.get_f64("bid_price").unwrap_or_default();
                    let ask = v.get_f64("ask_price").unwrap_or_default();
                    assert!((98.0..102.0).contains(&bid), "{out}");
                    assert!((0.9..1.1).contains(&(ask - bid)), "{out}");
                    assert!(v.get_u64("bid_size").unwrap_or_default() <= 500_000);
                }
            }
        }
        assert_eq!(seen, [true; 4]);
    }

    #[test]
    fn price_session_requests() {
        let ins = Arc::new(Instruments::new(20));
        let mut s = PriceSession::new(ins);
        let reply = |v: Vec<Ctrl>| match v.into_iter().next() {
            Some(Ctrl::Install { reply: Some(r), .. } | Ctrl::Reply(r)) => r,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            reply(s.on_text(r#"{"msg_type":"subscribe","instrument_id":"037833DP2"}"#)),
            r#"{"msg_type":"subscription","instrument_id":"037833DP2","msg":"subscribed"}"#
        );
        assert_eq!(
            reply(s.on_text(r#"{"msg_type":"unsubscribe","instrument_id":"US037833DP29"}"#)),
            r#"{"msg_type":"subscription","instrument_id":"US037833DP29","msg":"unsubscribed"}"#
        );
        assert_eq!(
            reply(s.on_text(r#"{"msg_type":"subscribe","instrument_id":"000000000"}"#)),
            r#"{"msg_type":"error","msg":"unknown instrument 000000000","error_type":"invalid_request"}"#
        );
        assert!(reply(s.on_text("{")).contains("invalid_request"));
        assert!(reply(s.on_text(r#"{"msg_type":"subscribe"}"#)).contains("invalid_request"));
        assert!(reply(s.on_text(r#"{"msg_type":"dance"}"#)).contains("unknown msg_type dance"));
        let out = s.on_text(r#"{"msg_type":"subscribe_all"}"#);
        assert!(matches!(&out[..], [Ctrl::Install { nonempty: true, .. }]));
        let out = s.on_text(r#"{"msg_type":"unsubscribe_all"}"#);
        assert!(matches!(
            &out[..],
            [Ctrl::Install {
                nonempty: false,
                scope: LinkScope::Nothing,
                ..
            }]
        ));
    }

    #[test]
    fn order_log_scenarios_and_numbers() {
        let ins = Arc::new(Instruments::new(20));
        let mut keys: Vec<String> = Vec::new();
        let mut intern = |id: &str| {
            keys.push(id.to_owned());
            (keys.len() - 1) as u32
        };
        let mut g = OrderGen::new(7, ins.clone());
        let day1 = 1_714_521_600_000_000_000; // 2024-05-01T00:00:00Z
        let mut evs = Vec::new();
        for i in 0..300 {
            evs.push(g.next_event(day1 + i * 1_000_000, &mut intern));
        }
        // Counter starts at 0 and is +1 per event.
        for (i, ev) in evs.iter().enumerate() {
            assert_eq!(ev.fixed_seq, Some(msg_number(20_240_501, i as u64)));
            let v = parse(&ev.head);
            let num = v.get_str("msg_number").unwrap_or_default().to_owned();
            assert_eq!(num.len(), 18);
            assert_eq!(num.parse::<u64>().ok(), ev.fixed_seq);
            assert_eq!(v.get_str("msg_type"), Some(ev.kind.name()));
            assert!(v.get_str("event_type").is_some());
        }
        // The first scenario is 912810SX7: request -> approve -> execution (filled).
        let sx7: Vec<(String, String)> = evs
            .iter()
            .map(|e| parse(&e.head))
            .filter(|v| {
                v.get("order")
                    .and_then(|o| o.get_str("cusip"))
                    .is_some_and(|c| c == "912810SX7")
            })
            .take(3)
            .map(|v| {
                (
                    v.get_str("event_type").unwrap_or_default().to_owned(),
                    v.get("order")
                        .and_then(|o| o.get_str("status"))
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        let want = [
            ("request", "pending_approval"),
            ("approve", "pending_execution"),
            ("execution", "filled"),
        ];
        assert_eq!(
            sx7,
            want.iter()
                .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
                .collect::<Vec<_>>()
        );
        let all: String = evs.iter().map(|e| e.head.as_str()).collect();
        for needle in [
            "\"partially_filled\"",
            "\"expired\"",
            "\"rejected\"",
            "\"cancel_request\"",
            "\"cancel_reject\"",
            "\"allocation_approve\"",
            "912810UK2",
            "912810SU3",
        ] {
            assert!(all.contains(needle), "{needle}");
        }
        // Same seed, same log (times given).
        let mut keys2: Vec<String> = Vec::new();
        let mut intern2 = |id: &str| {
            keys2.push(id.to_owned());
            (keys2.len() - 1) as u32
        };
        let mut g2 = OrderGen::new(7, ins);
        let evs2: Vec<Event> = (0..300)
            .map(|i| g2.next_event(day1 + i * 1_000_000, &mut intern2))
            .collect();
        assert_eq!(evs, evs2);
        // A new UTC day restarts the counter.
        let ev = g.next_event(day1 + 86_400_000_000_000, &mut intern);
        assert_eq!(ev.fixed_seq, Some(msg_number(20_240_502, 0)));
    }
}
