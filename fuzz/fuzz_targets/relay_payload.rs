//! `cargo fuzz run -s none relay_payload`: the body is `_core::fuzzing::relay_payload`, which
//! `cargo test` also runs over `fuzz/corpus/relay_payload/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| _core::fuzzing::relay_payload(data));
