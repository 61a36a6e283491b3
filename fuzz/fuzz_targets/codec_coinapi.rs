//! `cargo fuzz run -s none codec_coinapi`: the body is `_core::fuzzing::codec_coinapi`, which `cargo test`
//! also runs over `fuzz/corpus/codec_coinapi/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| _core::fuzzing::codec_coinapi(data));
