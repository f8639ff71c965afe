//! A config file's `[presets.<preset>]` table reaches the breakers the
//! attribute makes: the expansion tells the registry each function's preset.
//!
//! A binary of its own, since it loads a file into the global registry.

use cb_runtime::{circuit_breaker, registry, BreakerError};

#[derive(Debug)]
enum CacheError {
    Miss,
    Breaker(BreakerError),
}

impl From<BreakerError> for CacheError {
    fn from(e: BreakerError) -> Self {
        CacheError::Breaker(e)
    }
}

#[circuit_breaker(name = "file-preset-cache", preset = "cache")]
async fn read(key: &str) -> Result<String, CacheError> {
    let _ = key;
    Err(CacheError::Miss)
}

#[circuit_breaker(
    name = "file-preset-cache-overridden",
    preset = "cache",
    failure_threshold = 6
)]
async fn read_overridden() -> Result<String, CacheError> {
    Err(CacheError::Miss)
}

#[tokio::test]
async fn presets_table_applies_to_attribute_breakers_and_beats_the_attribute() {
    registry()
        .load_str(
            "[presets.cache]\nfailure_threshold = 2\nopen_duration = \"5s\"\n",
            "test.toml",
        )
        .unwrap();
    assert!(matches!(read("a").await, Err(CacheError::Miss)));
    let b = registry().get("file-preset-cache").unwrap();
    assert_eq!(b.config().failure_threshold(), 2);
    assert_eq!(b.config().open_duration(), std::time::Duration::from_secs(5));
    assert!(matches!(read("b").await, Err(CacheError::Miss)));
    assert!(matches!(read("c").await, Err(CacheError::Breaker(e)) if e.is_rejected()));

    // The precedence: preset < attribute arguments < file.
    let _ = read_overridden().await;
    let o = registry().get("file-preset-cache-overridden").unwrap();
    assert_eq!(o.config().failure_threshold(), 2);
}
