//! The protocol corners of transaction pooling: pipelined extended messages,
//! Flush without Sync, notices and notifications, errors inside transactions,
//! and hostile or broken input. In every case the pooler answers precisely and
//! never hands a server in an unknown state to another client.

mod support;

use std::time::Duration;

use futures_util::future::join_all;
use futures_util::{stream, StreamExt};
use support::postgres::{TEST_DB, TRUST_USER};
use support::wire::{message, startup_packet, PROTOCOL_3_0};
use support::{wait_until, Pooler, PoolerConfig, Postgres};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, NoTls};

const STEP: Duration = Duration::from_secs(30);

fn setup(mode: &str, pool_size: u32) -> (Postgres, Pooler) {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("pool_mode", mode)
        .set("default_pool_size", &pool_size.to_string())
        .set("auth_type", "trust");
    let pooler = Pooler::start(&cfg);
    (pg, pooler)
}

/// A bare protocol connection, for sending exactly the bytes a test needs.
struct Raw {
    stream: TcpStream,
}

impl Raw {
    /// Log in with auth_type=trust and wait for ReadyForQuery.
    async fn login(port: u16) -> Raw {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        stream
            .write_all(&startup_packet(
                PROTOCOL_3_0,
                &[("user", TRUST_USER), ("database", TEST_DB)],
            ))
            .await
            .unwrap();
        let mut raw = Raw { stream };
        raw.read_until(b'Z').await;
        raw
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Read one message: tag and body; `None` at end of stream.
    async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut header = [0u8; 5];
        self.stream.read_exact(&mut header).await.ok()?;
        let len = i32::from_be_bytes(header[1..5].try_into().unwrap()) as usize;
        let mut body = vec![0u8; len - 4];
        self.stream.read_exact(&mut body).await.ok()?;
        Some((header[0], body))
    }

    /// Read messages up to and including one with `tag`; returns their tags.
    /// An ErrorResponse fails the test.
    async fn read_until(&mut self, tag: u8) -> Vec<u8> {
        let messages = self.read_through(tag).await;
        if let Some((_, body)) = messages.iter().find(|(t, _)| *t == b'E') {
            panic!("unexpected error: {}", String::from_utf8_lossy(body));
        }
        messages.into_iter().map(|(t, _)| t).collect()
    }

    /// Read messages up to and including one with `tag`, errors among them.
    async fn read_through(&mut self, tag: u8) -> Vec<(u8, Vec<u8>)> {
        let mut messages = Vec::new();
        loop {
            let (t, body) = tokio::time::timeout(STEP, self.read())
                .await
                .expect("timed out reading from the pooler")
                .unwrap_or_else(|| {
                    let tags: Vec<char> = messages.iter().map(|(t, _)| char::from(*t)).collect();
                    panic!("connection closed; tags so far {tags:?}")
                });
            messages.push((t, body));
            if t == tag {
                return messages;
            }
        }
    }

    /// Read until the connection ends; return the text of the last ErrorResponse.
    async fn read_error_until_closed(&mut self) -> Option<(String, String)> {
        let mut last = None;
        while let Ok(Some((t, body))) = tokio::time::timeout(STEP, self.read()).await {
            if t == b'E' {
                last = Some(error_fields(&body));
            }
        }
        last
    }
}

/// (SQLSTATE, message) of an ErrorResponse body.
fn error_fields(body: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut text = String::new();
    for field in body.split(|&b| b == 0).filter(|f| !f.is_empty()) {
        let value = String::from_utf8_lossy(&field[1..]).into_owned();
        match field[0] {
            b'C' => code = value,
            b'M' => text = value,
            _ => {}
        }
    }
    (code, text)
}

/// A table `name(v int)` every user may write.
fn create_table(pg: &Postgres, name: &str) {
    pg.sql_db(
        TEST_DB,
        &format!("CREATE TABLE {name}(v int); GRANT ALL ON {name} TO PUBLIC"),
    );
}

/// The process ids of the test user's backends, comma-separated.
fn backends(pg: &Postgres) -> String {
    pg.sql(&format!(
        "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE usename = '{TRUST_USER}'"
    ))
}

