//! Protocol-level prepared statements under transaction pooling
//! (max_prepared_statements): a statement a client prepared works on whichever
//! server its next transaction gets, and every answer, error and transaction
//! state is the one PostgreSQL itself gives.

mod support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::wire::put_cstr;
use support::{Pooler, PoolerConfig, Postgres, RawClient};
use tokio_postgres::types::Type;

const STEP: Duration = Duration::from_secs(20);

/// A pooler in transaction mode whose consecutive transactions go to
/// different servers (round robin over `pool_size` of them).
fn setup(pool_size: u32, extra: &[(&str, &str)]) -> (Postgres, Pooler) {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("pool_mode", "transaction")
        .set("default_pool_size", &pool_size.to_string())
        .set("server_round_robin", "1")
        .set("stats_users", TRUST_USER);
    for (key, value) in extra {
        cfg.set(key, value);
    }
    let pooler = Pooler::start(&cfg);
    (pg, pooler)
}

/// Open `count` servers (by holding as many transactions at once), so that
/// round robin has them all to go around.
async fn open_servers(pooler: &Pooler, count: usize) {
    let mut holders = Vec::new();
    for _ in 0..count {
        let client = pooler.connect_trust("a transaction holding a server").await;
        client.simple_query("BEGIN; SELECT 1").await.expect("BEGIN");
        holders.push(client);
    }
    for client in holders {
        client.simple_query("COMMIT").await.expect("COMMIT");
    }
}

// Frontend messages, as (type, body).

fn parse(name: &str, sql: &str) -> (u8, Vec<u8>) {
    let mut body = Vec::new();
    put_cstr(&mut body, name);
    put_cstr(&mut body, sql);
    body.extend_from_slice(&0i16.to_be_bytes());
    (b'P', body)
}

/// Bind with text parameters and text results.
fn bind(portal: &str, statement: &str, params: &[&str]) -> (u8, Vec<u8>) {
    let mut body = Vec::new();
    put_cstr(&mut body, portal);
    put_cstr(&mut body, statement);
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for p in params {
        body.extend_from_slice(&(p.len() as i32).to_be_bytes());
        body.extend_from_slice(p.as_bytes());
    }
    body.extend_from_slice(&0i16.to_be_bytes());
    (b'B', body)
}

fn execute(portal: &str) -> (u8, Vec<u8>) {
    let mut body = Vec::new();
    put_cstr(&mut body, portal);
    body.extend_from_slice(&0i32.to_be_bytes());
    (b'E', body)
}

/// Describe or Close (`t`) of a statement.
fn statement_message(t: u8, name: &str) -> (u8, Vec<u8>) {
    let mut body = vec![b'S'];
    put_cstr(&mut body, name);
    (t, body)
}

fn query(sql: &str) -> (u8, Vec<u8>) {
    let mut body = Vec::new();
    put_cstr(&mut body, sql);
    (b'Q', body)
}

fn sync() -> (u8, Vec<u8>) {
    (b'S', Vec::new())
}

fn flush() -> (u8, Vec<u8>) {
    (b'H', Vec::new())
}

/// Send a pipeline and read its answers: up to the ReadyForQuery of every
/// Sync and Query in it.
async fn exchange(client: &mut RawClient, messages: &[(u8, Vec<u8>)]) -> Vec<String> {
    let readies = messages
        .iter()
        .filter(|(t, _)| *t == b'S' || *t == b'Q')
        .count();
    assert!(readies > 0, "a pipeline without Sync: use `answers`");
    client.send_messages(messages).await.expect("send");
    let mut answers = Vec::new();
    let mut seen = 0;
    while seen < readies {
        let answer = tokio::time::timeout(STEP, client.next_answer())
            .await
            .unwrap_or_else(|_| panic!("no answer after {answers:?}"))
            .expect("answer");
        seen += usize::from(answer.starts_with('Z'));
        answers.push(answer);
    }
    answers
}

/// Exactly `count` answers, for a pipeline ended by Flush.
async fn answers(client: &mut RawClient, count: usize) -> Vec<String> {
    let mut answers = Vec::new();
    for _ in 0..count {
        let answer = tokio::time::timeout(STEP, client.next_answer())
            .await
            .unwrap_or_else(|_| panic!("no answer after {answers:?}"))
            .expect("answer");
        answers.push(answer);
    }
    answers
}

