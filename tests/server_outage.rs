//! What clients see while PostgreSQL is down or restarting: as with PgBouncer,
//! they wait for a server (a logged-in client up to query_wait_timeout, a
//! login up to client_login_timeout) while the pool tries to connect again
//! every server_login_retry, and carry on once the server is back.

mod support;

use std::time::{Duration, Instant};

use support::postgres::{TEST_DB, TRUST_USER};
use support::{db_code, db_message, free_port, Pooler, PoolerConfig, Postgres};

const STEP: Duration = Duration::from_secs(30);

fn pooler_for(pg: &Postgres, settings: &[(&str, &str)]) -> (PoolerConfig, Pooler) {
    let mut cfg = PoolerConfig::new(pg);
    cfg.set("auth_type", "trust").set("server_login_retry", "1");
    for (key, value) in settings {
        cfg.set(key, value);
    }
    let pooler = Pooler::start(&cfg);
    (cfg, pooler)
}

async fn select_one(client: &tokio_postgres::Client) -> Result<(), tokio_postgres::Error> {
    client.simple_query("SELECT 1").await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_wait_through_a_server_restart() {
    let mut pg = Postgres::start();
    let (_cfg, pooler) = pooler_for(&pg, &[("query_wait_timeout", "60")]);
    let before = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    select_one(&before).await.unwrap();

    tokio::task::block_in_place(|| pg.stop());
    // A client that was logged in, and one logging in while the server is
    // down (the pool knows the server's parameters already), both query.
    let waiting_query = tokio::spawn(async move { select_one(&before).await });
    let during = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let new_client_query = tokio::spawn(async move { select_one(&during).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !waiting_query.is_finished() && !new_client_query.is_finished(),
        "the clients were answered while the server was down:\n{}",
        pooler.log()
    );

    tokio::task::block_in_place(|| pg.start_again());
    for (what, task) in [("logged-in", waiting_query), ("new", new_client_query)] {
        let answer = tokio::time::timeout(STEP, task)
            .await
            .unwrap_or_else(|_| panic!("the {what} client still waits:\n{}", pooler.log()))
            .unwrap();
        assert!(
            answer.is_ok(),
            "{what} client: {answer:?}\n{}",
            pooler.log()
        );
    }
    let log = pooler.log();
    assert!(log.contains("server connection failed"), "{log}");
    assert!(log.contains("server reachable again"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stays_down_ends_in_query_wait_timeout() {
    let mut pg = Postgres::start();
    let (_cfg, pooler) = pooler_for(&pg, &[("query_wait_timeout", "2")]);
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    select_one(&client).await.unwrap();
    tokio::task::block_in_place(|| pg.stop());

    let started = Instant::now();
    let err = tokio::time::timeout(STEP, select_one(&client))
        .await
        .expect("answered in time")
        .expect_err("no server to run the query on");
    let waited = started.elapsed();
    assert_eq!(db_message(&err), "query_wait_timeout", "{err:?}");
    assert_eq!(db_code(&err).as_deref(), Some("08P01"), "{err:?}");
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    // Meanwhile the pool kept trying, once per server_login_retry.
    let attempts = pooler.log().matches("server connection failed").count();
    assert!(
        attempts >= 2,
        "{attempts} connection attempts:\n{}",
        pooler.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_to_an_unreachable_server_ends_in_client_login_timeout_server_down() {
    let pg = Postgres::start();
    let nobody = free_port();
    let (_cfg, pooler) = {
        let mut cfg = PoolerConfig::new(&pg);
        cfg.set("auth_type", "trust")
            .set("server_login_retry", "1")
            .set("client_login_timeout", "2")
            .database("down", &format!("host=127.0.0.1 port={nobody} dbname=x"));
        let pooler = Pooler::start(&cfg);
        (cfg, pooler)
    };
    let started = Instant::now();
    let err = pooler
        .connect(TRUST_USER, "down", None)
        .await
        .err()
        .unwrap_or_else(|| panic!("logged in to a server nobody serves"));
    let waited = started.elapsed();
    assert_eq!(
        db_message(&err),
        "client_login_timeout (server down)",
        "{err:?}"
    );
    assert!(waited >= Duration::from_millis(1900), "{waited:?}");
    // A server that is up is not held up by the one that is down.
    let up = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    select_one(&up).await.unwrap();
}
