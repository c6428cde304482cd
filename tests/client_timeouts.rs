//! The client-side timeouts: query_timeout, idle_transaction_timeout,
//! transaction_timeout and client_idle_timeout disconnect the client with
//! PgBouncer's message, and the server they interrupted is closed, never
//! reused.

mod support;

use std::time::{Duration, Instant};

use support::postgres::{TEST_DB, TRUST_USER};
use support::{db_message, wait_until, Pooler, PoolerConfig, Postgres};

const STEP: Duration = Duration::from_secs(30);

fn start(settings: &[(&str, &str)]) -> (Postgres, Pooler) {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("auth_type", "trust")
        .set("pool_mode", "transaction");
    for (key, value) in settings {
        cfg.set(key, value);
    }
    let pooler = Pooler::start(&cfg);
    (pg, pooler)
}

/// Backends of the test user that run `pattern` (as pg_stat_activity shows it).
fn backends_running(pg: &Postgres, pattern: &str) -> String {
    pg.sql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{TRUST_USER}' \
         AND query LIKE '{pattern}' AND state <> 'idle'"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_timeout_disconnects_and_closes_the_server() {
    let (pg, pooler) = start(&[("query_timeout", "1")]);
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let started = Instant::now();
    let err = tokio::time::timeout(STEP, client.simple_query("SELECT pg_sleep(20)"))
        .await
        .expect("the pooler ends the query")
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(db_message(&err).contains("query timeout"), "{err:?}");
    assert!(
        wait_until(STEP, || !pooler
            .server_log_lines("closing because: query timeout (age=")
            .is_empty()),
        "no line for the server closed:\n{}",
        pooler.log()
    );
    // The sleeping backend is not left running for another client.
    assert!(
        wait_until(Duration::from_secs(10), || backends_running(
            &pg,
            "SELECT pg_sleep(20)"
        ) == "0"),
        "the interrupted query still runs on the server"
    );
    let other = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    assert_eq!(
        other
            .query_one("SELECT 5", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_transaction_timeout_ends_a_forgotten_transaction() {
    let (pg, pooler) = start(&[("idle_transaction_timeout", "1")]);
    pg.sql_db(
        TEST_DB,
        "CREATE TABLE idle_t(v int); GRANT ALL ON idle_t TO PUBLIC",
    );
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    client
        .batch_execute("BEGIN; INSERT INTO idle_t VALUES (1)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = client.simple_query("COMMIT").await.unwrap_err();
    assert!(
        pooler.log().contains("idle transaction timeout"),
        "the log names the reason; client saw {err:?}"
    );
    assert_eq!(pg.sql_db(TEST_DB, "SELECT count(*) FROM idle_t"), "0");
    // Busy clients are not affected by it.
    let other = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    other
        .batch_execute("BEGIN; SELECT pg_sleep(2); INSERT INTO idle_t VALUES (2); COMMIT")
        .await
        .expect("a long statement inside a transaction is not idle");
    assert_eq!(pg.sql_db(TEST_DB, "SELECT count(*) FROM idle_t"), "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_idle_timeout_closes_idle_clients() {
    let (_pg, pooler) = start(&[("client_idle_timeout", "1")]);
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert!(client.is_closed(), "{err:?}");
    assert!(pooler.log().contains("client_idle_timeout"));
}

/// transaction_timeout counts from a transaction's first message, however busy
/// the client keeps it: a transaction kept going past it, and a single
/// statement running past it, both end with "transaction timeout" (the
/// statement cancelled on the server), while short transactions never do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_timeout_ends_transactions_that_last_too_long() {
    let (pg, pooler) = start(&[("transaction_timeout", "1")]);
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    // Short transactions for longer than the timeout in all.
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(1500) {
        client
            .batch_execute("BEGIN; SELECT 1; COMMIT")
            .await
            .expect("short transactions are never timed out");
    }

    // A busy transaction: a statement every 200 ms, never idle for long.
    client.batch_execute("BEGIN").await.unwrap();
    let started = Instant::now();
    let err = loop {
        match client.simple_query("SELECT 1").await {
            Ok(_) if started.elapsed() < STEP => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Ok(_) => panic!("the transaction was never timed out"),
            Err(e) => break e,
        }
    };
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_millis(900) && lasted < Duration::from_secs(10),
        "{lasted:?}"
    );
    // The FATAL may arrive between two statements: the next one then finds
    // the connection closed, and the log says why.
    assert!(
        db_message(&err) == "transaction timeout"
            || (err.is_closed()
                && pooler
                    .log()
                    .contains("closing because: transaction timeout")),
        "{err:?}\n{}",
        pooler.log()
    );

    // One statement that runs past the timeout.
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let err = tokio::time::timeout(STEP, client.simple_query("SELECT pg_sleep(20)"))
        .await
        .expect("the pooler ends the statement")
        .unwrap_err();
    assert_eq!(db_message(&err), "transaction timeout", "{err:?}");
    assert!(
        wait_until(Duration::from_secs(10), || backends_running(
            &pg,
            "SELECT pg_sleep(20)"
        ) == "0"),
        "the interrupted statement still runs on the server"
    );
}
