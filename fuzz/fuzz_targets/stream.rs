//! Fuzz target `stream`: see `cb_fuzz::stream` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cb_fuzz::stream(data));
