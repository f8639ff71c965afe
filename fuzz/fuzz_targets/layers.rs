//! Fuzz target `layers`: see `cb_fuzz::layers` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cb_fuzz::layers(data));
