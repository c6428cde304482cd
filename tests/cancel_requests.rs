//! Cancel requests that reach PostgreSQL late. The pool's server is reached
//! through a relay that passes every connection after the first on only after
//! a delay: the server logs in at once, and a cancel request arrives after the
//! query it was meant for has ended. Until it arrives the server must not serve
//! another client, or the cancel would stop that client's query; SHOW POOLS and
//! SHOW SERVERS show the wait (being_canceled), and SHOW CLIENTS and SHOW
//! SERVERS the request's two ends. `cancel_wait_timeout` bounds it.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::NoTls;

use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::{wait_until, Pooler, PoolerConfig, Postgres};

const STEP: Duration = Duration::from_secs(30);

/// A TCP relay to PostgreSQL's port that holds every connection after the
/// first for `delay` before passing it on. Returns its port.
async fn late_relay(pg_port: u16, delay: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("relay bind");
    let port = listener.local_addr().expect("relay address").port();
    tokio::spawn(async move {
        for n in 0u32.. {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if n > 0 {
                    tokio::time::sleep(delay).await;
                }
                if let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", pg_port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    port
}

/// One server for the test database, reached through `late_relay`.
async fn start(pg: &Postgres, delay: Duration, settings: &[(&str, &str)]) -> Pooler {
    let relay = late_relay(pg.port, delay).await;
    let mut cfg = PoolerConfig::new(pg);
    cfg.set("default_pool_size", "1")
        .set("admin_users", TRUST_USER)
        .database(
            TEST_DB,
            &format!("host=127.0.0.1 port={relay} dbname={TEST_DB}"),
        );
    for (key, value) in settings {
        cfg.set(key, value);
    }
    Pooler::start(&cfg)
}

/// The SHOW POOLS counts of the test pool.
async fn pool_counts(pooler: &Pooler) -> HashMap<String, i64> {
    let pools = pooler.show(TRUST_USER, Some(TRUST_PASSWORD), "POOLS").await;
    let row = pools
        .into_iter()
        .find(|r| {
            r["database"].as_deref() == Some(TEST_DB) && r["user"].as_deref() == Some(TRUST_USER)
        })
        .expect("the test pool in SHOW POOLS");
    row.into_iter()
        .filter_map(|(k, v)| Some((k, v?.parse().ok()?)))
        .collect()
}

/// Poll SHOW POOLS until `check` holds (bounded); the last counts either way.
async fn wait_pools(
    pooler: &Pooler,
    check: impl Fn(&HashMap<String, i64>) -> bool,
) -> HashMap<String, i64> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let counts = pool_counts(pooler).await;
        if check(&counts) || tokio::time::Instant::now() >= deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_cancel_holds_its_server_and_spares_the_next_client() {
    let pg = Postgres::start();
    let pooler = start(&pg, Duration::from_secs(2), &[]).await;
    let first = pooler.connect_trust("first client").await;
    let second = pooler.connect_trust("second client").await;

    let token = first.cancel_token();
    let query = tokio::spawn(async move { first.simple_query("SELECT pg_sleep(0.5)").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cancel = tokio::spawn(async move { token.cancel_query(NoTls).await });
    let ended = pooler
        .within(STEP, "the first client's query", query)
        .await
        .expect("task");
    assert!(
        ended.is_ok(),
        "the query ends before its cancel reaches PostgreSQL: {ended:?}"
    );

    let held = wait_pools(&pooler, |p| p["sv_being_canceled"] == 1).await;
    assert_eq!(
        (
            held["sv_being_canceled"],
            held["cl_active_cancel_req"],
            held["sv_active_cancel"],
            held["sv_idle"]
        ),
        (1, 1, 1, 0),
        "the server waits for its cancel: {held:?}"
    );
    let servers = pooler
        .show(TRUST_USER, Some(TRUST_PASSWORD), "SERVERS")
        .await;
    assert!(
        servers
            .iter()
            .any(|s| s["state"].as_deref() == Some("being_canceled")),
        "SHOW SERVERS: {servers:?}"
    );
    // As in PgBouncer, the request's two ends are listed while it is on its
    // way, under the pool of the server canceled, and linked to each other.
    let clients = pooler
        .show(TRUST_USER, Some(TRUST_PASSWORD), "CLIENTS")
        .await;
    let in_state = |rows: &[HashMap<String, Option<String>>], state: &str| {
        let row = rows
            .iter()
            .find(|r| r["state"].as_deref() == Some(state))
            .unwrap_or_else(|| panic!("no {state} row: {rows:?}"))
            .clone();
        assert_eq!(row["database"].as_deref(), Some(TEST_DB), "{row:?}");
        assert_eq!(row["user"].as_deref(), Some(TRUST_USER), "{row:?}");
        row
    };
    let requester = in_state(&clients, "active_cancel_req");
    let carrier = in_state(&servers, "active_cancel");
    assert_eq!(
        requester["link"], carrier["ptr"],
        "{requester:?} {carrier:?}"
    );
    assert_eq!(
        carrier["link"], requester["ptr"],
        "{requester:?} {carrier:?}"
    );

    // Given the server now, this query would be running when the cancel arrives.
    let spared = pooler
        .within(
            STEP,
            "the second client's query",
            second.simple_query("SELECT pg_sleep(3), 'spared'"),
        )
        .await;
    assert!(
        spared.is_ok(),
        "the late cancel stopped the next client's query: {spared:?}"
    );
    pooler
        .within(STEP, "the cancel request", cancel)
        .await
        .expect("task")
        .expect("the pooler takes the cancel request");
    let after = wait_pools(&pooler, |p| p["cl_active_cancel_req"] == 0).await;
    assert_eq!(
        (
            after["sv_being_canceled"],
            after["cl_active_cancel_req"],
            after["sv_active_cancel"],
            after["sv_idle"]
        ),
        (0, 0, 0, 1),
        "{after:?}"
    );
    let clients = pooler
        .show(TRUST_USER, Some(TRUST_PASSWORD), "CLIENTS")
        .await;
    let servers = pooler
        .show(TRUST_USER, Some(TRUST_PASSWORD), "SERVERS")
        .await;
    let states: Vec<_> = clients
        .iter()
        .chain(&servers)
        .map(|r| r["state"].clone())
        .collect();
    assert!(
        !states
            .iter()
            .any(|s| s.as_deref().is_some_and(|s| s.contains("cancel"))),
        "the cancel's rows are gone: {states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_wait_timeout_gives_up_and_frees_the_server() {
    let pg = Postgres::start();
    let pooler = start(
        &pg,
        Duration::from_secs(120),
        &[("cancel_wait_timeout", "1")],
    )
    .await;
    let client = pooler.connect_trust("client").await;
    let token = client.cancel_token();
    let query = tokio::spawn(async move {
        let r = client.simple_query("SELECT pg_sleep(0.5)").await;
        (client, r)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mark = pooler.log_mark();
    pooler
        .within(STEP, "the cancel request", token.cancel_query(NoTls))
        .await
        .expect("the pooler takes the cancel request");
    let (client, ended) = pooler.within(STEP, "the query", query).await.expect("task");
    assert!(ended.is_ok(), "{ended:?}");
    assert!(
        wait_until(STEP, || pooler
            .log_since(mark)
            .contains("not taken within cancel_wait_timeout")),
        "no log line for the abandoned cancel:\n{}",
        pooler.log_since(mark)
    );
    let freed = wait_pools(&pooler, |p| p["sv_idle"] == 1).await;
    assert_eq!(
        (freed["sv_being_canceled"], freed["cl_active_cancel_req"]),
        (0, 0),
        "{freed:?}"
    );
    let r = pooler
        .within(STEP, "a query after", client.simple_query("SELECT 1"))
        .await;
    assert!(r.is_ok(), "{r:?}");
}
