//! pool_mode = statement: the server goes back to the pool after every
//! statement, so transaction blocks are refused with PgBouncer's error.

mod support;

use std::time::Duration;

use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::{db_message, wait_until, Pooler, PoolerConfig, Postgres};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::SimpleQueryMessage;

const STEP: Duration = Duration::from_secs(30);

/// PgBouncer's message (src/server.c), sent with SQLSTATE 08P01; PostgREST and
/// others match on both.
const REFUSAL: &str = "transaction blocks not allowed in statement pooling mode";

fn setup() -> (Postgres, Pooler) {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("pool_mode", "statement")
        .set("default_pool_size", "2");
    let pooler = Pooler::start(&cfg);
    (pg, pooler)
}

fn values(messages: &[SimpleQueryMessage]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_statements_work() {
    let (pg, pooler) = setup();
    pg.sql_db(
        TEST_DB,
        "CREATE TABLE stmt_t(v int); GRANT ALL ON stmt_t TO PUBLIC",
    );
    let client = pooler.connect_trust("login").await;
    for i in 0..20 {
        let rows = client
            .simple_query(&format!("SELECT {i}"))
            .await
            .unwrap_or_else(|e| panic!("statement {i}: {e:?}"));
        assert_eq!(values(&rows), vec![i.to_string()]);
        let row = client
            .query_typed_one("SELECT $1::int4 * 2", &[(&i, Type::INT4)])
            .await
            .unwrap_or_else(|e| panic!("extended statement {i}: {e:?}"));
        assert_eq!(row.get::<_, i32>(0), i * 2);
        client
            .simple_query(&format!("INSERT INTO stmt_t VALUES ({i})"))
            .await
            .unwrap_or_else(|e| panic!("insert {i}: {e:?}"));
    }
    // Several statements in one Query message end with the server idle: allowed.
    let rows = client
        .simple_query("SELECT 'a'; SELECT 'b'")
        .await
        .expect("a multi-statement query string");
    assert_eq!(values(&rows), vec!["a".to_string(), "b".to_string()]);
    // Every autocommitted insert is there.
    assert_eq!(pg.sql_db(TEST_DB, "SELECT count(*) FROM stmt_t"), "20");
    assert!(pg.backends(TRUST_USER) <= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_blocks_are_refused() {
    let (pg, pooler) = setup();
    let client = pooler.connect_trust("login").await;
    // BEGIN, SELECT 1, COMMIT as separate statements, the way drivers send them.
    let result = pooler
        .within(STEP, "a transaction block", async {
            client.batch_execute("BEGIN").await?;
            client.simple_query("SELECT 1").await?;
            client.batch_execute("COMMIT").await
        })
        .await;
    let err = result.expect_err("a transaction block must be refused in statement mode");
    assert!(db_message(&err).contains(REFUSAL), "{err:?}");
    assert_eq!(
        err.as_db_error().map(|d| d.code()),
        Some(&SqlState::PROTOCOL_VIOLATION),
        "{err:?}"
    );

    // psql sees the same refusal.
    let psql = pooler.psql(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD), "BEGIN");
    let stderr = psql.expect_err("BEGIN must be refused");
    assert!(stderr.contains(REFUSAL), "{stderr}");

    // The refused transaction did not stay open on a pooled server.
    assert!(
        wait_until(Duration::from_secs(10), || pg.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE usename = '{TRUST_USER}' \
                 AND state LIKE 'idle in transaction%'"
        )) == "0"),
        "a server was left idle in transaction"
    );
    for i in 0..4 {
        let c = pooler.connect_trust("login after the refusal").await;
        let rows = c
            .simple_query("SELECT (now() = statement_timestamp())::text")
            .await
            .unwrap_or_else(|e| panic!("client {i}: {e:?}"));
        assert_eq!(
            values(&rows),
            vec!["true".to_string()],
            "client {i} ran inside a leftover transaction"
        );
    }
}
