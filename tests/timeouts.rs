//! Server-side timeouts close idle servers; query_wait_timeout ends a wait for
//! a server that never comes; autodb_idle_timeout forgets unused `*` databases.

mod support;

use std::time::{Duration, Instant};

use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::{db_message, wait_until, Pooler, PoolerConfig, Postgres};
use tokio_postgres::error::SqlState;

const STEP: Duration = Duration::from_secs(30);

fn setup(settings: &[(&str, &str)]) -> (Postgres, Pooler) {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    for (k, v) in settings {
        cfg.set(k, v);
    }
    let pooler = Pooler::start(&cfg);
    (pg, pooler)
}

/// With `setting` = 2 s, the server used by a query is closed within 10 s while
/// its client stays connected; the client's next query gets a new server. The
/// log says so in PgBouncer's words: `reason`.
async fn idle_server_goes_away(setting: &str, reason: &str) {
    let (pg, pooler) = setup(&[("pool_mode", "transaction"), (setting, "2")]);
    let client = pooler.connect_trust("login").await;
    client.simple_query("SELECT 1").await.expect("query");
    // The server went back to the pool, still open.
    assert_eq!(
        pg.backends(TRUST_USER),
        1,
        "one pooled server after the query"
    );
    let started = Instant::now();
    assert!(
        wait_until(Duration::from_secs(10), || pg.backends(TRUST_USER) == 0),
        "{setting} = 2 did not close the idle server within 10 s"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "the server was closed at once ({:?}), not after {setting}",
        started.elapsed()
    );
    // log_connections and log_disconnections are on by default.
    let opened = pooler.server_log_lines("new connection to server (from 127.0.0.1:");
    let closed = pooler.server_log_lines(&format!("closing because: {reason} (age="));
    let expected = format!("{TEST_DB}/{TRUST_USER}@127.0.0.1:{}", pg.port);
    assert!(
        opened.len() == 1 && opened[0].contains(&expected),
        "one server opened, logged as {expected}:\n{}",
        pooler.log()
    );
    assert!(
        closed.len() == 1 && closed[0].contains(&expected),
        "one server closed, logged as {expected}:\n{}",
        pooler.log()
    );
    // The client never noticed.
    client
        .simple_query("SELECT 2")
        .await
        .unwrap_or_else(|e| panic!("query after the server was closed: {e:?}"));
    assert_eq!(pg.backends(TRUST_USER), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_idle_timeout_closes_idle_servers() {
    idle_server_goes_away("server_idle_timeout", "server idle timeout").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lifetime_closes_used_servers() {
    idle_server_goes_away("server_lifetime", "server lifetime over").await;
}

/// With log_connections and log_disconnections off, servers come and go
/// without a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_lines_follow_log_connections_and_log_disconnections() {
    let (pg, pooler) = setup(&[
        ("pool_mode", "transaction"),
        ("server_idle_timeout", "1"),
        ("log_connections", "0"),
        ("log_disconnections", "0"),
    ]);
    let client = pooler.connect_trust("login").await;
    client.simple_query("SELECT 1").await.expect("query");
    assert!(
        wait_until(Duration::from_secs(10), || pg.backends(TRUST_USER) == 0),
        "server_idle_timeout = 1 did not close the idle server within 10 s"
    );
    let lines = pooler.server_log_lines("");
    assert!(lines.is_empty(), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_wait_timeout_fails_a_client_that_waits_too_long() {
    let (_pg, pooler) = setup(&[
        ("pool_mode", "transaction"),
        ("default_pool_size", "1"),
        ("query_wait_timeout", "2"),
    ]);
    let holder = pooler.connect_trust("login").await;
    holder.batch_execute("BEGIN").await.expect("BEGIN");
    holder
        .simple_query("SELECT 1")
        .await
        .expect("SELECT in the transaction");

    // The only server is taken: this client waits, then gets query_wait_timeout.
    // (PgBouncer lets it log in without a server; a pooler that needs one for
    // the login fails the login the same way.)
    let started = Instant::now();
    let waited = pooler
        .within(STEP, "the waiting client", async {
            let waiter = pooler
                .connect(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD))
                .await?;
            waiter.simple_query("SELECT 1").await
        })
        .await;
    let elapsed = started.elapsed();
    let err = waited.expect_err("the waiting client must not get a server");
    // PgBouncer's code and wording: 08P01 "query_wait_timeout".
    assert_eq!(
        err.as_db_error().map(|d| d.code()),
        Some(&SqlState::PROTOCOL_VIOLATION),
        "{err:?}"
    );
    assert!(db_message(&err).contains("query_wait_timeout"), "{err:?}");
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(8),
        "query_wait_timeout = 2 fired after {elapsed:?}"
    );

    // The holder is unaffected and, once it commits, the server serves others.
    holder
        .simple_query("SELECT 2")
        .await
        .expect("holder still in its transaction");
    holder.batch_execute("COMMIT").await.expect("COMMIT");
    let next = pooler.connect_trust("login").await;
    next.simple_query("SELECT 3")
        .await
        .expect("a later client gets the server");
}

const QUEUED_NOTICE: &str =
    "No server connection available in postgres backend, client being queued";

/// psql's stdout and stderr for `SELECT 'served'` run while the pool's only
/// server is held in a transaction for 3 s, with `query_wait_notify` set.
async fn queued_psql(query_wait_notify: &str) -> (String, String) {
    let (_pg, pooler) = setup(&[
        ("pool_mode", "transaction"),
        ("default_pool_size", "1"),
        ("query_wait_notify", query_wait_notify),
    ]);
    let holder = pooler.connect_trust("login").await;
    holder
        .batch_execute("BEGIN; SELECT 1")
        .await
        .expect("open a transaction");
    let psql = pooler
        .psql_command(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD))
        .args(["-c", "SELECT 'served'"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start psql");
    tokio::time::sleep(Duration::from_secs(3)).await;
    holder.batch_execute("COMMIT").await.expect("COMMIT");
    let out = pooler
        .within(
            STEP,
            "psql once the server is free",
            tokio::task::spawn_blocking(move || psql.wait_with_output()),
        )
        .await
        .expect("task")
        .expect("psql output");
    assert!(out.status.success(), "psql failed: {out:?}");
    (
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_queued_past_query_wait_notify_is_told_once_and_served() {
    let (stdout, stderr) = queued_psql("1").await;
    assert_eq!(stdout, "served");
    assert_eq!(
        stderr.matches(&format!("NOTICE:  {QUEUED_NOTICE}")).count(),
        1,
        "one NOTICE in 3 s of waiting with query_wait_notify = 1:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_wait_notify_zero_queues_silently() {
    let (stdout, stderr) = queued_psql("0").await;
    assert_eq!(stdout, "served");
    assert!(!stderr.contains(QUEUED_NOTICE), "{stderr}");
}

/// SHOW POOLS through the console as `sluice_trust` (an admin): the pools'
/// databases.
fn pool_databases(pooler: &Pooler) -> Vec<String> {
    let out = pooler
        .psql(TRUST_USER, "pgbouncer", Some(TRUST_PASSWORD), "SHOW POOLS")
        .expect("SHOW POOLS");
    out.lines()
        .map(|l| l.split('|').next().unwrap_or_default().to_owned())
        .collect()
}

/// A database made from the `*` entry is forgotten (its pools dropped) once
/// it has had neither a client nor a server for autodb_idle_timeout; one with
/// a client stays, and so does a configured database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autodb_idle_timeout_forgets_unused_star_databases() {
    let (pg, pooler) = setup(&[
        ("pool_mode", "transaction"),
        ("autodb_idle_timeout", "1"),
        ("server_idle_timeout", "1"),
        ("admin_users", TRUST_USER),
    ]);
    let configured = pooler.connect_trust("login").await;
    configured.simple_query("SELECT 1").await.unwrap();
    drop(configured);
    let pg_user = |db: &str| {
        pg.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' \
             AND usename = '{TRUST_USER}' AND client_addr IS NOT NULL"
        ))
    };
    let used = pooler
        .connect(TRUST_USER, "postgres", Some(TRUST_PASSWORD))
        .await
        .unwrap();
    used.simple_query("SELECT 1").await.unwrap();
    // Kept while a client stays, idle or not.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(pool_databases(&pooler).contains(&"postgres".to_owned()));
    drop(used);
    assert!(
        wait_until(Duration::from_secs(10), || !pool_databases(&pooler)
            .contains(&"postgres".to_owned())),
        "the unused * database is still pooled:\n{}",
        pooler.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || pg_user("postgres") == "0"),
        "its server is still open"
    );
    assert_eq!(
        pg_user(TEST_DB),
        "0",
        "server_idle_timeout closed its server too"
    );
    assert!(pool_databases(&pooler).contains(&TEST_DB.to_owned()));
    // It comes back when used again.
    let again = pooler
        .connect(TRUST_USER, "postgres", Some(TRUST_PASSWORD))
        .await
        .unwrap();
    again.simple_query("SELECT 1").await.unwrap();
}
