//! Finding the breaker's refusal in an error, wherever a middleware put it.

use cb_runtime::BreakerError;

/// The [`BreakerError`] that `error` is, or wraps: the breaker refused the
/// request (it was never sent), or abandoned it at `call_timeout`. `None`
/// for any other error.
///
/// A middleware before this one may wrap the refusal in an error of its
/// own: one that names it as its [`source`](std::error::Error::source) is
/// looked through, and with the feature `retry`, so is reqwest-retry's
/// `RetryError` (which hides its cause when no retry happened).
///
/// ```
/// # async fn run(client: reqwest_middleware::ClientWithMiddleware) {
/// match client.get("https://api.example.com/v1/models").send().await {
///     Err(e) if cb_reqwest::refusal(&e).is_some_and(|r| r.is_rejected()) => {
///         println!("not sent: {e}");
///     }
///     other => println!("{other:?}"),
/// }
/// # }
/// ```
pub fn refusal(error: &reqwest_middleware::Error) -> Option<&BreakerError> {
    let reqwest_middleware::Error::Middleware(e) = error else {
        return None;
    };
    if let Some(refusal) = e.downcast_ref::<BreakerError>() {
        return Some(refusal);
    }
    #[cfg(feature = "retry")]
    if let Some(retry) = e.downcast_ref::<reqwest_retry::RetryError>() {
        match retry {
            reqwest_retry::RetryError::WithRetries { err, .. } | reqwest_retry::RetryError::Error(err) => {
                return refusal(err)
            }
        }
    }
    e.chain().skip(1).find_map(|cause| {
        cause.downcast_ref::<BreakerError>().or_else(|| {
            cause
                .downcast_ref::<reqwest_middleware::Error>()
                .and_then(refusal)
        })
    })
}
