//! Transaction pooling: many clients share few servers, and nothing of one
//! client's transaction reaches another client: not its open transaction, not
//! its settings, not its startup parameters.

mod support;

use std::collections::HashSet;
use std::io::Write;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, TryStreamExt};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::{wait_until, Pooler, PoolerConfig, Postgres, RawClient};
use tokio::sync::Barrier;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{NoTls, SimpleQueryMessage};

const STEP: Duration = Duration::from_secs(30);

fn setup(pool_size: u32) -> (Postgres, Pooler) {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("pool_mode", "transaction")
        .set("default_pool_size", &pool_size.to_string());
    let pooler = Pooler::start(&cfg);
    (pg, pooler)
}

/// The first column of every row of a simple query.
fn first_column(messages: &[SimpleQueryMessage]) -> Vec<Option<String>> {
    messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_share_five_servers() {
    let (pg, pooler) = setup(5);
    let pooler = Arc::new(pooler);
    let sampler = pg.sample_backends(TRUST_USER);

    let mut tasks = Vec::new();
    for i in 0..200i32 {
        let pooler = pooler.clone();
        tasks.push(tokio::spawn(async move {
            let client = pooler
                .connect(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD))
                .await
                .unwrap_or_else(|e| panic!("client {i}: login: {e:?}"));
            let mut pids = HashSet::new();
            for round in 0..3i32 {
                client
                    .simple_query("BEGIN")
                    .await
                    .unwrap_or_else(|e| panic!("client {i}: BEGIN: {e:?}"));
                // Extended protocol with the unnamed statement inside the transaction.
                let row = client
                    .query_typed_one(
                        "SELECT pg_backend_pid(), $1::int4",
                        &[(&(i * 10 + round), Type::INT4)],
                    )
                    .await
                    .unwrap_or_else(|e| panic!("client {i}: query: {e:?}"));
                assert_eq!(
                    row.get::<_, i32>(1),
                    i * 10 + round,
                    "client {i} got another's row"
                );
                pids.insert(row.get::<_, i32>(0));
                client
                    .simple_query("COMMIT")
                    .await
                    .unwrap_or_else(|e| panic!("client {i}: COMMIT: {e:?}"));
                // And a statement outside any explicit transaction.
                let echoed = first_column(
                    &client
                        .simple_query(&format!("SELECT {}", i * 100 + round))
                        .await
                        .unwrap_or_else(|e| panic!("client {i}: simple query: {e:?}")),
                );
                assert_eq!(echoed, vec![Some((i * 100 + round).to_string())]);
            }
            pids
        }));
    }
    let mut pids = HashSet::new();
    pooler
        .within(Duration::from_secs(120), "200 clients finishing", async {
            for t in tasks {
                pids.extend(t.await.expect("a client task panicked"));
            }
        })
        .await;
    let samples = sampler.stop();
    assert!(
        samples.max > 0,
        "never saw a server connection: {samples:?}"
    );
    assert!(
        samples.max <= 5,
        "200 clients used more than default_pool_size = 5 servers at once: {samples:?}"
    );
    assert!(
        pids.len() <= 5,
        "the transactions ran on {} different server processes, not at most 5 reused ones",
        pids.len()
    );
}

