//! The cb guide: the chapters of `docs/guide/`, rendered by rustdoc
//! (`cargo doc -p cb --open`) and compiled by `cargo test --doc`, so every
//! code block in them builds against the crates as they are.
//!
//! The guide lives in this package, the workspace's root, because it spans
//! every crate (`cb-runtime`, `cb-fleet`, `cb-postgres`, `cb-reqwest`) and this package
//! depends on all of them. The README's code blocks are compiled here too
//! (the hidden module `readme`). Nothing here is an API: it is documentation.
#![doc = ""]
#![doc = include_str!("../docs/guide/README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// Includes one chapter of `docs/guide/` as a documented, empty module.
macro_rules! chapter {
    ($(#[$attr:meta])* $name:ident, $file:literal) => {
        $(#[$attr])*
        #[doc = include_str!(concat!("../docs/guide/", $file))]
        pub mod $name {}
    };
}

chapter!(getting_started, "getting-started.md");
chapter!(configuring, "configuring.md");
chapter!(choosing_a_preset, "choosing-a-preset.md");
chapter!(keyed_and_failover, "keyed-and-failover.md");
chapter!(streams, "streams.md");
chapter!(rate_limits, "rate-limits.md");
chapter!(tower_and_axum, "tower-and-axum.md");
chapter!(operating, "operating.md");
chapter!(fleet, "fleet.md");
chapter!(postgres, "postgres.md");
chapter!(coming_from, "coming-from.md");
chapter!(internals, "internals.md");
chapter!(integrations, "integrations.md");
chapter!(protection_modes, "protection-modes.md");
chapter!(recovery, "recovery.md");

/// The repository's README, so that its code blocks are compiled too.
#[doc(hidden)]
#[doc = include_str!("../README.md")]
pub mod readme {}
