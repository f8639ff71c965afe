//! The status page's HTTP side, without a browser: what `GET /` and its
//! assets answer, and the JSON fields the page reads that the rest of the API
//! did not have (`open_remaining_ms`, `fleet`). The page itself runs in
//! `status_page_browser.rs`.

use std::net::SocketAddr;
use std::time::Duration;

use cb_runtime::admin::{router, AdminAuth};
use cb_runtime::clock::ManualClock;
use cb_runtime::{Config, FleetStatus, Registry};
use serde_json::Value;

async fn serve(registry: &'static Registry) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router(registry, AdminAuth::bearer("t")))
            .await
            .unwrap()
    });
    format!("http://{addr}")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get_json(url: String) -> Value {
    http().get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn the_page_and_its_assets_carry_a_restrictive_policy() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    let base = serve(registry).await;
    for (path, content_type, must_hold) in [
        ("/", "text/html; charset=utf-8", r#"src="ui/status.js""#),
        ("/ui/status.js", "text/javascript; charset=utf-8", "textContent"),
        ("/ui/status.css", "text/css; charset=utf-8", ".state-open"),
    ] {
        let response = http().get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let h = response.headers().clone();
        assert_eq!(h["content-type"], content_type, "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe"), "{path}: {csp}");
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(h["x-content-type-options"], "nosniff");
        let body = response.text().await.unwrap();
        assert!(body.contains(must_hold), "{path}");
    }
    // Only GET (and HEAD): a POST to the page is a 405.
    let post = http().post(format!("{base}/")).send().await.unwrap();
    assert_eq!(post.status(), 405);
}

#[tokio::test]
async fn time_left_open_is_in_the_json() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    let clock = ManualClock::new();
    let b = registry.get_or_insert("payments", || {
        Config::builder()
            .failure_threshold(1)
            .open_duration(Duration::from_secs(30))
            .clock(clock.clock())
            .build()
            .unwrap()
    });
    let base = serve(registry).await;
    let one = || get_json(format!("{base}/circuit-breakers/payments"));
    assert_eq!(one().await["open_remaining_ms"], Value::Null);
    let _ = b.call(async { Err::<(), _>("down") }).await;
    clock.advance(Duration::from_secs(10));
    let v = one().await;
    assert_eq!(v["state"], "open");
    assert_eq!(v["open_remaining_ms"], 20_000);
    clock.advance(Duration::from_secs(20));
    let v = one().await;
    assert_eq!(v["state"], "half_open");
    assert_eq!(v["open_remaining_ms"], Value::Null);
    b.force_open();
    assert_eq!(one().await["open_remaining_ms"], Value::Null);
}

#[tokio::test]
async fn the_fleet_is_absent_until_a_fleet_reports() {
    let registry: &'static Registry = Box::leak(Box::new(Registry::with_env(Vec::new)));
    registry.get_or_insert("openai", Config::default);
    let base = serve(registry).await;
    let list = || get_json(format!("{base}/circuit-breakers"));
    let v = list().await;
    assert!(v.get("fleet").is_none(), "{v}");
    assert_eq!(registry.fleet_status(), None);

    let connected = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let c = connected.clone();
    registry
        .set_fleet_status(move || FleetStatus::new("checkout", c.load(std::sync::atomic::Ordering::Relaxed)));
    assert_eq!(
        list().await["fleet"],
        serde_json::json!({"namespace": "checkout", "connected": true})
    );
    connected.store(false, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(list().await["fleet"]["connected"], false);
}
