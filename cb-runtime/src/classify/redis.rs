//! Redis's errors, as redis-rs reports them.

use redis::ErrorKind;

use crate::Outcome;

/// How a `redis::RedisError` counts (feature `redis`).
///
/// | error | outcome |
/// | --- | --- |
/// | an I/O error: connection refused, reset or dropped, a timeout | failure |
/// | `CLUSTERDOWN`, `TRYAGAIN`, `MASTERDOWN`, `LOADING` (a replica or a restarted server still loading its data), `READONLY` (a write reached a replica, as after a failover) | failure |
/// | `OOM` (maxmemory reached), `BUSY` (a script runs too long) | failure |
/// | no connection to a cluster node or through Sentinel | failure |
/// | `ERR` (a wrong command or arguments), `WRONGTYPE` and values that do not convert to the Rust type asked for, `EXECABORT`, `NOSCRIPT`, `CROSSSLOT`, `MOVED`/`ASK` (handled by the cluster client), bad credentials or configuration | ignored |
/// | any other error the server answers | ignored |
///
/// ```no_run
/// use cb_runtime::{circuit_breaker, CallError};
/// #[circuit_breaker(name = "sessions", preset = "cache", classify = cb_runtime::classify::redis)]
/// async fn session(id: &str) -> Result<Option<String>, CallError<redis::RedisError>> {
///     // redis::cmd("GET").arg(id).query_async(&mut connection).await
/// #   let _ = id;
/// #   Ok(None)
/// }
/// ```
pub fn redis(error: &redis::RedisError) -> Outcome {
    if error.is_io_error()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_connection_dropped()
    {
        return Outcome::Failure;
    }
    match error.kind() {
        ErrorKind::ClusterDown
        | ErrorKind::TryAgain
        | ErrorKind::MasterDown
        | ErrorKind::BusyLoadingError
        | ErrorKind::ReadOnly
        | ErrorKind::ClusterConnectionNotFound
        | ErrorKind::MasterNameNotFoundBySentinel
        | ErrorKind::NoValidReplicasFoundBySentinel => Outcome::Failure,
        // Codes redis-rs has no kind for.
        ErrorKind::ExtensionError => match error.code() {
            Some("OOM" | "BUSY" | "LOADING" | "MASTERDOWN" | "CLUSTERDOWN" | "TRYAGAIN" | "READONLY") => {
                Outcome::Failure
            }
            _ => Outcome::Ignored,
        },
        _ => Outcome::Ignored,
    }
}
