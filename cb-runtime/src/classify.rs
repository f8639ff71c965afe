//! Ready classifiers for the errors of common drivers, each behind a feature
//! of its own: `fn(&E) -> Outcome` functions for `classify = path` in the
//! attribute, [`CircuitBreaker::call_with`](crate::CircuitBreaker::call_with)
//! (through a closure), or a stream's [`ClassifyError`](crate::ClassifyError).
//!
//! Each calls the dependency's own trouble a failure (a connection lost or
//! refused, a timeout, a server shutting down, failing over or out of
//! resources), a "too many" answer [`Outcome::Throttled`](crate::Outcome::Throttled),
//! and the caller's mistakes ignored (a constraint violation, a syntax
//! error, a wrong type, a 4xx), which say nothing about the dependency's
//! health. Each function's documentation lists its codes.
//!
//! | function | feature | error type |
//! | --- | --- | --- |
//! | `postgres` | `postgres` | `tokio_postgres::Error` |
//! | `redis` | `redis` | `redis::RedisError` |
//! | `reqwest` | `reqwest` | `reqwest::Error` (reqwest 0.13) |
//!
//! With `#[circuit_breaker(name = "orders-db", classify = cb_runtime::classify::postgres)]`
//! on a function returning `Result<_, CallError<tokio_postgres::Error>>` (the
//! driver's error type has no `From<BreakerError>`), a unique
//! violation (SQLSTATE 23505) comes back to the caller and counts in
//! `Stats::ignored` only; a lost connection counts as a failure.

#[cfg(feature = "postgres")]
#[path = "classify/postgres.rs"]
mod postgres_errors;
#[cfg(feature = "postgres")]
pub use postgres_errors::postgres;

#[cfg(feature = "redis")]
#[path = "classify/redis.rs"]
mod redis_errors;
#[cfg(feature = "redis")]
pub use redis_errors::redis;

#[cfg(feature = "reqwest")]
#[path = "classify/reqwest.rs"]
mod reqwest_errors;
#[cfg(feature = "reqwest")]
pub use reqwest_errors::reqwest;
