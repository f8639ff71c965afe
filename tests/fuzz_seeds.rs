//! The fuzz targets' checks (`fuzz/src/`), run on stable over every committed
//! seed in `fuzz/seeds/<target>/`: the hand-written starting inputs and
//! every input that ever crashed a target. Coverage-guided fuzzing runs the
//! same checks under AFL++ (`fuzz/afl.sh`, stable) or cargo-fuzz (nightly);
//! see `fuzz/README.md`.

#[path = "../fuzz/src/lib.rs"]
mod checks;

use std::path::Path;

/// Runs `check` over every file in `fuzz/seeds/<target>/`.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    seeds.sort();
    for seed in &seeds {
        let data = std::fs::read(seed).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "seed {} fails `{target}`", seed.display());
    }
    assert!(!seeds.is_empty(), "no seeds for `{target}`");
}

#[test]
fn duration_seeds() {
    replay("duration", checks::duration);
}

#[test]
fn config_file_seeds() {
    replay("config_file", checks::config_file);
}

#[test]
fn layers_seeds() {
    replay("layers", checks::layers);
}

#[test]
fn admin_seeds() {
    replay("admin", checks::admin);
}

#[test]
fn breaker_seeds() {
    replay("breaker", checks::breaker);
}

#[test]
fn fleet_message_seeds() {
    replay("fleet_message", checks::fleet_message);
}

#[test]
fn stream_seeds() {
    replay("stream", checks::stream);
}
