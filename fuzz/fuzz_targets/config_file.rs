//! Fuzz target `config_file`: see `cb_fuzz::config_file` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cb_fuzz::config_file(data));
