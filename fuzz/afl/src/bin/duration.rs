//! AFL harness for the `duration` target: see `cb_fuzz::duration` (`fuzz/src/`) for
//! what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| cb_fuzz_afl::duration(data));
}