/// Each of `pool_size` clients holds a transaction at the same time, so every
/// server of the pool is looked at; then more clients check one by one.
/// A leaked server would show an assigned transaction id, the uncommitted row
/// or the changed statement_timeout.
async fn assert_no_leftovers(pooler: &Pooler, pool_size: usize, table: &str) {
    let barrier = Arc::new(Barrier::new(pool_size));
    let mut holders = Vec::new();
    for i in 0..pool_size {
        let client = pooler.connect_trust("login after the kill").await;
        let barrier = barrier.clone();
        let table = table.to_string();
        holders.push(tokio::spawn(async move {
            client.simple_query("BEGIN").await.expect("BEGIN");
            let row = client
                .query_typed_one(
                    &format!(
                        "SELECT txid_current_if_assigned() IS NULL, \
                         current_setting('statement_timeout'), \
                         (SELECT count(*) FROM {table})::int4"
                    ),
                    &[],
                )
                .await;
            // Hold this server until every holder has one, whatever was found:
            // a holder that gave up early would leave the others waiting.
            barrier.wait().await;
            let row = row.expect("checking the server");
            client.simple_query("COMMIT").await.expect("COMMIT");
            (
                i,
                row.get::<_, bool>(0),
                row.get::<_, String>(1),
                row.get::<_, i32>(2),
            )
        }));
    }
    let seen = pooler
        .within(STEP, "holders checking every pooled server", async {
            let mut seen = Vec::new();
            for h in holders {
                seen.push(h.await.expect("a holder panicked"));
            }
            seen
        })
        .await;
    for (i, no_xid, timeout, rows) in seen {
        assert!(
            no_xid,
            "holder {i}: inherited an open transaction with an xid"
        );
        assert_eq!(timeout, "0", "holder {i}: inherited statement_timeout");
        assert_eq!(rows, 0, "holder {i}: sees uncommitted rows");
    }

    for i in 0..3 * pool_size {
        let client = pooler.connect_trust("login").await;
        // One simple Query: now() = statement_timestamp() holds only when this
        // statement started its own transaction (with the extended protocol the
        // transaction starts at Parse, before Execute's timestamp).
        let messages = pooler
            .within(
                STEP,
                "check",
                client.simple_query(&format!(
                    "SELECT now() = statement_timestamp(), txid_current_if_assigned() IS NULL, \
                     current_setting('statement_timeout'), (SELECT count(*) FROM {table})"
                )),
            )
            .await
            .expect("check query");
        let row = messages
            .iter()
            .find_map(|m| match m {
                SimpleQueryMessage::Row(r) => Some(r),
                _ => None,
            })
            .expect("a row");
        assert_eq!(
            row.get(0),
            Some("t"),
            "client {i}: statement ran inside an older transaction"
        );
        assert_eq!(
            row.get(1),
            Some("t"),
            "client {i}: transaction id already assigned"
        );
        assert_eq!(
            row.get(2),
            Some("0"),
            "client {i}: statement_timeout leaked"
        );
        assert_eq!(row.get(3), Some("0"), "client {i}: sees uncommitted rows");
    }
}

fn idle_in_transaction(pg: &Postgres) -> i64 {
    pg.sql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{TRUST_USER}' \
         AND state LIKE 'idle in transaction%'"
    ))
    .parse()
    .expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_gone_mid_transaction_leaves_nothing_behind() {
    let pool_size = 2;
    let (pg, pooler) = setup(pool_size as u32);
    pg.sql_db(
        TEST_DB,
        "CREATE TABLE killed_tx(v int); GRANT ALL ON killed_tx TO PUBLIC",
    );

    // 1. tokio-postgres client dropped inside its transaction (it sends Terminate).
    {
        let client = pooler.connect_trust("login").await;
        pooler
            .within(
                STEP,
                "open transaction",
                client.batch_execute(
                    "BEGIN; INSERT INTO killed_tx VALUES (1); SET statement_timeout = '1234s'",
                ),
            )
            .await
            .expect("open a transaction");
        assert!(
            wait_until(Duration::from_secs(10), || idle_in_transaction(&pg) == 1),
            "the open transaction is not visible on the server"
        );
        drop(client);
    }
    assert_no_leftovers(&pooler, pool_size, "killed_tx").await;

    // 2. psql killed with SIGKILL inside its transaction: the socket just closes.
    let mut psql = pooler.psql_command(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD));
    psql.stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = psql.spawn().expect("start psql");
    child
        .stdin
        .as_mut()
        .expect("psql stdin")
        .write_all(b"BEGIN;\nINSERT INTO killed_tx VALUES (2);\nSET statement_timeout = '4321s';\n")
        .expect("feed psql");
    let open = wait_until(Duration::from_secs(15), || idle_in_transaction(&pg) == 1);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).expect("kill psql");
    let _ = child.wait();
    assert!(open, "psql's transaction never showed up on the server");
    assert_no_leftovers(&pooler, pool_size, "killed_tx").await;

    // The server rolled both back: nothing was committed, nothing stays open.
    assert!(
        wait_until(Duration::from_secs(10), || idle_in_transaction(&pg) == 0),
        "a server is still idle in transaction"
    );
    assert_eq!(pg.sql_db(TEST_DB, "SELECT count(*) FROM killed_tx"), "0");
    // Both servers were closed, and the log says why in PgBouncer's words.
    let unclean = pooler.server_log_lines("closing because: unclean server (age=");
    assert_eq!(unclean.len(), 2, "{}", pooler.log());
}

