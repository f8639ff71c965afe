//! AFL harness for the `stream` target: see `cb_fuzz::stream` (`fuzz/src/`) for
//! what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| cb_fuzz_afl::stream(data));
}
