//! Fuzz target `breaker`: see `cb_fuzz::breaker` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cb_fuzz::breaker(data));
