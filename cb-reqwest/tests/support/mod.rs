//! A real HTTP server on loopback that answers what each request asks for,
//! and counts the requests that reached it.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use cb_runtime::Registry;

/// A server on 127.0.0.1 that answers `/answer?status=503&retry-after=60`
/// with that status and those headers (every query pair but `status` is a
/// header), and `/slow` after two seconds.
pub struct Server {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Server {
    pub async fn start() -> Server {
        let hits = Arc::new(AtomicUsize::new(0));
        let (h1, h2) = (Arc::clone(&hits), Arc::clone(&hits));
        let app = Router::new()
            .route(
                "/answer",
                get(move |uri: Uri| {
                    h1.fetch_add(1, Ordering::SeqCst);
                    async move { answer(&uri) }
                }),
            )
            .route(
                "/slow",
                get(move || {
                    h2.fetch_add(1, Ordering::SeqCst);
                    async {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        "late"
                    }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Server { addr, hits }
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The requests that reached the server so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn answer(uri: &Uri) -> impl IntoResponse {
    let mut status = StatusCode::OK;
    let mut headers = HeaderMap::new();
    for pair in uri.query().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = value.replace("%20", " ").replace("%2C", ",");
        if name == "status" {
            status = StatusCode::from_u16(value.parse().unwrap()).unwrap();
        } else {
            headers.insert(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(&value).unwrap(),
            );
        }
    }
    (status, headers, "answer")
}

/// A registry of the test's own, so tests running at once share nothing.
pub fn registry() -> &'static Registry {
    Box::leak(Box::new(Registry::with_env(Vec::new)))
}

/// A port on loopback that nothing listens on.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
