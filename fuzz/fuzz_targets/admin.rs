//! Fuzz target `admin`: see `cb_fuzz::admin` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cb_fuzz::admin(data));
