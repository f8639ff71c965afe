//! AFL harness for the `config_file` target: see `cb_fuzz::config_file` (`fuzz/src/`) for
//! what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| cb_fuzz_afl::config_file(data));
}
