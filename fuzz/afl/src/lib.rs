//! The fuzz targets' checks, compiled from `fuzz/src/` (the same source the
//! cargo-fuzz targets and `tests/fuzz_seeds.rs` use), for the afl.rs
//! binaries in `src/bin/`.

#[path = "../../src/lib.rs"]
mod checks;

pub use checks::*;
