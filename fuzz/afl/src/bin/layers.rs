//! AFL harness for the `layers` target: see `cb_fuzz::layers` (`fuzz/src/`) for
//! what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| cb_fuzz_afl::layers(data));
}
