//! The fast decoder against the general one: equal messages (floats bit for bit) for every
//! fixture, for the table cases of `tests.rs` (checked in its `check`), and for 100k generated
//! and mutated frames of both venues.

use super::gen::{frame as gen_frame, mutate, Rng};
use super::{CoinApiDecoder, DecodeError, FrameDecoder, MomentDecoder, Venue};
use crate::model::Msg;
use simd_json::prelude::*;

/// Equal, with floats compared by their bits: `Debug` prints every f64 as its shortest
/// round-trip text, so distinct bits (`-0.0` included) print differently.
fn same(a: &Result<Msg, DecodeError>, b: &Result<Msg, DecodeError>) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// Fails unless what the fast path accepts the general decoder gives identically, and
/// `decode` (fast, then general) equals `decode_general`. True when the fast path accepted.
pub(super) fn assert_identical<V: Venue>(d: &mut FrameDecoder<V>, frame: &[u8]) -> bool {
    let general = d.decode_general(frame);
    let fast = d.decode_fast(frame);
    let accepted = fast.is_some();
    if let Some(m) = fast {
        assert!(
            same(&Ok(m.clone()), &general),
            "fast {m:?}\ngeneral {general:?}\nframe {}",
            String::from_utf8_lossy(frame)
        );
    }
    let combined = d.decode(frame);
    assert!(
        same(&combined, &general),
        "decode {combined:?}\ngeneral {general:?}\nframe {}",
        String::from_utf8_lossy(frame)
    );
    accepted
}

const FIXTURE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/coinapi");

/// Every recorded frame as stored (pretty-printed: the general path) and re-encoded compact
/// (the fast path for the types it models).
#[test]
fn every_fixture_decodes_identically() {
    let mut d = CoinApiDecoder::default();
    let mut fast = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(FIXTURE_DIR)
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .collect();
    names.sort();
    assert!(names.len() >= 20);
    for path in names {
        let stored = std::fs::read(&path).expect("fixture");
        assert_identical(&mut d, &stored);
        let compact = simd_json::to_owned_value(&mut stored.clone())
            .expect("fixtures are JSON")
            .encode()
            .into_bytes();
        if assert_identical(&mut d, &compact) {
            fast.push(
                path.file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    fast.sort();
    // Compact re-encoding may move `type`; these keep it first and so take the fast path.
    for want in ["hearbeat.json", "heartbeat.json"] {
        assert!(fast.iter().any(|n| n == want), "{want} not fast: {fast:?}");
    }
}

/// The documented frames as the feeds send them (compact, `type` first) take the fast path.
#[test]
fn compact_frames_take_the_fast_path() {
    let coinapi = [
        r#"{"type":"trade","symbol_id":"BITSTAMP_SPOT_BTC_USD","sequence":2323346,"time_exchange":"2013-09-28T22:40:50.0000000Z","time_coinapi":"2017-03-18T22:42:21.3763342Z","uuid":"770C7A3B-7258-4441-8182-83740F3E2457","price":770.000000000,"size":0.050000000,"taker_side":"BUY"}"#,
        r#"{"type":"quote","symbol_id":"BITSTAMP_SPOT_BTC_USD","sequence":2323346,"time_exchange":"2013-09-28T22:40:50.0000000Z","time_coinapi":"2017-03-18T22:42:21.3763342Z","ask_price":770.0,"ask_size":3252,"bid_price":760,"bid_size":124.0}"#,
        r#"{"type":"book5","symbol_id":"COINBASE_SPOT_ETH_USD","sequence":88015,"time_exchange":"2024-05-01T14:30:00.0112340Z","time_coinapi":"2024-05-01T14:30:00.0157001Z","asks":[{"price":2875.12,"size":1.2},{"price":2875.13,"size":0.04}],"bids":[]}"#,
        r#"{"type":"book","symbol_id":"X","sequence":1,"time_exchange":"2024-05-01T14:30:00Z","time_coinapi":"2024-05-01T14:30:00Z","is_snapshot":false,"asks":[{"price":1.5,"size":0}]}"#,
        r#"{"type":"index","index_id":"IDX_REFRATE_PRIMKT_BTC_USD","sequence":12,"time_coinapi":"2024-05-01T14:30:00.0000000Z","value":1085.72276}"#,
        r#"{"type":"hearbeat"}"#,
    ];
    let mut d = CoinApiDecoder::default();
    for f in coinapi {
        assert!(assert_identical(&mut d, f.as_bytes()), "{f}");
    }
    let moment = [
        r#"{"msg_type":"price_update","instrument_id":"880591DM1","isin":"US880591DM12","cusip":"880591DM1","timestamp":"2024-05-01T14:30:00.123456789Z","price":null,"bid_price":null,"bid_size":null,"ask_price":101.0,"ask_size":250000}"#,
        r#"{"msg_type":"order_update","msg_number":"202405010000000042","event_type":"execution","order":{"id":"mo_1","type":"limit","side":"buy","status":"partially_filled","cusip":"912810SS8","limit_price":99.5,"amount":{"par":3000.0},"filled_amount":{"par":1000.0},"filled_avg_price":99.4}}"#,
        r#"{"msg_type":"system_update","msg_number":"202405010000000043","event_type":"cancel_request","order_id":"mo_1","timestamp":"2024-05-01T14:30:00.123456Z"}"#,
    ];
    let mut d = MomentDecoder::default();
    for f in moment {
        assert!(assert_identical(&mut d, f.as_bytes()), "{f}");
    }
}

/// 100k frames, half of them mutated: whatever the fast path accepts, the general decoder
/// gives identically, and a good share of the unmutated frames does take the fast path.
#[test]
fn generated_and_mutated_frames_decode_identically() {
    let mut coinapi = CoinApiDecoder::default();
    let mut moment = MomentDecoder::default();
    let (mut valid, mut valid_fast, mut mutated_fast) = (0u32, 0u32, 0u32);
    for i in 0..100_000u64 {
        let mut r = Rng::new(i);
        let is_moment = i % 3 == 0;
        let mut f = gen_frame(&mut r, is_moment);
        let mutated = i % 2 == 1;
        if mutated {
            mutate(&mut r, &mut f);
        }
        let accepted = if is_moment {
            assert_identical(&mut moment, &f)
        } else {
            assert_identical(&mut coinapi, &f)
        };
        match (mutated, accepted) {
            (false, a) => {
                valid += 1;
                valid_fast += u32::from(a);
            }
            (true, true) => mutated_fast += 1,
            (true, false) => {}
        }
    }
    assert!(
        valid_fast * 5 > valid,
        "{valid_fast} of {valid} valid frames fast"
    );
    assert!(mutated_fast > 500, "{mutated_fast} mutated frames fast");
}
