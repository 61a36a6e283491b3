//! Differential fuzzing of tickwire's fast decoder against its general one, on both venues:
//! for every frame, both accept with equal output (floats bit for bit) or the fast path
//! declines. Each input is decoded as it is (libFuzzer's mutations of the corpus), and also
//! seeds the frame generator the property test uses, whose frame is decoded valid and then
//! mutated.
//!
//! `cargo fuzz run -s none decoder_diff` (stable toolchain).

#![no_main]

use std::cell::RefCell;

use _core::codec::{CoinApiDecoder, FrameDecoder, MomentDecoder, Venue};
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../src/codec/gen.rs"]
mod gen;

thread_local! {
    /// Reused across inputs, as a connection reuses them (interner and scratch state).
    static DECODERS: RefCell<(CoinApiDecoder, MomentDecoder)> = RefCell::default();
}

fn check<V: Venue>(d: &mut FrameDecoder<V>, frame: &[u8]) {
    let general = d.decode_general(frame);
    if let Some(fast) = d.decode_fast(frame) {
        // `Debug` prints each f64 as its shortest round-trip text: equal text, equal bits.
        let (f, g) = (format!("{:?}", Ok::<_, ()>(&fast)), format!("{:?}", general.as_ref().map_err(|_| ())));
        assert!(
            f == g,
            "fast {f}\ngeneral {g}\nframe {:?}",
            String::from_utf8_lossy(frame)
        );
    }
    let combined = d.decode(frame);
    assert_eq!(format!("{combined:?}"), format!("{general:?}"));
}

fuzz_target!(|data: &[u8]| {
    DECODERS.with(|cell| {
        let (coinapi, moment) = &mut *cell.borrow_mut();
        check(coinapi, data);
        check(moment, data);
        // FNV-1a of the input seeds one generated frame.
        let seed = data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let mut r = gen::Rng::new(seed);
        let is_moment = seed & 1 == 1;
        let mut f = gen::frame(&mut r, is_moment);
        for round in 0..2 {
            if round == 1 {
                gen::mutate(&mut r, &mut f);
            }
            if is_moment {
                check(moment, &f);
            } else {
                check(coinapi, &f);
            }
        }
    });
});
