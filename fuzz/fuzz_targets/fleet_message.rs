//! Fuzz target `fleet_message`: see `cb_fuzz::fleet_message` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cb_fuzz::fleet_message(data));
