//! The checks behind the fuzz targets, one module per target. Each takes the
//! fuzzer's bytes, drives the real code with them, and panics when a
//! property does not hold; AFL++ (`fuzz/afl/`) and libFuzzer
//! (`fuzz_targets/`) report that panic as a crash.
//!
//! The same functions replay every committed seed on stable in
//! `tests/fuzz_seeds.rs`, so CI keeps the seeds (and every crash ever found,
//! once added to `seeds/`) passing.

mod admin;
mod breaker;
mod config;
mod duration;
mod fleet_message;
mod stream;

pub use admin::admin;
pub use breaker::breaker;
pub use config::{config_file, layers};
pub use duration::duration;
pub use fleet_message::fleet_message;
pub use stream::stream;
