//! Fuzz target `duration`: see `cb_fuzz::duration` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cb_fuzz::duration(data));
