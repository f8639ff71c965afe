//! AFL harness for the `breaker` target: see `cb_fuzz::breaker` (`fuzz/src/`) for
//! what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| cb_fuzz_afl::breaker(data));
}
