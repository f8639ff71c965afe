//! The status page (`GET /`): one HTML page, its script and its style sheet,
//! compiled into the binary. The page reads `GET /circuit-breakers` every two
//! seconds and posts the mutations with the token the operator types.
//!
//! Every answer carries a Content-Security-Policy that allows this origin's
//! script, style and API only (no inline script, no other host, no framing),
//! and `Cache-Control: no-store`.

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};

/// The page's HTML.
pub(super) const PAGE_HTML: &str = include_str!("page.html");
/// The page's script.
pub(super) const STATUS_JS: &str = include_str!("status.js");
/// The page's style sheet.
pub(super) const STATUS_CSS: &str = include_str!("status.css");

/// The policy sent with the page and its assets: only this origin's script,
/// style sheet and JSON API; nothing inline, no plugins, no frames, no forms.
pub(super) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        body,
    )
        .into_response()
}

/// `GET /`: the page.
pub(super) async fn page() -> Response {
    asset("text/html; charset=utf-8", PAGE_HTML)
}

/// `GET /ui/status.js`.
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", STATUS_JS)
}

/// `GET /ui/status.css`.
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STATUS_CSS)
}

#[cfg(test)]
mod tests {
    use super::{PAGE_HTML, STATUS_JS};

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for text in [PAGE_HTML, STATUS_JS] {
            assert!(!text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"));
        }
        // No inline script or style: the CSP forbids them.
        assert!(!PAGE_HTML.contains("<script>") && !PAGE_HTML.contains("style="));
        for handler in ["onclick=", "onload=", "onerror=", "javascript:"] {
            assert!(!PAGE_HTML.contains(handler), "page.html uses {handler}");
        }
    }

    #[test]
    fn the_script_never_writes_html_and_never_stores_the_token() {
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "localStorage",
            "sessionStorage",
            "document.cookie",
            "eval(",
        ] {
            assert!(!STATUS_JS.contains(banned), "status.js uses {banned}");
        }
    }
}
