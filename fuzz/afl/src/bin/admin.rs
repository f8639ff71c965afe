//! AFL harness for the `admin` target: see `cb_fuzz::admin` (`fuzz/src/`) for
//! what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| cb_fuzz_afl::admin(data));
}
