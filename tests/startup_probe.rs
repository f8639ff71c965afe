//! `GET /health/startup` over real TCP: 200 once the registry's
//! configuration has loaded and validated, 503 with the `ConfigError` before.

use std::net::SocketAddr;
use std::path::PathBuf;

use cb_runtime::admin::{router, AdminAuth};
use cb_runtime::{Config, Registry};
use serde_json::Value;

/// A config file in the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("cb-startup-{}-{name}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }

    fn text(&self) -> String {
        self.0.display().to_string()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn registry(vars: Vec<(&str, String)>) -> &'static Registry {
    let vars: Vec<(String, String)> = vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    Box::leak(Box::new(Registry::with_env(move || vars.clone())))
}

async fn startup(registry: &'static Registry) -> (u16, Value) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, router(registry, AdminAuth::disabled()))
            .await
            .unwrap()
    });
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = http
        .get(format!("http://{addr}/health/startup"))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body = response.json().await.unwrap();
    server.abort();
    (status, body)
}

#[tokio::test]
async fn started_without_a_config_file() {
    let (status, body) = startup(registry(vec![])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"status": "started"}));
}

#[tokio::test]
async fn a_bad_environment_variable_is_a_503_naming_it() {
    let (status, body) = startup(registry(vec![("CB_OPENAI_OPEN_DURATION", "30".into())])).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "starting");
    assert_eq!(body["error"]["field"], "open_duration", "{body}");
    assert_eq!(body["error"]["value"], r#""30""#, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("environment variable CB_OPENAI_OPEN_DURATION: "),
        "{message}"
    );
    assert!(!body["error"]["expected"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn a_missing_config_file_is_a_503_naming_it() {
    let path = std::env::temp_dir().join("cb-startup-no-such-file.toml");
    let (status, body) = startup(registry(vec![("CB_CONFIG", path.display().to_string())])).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cb-startup-no-such-file.toml"),
        "{body}"
    );
}

#[tokio::test]
async fn a_bad_value_in_the_config_file_is_a_503_with_its_line() {
    let file = TempFile::new("bad", "[breakers.openai]\nfailure_rate_threshold = 1.5\n");
    let (status, body) = startup(registry(vec![("CB_CONFIG", file.text())])).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["field"], "failure_rate_threshold", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&file.text()) && message.contains("line 2"),
        "{message}"
    );
}

#[tokio::test]
async fn the_probe_loads_the_config_file_before_any_breaker_exists() {
    let file = TempFile::new("good", "[breakers.openai]\nfailure_threshold = 9\n");
    let registry = registry(vec![("CB_CONFIG", file.text())]);
    let (status, body) = startup(registry).await;
    assert_eq!(status, 200, "{body}");
    // Loaded, not only validated: the file is in force, even with the file gone.
    drop(file);
    let openai = registry.get_or_insert("openai", Config::default);
    assert_eq!(openai.config().failure_threshold(), 9);
}

#[tokio::test]
async fn a_file_that_failed_its_first_read_stays_503_once_fixed() {
    let file = TempFile::new("fixed-later", "[breakers.openai]\nfailure_threshold = 0\n");
    let registry = registry(vec![("CB_CONFIG", file.text())]);
    // The first breaker reads CB_CONFIG: the bad file is logged and not loaded.
    registry.get_or_insert("postgres", Config::default);
    let (status, body) = startup(registry).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["field"], "failure_threshold", "{body}");

    // Fixed on disk, but the registry runs without it: still not started.
    std::fs::write(&file.0, "[breakers.openai]\nfailure_threshold = 4\n").unwrap();
    let (status, body) = startup(registry).await;
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("did not load when the registry first read it"),
        "{message}"
    );
    assert!(
        message.starts_with("environment variable CB_CONFIG: "),
        "{message}"
    );

    // Loading it explicitly settles it.
    registry.load_file(&file.0).unwrap();
    let (status, body) = startup(registry).await;
    assert_eq!(status, 200, "{body}");
}