/// Startup parameters the pooler tracks (here TimeZone) belong to the client:
/// two clients with different TimeZones take turns on one server and each
/// always sees its own. The raw client sends `TimeZone` as JDBC does; psql
/// sends PGTZ as the startup parameter `timezone` (lower case).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_timezone_follows_each_client_across_one_server() {
    let (pg, pooler) = setup(1);
    let login = |tz: &'static str| {
        RawClient::connect(
            pooler.port,
            &[
                ("user", TRUST_USER),
                ("database", TEST_DB),
                ("TimeZone", tz),
                ("application_name", "tz-test"),
            ],
            Some(TRUST_PASSWORD),
        )
    };
    let mut tokyo = pooler
        .within(STEP, "login", login("Asia/Tokyo"))
        .await
        .unwrap_or_else(|e| panic!("Tokyo client login: {e}"));
    let mut new_york = pooler
        .within(STEP, "login", login("America/New_York"))
        .await
        .unwrap_or_else(|e| panic!("New York client login: {e}"));

    let mut pids = HashSet::new();
    for round in 0..30 {
        for (client, tz) in [
            (&mut tokyo, "Asia/Tokyo"),
            (&mut new_york, "America/New_York"),
        ] {
            let seen = pooler
                .within(STEP, "SHOW TimeZone", client.query_value("SHOW TimeZone"))
                .await
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
            assert_eq!(seen.as_deref(), Some(tz), "round {round}");
            // Inside an explicit transaction too.
            client.simple_query("BEGIN").await.expect("BEGIN");
            let rows = client
                .simple_query("SELECT current_setting('TimeZone'), pg_backend_pid()")
                .await
                .expect("select");
            client.simple_query("COMMIT").await.expect("COMMIT");
            assert_eq!(
                rows[0][0].as_deref(),
                Some(tz),
                "round {round}, in a transaction"
            );
            pids.insert(rows[0][1].clone());
        }
        if round % 10 == 0 {
            let berlin = pooler.psql_env(
                TRUST_USER,
                TEST_DB,
                Some(TRUST_PASSWORD),
                &[("PGTZ", "Europe/Berlin")],
                "SHOW TimeZone",
            );
            assert_eq!(berlin.as_deref(), Ok("Europe/Berlin"), "psql with PGTZ");
        }
    }
    // One server served them all, so the pooler did switch it back and forth.
    assert_eq!(pids.len(), 1, "expected one shared server, saw {pids:?}");
    assert_eq!(pg.backends(TRUST_USER), 1);
    tokyo.terminate().await;
    new_york.terminate().await;
}

