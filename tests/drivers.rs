//! `cb_runtime::classify::{postgres, redis, reqwest}` against real errors:
//! a PostgreSQL and a redis-server started here on loopback (skipped, with
//! the reason printed, when the program is absent, unless CB_REQUIRE_POSTGRES
//! or CB_REQUIRE_REDIS makes that a failure), and reqwest against an axum
//! server and a closed port.

use std::time::Duration;

use cb_runtime::classify;
use cb_runtime::Outcome;

/// A port on loopback that nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

mod with_postgres {
    use super::*;
    use cb_postgres::testing::postgres_or_skip;
    use tokio_postgres::{Client, NoTls};

    async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
        let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// The outcome and SQLSTATE of `sql`'s error.
    async fn error_of(db: &Client, sql: &str) -> (Outcome, Option<String>) {
        let e = db.batch_execute(sql).await.expect_err(sql);
        (classify::postgres(&e), e.code().map(|c| c.code().to_owned()))
    }

    #[tokio::test]
    async fn the_callers_mistakes_are_ignored_and_the_databases_trouble_is_a_failure() {
        let Some(mut server) = postgres_or_skip("classify::postgres") else {
            return;
        };
        let db = connect(&server.url()).await.unwrap();
        db.batch_execute("CREATE TABLE orders (id int PRIMARY KEY, qty int NOT NULL CHECK (qty > 0))")
            .await
            .unwrap();
        db.batch_execute("INSERT INTO orders VALUES (1, 1)")
            .await
            .unwrap();

        let mistakes = [
            ("INSERT INTO orders VALUES (1, 1)", "23505"),
            ("INSERT INTO orders VALUES (2, NULL)", "23502"),
            ("INSERT INTO orders VALUES (2, 0)", "23514"),
            ("SELECT * FROM no_such_table", "42P01"),
            ("SELEKT 1", "42601"),
            ("SELECT 1 / 0", "22012"),
            ("SELECT 'x'::int", "22P02"),
            ("DO $$ BEGIN RAISE EXCEPTION 'business rule'; END $$", "P0001"),
        ];
        for (sql, code) in mistakes {
            assert_eq!(
                error_of(&db, sql).await,
                (Outcome::Ignored, Some(code.to_owned())),
                "{sql}"
            );
        }
        // Too slow: statement_timeout cancels it (57014).
        let slow = "SET statement_timeout = '50ms'; SELECT pg_sleep(5)";
        assert_eq!(
            error_of(&db, slow).await,
            (Outcome::Failure, Some("57014".to_owned()))
        );
        db.batch_execute("SET statement_timeout = 0").await.unwrap();

        // A row that does not convert to the type asked for: no SQLSTATE, ignored.
        let row = db.query_one("SELECT 'text'::text", &[]).await.unwrap();
        let e = row.try_get::<_, i32>(0).unwrap_err();
        assert_eq!(classify::postgres(&e), Outcome::Ignored, "{e}");
        let e = db.query_one("SELECT 1 WHERE false", &[]).await.unwrap_err();
        assert_eq!(classify::postgres(&e), Outcome::Ignored, "{e}");

        // Too many connections (a role's limit: 53300): throttled.
        db.batch_execute("CREATE ROLE limited LOGIN CONNECTION LIMIT 0")
            .await
            .unwrap();
        let limited = server.url().replace("postgres@", "limited@");
        let e = connect(&limited).await.expect_err("refused");
        assert_eq!(
            (classify::postgres(&e), e.code().map(|c| c.code())),
            (Outcome::Throttled, Some("53300"))
        );

        // A session the administrator terminates (57P01, or the closed connection after it).
        let victim = connect(&server.url()).await.unwrap();
        let pid: i32 = victim
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        db.execute("SELECT pg_terminate_backend($1)", &[&pid])
            .await
            .unwrap();
        let e = victim.batch_execute("SELECT 1").await.unwrap_err();
        assert_eq!(classify::postgres(&e), Outcome::Failure, "{e:?}");

        // The server gone: the connection closes, and a new one is refused.
        server.kill();
        let e = db.batch_execute("SELECT 1").await.unwrap_err();
        assert_eq!(classify::postgres(&e), Outcome::Failure, "{e:?}");
        let e = connect(&server.url()).await.expect_err("refused");
        assert_eq!(classify::postgres(&e), Outcome::Failure, "{e:?}");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_failure() {
        let url = format!("postgres://postgres@127.0.0.1:{}/postgres", closed_port());
        let e = connect(&url).await.expect_err("nothing listens");
        assert_eq!(classify::postgres(&e), Outcome::Failure, "{e}");
    }
}

mod with_redis {
    use super::*;
    use ::redis::aio::MultiplexedConnection;
    use ::redis::{AsyncCommands, RedisResult};
    use cb_fleet::testing::{free_port, redis_or_skip};

    async fn connect(url: &str) -> RedisResult<MultiplexedConnection> {
        ::redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await
    }

