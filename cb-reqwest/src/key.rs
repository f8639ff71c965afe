//! Which breaker of the family a request goes through: its key.

use reqwest::Request;

/// The default key of a request: its URL's host, with `:port` when the URL
/// names a port other than its scheme's default.
///
/// ```
/// use cb_reqwest::default_key;
/// use reqwest::{Method, Request};
///
/// let request = |url: &str| Request::new(Method::GET, url.parse().unwrap());
/// assert_eq!(default_key(&request("https://api.openai.com/v1/chat/completions")), "api.openai.com");
/// assert_eq!(default_key(&request("https://api.openai.com:443/v1/models")), "api.openai.com");
/// assert_eq!(default_key(&request("http://127.0.0.1:8080/health")), "127.0.0.1:8080");
/// assert_eq!(default_key(&request("http://[::1]:9000/")), "[::1]:9000");
/// ```
pub fn default_key(request: &Request) -> String {
    let url = request.url();
    // reqwest sends only URLs with a host; the overflow breaker takes any other.
    let host = url.host_str().unwrap_or(cb_runtime::OVERFLOW_KEY);
    match url.port() {
        // `Url::port` is `None` for the scheme's default port, written or not.
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}
