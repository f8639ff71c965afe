//! The tables, as numbered migrations, applied under an advisory lock.

use tokio_postgres::Client;

/// The key of the transaction-scoped advisory lock
/// (`pg_advisory_xact_lock`) under which a store creates or migrates the
/// schema, so replicas attaching at once apply each migration once.
pub const SCHEMA_LOCK: i64 = 0x6362_5f70_6773_0001; // "cb_pgs" 1

/// The schema version this crate writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Each migration: its version, what it does, and its statements.
const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "circuit_breaker_state and circuit_breaker_events",
    r#"
CREATE TABLE IF NOT EXISTS circuit_breaker_state (
    service         text        NOT NULL,
    name            text        NOT NULL,
    key             text        NOT NULL DEFAULT '',
    state           text        NOT NULL,
    failure_count   bigint      NOT NULL DEFAULT 0,
    last_failure_at timestamptz,
    last_success_at timestamptz,
    next_probe_at   timestamptz,
    replica         text        NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, name, key)
);
CREATE TABLE IF NOT EXISTS circuit_breaker_events (
    id                 bigserial   PRIMARY KEY,
    event_id           bigint      NOT NULL UNIQUE,
    service            text        NOT NULL,
    replica            text        NOT NULL,
    name               text        NOT NULL,
    key                text        NOT NULL DEFAULT '',
    "from"             text        NOT NULL,
    "to"               text        NOT NULL,
    reason             text        NOT NULL,
    failures_in_window bigint      NOT NULL DEFAULT 0,
    occurred_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS circuit_breaker_events_service_name_occurred_at
    ON circuit_breaker_events (service, name, occurred_at);
"#,
)];

/// Creates the tables that are missing and applies the migrations the
/// database lacks, in one transaction under [`SCHEMA_LOCK`].
pub(crate) async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS circuit_breaker_schema (
             version     integer     PRIMARY KEY,
             description text        NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let current: i32 = tx
        .query_one(
            "SELECT coalesce(max(version), 0) FROM circuit_breaker_schema",
            &[],
        )
        .await?
        .get(0);
    if current > SCHEMA_VERSION {
        tracing::warn!(
            target: "cb_postgres",
            "cb-postgres: the database's schema is version {current}, newer than this build's {SCHEMA_VERSION}; it is left as it is"
        );
    }
    for (version, description, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO circuit_breaker_schema (version, description) VALUES ($1, $2)",
            &[version, description],
        )
        .await?;
    }
    tx.commit().await
}