    #[tokio::test]
    async fn wrong_commands_and_types_are_ignored_and_server_trouble_is_a_failure() {
        let Some(mut server) = redis_or_skip("classify::redis") else {
            return;
        };
        let mut conn = connect(&server.url()).await.unwrap();
        let _: () = conn.set("greeting", "hello").await.unwrap();

        // WRONGTYPE: a list command on a string.
        let e = conn.lpush::<_, _, i64>("greeting", "x").await.unwrap_err();
        assert_eq!(classify::redis(&e), Outcome::Ignored, "{e:?}");
        // ERR: a command that does not exist, or bad arguments.
        let e = ::redis::cmd("NOSUCHCOMMAND")
            .query_async::<()>(&mut conn)
            .await
            .unwrap_err();
        assert_eq!(classify::redis(&e), Outcome::Ignored, "{e:?}");
        let e = ::redis::cmd("EXPIRE")
            .arg("greeting")
            .arg("soon")
            .query_async::<()>(&mut conn)
            .await
            .unwrap_err();
        assert_eq!(classify::redis(&e), Outcome::Ignored, "{e:?}");
        // A value that does not convert to the Rust type asked for.
        let e = conn.get::<_, i64>("greeting").await.unwrap_err();
        assert_eq!(classify::redis(&e), Outcome::Ignored, "{e:?}");
        // NOSCRIPT.
        let e = ::redis::cmd("EVALSHA")
            .arg("0123456789012345678901234567890123456789")
            .arg(0)
            .query_async::<()>(&mut conn)
            .await
            .unwrap_err();
        assert_eq!(classify::redis(&e), Outcome::Ignored, "{e:?}");

        // OOM: maxmemory reached.
        server.command(&["CONFIG", "SET", "maxmemory", "1"]);
        let e = conn.set::<_, _, ()>("more", "data").await.unwrap_err();
        assert_eq!(classify::redis(&e), Outcome::Failure, "{e:?}");
        server.command(&["CONFIG", "SET", "maxmemory", "0"]);

        // A replica of a master that is gone: READONLY for a write, then
        // MASTERDOWN once it may not serve stale data.
        server.command(&["REPLICAOF", "127.0.0.1", &free_port().to_string()]);
        let e = conn.set::<_, _, ()>("greeting", "hi").await.unwrap_err();
        assert_eq!(classify::redis(&e), Outcome::Failure, "READONLY: {e:?}");
        server.command(&["CONFIG", "SET", "replica-serve-stale-data", "no"]);
        let e = conn.get::<_, String>("greeting").await.unwrap_err();
        assert_eq!(classify::redis(&e), Outcome::Failure, "MASTERDOWN: {e:?}");

        // The server gone: the connection drops.
        server.kill();
        let e = conn.get::<_, String>("greeting").await.unwrap_err();
        assert_eq!(classify::redis(&e), Outcome::Failure, "{e:?}");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_failure() {
        let e = connect(&format!("redis://127.0.0.1:{}/", closed_port()))
            .await
            .expect_err("refused");
        assert_eq!(classify::redis(&e), Outcome::Failure, "{e:?}");
    }
}

mod with_reqwest {
    use super::*;
    use axum::http::StatusCode;
    use axum::routing::get;
    use axum::Router;

    /// An axum server on loopback: `/status/{code}` answers that status,
    /// `/slow` after two seconds, `/text` plain text.
    async fn server() -> String {
        let app = Router::new()
            .route(
                "/status/{code}",
                get(|axum::extract::Path(code): axum::extract::Path<u16>| async move {
                    StatusCode::from_u16(code).unwrap()
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    "late"
                }),
            )
            .route("/text", get(|| async { "not json" }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    async fn status_error(client: &reqwest13::Client, url: String) -> reqwest13::Error {
        client
            .get(url)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap_err()
    }

    #[tokio::test]
    async fn statuses_and_transport_errors_count_as_documented() {
        let base = server().await;
        let client = reqwest13::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();

        let judge = |e: &reqwest13::Error| classify::reqwest(e);
        assert_eq!(
            judge(&status_error(&client, format!("{base}/status/429")).await),
            Outcome::Throttled
        );
        for code in [500, 502, 503, 504, 529] {
            assert_eq!(
                judge(&status_error(&client, format!("{base}/status/{code}")).await),
                Outcome::Failure
            );
        }
        for code in [400, 401, 404, 409, 422] {
            assert_eq!(
                judge(&status_error(&client, format!("{base}/status/{code}")).await),
                Outcome::Ignored
            );
        }

        // Connection refused, and a timeout.
        let e = client
            .get(format!("http://127.0.0.1:{}/", closed_port()))
            .send()
            .await
            .unwrap_err();
        assert!(e.is_connect());
        assert_eq!(judge(&e), Outcome::Failure);
        let e = client.get(format!("{base}/slow")).send().await.unwrap_err();
        assert!(e.is_timeout());
        assert_eq!(judge(&e), Outcome::Failure);

        // A body that is not the JSON asked for, a URL that cannot be sent.
        let e = client
            .get(format!("{base}/text"))
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap_err();
        assert!(e.is_decode());
        assert_eq!(judge(&e), Outcome::Ignored);
        let e = client.get("http://").send().await.unwrap_err();
        assert_eq!(judge(&e), Outcome::Ignored, "{e:?}");
    }
}
