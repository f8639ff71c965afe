//! Fuzz target `fleet_message`: what a replica of a fleet reads from Redis.
//!
//! The check itself is `cb_fleet::message::fuzz_check`, kept inside cb-fleet
//! so that it reaches the crate-private pieces (the view of a breaker's
//! state read back from Redis) and so that cb-fleet's own property tests run
//! the same check; this module only hands it the bytes.

/// A payload from the fleet's pub/sub channel, and the same bytes split on
/// `|` as a breaker's stored `state`, `level` and open-key PTTL: see
/// `cb_fleet::message::fuzz_check` for every property checked.
pub fn fleet_message(data: &[u8]) {
    cb_fleet::message::fuzz_check(data);
}
