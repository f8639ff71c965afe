//! PostgreSQL's errors, as tokio-postgres reports them.

use crate::Outcome;

/// How a `tokio_postgres::Error` counts (feature `postgres`).
///
/// Errors the server reports carry a SQLSTATE ([`tokio_postgres::Error::code`]):
///
/// | SQLSTATE | meaning | outcome |
/// | --- | --- | --- |
/// | `08***` | connection exception | failure |
/// | `57P01`, `57P02`, `57P03` | admin shutdown, crash shutdown, cannot connect now (starting up, in recovery) | failure |
/// | `57014` | query canceled (`statement_timeout`): the database is slow | failure |
/// | `25006` | read-only transaction: a write reached a standby, as after a failover | failure |
/// | `53300` | too many connections | throttled |
/// | `53***` other, `58***`, `XX***` | out of memory or disk, system I/O error, internal error or corruption | failure |
/// | `40001`, `40P01` | serialization failure, deadlock detected: the transaction lost a race with another; retrying it is the caller's business, and the database is healthy | ignored |
/// | `23***` | integrity constraint violation (a unique key, a foreign key, a not-null) | ignored |
/// | `42***` | syntax error or access rule violation (an undefined table or column) | ignored |
/// | `22***` | data exception (a value out of range, a bad input syntax) | ignored |
/// | any other | an answer to the caller's request (`28***` bad credentials, `3D000` no such database, `P0001` a `RAISE`, ...) | ignored |
///
/// Errors without a SQLSTATE: a connection closed, refused or broken, a
/// connect timeout, a TLS handshake that failed, a message from the server
/// that could not be read, are failures; a row that does not convert to the
/// Rust type asked for, a wrong number of parameters, columns or rows, a bad
/// configuration, are ignored.
///
/// ```no_run
/// use cb_runtime::{circuit_breaker, CallError};
/// #[circuit_breaker(name = "orders-db", preset = "database", classify = cb_runtime::classify::postgres)]
/// // `CallError<E>`: the refusal comes back as `CallError::Rejected`, the
/// // driver's error as `CallError::Inner`, judged by `classify`.
/// async fn insert_order(db: &tokio_postgres::Client, id: i64) -> Result<u64, CallError<tokio_postgres::Error>> {
///     db.execute("INSERT INTO orders (id) VALUES ($1)", &[&id]).await
/// }
/// ```
pub fn postgres(error: &tokio_postgres::Error) -> Outcome {
    if let Some(state) = error.code() {
        return sqlstate(state.code());
    }
    if error.is_closed() {
        return Outcome::Failure;
    }
    // tokio-postgres keeps its error kinds private; their messages are
    // what tells the transport's trouble from the caller's mistakes.
    const TRANSPORT: [&str; 6] = [
        "error communicating with the server",
        "error connecting to server",
        "timeout waiting for server",
        "unexpected message from server",
        "error performing TLS handshake",
        "error parsing response from server",
    ];
    let message = error.to_string();
    if TRANSPORT.iter().any(|m| message.starts_with(m)) {
        Outcome::Failure
    } else {
        Outcome::Ignored
    }
}

/// How a SQLSTATE counts.
fn sqlstate(code: &str) -> Outcome {
    match code {
        "53300" => Outcome::Throttled,
        "57P01" | "57P02" | "57P03" | "57014" | "25006" => Outcome::Failure,
        "40001" | "40P01" => Outcome::Ignored,
        _ => match code.get(..2) {
            Some("08" | "53" | "58" | "XX") => Outcome::Failure,
            _ => Outcome::Ignored,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::sqlstate;
    use crate::Outcome;

    #[test]
    fn sqlstates_go_where_the_table_says() {
        for code in [
            "08006", "08001", "57P01", "57P02", "57P03", "57014", "25006", "53100", "58030", "XX000",
        ] {
            assert_eq!(sqlstate(code), Outcome::Failure, "{code}");
        }
        assert_eq!(sqlstate("53300"), Outcome::Throttled);
        for code in [
            "23505", "23503", "42P01", "42601", "22003", "40001", "40P01", "28P01", "3D000", "P0001",
        ] {
            assert_eq!(sqlstate(code), Outcome::Ignored, "{code}");
        }
    }
}
