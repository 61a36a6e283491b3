//! `cargo fuzz run -s none queue_accounting`: the body is `_core::fuzzing::queue_accounting`, which `cargo test`
//! also runs over `fuzz/corpus/queue_accounting/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| _core::fuzzing::queue_accounting(data));
