//! `cargo fuzz run -s none codec_moment`: the body is `_core::fuzzing::codec_moment`, which `cargo test`
//! also runs over `fuzz/corpus/codec_moment/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| _core::fuzzing::codec_moment(data));
