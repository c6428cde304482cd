//! Pool sizing beyond default_pool_size: min_pool_size keeps servers open,
//! reserve_pool_size lends extra ones to clients that waited reserve_pool_timeout,
//! and max_db_connections caps a database across its pools. Also the Unix socket
//! listener, and the client limits per database and per user.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use support::postgres::{MD5_USER, TEST_DB, TRUST_USER};
use support::{backend_pid, wait_until, Pooler, PoolerConfig, Postgres};

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

/// Run `n` clients that each hold a server for `hold`, all at once; how long
/// until all are done.
async fn hold_servers(pooler: &Arc<Pooler>, user: &str, n: usize, hold: Duration) -> Duration {
    let started = Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let pooler = pooler.clone();
            let user = user.to_owned();
            tokio::spawn(async move {
                let c = pooler.connect(&user, TEST_DB, None).await.unwrap();
                c.simple_query(&format!("SELECT pg_sleep({})", hold.as_secs_f64()))
                    .await
                    .unwrap();
            })
        })
        .collect();
    tokio::time::timeout(STEP, async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await
    .expect("holders finished");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_pool_size_opens_servers_ahead_of_demand() {
    let (pg, pooler) = start(&[("min_pool_size", "3"), ("default_pool_size", "5")]);
    // The pool exists once a client has logged in.
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || pg.backends(TRUST_USER) == 3),
        "expected 3 servers, saw {}",
        pg.backends(TRUST_USER)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_pool_serves_clients_that_waited() {
    let (pg, pooler) = start(&[
        ("default_pool_size", "1"),
        ("reserve_pool_size", "1"),
        ("reserve_pool_timeout", "0.5"),
    ]);
    let pooler = Arc::new(pooler);
    let sampler = pg.sample_backends(TRUST_USER);
    // Two 2-second holders: one on the pool's server, the other on the reserve
    // server after half a second, so both finish in about 2.5 s, not 4.
    let took = hold_servers(&pooler, TRUST_USER, 2, Duration::from_secs(2)).await;
    let samples = sampler.stop();
    assert!(took < Duration::from_millis(3500), "took {took:?}");
    assert_eq!(samples.max, 2, "{samples:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_db_connections_caps_all_pools_of_a_database() {
    let (pg, pooler) = start(&[("default_pool_size", "3"), ("max_db_connections", "2")]);
    let pooler = Arc::new(pooler);
    let sampler_trust = pg.sample_backends(TRUST_USER);
    let sampler_md5 = pg.sample_backends(MD5_USER);
    // Two pools (two users) of one database, three holders each: together at
    // most two servers at any moment.
    let (a, b) = tokio::join!(
        hold_servers(&pooler, TRUST_USER, 3, Duration::from_millis(500)),
        hold_servers(&pooler, MD5_USER, 3, Duration::from_millis(500)),
    );
    let (st, sm) = (sampler_trust.stop(), sampler_md5.stop());
    // Without the cap each pool would run its three holders at once (0.5 s);
    // with two servers for six holders it takes at least three rounds.
    assert!(a.max(b) >= Duration::from_millis(1400), "{a:?} {b:?}");
    assert!(st.max <= 2 && sm.max <= 2, "trust {st:?} md5 {sm:?}");
}

#[test]
fn unix_socket_listener_serves_psql() {
    let (_pg, pooler) = start(&[]);
    assert_eq!(
        pooler
            .psql_unix(TRUST_USER, TEST_DB, "SELECT 'over the unix socket'")
            .as_deref(),
        Ok("over the unix socket")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_check_query_keeps_healthy_servers() {
    // server_check_delay = 0: every checkout runs the check. With the default
    // query (`<empty>`, an empty query), a custom one, and the check disabled,
    // the one server is checked and reused, never thrown away.
    for query in [None, Some("select 1"), Some("")] {
        let mut settings = vec![("default_pool_size", "1"), ("server_check_delay", "0")];
        if let Some(q) = query {
            settings.push(("server_check_query", q));
        }
        let (_pg, pooler) = start(&settings);
        let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
        let first = backend_pid(&client).await;
        for _ in 0..5 {
            assert_eq!(
                backend_pid(&client).await,
                first,
                "server_check_query = {query:?}"
            );
        }
        assert!(
            !pooler.log().contains("check query failed"),
            "server_check_query = {query:?}:\n{}",
            pooler.log()
        );
    }
}

/// max_db_client_connections (here from the database entry) and
/// max_user_client_connections (generic) refuse the one client too many with
/// PgBouncer's words, count clients of every pool, and free a place when a
/// client leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_limits_per_database_and_user_refuse_the_one_too_many() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("auth_type", "trust")
        .set("max_user_client_connections", "3")
        .database(
            TEST_DB,
            &format!(
                "host=127.0.0.1 port={} dbname={TEST_DB} max_db_client_connections=2",
                pg.port
            ),
        );
    let pooler = Pooler::start(&cfg);
    let refusal = |err: tokio_postgres::Error| {
        (
            support::db_code(&err).unwrap_or_default(),
            support::db_message(&err),
        )
    };

    let first = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let _second = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let Err(err) = pooler.connect(TRUST_USER, TEST_DB, None).await else {
        panic!("a third client of {TEST_DB} was let in");
    };
    assert_eq!(
        refusal(err),
        (
            "53300".to_owned(),
            "client connections exceeded (max_db_client_connections)".to_owned()
        )
    );
    // Another database (through `*`) has room, but the user has 3 at most.
    let _third = pooler.connect(TRUST_USER, "postgres", None).await.unwrap();
    let Err(err) = pooler.connect(TRUST_USER, "postgres", None).await else {
        panic!("a fourth client of {TRUST_USER} was let in");
    };
    assert_eq!(
        refusal(err),
        (
            "53300".to_owned(),
            "client connections exceeded (max_user_client_connections)".to_owned()
        )
    );
    // Other users are not counted against this one.
    pooler
        .connect(MD5_USER, "postgres", Some(support::postgres::MD5_PASSWORD))
        .await
        .unwrap();

    // A client that leaves makes room.
    drop(first);
    let mut again = None;
    for _ in 0..100 {
        if let Ok(c) = pooler.connect(TRUST_USER, TEST_DB, None).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let again = again.expect("the place of the client that left is free again");
    again.simple_query("SELECT 1").await.unwrap();
}

/// By default the server used last is handed out again (LIFO), so one client's
/// transactions keep to one server; server_round_robin hands out the one idle
/// longest, so they go round every server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_round_robin_spreads_transactions_over_every_idle_server() {
    for round_robin in ["0", "1"] {
        let (_pg, pooler) = start(&[
            ("default_pool_size", "3"),
            ("server_round_robin", round_robin),
        ]);
        let pooler = Arc::new(pooler);
        // Three clients at once open the three servers.
        hold_servers(&pooler, TRUST_USER, 3, Duration::from_millis(300)).await;
        let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
        let mut pids = Vec::new();
        for _ in 0..6 {
            // The simple protocol: tokio-postgres' prepared statements would
            // not survive a change of server between prepare and execute.
            let rows = client
                .simple_query("SELECT pg_backend_pid()")
                .await
                .unwrap();
            let pid = rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_owned),
                _ => None,
            });
            pids.push(pid.expect("a row"));
        }
        let mut distinct = pids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if round_robin == "1" {
            assert_eq!(distinct.len(), 3, "round robin: {pids:?}");
            assert_eq!(pids[..3], pids[3..], "the same order each round: {pids:?}");
        } else {
            assert_eq!(distinct.len(), 1, "LIFO: {pids:?}");
        }
    }
}
