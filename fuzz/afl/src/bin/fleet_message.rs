//! AFL harness for the `fleet_message` target: see `cb_fuzz::fleet_message` (`fuzz/src/`) for
//! what it checks.

fn main() {
    afl::fuzz!(|data: &[u8]| cb_fuzz_afl::fleet_message(data));
}
