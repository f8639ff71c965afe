//! Every preset is accepted, and the attribute's list of presets is the runtime's:
//! a preset added to `Preset::ALL` fails here until the macro knows it too.

use cb_runtime::{circuit_breaker, registry, BreakerError, Preset};

#[derive(Debug)]
pub struct Error;

impl From<BreakerError> for Error {
    fn from(_: BreakerError) -> Self {
        Error
    }
}

#[circuit_breaker(name = "pass-preset-llm", preset = "llm")]
async fn llm() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "pass-preset-http_api", preset = "http_api")]
async fn http_api() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "pass-preset-database", preset = "database")]
async fn database() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "pass-preset-cache", preset = "cache")]
async fn cache() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "pass-preset-notification", preset = "notification")]
async fn notification() -> Result<(), Error> {
    Ok(())
}

#[circuit_breaker(name = "pass-preset-default")]
async fn default_preset() -> Result<(), Error> {
    Ok(())
}

/// The presets this file annotates, by name.
const COVERED: [&str; 5] = ["llm", "http_api", "database", "cache", "notification"];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    llm().await.unwrap();
    http_api().await.unwrap();
    database().await.unwrap();
    cache().await.unwrap();
    notification().await.unwrap();
    default_preset().await.unwrap();

    assert_eq!(
        Preset::ALL.len(),
        COVERED.len(),
        "a preset was added: annotate a function with it here"
    );
    for preset in Preset::ALL {
        assert!(
            COVERED.contains(&preset.name()),
            "preset `{}` is not covered here",
            preset.name()
        );
        let breaker = registry().get(&format!("pass-preset-{}", preset.name())).unwrap();
        assert_eq!(breaker.config(), preset.config(), "preset `{}`", preset.name());
    }
    let default = registry().get("pass-preset-default").unwrap();
    assert_eq!(default.config(), Preset::HttpApi.config());
}