/// The backends of the test user that are inside a transaction.
fn open_transactions(pg: &Postgres) -> String {
    pg.sql(&format!(
        "SELECT count(*) FROM pg_stat_activity WHERE usename = '{TRUST_USER}' \
         AND backend_type = 'client backend' AND state LIKE 'idle in transaction%'"
    ))
}

/// Fifty queries in flight at once on one connection: tokio-postgres sends
/// each Parse/Bind/Execute/Sync group before the first answer comes back.
async fn pipeline(client: &tokio_postgres::Client, base: i32) {
    let queries = (0..50).map(|i| async move {
        let row = client
            .query_one("SELECT $1::int4 + 0", &[&(base + i)])
            .await
            .unwrap();
        assert_eq!(
            row.get::<_, i32>(0),
            base + i,
            "an answer reached the wrong query"
        );
    });
    join_all(queries).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_extended_queries_stay_on_one_server() {
    // One server for two pipelining clients: it may change hands only between
    // the pipelines' sync points, never inside one.
    let (_pg, pooler) = setup("transaction", 1);
    let a = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let b = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    tokio::time::timeout(STEP, async {
        tokio::join!(pipeline(&a, 0), pipeline(&b, 1000))
    })
    .await
    .expect("pipelines finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_without_sync_keeps_the_server() {
    let (_pg, pooler) = setup("transaction", 1);
    let mut raw = Raw::login(pooler.port).await;
    // A simple query, then Parse, Bind, Execute and Flush in the same write.
    // The query's ReadyForQuery arrives while the extended query is still
    // unsynced: that is not a boundary, the server must stay with this client.
    let mut bytes = message(b'Q', b"SELECT 1\0");
    bytes.extend(message(b'P', b"\0SELECT 42\0\0\0"));
    bytes.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
    bytes.extend(message(b'E', b"\0\0\0\0\0"));
    bytes.extend(message(b'H', b""));
    raw.send(&bytes).await;
    assert_eq!(raw.read_until(b'Z').await, vec![b'T', b'D', b'C', b'Z']);
    assert_eq!(raw.read_until(b'C').await, vec![b'1', b'2', b'D', b'C']);

    // Another client must wait: the only server is mid-query for `raw`.
    let other = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let mut waiting = Box::pin(other.simple_query("SELECT 'other'"));
    assert_still_waiting(
        &mut waiting,
        "the server was handed to another client before Sync",
    )
    .await;

    raw.send(&message(b'S', b"")).await;
    assert_eq!(raw.read_until(b'Z').await, vec![b'Z']);
    assert_one_row(waiting).await;
}

/// `waiting`, another client's query, must not finish within 700 ms: the only
/// server is still someone else's. Says `why` if it does.
async fn assert_still_waiting<F: std::future::Future + Unpin>(waiting: &mut F, why: &str) {
    let finished = tokio::time::timeout(Duration::from_millis(700), waiting).await;
    assert!(finished.is_err(), "{why}");
}

/// `query`, another client's simple query of one row, is answered in time.
async fn assert_one_row<F>(query: F)
where
    F: std::future::Future<
        Output = Result<Vec<tokio_postgres::SimpleQueryMessage>, tokio_postgres::Error>,
    >,
{
    let rows = tokio::time::timeout(STEP, query).await.unwrap().unwrap();
    assert_eq!(
        rows.len(),
        3,
        "row description, row and command complete: {rows:?}"
    );
}

/// Connect with a task that collects the notices and notifications the
/// connection delivers.
async fn connect_collecting(
    pooler: &Pooler,
) -> (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<AsyncMessage>,
) {
    let (client, mut connection) =
        tokio_postgres::connect(&pooler.connstr(TRUST_USER, TEST_DB, None), NoTls)
            .await
            .unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut messages = stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(m)) = messages.next().await {
            let _ = tx.send(m);
        }
    });
    (client, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_and_notifications_reach_the_client() {
    let (_pg, pooler) = setup("transaction", 2);
    let (client, mut messages) = connect_collecting(&pooler).await;
    client
        .batch_execute("DO $$ BEGIN RAISE NOTICE 'hello from the server'; END $$")
        .await
        .unwrap();
    match tokio::time::timeout(STEP, messages.recv()).await.unwrap() {
        Some(AsyncMessage::Notice(n)) => assert_eq!(n.message(), "hello from the server"),
        other => panic!("expected a notice, got {other:?}"),
    }
    // A notification within one transaction reaches its own client at commit.
    client
        .batch_execute("LISTEN pgsluice_chan; NOTIFY pgsluice_chan, 'payload-1'")
        .await
        .unwrap();
    match tokio::time::timeout(STEP, messages.recv()).await.unwrap() {
        Some(AsyncMessage::Notification(n)) => {
            assert_eq!(n.channel(), "pgsluice_chan");
            assert_eq!(n.payload(), "payload-1");
        }
        other => panic!("expected a notification, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_mode_delivers_notifications_from_other_clients() {
    let (_pg, pooler) = setup("session", 2);
    let (listener, mut messages) = connect_collecting(&pooler).await;
    listener
        .batch_execute("LISTEN pgsluice_events")
        .await
        .unwrap();
    let sender = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    sender
        .batch_execute("NOTIFY pgsluice_events, 'from another client'")
        .await
        .unwrap();
    match tokio::time::timeout(STEP, messages.recv()).await.unwrap() {
        Some(AsyncMessage::Notification(n)) => assert_eq!(n.payload(), "from another client"),
        other => panic!("expected a notification, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_inside_a_transaction_then_rollback() {
    let (pg, pooler) = setup("transaction", 1);
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let err = client.simple_query("SELECT 1/0").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::DIVISION_BY_ZERO));
    // Still the same failed transaction (status E), on the same server.
    let err = client.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    assert_eq!(open_transactions(&pg), "1");
    client.batch_execute("ROLLBACK").await.unwrap();
    // The server went back clean: another client gets it outside any
    // transaction block, where SAVEPOINT is refused.
    let other = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let err = other.batch_execute("SAVEPOINT probe").await.unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::NO_ACTIVE_SQL_TRANSACTION),
        "{err:?}"
    );
    assert_eq!(open_transactions(&pg), "0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_startup_packets_get_an_error_and_the_pooler_carries_on() {
    let (_pg, pooler) = setup("transaction", 2);
    // A length below the minimum.
    let mut s = TcpStream::connect(("127.0.0.1", pooler.port))
        .await
        .unwrap();
    s.write_all(&[0, 0, 0, 3, 0, 0, 0, 0]).await.unwrap();
    let mut raw = Raw { stream: s };
    let (code, text) = raw
        .read_error_until_closed()
        .await
        .expect("an ErrorResponse");
    assert_eq!(code, "08P01");
    assert!(text.contains("bad startup packet"), "{text}");

    // An unknown protocol version.
    let mut s = TcpStream::connect(("127.0.0.1", pooler.port))
        .await
        .unwrap();
    s.write_all(&[0, 0, 0, 8, 0, 2, 0, 0]).await.unwrap();
    let mut raw = Raw { stream: s };
    let (code, _) = raw
        .read_error_until_closed()
        .await
        .expect("an ErrorResponse");
    assert_eq!(code, "08P01");

    // Garbage that ends mid-packet: the connection just ends, nothing hangs.
    let mut s = TcpStream::connect(("127.0.0.1", pooler.port))
        .await
        .unwrap();
    s.write_all(&[0, 0, 0, 40, 0, 3]).await.unwrap();
    drop(s);

    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    assert_eq!(
        client
            .query_one("SELECT 7", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        7
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_message_mid_transaction_closes_the_server_not_reuses_it() {
    let (pg, pooler) = setup("transaction", 1);
    create_table(&pg, "broken_t");
    let mut raw = Raw::login(pooler.port).await;
    raw.send(&message(b'Q', b"BEGIN; INSERT INTO broken_t VALUES (1)\0"))
        .await;
    raw.read_until(b'Z').await;
    // A message whose length field is impossible.
    raw.send(&[b'Q', 0, 0, 0, 2]).await;
    let (code, text) = raw
        .read_error_until_closed()
        .await
        .expect("an ErrorResponse");
    assert_eq!(code, "08P01");
    assert!(text.contains("protocol error"), "{text}");

    // The half-done transaction was not handed on: the row is gone and the
    // next client sees a fresh server state.
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let count: i64 = client
        .query_one("SELECT count(*) FROM broken_t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
    assert!(wait_until(Duration::from_secs(10), || open_transactions(
        &pg
    ) == "0"));
    assert!(
        pooler.log().contains("protocol error"),
        "the pooler logs why"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_refused() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("auth_type", "trust")
        .set("max_packet_size", "10000");
    let pooler = Pooler::start(&cfg);
    let mut raw = Raw::login(pooler.port).await;
    let mut header = vec![b'Q'];
    header.extend(1_000_000i32.to_be_bytes());
    raw.send(&header).await;
    let (code, text) = raw
        .read_error_until_closed()
        .await
        .expect("an ErrorResponse");
    assert_eq!(code, "08P01");
    assert!(text.contains("too large"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_copy_leaves_no_rows_and_no_dirty_server() {
    let (pg, pooler) = setup("transaction", 1);
    create_table(&pg, "copy_gone");
    let mut raw = Raw::login(pooler.port).await;
    raw.send(&message(b'Q', b"COPY copy_gone FROM STDIN\0"))
        .await;
    assert_eq!(raw.read_until(b'G').await, vec![b'G']);
    raw.send(&message(b'd', b"1\n2\n3\n")).await;
    drop(raw);

    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let count: i64 = tokio::time::timeout(
        STEP,
        client.query_one("SELECT count(*) FROM copy_gone", &[]),
    )
    .await
    .unwrap()
    .unwrap()
    .get(0);
    assert_eq!(count, 0);
    let row = client
        .query_one("SELECT txid_current_if_assigned() IS NULL", &[])
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
}

/// The startup packet and the first query in one write: the pooler reads ahead
/// during the login, and what it read past the login is the client's first
/// request, answered like any other. Then the same for the admin console.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_pipelined_behind_the_login_is_answered() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("default_pool_size", "1")
        .set("auth_type", "trust")
        .set("admin_users", TRUST_USER);
    let pooler = Pooler::start(&cfg);
    for (database, query, expected) in [
        (TEST_DB, "SELECT 'pipelined'", "pipelined"),
        ("pgbouncer", "SHOW VERSION", "pgsluice"),
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", pooler.port))
            .await
            .unwrap();
        let mut bytes = startup_packet(
            PROTOCOL_3_0,
            &[("user", TRUST_USER), ("database", database)],
        );
        bytes.extend(message(b'Q', format!("{query}\0").as_bytes()));
        stream.write_all(&bytes).await.unwrap();
        let mut raw = Raw { stream };
        // The login's ReadyForQuery, then the query's answer and its own.
        raw.read_until(b'Z').await;
        let mut row = None;
        loop {
            let (t, body) = tokio::time::timeout(STEP, raw.read())
                .await
                .expect("timed out waiting for the answer")
                .expect("connection closed before the answer");
            assert_ne!(t, b'E', "{}", String::from_utf8_lossy(&body));
            if t == b'D' {
                row = Some(String::from_utf8_lossy(&body).into_owned());
            }
            if t == b'Z' {
                break;
            }
        }
        let row = row.unwrap_or_else(|| panic!("{database}: no row for {query}"));
        assert!(row.contains(expected), "{database}: {row:?}");
    }
}

/// Parse, Bind and Execute of `sql` (unnamed, no parameters), and a Sync.
fn extended_query(sql: &str) -> Vec<u8> {
    let mut bytes = message(b'P', format!("\0{sql}\0\0\0").as_bytes());
    bytes.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
    bytes.extend(message(b'E', b"\0\0\0\0\0"));
    bytes.extend(message(b'S', b""));
    bytes
}

/// Parse, Bind, Execute of a COPY FROM STDIN, and the Sync behind them.
fn extended_copy_in(table: &str) -> Vec<u8> {
    extended_query(&format!("COPY {table} FROM STDIN"))
}

/// A query answered within the same relay, then a COPY FROM STDIN over the
/// extended protocol: the server ignores the Sync sent behind the Execute, so
/// once it is copying nothing is outstanding, yet it is not free. It stays with
/// the client until the COPY ends and the client's next Sync is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_extended_copy_keeps_the_server_until_it_ends() {
    let (pg, pooler) = setup("transaction", 1);
    create_table(&pg, "copy_pipe");
    let mut raw = Raw::login(pooler.port).await;
    let mut bytes = message(b'Q', b"SELECT 1\0");
    bytes.extend(extended_copy_in("copy_pipe"));
    raw.send(&bytes).await;
    assert_eq!(raw.read_until(b'Z').await, vec![b'T', b'D', b'C', b'Z']);
    assert_eq!(raw.read_until(b'G').await, vec![b'1', b'2', b'G']);

    let other = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let mut waiting = Box::pin(other.simple_query("SELECT 'other'"));
    assert_still_waiting(
        &mut waiting,
        "the server was handed to another client in the middle of a COPY",
    )
    .await;

    // The COPY ends, but in the extended protocol the server then waits for a
    // Sync of its own before it commits and is ready: still not free.
    // (A Flush, for the server to send its CommandComplete before the Sync.)
    let mut rest = message(b'd', b"1\n2\n");
    rest.extend(message(b'c', b""));
    rest.extend(message(b'H', b""));
    raw.send(&rest).await;
    assert_eq!(raw.read_until(b'C').await, vec![b'C']);
    assert_still_waiting(
        &mut waiting,
        "the server was handed to another client before the Sync that ends the COPY",
    )
    .await;
    raw.send(&message(b'S', b"")).await;
    assert_eq!(raw.read_until(b'Z').await, vec![b'Z']);
    assert_one_row(waiting).await;
    assert_eq!(pg.sql_db(TEST_DB, "SELECT count(*) FROM copy_pipe"), "2");
}

/// The extended-protocol twin of the test above: a client that vanishes in
/// COPY FROM STDIN started with Parse/Bind/Execute/Sync has nothing
/// outstanding, but its server is still copying and must not go back to the
/// pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_vanishing_mid_extended_copy_leaves_no_dirty_server() {
    let (pg, pooler) = setup("transaction", 1);
    create_table(&pg, "copy_gone_ext");
    let mut raw = Raw::login(pooler.port).await;
    raw.send(&extended_copy_in("copy_gone_ext")).await;
    assert_eq!(raw.read_until(b'G').await, vec![b'1', b'2', b'G']);
    raw.send(&message(b'd', b"1\n")).await;
    drop(raw);

    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let row = tokio::time::timeout(
        STEP,
        client.query_one(
            "SELECT count(*), txid_current_if_assigned() IS NULL FROM copy_gone_ext",
            &[],
        ),
    )
    .await
    .unwrap()
    .expect("the next client is served by a clean server");
    assert_eq!(row.get::<_, i64>(0), 0);
    assert!(row.get::<_, bool>(1));
}

/// pgx sends a COPY's data and its end right behind the Query, before the
/// server asks for them. The relay must still know, once the server does, that
/// the COPY is over: the Syncs that follow are answered like any other, and a
/// pipelined extended query, COMMIT and slow query each get their answer on
/// this server before it goes back to the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_sent_before_the_server_asks_for_it_is_followed_exactly() {
    let (pg, pooler) = setup("transaction", 1);
    create_table(&pg, "copy_ahead");
    let mut raw = Raw::login(pooler.port).await;
    raw.send(&message(b'Q', b"BEGIN\0")).await;
    assert_eq!(raw.read_until(b'Z').await, vec![b'C', b'Z']);
    let mut copy = message(b'Q', b"COPY copy_ahead FROM STDIN\0");
    copy.extend(message(b'd', b"1\n2\n"));
    copy.extend(message(b'c', b""));
    raw.send(&copy).await;
    assert_eq!(raw.read_until(b'Z').await, vec![b'G', b'C', b'Z']);

    let mut rest = extended_query("SELECT 1");
    rest.extend(message(b'Q', b"COMMIT\0"));
    rest.extend(message(b'Q', b"SELECT pg_sleep(0.3), 'slow'\0"));
    raw.send(&rest).await;
    assert_eq!(raw.read_until(b'Z').await, b"12DCZ".to_vec());
    assert_eq!(raw.read_until(b'Z').await, vec![b'C', b'Z']);
    assert_eq!(raw.read_until(b'Z').await, b"TDCZ".to_vec());

    // And then the server is free.
    let other = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    assert_one_row(other.simple_query("SELECT count(*) FROM copy_ahead")).await;
    assert_eq!(pg.sql_db(TEST_DB, "SELECT count(*) FROM copy_ahead"), "2");
}

/// A client that goes on pipelining requests behind a COPY it sent whole,
/// before the server asked for it: when the server's CopyInResponse comes,
/// the relay cannot tell which request it answers, so which of the client's
/// Syncs the server ignored. Its server must then stay with it, answering
/// everything (here a transaction's pipelined COMMIT and a slow query), and
/// be closed, not pooled, when it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_pipelining_past_a_copy_keeps_its_server_until_it_leaves() {
    let (pg, pooler) = setup("transaction", 1);
    create_table(&pg, "copy_past");
    let mut raw = Raw::login(pooler.port).await;
    // The login opened the pool's one server (for its settings).
    let before = backends(&pg);
    raw.send(&message(b'Q', b"BEGIN\0")).await;
    assert_eq!(raw.read_until(b'Z').await, vec![b'C', b'Z']);

    let mut past = message(b'Q', b"COPY copy_past FROM STDIN\0");
    past.extend(message(b'd', b"1\n"));
    past.extend(message(b'c', b""));
    past.extend(extended_query("SELECT 1"));
    past.extend(message(b'Q', b"SELECT 2\0"));
    raw.send(&past).await;
    assert_eq!(raw.read_until(b'Z').await, b"GCZ".to_vec());
    assert_eq!(raw.read_until(b'Z').await, b"12DCZ".to_vec());
    assert_eq!(raw.read_until(b'Z').await, b"TDCZ".to_vec());

    let other = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let mut waiting = Box::pin(other.simple_query("SELECT 'other'"));
    let mut rest = extended_query("SELECT 3");
    rest.extend(message(b'Q', b"COMMIT\0"));
    rest.extend(message(b'Q', b"SELECT pg_sleep(0.3), 'slow'\0"));
    raw.send(&rest).await;
    assert_eq!(raw.read_until(b'Z').await, b"12DCZ".to_vec());
    assert_eq!(raw.read_until(b'Z').await, vec![b'C', b'Z']);
    assert_eq!(raw.read_until(b'Z').await, b"TDCZ".to_vec());
    assert_still_waiting(
        &mut waiting,
        "the server went to another client while its own was out of step",
    )
    .await;

    drop(raw);
    assert_one_row(waiting).await;
    assert!(
        !backends(&pg).split(',').any(|pid| pid == before),
        "the server of a client out of step went back to the pool: {before} still runs"
    );
    let closed = pooler.server_log_lines("closing because: unclean server (out of step");
    assert_eq!(closed.len(), 1, "{}", pooler.log());
    assert_eq!(pg.sql_db(TEST_DB, "SELECT count(*) FROM copy_past"), "1");
}

/// A message type no client sends gets PgBouncer's "unknown pkt", before it
/// costs a server; behind a request it also costs the server, whose state
/// PostgreSQL would otherwise end with a FATAL while it sat idle in the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_message_types_are_refused_with_unknown_pkt() {
    let (pg, pooler) = setup("transaction", 1);

    let mut raw = Raw::login(pooler.port).await;
    // The login opened the pool's one server (for its settings).
    let before = backends(&pg);
    raw.send(&message(0xcf, b"garbage")).await;
    let (code, text) = raw
        .read_error_until_closed()
        .await
        .expect("an ErrorResponse");
    assert_eq!((code.as_str(), text.as_str()), ("08P01", "unknown pkt"));
    assert!(pooler.wait_for_log("unknown pkt from client: 207/0xcf", STEP));
    assert_eq!(
        backends(&pg),
        before,
        "the server was neither used nor closed"
    );

    // After a query, in the same write: the server is not given back.
    let mut raw = Raw::login(pooler.port).await;
    let mut bytes = message(b'Q', b"SELECT 1\0");
    bytes.extend(message(b'p', b"secret\0"));
    raw.send(&bytes).await;
    let (code, text) = raw
        .read_error_until_closed()
        .await
        .expect("an ErrorResponse");
    assert_eq!((code.as_str(), text.as_str()), ("08P01", "unknown pkt"));
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let row = client.query_one("SELECT 5", &[]).await.unwrap();
    assert_eq!(row.get::<_, i32>(0), 5);
    assert!(
        !pg.log().contains("invalid frontend message type"),
        "the message reached PostgreSQL"
    );
}
