//! Keyed breakers in fleet mode: every key of a family is shared across
//! replicas under its own identity (`<family>\u{1f}<key>`), so one key's
//! open opens that key everywhere and no other key; an evicted key leaves
//! the fleet cleanly, its shared state left in Redis.
//! Against a real redis-server; skipped, saying why, when redis-server is
//! missing, unless CB_REQUIRE_REDIS=1.

use std::time::Duration;

use cb_fleet::testing::{join, redis_or_skip, replica, wait_until};
use cb_runtime::{Config, State};

const SOON: Duration = Duration::from_secs(5);

fn config() -> Config {
    Config::builder()
        .failure_threshold(1)
        .open_duration(Duration::from_secs(30))
        .max_keys(2)
        .build()
        .unwrap()
}

/// The fleet's state kind of identity `id` in Redis (`None`: no state).
async fn kind(con: &mut redis::aio::MultiplexedConnection, id: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(format!("cb:{{keyed}}:b:{id}"))
        .arg("kind")
        .query_async(con)
        .await
        .unwrap()
}

async fn fail(b: &cb_runtime::CircuitBreaker) {
    let permit = b.try_acquire().expect("admitted");
    let _ = permit.run(async { Err::<(), _>("down") }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_opens_only_that_key_on_every_replica() {
    let Some(server) = redis_or_skip("a_key_opens_only_that_key_on_every_replica") else {
        return;
    };
    let (ra, rb) = (replica(), replica());
    let fa = join(&server, "keyed", "a", ra).await;
    let fb = join(&server, "keyed", "b", rb).await;
    assert!(wait_until(SOON, || fa.is_connected() && fb.is_connected()).await);
    let (fam_a, fam_b) = (
        ra.family_or_insert("openai", config),
        rb.family_or_insert("openai", config),
    );
    let (big_a, mini_a) = (fam_a.get_or_insert("gpt-4o"), fam_a.get_or_insert("gpt-4o-mini"));
    let (big_b, mini_b) = (fam_b.get_or_insert("gpt-4o"), fam_b.get_or_insert("gpt-4o-mini"));

    fail(&big_a).await;
    assert_eq!(big_a.state(), State::Open);
    assert!(
        wait_until(SOON, || big_b.state() == State::Open).await,
        "gpt-4o on b did not follow"
    );
    assert_eq!(big_b.open_reason(), Some(cb_runtime::Reason::OpenedByFleet));
    // The fleet holds the key under its own identity, not the family's name.
    let mut con = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let state = kind(&mut con, "openai\u{1f}gpt-4o").await;
    assert!(state.is_some(), "gpt-4o's fleet state is kept under its identity");
    let family_state = kind(&mut con, "openai").await;
    assert_eq!(family_state, None, "nothing is kept under the family's name");
    // A message to b went through b's queue before this command's answer.
    fb.reset("barrier").await.unwrap();
    assert_eq!(mini_a.state(), State::Closed);
    assert_eq!(mini_b.state(), State::Closed);

    // A fleet-wide command by identity reaches only that key.
    fa.force_open("openai\u{1f}gpt-4o-mini").await.unwrap();
    assert!(wait_until(SOON, || mini_b.state() == State::ForcedOpen).await);
    fa.reset("openai\u{1f}gpt-4o-mini").await.unwrap();
    assert!(
        wait_until(SOON, || mini_b.state() == State::Closed
            && mini_a.state() == State::Closed)
        .await
    );
    assert_eq!(big_b.state(), State::Open);

    // A third key on b evicts gpt-4o-mini there (gpt-4o is open, never
    // evicted): the evicted breaker hears nothing more from the fleet, and
    // its shared state stays in Redis for replica a.
    let other_b = fam_b.get_or_insert("o3");
    assert!(fam_b.get("gpt-4o-mini").is_none(), "gpt-4o-mini evicted on b");
    fa.force_open("openai\u{1f}gpt-4o-mini").await.unwrap();
    assert!(wait_until(SOON, || mini_a.state() == State::ForcedOpen).await);
    fb.reset("barrier").await.unwrap();
    assert_eq!(mini_b.state(), State::Closed, "the evicted breaker is left alone");
    let mini_state = kind(&mut con, "openai\u{1f}gpt-4o-mini").await;
    assert!(
        mini_state.is_some(),
        "the evicted key's shared state stays in Redis"
    );
    // A replica that has no breaker for a key keeps the fleet's state of it
    // while it is not closed: the key made again on b adopts it at creation.
    let again = fam_b.get_or_insert("gpt-4o-mini");
    assert!(fam_b.get("o3").is_none(), "o3 evicted on b");
    assert_eq!(again.state(), State::ForcedOpen);
    // The evicted o3 leaves no lease or member behind: a fleet-wide reset of
    // the family's keys still reaches the live ones.
    fa.reset("openai\u{1f}gpt-4o-mini").await.unwrap();
    assert!(wait_until(SOON, || again.state() == State::Closed).await);
    drop(other_b);
    drop((fa, fb));
}