/// A parameter named in track_extra_parameters (here spelled in another case
/// than PostgreSQL's) is tracked like TimeZone: accepted at startup or in
/// `options`, sent back in ParameterStatus under PostgreSQL's spelling, and set
/// on the shared server for whichever client has it. Without the setting the
/// same startup parameter is refused, as PgBouncer refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_tracked_parameter_follows_each_client_across_one_server() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("pool_mode", "transaction")
        .set("default_pool_size", "1")
        .set("track_extra_parameters", "Default_Transaction_Read_Only");
    let pooler = Pooler::start(&cfg);
    let login = |read_only: Option<&'static str>| {
        let mut startup = vec![("user", TRUST_USER), ("database", TEST_DB)];
        if let Some(value) = read_only {
            startup.push(("default_transaction_read_only", value));
        }
        RawClient::connect(pooler.port, &startup, Some(TRUST_PASSWORD))
    };
    let mut reader = pooler
        .within(STEP, "login", login(Some("on")))
        .await
        .unwrap_or_else(|e| panic!("read-only client login: {e}"));
    let mut writer = pooler
        .within(STEP, "login", login(None))
        .await
        .unwrap_or_else(|e| panic!("plain client login: {e}"));
    let reported = |c: &RawClient| c.parameters.get("default_transaction_read_only").cloned();
    assert_eq!(reported(&reader).as_deref(), Some("on"));
    assert_eq!(reported(&writer).as_deref(), Some("off"));

    let mut pids = HashSet::new();
    for round in 0..5 {
        let err = reader
            .simple_query("CREATE TEMP TABLE scratch (i int)")
            .await
            .expect_err("a read-only client cannot create a table");
        assert_eq!(err.code(), Some("25006"), "round {round}: {err}");
        let rows = writer
            .simple_query(
                "CREATE TEMP TABLE scratch (i int); DROP TABLE scratch; SELECT pg_backend_pid()",
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}, plain client: {e}"));
        pids.insert(rows[0][0].clone());
        let rows = reader
            .simple_query(
                "SELECT current_setting('default_transaction_read_only'), pg_backend_pid()",
            )
            .await
            .unwrap_or_else(|e| panic!("round {round}, read-only client: {e}"));
        assert_eq!(rows[0][0].as_deref(), Some("on"), "round {round}");
        pids.insert(rows[0][1].clone());
        // psql passes it in options, as PGOPTIONS='-c ...'.
        let via_options = pooler.psql_env(
            TRUST_USER,
            TEST_DB,
            Some(TRUST_PASSWORD),
            &[("PGOPTIONS", "-c default_transaction_read_only=on")],
            "SHOW default_transaction_read_only",
        );
        assert_eq!(via_options.as_deref(), Ok("on"), "round {round}, psql");
    }
    // One server served them all, so the pooler did switch it back and forth.
    assert_eq!(pids.len(), 1, "expected one shared server, saw {pids:?}");
    reader.terminate().await;
    writer.terminate().await;
    drop(pooler);

    let untracked = Pooler::start(&PoolerConfig::new(&pg));
    let err = RawClient::connect(
        untracked.port,
        &[
            ("user", TRUST_USER),
            ("database", TEST_DB),
            ("default_transaction_read_only", "on"),
        ],
        Some(TRUST_PASSWORD),
    )
    .await
    .expect_err("an untracked startup parameter is refused");
    assert_eq!(err.code(), Some("08P01"), "{err}");
    assert!(
        err.to_string()
            .contains("unsupported startup parameter: default_transaction_read_only"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_stops_the_right_query() {
    let (_pg, pooler) = setup(5);
    let sleeper = pooler.connect_trust("login").await;
    let bystander = pooler.connect_trust("login").await;
    let sleeper = Arc::new(sleeper);
    let token = sleeper.cancel_token();

    let started = Instant::now();
    let long = {
        let sleeper = sleeper.clone();
        tokio::spawn(async move { sleeper.simple_query("SELECT pg_sleep(30)").await })
    };
    let short = tokio::spawn(async move {
        let r = bystander.simple_query("SELECT pg_sleep(3), 'done'").await;
        (bystander, r)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    pooler
        .within(
            STEP,
            "sending the cancel request",
            token.cancel_query(NoTls),
        )
        .await
        .expect("cancel request through the pooler");

    let result = pooler
        .within(Duration::from_secs(10), "the canceled query", long)
        .await
        .expect("task");
    let err = result.expect_err("pg_sleep(30) must be canceled");
    assert_eq!(
        err.as_db_error().map(|d| d.code()),
        Some(&SqlState::QUERY_CANCELED),
        "{err:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        started.elapsed()
    );
    // The other client's query was not the one canceled.
    let (bystander, r) = pooler
        .within(STEP, "the bystander's query", short)
        .await
        .expect("task");
    let r = r.expect("the bystander's query must not be canceled");
    assert_eq!(first_column(&r).len(), 1);
    // Both connections go on working.
    sleeper
        .simple_query("SELECT 1")
        .await
        .expect("after cancel");
    bystander
        .simple_query("SELECT 1")
        .await
        .expect("bystander after cancel");

    // libpq's way: psql sends the CancelRequest on SIGINT and waits for the
    // pooler to close that connection (tokio-postgres closes its side at once).
    let mut psql = pooler.psql_command(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD));
    psql.args(["-c", "SELECT pg_sleep(30)"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = psql.spawn().expect("start psql");
    let pid = Pid::from_raw(child.id() as i32);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill(pid, Signal::SIGINT).expect("SIGINT psql");
    let out = support::wait_output(child, Duration::from_secs(15), "psql after SIGINT");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("canceling statement due to user request"),
        "psql's cancel did not cancel the query ({}): {stderr}",
        out.status
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "psql's cancel took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_and_out_through_transaction_mode() {
    let (pg, pooler) = setup(2);
    pg.sql_db(
        TEST_DB,
        "CREATE TABLE copy_t(id int PRIMARY KEY, name text); GRANT ALL ON copy_t TO PUBLIC",
    );
    let mut client = pooler.connect_trust("login").await;

    // tokio-postgres prepares COPY with a named statement, so it runs inside an
    // explicit transaction, where the server is the client's until COMMIT.
    let input: String = (1..=1000).map(|i| format!("{i}\tname-{i}\n")).collect();
    let tx = client.transaction().await.expect("BEGIN");
    let sink = tx
        .copy_in("COPY copy_t (id, name) FROM STDIN")
        .await
        .expect("COPY FROM STDIN");
    let mut sink = std::pin::pin!(sink);
    for chunk in input.as_bytes().chunks(4096) {
        sink.send(bytes::Bytes::copy_from_slice(chunk))
            .await
            .expect("CopyData");
    }
    let copied = pooler
        .within(STEP, "COPY FROM STDIN", sink.as_mut().finish())
        .await
        .expect("CopyDone");
    assert_eq!(copied, 1000);
    tx.commit().await.expect("COMMIT");

    // The server went back to the pool at COMMIT, although tokio-postgres
    // sent a Sync that the server ignored during the COPY: two other
    // transactions get both servers.
    let others = [
        pooler.connect_trust("first other client").await,
        pooler.connect_trust("second other client").await,
    ];
    for other in &others {
        pooler
            .within(
                STEP,
                "a server for another transaction",
                other.simple_query("BEGIN; SELECT 1"),
            )
            .await
            .expect("BEGIN");
    }
    for other in &others {
        other.simple_query("COMMIT").await.expect("COMMIT");
    }

    let tx = client.transaction().await.expect("BEGIN");
    let stream = tx
        .copy_out("COPY (SELECT id, name FROM copy_t ORDER BY id) TO STDOUT")
        .await
        .expect("COPY TO STDOUT");
    let chunks: Vec<bytes::Bytes> = pooler
        .within(STEP, "COPY TO STDOUT", stream.try_collect())
        .await
        .expect("CopyData");
    tx.commit().await.expect("COMMIT");
    let output: Vec<u8> = chunks.concat();
    assert_eq!(String::from_utf8_lossy(&output), input);

    // psql's COPY outside any transaction: simple protocol, one round trip.
    let more: String = (1001..=1500).map(|i| format!("{i}\tname-{i}\n")).collect();
    pooler
        .psql_with_input(
            TRUST_USER,
            TEST_DB,
            Some(TRUST_PASSWORD),
            "COPY copy_t (id, name) FROM STDIN",
            more.as_bytes(),
        )
        .expect("psql COPY FROM STDIN");
    let out = pooler
        .psql(
            TRUST_USER,
            TEST_DB,
            Some(TRUST_PASSWORD),
            "COPY (SELECT id, name FROM copy_t WHERE id > 1000 ORDER BY id) TO STDOUT",
        )
        .expect("psql COPY TO STDOUT");
    assert_eq!(format!("{out}\n"), more);

    // A COPY that fails on bad data leaves the pooled server usable.
    let bad = pooler.psql_with_input(
        TRUST_USER,
        TEST_DB,
        Some(TRUST_PASSWORD),
        "COPY copy_t (id, name) FROM STDIN",
        b"2001\tok\nnot-a-number\tbad\n",
    );
    let stderr = bad.expect_err("bad COPY data must fail");
    assert!(stderr.contains("invalid input syntax"), "{stderr}");
    let rows = client
        .simple_query("SELECT count(*) FROM copy_t")
        .await
        .expect("count after a failed COPY");
    assert_eq!(first_column(&rows), vec![Some("1500".to_string())]);
    assert_eq!(pg.sql_db(TEST_DB, "SELECT count(*) FROM copy_t"), "1500");
}