async fn raw_login(port: u16, password: Option<&str>) -> RawClient {
    RawClient::connect(
        port,
        &[("user", TRUST_USER), ("database", TEST_DB)],
        password,
    )
    .await
    .expect("raw login")
}

/// `SELECT 'long'` padded with a comment to `size` bytes.
fn big_query(size: usize) -> String {
    format!("SELECT 'long' /* {} */", "x".repeat(size))
}

/// Pipelines touching every case of statement tracking, each run in its own
/// round (a transaction that may land on another server).
fn script() -> Vec<Vec<(u8, Vec<u8>)>> {
    vec![
        vec![parse("s1", "SELECT $1::int + 1"), sync()],
        vec![bind("", "s1", &["41"]), execute(""), sync()],
        vec![bind("", "s1", &["1"]), execute(""), sync()],
        vec![statement_message(b'D', "s1"), sync()],
        // A name in use, a name never prepared, a Parse that fails.
        vec![parse("s1", "SELECT 2"), sync()],
        vec![bind("", "nope", &[]), execute(""), sync()],
        vec![parse("bad", "SELEC 1"), sync()],
        vec![
            parse("bad", "SELECT 3"),
            bind("", "bad", &[]),
            execute(""),
            sync(),
        ],
        // An error skips the rest up to Sync: `y` is never prepared.
        vec![
            parse("x", "SELECT 1/0"),
            bind("", "x", &[]),
            execute(""),
            parse("y", "SELECT 5"),
            sync(),
        ],
        vec![bind("", "y", &[]), execute(""), sync()],
        vec![bind("", "x", &[]), execute(""), sync()],
        // Close, of a known and of an unknown name; the name is free again.
        vec![statement_message(b'C', "s1"), sync()],
        vec![statement_message(b'C', "never"), sync()],
        vec![bind("", "s1", &["1"]), execute(""), sync()],
        vec![
            parse("s1", "SELECT 'again'"),
            bind("", "s1", &[]),
            execute(""),
            sync(),
        ],
        // Inside a transaction block: a refused Parse aborts it.
        vec![query("BEGIN"), parse("s2", "SELECT 4"), sync()],
        vec![parse("s2", "SELECT 5"), sync()],
        vec![bind("", "s2", &[]), execute(""), sync()],
        vec![query("ROLLBACK")],
        vec![bind("", "s2", &[]), execute(""), sync()],
        // A named statement longer than any buffer, and one too long to track.
        vec![
            parse("long", &big_query(300 * 1024)),
            bind("", "long", &[]),
            execute(""),
            sync(),
        ],
        vec![bind("", "long", &[]), execute(""), sync()],
        // Two Syncs in one pipeline, a portal, a row limit.
        vec![
            parse("s3", "SELECT generate_series(1, 3)"),
            sync(),
            bind("p", "s3", &[]),
            (b'E', {
                let mut body = Vec::new();
                put_cstr(&mut body, "p");
                body.extend_from_slice(&2i32.to_be_bytes());
                body
            }),
            execute("p"),
            sync(),
        ],
        // A simple query between extended ones, and DISCARD ALL.
        vec![
            bind("", "s3", &[]),
            execute(""),
            query("SELECT 'simple'"),
            sync(),
        ],
        vec![query("DISCARD ALL")],
        vec![bind("", "s3", &[]), execute(""), sync()],
        vec![
            parse("s3", "SELECT 'after discard'"),
            bind("", "s3", &[]),
            execute(""),
            sync(),
        ],
        vec![query("DEALLOCATE ALL")],
        vec![bind("", "s3", &[]), execute(""), sync()],
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_postgresqls_own() {
    let (pg, pooler) = setup(2, &[]);
    open_servers(&pooler, 2).await;
    let mut direct = raw_login(pg.port, None).await;
    let mut pooled = raw_login(pooler.port, Some(TRUST_PASSWORD)).await;
    for (i, pipeline) in script().iter().enumerate() {
        let expected = exchange(&mut direct, pipeline).await;
        let got = exchange(&mut pooled, pipeline).await;
        assert_eq!(
            got,
            expected,
            "pipeline {i} ({:?}): through the pooler, then from PostgreSQL\n{}",
            pipeline.iter().map(|(t, _)| *t as char).collect::<String>(),
            support::tail(&pooler.log(), 20)
        );
    }
    // The script is not trivially equal: these answers are PostgreSQL's.
    let mut check = raw_login(pooler.port, Some(TRUST_PASSWORD)).await;
    let sequence = exchange(
        &mut check,
        &[parse("a", "SELECT 1"), parse("a", "SELECT 1"), sync()],
    )
    .await;
    assert_eq!(sequence, ["1", "E:42P05", "Z:I"]);
}

/// The pid of the server a named statement ran on, and its result.
async fn run_on_some_server(
    client: &mut RawClient,
    statement: &str,
    arg: &str,
) -> (String, String) {
    let answers = exchange(client, &[bind("", statement, &[arg]), execute(""), sync()]).await;
    assert_eq!(answers.len(), 4, "{answers:?}");
    let row = answers[1].strip_prefix("D:").expect("a row");
    let (value, pid) = row.split_once(',').expect("two columns");
    (value.to_owned(), pid.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_follows_its_client_to_every_server() {
    let (_pg, pooler) = setup(3, &[]);
    open_servers(&pooler, 3).await;
    let mut client = raw_login(pooler.port, Some(TRUST_PASSWORD)).await;
    let sql = "SELECT $1::int * 2, pg_backend_pid()";
    assert_eq!(
        exchange(&mut client, &[parse("double", sql), sync()]).await,
        ["1", "Z:I"]
    );
    let mut pids = HashSet::new();
    for i in 0..9 {
        let (value, pid) = run_on_some_server(&mut client, "double", &i.to_string()).await;
        assert_eq!(value, (2 * i).to_string());
        pids.insert(pid);
    }
    assert_eq!(pids.len(), 3, "round robin over three servers: {pids:?}");
}

/// SHOW `what` on the console, each row as column name → text value.
async fn show(pooler: &Pooler, what: &str) -> Vec<HashMap<String, Option<String>>> {
    pooler.show(TRUST_USER, Some(TRUST_PASSWORD), what).await
}

fn column<'a>(row: &'a HashMap<String, Option<String>>, name: &str) -> &'a str {
    row.get(name)
        .unwrap_or_else(|| panic!("no column {name}"))
        .as_deref()
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_share_statements_and_keep_no_more_than_the_limit() {
    let (_pg, pooler) = setup(1, &[("max_prepared_statements", "2")]);
    let mut a = raw_login(pooler.port, Some(TRUST_PASSWORD)).await;
    let mut b = raw_login(pooler.port, Some(TRUST_PASSWORD)).await;
    let one = "SELECT 1, pg_backend_pid()";
    assert_eq!(
        exchange(&mut a, &[parse("a1", one), sync()]).await,
        ["1", "Z:I"]
    );
    // The server has it: the pooler answers B's Parse itself, even with no
    // Sync behind it to make the server say anything.
    b.send_messages(&[parse("b1", one), flush()]).await.unwrap();
    assert_eq!(answers(&mut b, 1).await, ["1"]);
    assert_eq!(exchange(&mut b, &[sync()]).await, ["Z:I"]);
    let stats = show(&pooler, "STATS_TOTALS").await;
    let totals = stats
        .iter()
        .find(|r| column(r, "database") == TEST_DB)
        .expect("row");
    assert_eq!(column(totals, "client_parse_count"), "2");
    assert_eq!(
        column(totals, "server_parse_count"),
        "1",
        "the second Parse reached the server"
    );

    // Three statements through a cache of two: evicted ones come back.
    for round in 0..3 {
        for (name, sql) in [
            ("a1", one),
            ("a2", "SELECT 2, pg_backend_pid()"),
            ("a3", "SELECT 3, pg_backend_pid()"),
        ] {
            if round == 0 && name != "a1" {
                assert_eq!(
                    exchange(&mut a, &[parse(name, sql), sync()]).await,
                    ["1", "Z:I"]
                );
            }
            let answers = exchange(&mut a, &[bind("", name, &[]), execute(""), sync()]).await;
            assert!(
                answers[1].starts_with(&format!("D:{}", &name[1..])),
                "{name}: {answers:?}"
            );
        }
        let answers = exchange(&mut b, &[bind("", "b1", &[]), execute(""), sync()]).await;
        assert!(answers[1].starts_with("D:1,"), "{answers:?}");
    }
    let on_server = exchange(
        &mut a,
        &[query(
            "SELECT string_agg(name, ' ' ORDER BY name) FROM pg_prepared_statements",
        )],
    )
    .await;
    let names = on_server
        .iter()
        .find_map(|a| a.strip_prefix("D:"))
        .unwrap_or_else(|| panic!("no row: {on_server:?}"))
        .to_owned();
    assert_eq!(
        names.split(' ').count(),
        2,
        "at most max_prepared_statements: {names}"
    );
    assert!(
        names.split(' ').all(|n| n.starts_with("PGSLUICE_")),
        "{names}"
    );

    // As PgBouncer counts them: named statements only.
    let stats = show(&pooler, "STATS_TOTALS").await;
    let totals = stats
        .iter()
        .find(|r| column(r, "database") == TEST_DB)
        .expect("row");
    assert_eq!(column(totals, "client_parse_count"), "4", "a1 b1 a2 a3");
    assert_eq!(column(totals, "bind_count"), "12", "three rounds of four");

    let servers = show(&pooler, "SERVERS").await;
    assert_eq!(column(&servers[0], "prepared_statements"), "2");
    let clients = show(&pooler, "CLIENTS").await;
    let mut counts: Vec<&str> = clients
        .iter()
        .filter(|r| column(r, "database") == TEST_DB)
        .map(|r| column(r, "prepared_statements"))
        .collect();
    counts.sort();
    assert_eq!(counts, ["1", "3"], "a: a1 a2 a3, b: b1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokio_postgres_prepares_once_and_runs_anywhere() {
    let (_pg, pooler) = setup(3, &[]);
    open_servers(&pooler, 3).await;
    assert_runs_on_three_servers(&pooler).await;

    // Without tracking the same fails on the next server, as with PgBouncer
    // before 1.21: this is what the tracking does.
    let (_pg, untracked) = setup(3, &[("max_prepared_statements", "0")]);
    open_servers(&untracked, 3).await;
    let client = untracked.connect_trust("tokio-postgres login").await;
    let statement = client.prepare("SELECT 1").await.expect("prepare");
    let mut failures = 0;
    for _ in 0..3 {
        if let Err(e) = client.query_one(&statement, &[]).await {
            assert_eq!(support::db_code(&e).as_deref(), Some("26000"), "{e}");
            failures += 1;
        }
    }
    assert!(failures >= 2, "only the server it was prepared on has it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_prepared_and_pipelined_statements_work_across_servers() {
    let (_pg, pooler) = setup(3, &[]);
    open_servers(&pooler, 3).await;
    let script = format!(
        r#"
import psycopg
conn = psycopg.connect(host="127.0.0.1", port={port}, user="{user}", password="{password}",
                       dbname="{db}", autocommit=True)
pids = set()
for i in range(9):
    value, pid = conn.execute("SELECT %s::int * 3, pg_backend_pid()", (i,), prepare=True).fetchone()
    assert value == 3 * i, (i, value)
    pids.add(pid)
with conn.pipeline():
    cursors = [conn.execute("SELECT %s::int + 100", (i,), prepare=True) for i in range(5)]
values = [c.fetchone()[0] for c in cursors]
assert values == [100, 101, 102, 103, 104], values
with conn.transaction():
    assert conn.execute("SELECT %s::int * 3", (7,), prepare=True).fetchone()[0] == 21
print(len(pids))
"#,
        port = pooler.port,
        user = TRUST_USER,
        password = TRUST_PASSWORD,
        db = TEST_DB,
    );
    let out = tokio::task::spawn_blocking(move || {
        support::run_bounded(
            support::debian_python().args(["-c", &script]),
            Duration::from_secs(60),
            "psycopg",
        )
    })
    .await
    .expect("psycopg run");
    let stdout = support::success_stdout(&out);
    assert_eq!(stdout.trim(), "3", "distinct servers used");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_statement_too_long_to_track_is_refused_clearly() {
    let (_pg, pooler) = setup(1, &[]);
    let mut client = raw_login(pooler.port, Some(TRUST_PASSWORD)).await;
    let long = big_query(2 * 1024 * 1024);
    client
        .send_messages(&[parse("huge", &long), sync()])
        .await
        .unwrap();
    assert_eq!(answers(&mut client, 1).await, ["E:08P01"]);
    assert!(
        pooler
            .log()
            .contains("client protocol error: named prepared statement too large to track"),
        "{}",
        support::tail(&pooler.log(), 5)
    );
    // The same query unnamed passes, whatever its size.
    let mut client = raw_login(pooler.port, Some(TRUST_PASSWORD)).await;
    let answers = exchange(
        &mut client,
        &[parse("", &long), bind("", "", &[]), execute(""), sync()],
    )
    .await;
    assert_eq!(answers, ["1", "2", "D:long", "C", "Z:I"]);
}

/// COPY FROM STDIN through a named statement, with a Sync right behind the
/// Execute (as libpq and tokio-postgres send it), which the server ignores
/// during the COPY: the CloseComplete after it still comes where PostgreSQL
/// puts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_with_an_ignored_sync_matches_postgresql() {
    let (pg, pooler) = setup(2, &[]);
    pg.sql_db(
        TEST_DB,
        "CREATE TABLE copied(n int); GRANT ALL ON copied TO PUBLIC",
    );
    open_servers(&pooler, 2).await;
    let mut direct = raw_login(pg.port, None).await;
    let mut pooled = raw_login(pooler.port, Some(TRUST_PASSWORD)).await;
    let data = b"1\n2\n".to_vec();
    let mut results = Vec::new();
    for client in [&mut direct, &mut pooled] {
        client
            .send_messages(&[
                parse("copy", "COPY copied FROM STDIN"),
                bind("", "copy", &[]),
                execute(""),
                sync(),
            ])
            .await
            .unwrap();
        let mut got = answers(client, 3).await;
        client
            .send_messages(&[
                (b'd', data.clone()),
                (b'c', Vec::new()),
                statement_message(b'C', "copy"),
                sync(),
            ])
            .await
            .unwrap();
        got.extend(answers(client, 3).await);
        got.extend(exchange(client, &[query("SELECT count(*) FROM copied")]).await);
        results.push(got);
    }
    assert_eq!(
        results[0],
        ["1", "2", "G", "C", "3", "Z:I", "T", "D:2", "C", "Z:I"]
    );
    assert_eq!(
        results[1][..6],
        results[0][..6],
        "through the pooler, then from PostgreSQL"
    );
    assert_eq!(results[1][7], "D:4", "both COPYs went in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_pooling_carries_statements_too() {
    let (_pg, pooler) = setup(3, &[("pool_mode", "statement")]);
    open_servers_for_statements(&pooler, 3).await;
    assert_runs_on_three_servers(&pooler).await;
}

/// tokio-postgres prepares a statement once, then runs it nine times, in
/// turn on each of three servers: every result right, every server used.
async fn assert_runs_on_three_servers(pooler: &Pooler) {
    let client = pooler.connect_trust("tokio-postgres login").await;
    let statement = client
        .prepare_typed("SELECT $1::int4 * 5, pg_backend_pid()", &[Type::INT4])
        .await
        .expect("prepare");
    let mut pids = HashSet::new();
    for i in 0..9i32 {
        let row = client
            .query_one(&statement, &[&i])
            .await
            .expect("run the prepared statement");
        assert_eq!(row.get::<_, i32>(0), 5 * i);
        pids.insert(row.get::<_, i32>(1));
    }
    assert_eq!(pids.len(), 3, "{pids:?}");
}

/// `open_servers` for statement pooling, which refuses transaction blocks:
/// statements that overlap in time.
async fn open_servers_for_statements(pooler: &Pooler, count: usize) {
    let mut clients = Vec::new();
    for _ in 0..count {
        clients.push(pooler.connect_trust("a client holding a server").await);
    }
    let sleeps = clients
        .iter()
        .map(|c| c.simple_query("SELECT pg_sleep(0.3)"));
    for done in futures_util::future::join_all(sleeps).await {
        done.expect("pg_sleep");
    }
}

/// An error before the client has sent its Sync: what it sends next, up to
/// that Sync, is skipped, the pooler's own answers included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_after_an_error_and_before_sync_are_skipped_as_by_postgresql() {
    let (pg, pooler) = setup(1, &[]);
    let mut direct = raw_login(pg.port, None).await;
    let mut pooled = raw_login(pooler.port, Some(TRUST_PASSWORD)).await;
    let mut results = Vec::new();
    for client in [&mut direct, &mut pooled] {
        let mut got = exchange(client, &[parse("s1", "SELECT 1"), sync()]).await;
        client
            .send_messages(&[bind("", "nope", &[]), execute(""), flush()])
            .await
            .unwrap();
        got.extend(answers(client, 1).await);
        got.extend(exchange(client, &[statement_message(b'C', "s1"), sync()]).await);
        got.extend(exchange(client, &[bind("", "s1", &[]), execute(""), sync()]).await);
        results.push(got);
    }
    assert_eq!(
        results[0],
        ["1", "Z:I", "E:26000", "Z:I", "2", "D:1", "C", "Z:I"]
    );
    assert_eq!(
        results[1], results[0],
        "through the pooler, then from PostgreSQL"
    );
}
