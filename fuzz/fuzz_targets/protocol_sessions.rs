//! `cargo fuzz run -s none protocol_sessions`: the body is `_core::fuzzing::protocol_sessions`, which `cargo test`
//! also runs over `fuzz/corpus/protocol_sessions/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| _core::fuzzing::protocol_sessions(data));
