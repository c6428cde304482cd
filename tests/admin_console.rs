//! The admin console as tools see it: every SHOW's column names and type OIDs,
//! counts that follow a scripted workload, who may run what, the control
//! commands (PAUSE/RESUME/KILL/DISABLE, KILL_CLIENT, SET) end to end, and a
//! Python exporter-style reader (psycopg) that picks columns by name.
//!
//! The console is reached over TCP as database `pgbouncer`. Login uses
//! auth_type trust; `sluice_admin` is in admin_users and `sluice_stats` in
//! stats_users (both have userlist entries, as PgBouncer requires even with
//! trust). Setting `PGSLUICE_TEST_POOLER_BIN=/usr/sbin/pgbouncer` runs the same
//! tests against PgBouncer (the column table needs 1.26).

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use support::postgres::{TEST_DB, TRUST_USER};
use support::wire::{message, startup_packet, PROTOCOL_3_0};
use support::{backend_pid, db_message, run_bounded, wait_until, Pooler, PoolerConfig, Postgres};

const ADMIN: &str = "sluice_admin";
const STATS: &str = "sluice_stats";
const CONSOLE_DB: &str = "pgbouncer";
/// Bound on every wait in these tests.
const STEP: Duration = Duration::from_secs(30);

fn start(settings: &[(&str, &str)]) -> (Postgres, Pooler) {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("auth_type", "trust")
        .set("pool_mode", "transaction")
        .set("admin_users", ADMIN)
        .set("stats_users", STATS)
        .user_secret(ADMIN, "adminpass")
        .user_secret(STATS, "statspass");
    for (key, value) in settings {
        cfg.set(key, value);
    }
    let pooler = Pooler::start(&cfg);
    (pg, pooler)
}

// ---------------------------------------------------------------------------
// A raw console client: tokio-postgres hides RowDescription type OIDs and
// NoticeResponses, and tools read both.
// ---------------------------------------------------------------------------

/// One result set of a simple query.
#[derive(Debug, Default)]
struct Rows {
    /// Column names with their type OIDs.
    columns: Vec<(String, u32)>,
    rows: Vec<Vec<Option<String>>>,
    /// CommandComplete tag.
    tag: String,
}

impl Rows {
    fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Each row as column name → value.
    fn maps(&self) -> Vec<HashMap<String, Option<String>>> {
        self.rows
            .iter()
            .map(|row| {
                self.names()
                    .into_iter()
                    .map(str::to_string)
                    .zip(row.iter().cloned())
                    .collect()
            })
            .collect()
    }
}

/// Everything one Query message brought back.
#[derive(Debug, Default)]
struct Answer {
    results: Vec<Rows>,
    /// NoticeResponse messages (M field) with their DETAIL (D field).
    notices: Vec<(String, String)>,
    /// ErrorResponse: SQLSTATE and message.
    error: Option<(String, String)>,
}

struct Console {
    stream: BufReader<TcpStream>,
}

fn fields(body: &[u8]) -> HashMap<u8, String> {
    let mut out = HashMap::new();
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        out.insert(kind, String::from_utf8_lossy(&tail[..end]).into_owned());
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    out
}

impl Console {
    /// Log in to the console as `user` (trust); the error message on refusal.
    async fn connect(port: u16, user: &str) -> Result<Console, String> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        let mut console = Console {
            stream: BufReader::new(stream),
        };
        let packet = startup_packet(PROTOCOL_3_0, &[("user", user), ("database", CONSOLE_DB)]);
        console
            .stream
            .get_mut()
            .write_all(&packet)
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let (tag, body) = console.read().await.map_err(|e| e.to_string())?;
            match tag {
                b'R' if body[..4] == [0, 0, 0, 0] => {}
                b'R' => return Err("the console asked for a password under trust".into()),
                b'S' | b'K' | b'N' => {}
                b'E' => return Err(fields(&body).remove(&b'M').unwrap_or_default()),
                b'Z' => return Ok(console),
                other => return Err(format!("unexpected {:?} during login", other as char)),
            }
        }
    }

    async fn read(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let tag = self.stream.read_u8().await?;
        let len = self.stream.read_i32().await?;
        let mut body = vec![0; (len as usize).saturating_sub(4)];
        self.stream.read_exact(&mut body).await?;
        Ok((tag, body))
    }

    async fn send(&mut self, tag: u8, body: &[u8]) {
        self.stream
            .get_mut()
            .write_all(&message(tag, body))
            .await
            .unwrap();
    }

    /// Read up to ReadyForQuery.
    async fn answer(&mut self) -> Answer {
        let mut answer = Answer::default();
        let mut current = Rows::default();
        loop {
            let (tag, body) = tokio::time::timeout(STEP, self.read())
                .await
                .expect("console answered in time")
                .expect("console connection open");
            match tag {
                b'T' => {
                    current = Rows::default();
                    let n = u16::from_be_bytes([body[0], body[1]]);
                    let mut at = 2;
                    for _ in 0..n {
                        let end = at + body[at..].iter().position(|&b| b == 0).unwrap();
                        let name = String::from_utf8_lossy(&body[at..end]).into_owned();
                        let oid_at = end + 1 + 4 + 2;
                        let oid = u32::from_be_bytes(body[oid_at..oid_at + 4].try_into().unwrap());
                        current.columns.push((name, oid));
                        at = end + 1 + 18;
                    }
                }
                b'D' => {
                    let n = u16::from_be_bytes([body[0], body[1]]);
                    let mut at = 2;
                    let mut row = Vec::new();
                    for _ in 0..n {
                        let len = i32::from_be_bytes(body[at..at + 4].try_into().unwrap());
                        at += 4;
                        if len < 0 {
                            row.push(None);
                        } else {
                            let end = at + len as usize;
                            row.push(Some(String::from_utf8_lossy(&body[at..end]).into_owned()));
                            at = end;
                        }
                    }
                    current.rows.push(row);
                }
                b'C' => {
                    current.tag = String::from_utf8_lossy(&body[..body.len() - 1]).into_owned();
                    answer.results.push(std::mem::take(&mut current));
                }
                b'N' => {
                    let mut f = fields(&body);
                    answer.notices.push((
                        f.remove(&b'M').unwrap_or_default(),
                        f.remove(&b'D').unwrap_or_default(),
                    ));
                }
                b'E' => {
                    let mut f = fields(&body);
                    answer.error = Some((
                        f.remove(&b'C').unwrap_or_default(),
                        f.remove(&b'M').unwrap_or_default(),
                    ));
                }
                b'Z' => return answer,
                b'S' => {}
                other => panic!("unexpected message {:?} from the console", other as char),
            }
        }
    }

    async fn query(&mut self, sql: &str) -> Answer {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        self.send(b'Q', &body).await;
        self.answer().await
    }

    /// Run one statement that must succeed; its result set.
    async fn rows(&mut self, sql: &str) -> Rows {
        let mut answer = self.query(sql).await;
        assert!(answer.error.is_none(), "{sql}: {:?}", answer.error);
        assert_eq!(answer.results.len(), 1, "{sql}");
        answer.results.remove(0)
    }

    /// The rows of SHOW `what` (CLIENTS, SERVERS, POOLS…) whose `database` is `db`.
    async fn rows_of(&mut self, what: &str, db: &str) -> Vec<HashMap<String, Option<String>>> {
        let rows = self.rows(&format!("SHOW {what}")).await.maps();
        rows.into_iter()
            .filter(|r| r["database"].as_deref() == Some(db))
            .collect()
    }

    /// The error message of a statement that must fail.
    async fn error(&mut self, sql: &str) -> String {
        let answer = self.query(sql).await;
        match answer.error {
            Some((_, message)) => message,
            None => panic!("{sql} succeeded: {:?}", answer.results),
        }
    }
}

async fn console(pooler: &Pooler, user: &str) -> Console {
    pooler
        .within(STEP, "console login", Console::connect(pooler.port, user))
        .await
        .unwrap_or_else(|e| panic!("console login as {user}: {e}"))
}

/// The SHOW POOLS row of the `sluice` pool of `sluice_trust`, as numbers.
async fn pool_counts(c: &mut Console) -> HashMap<String, i64> {
    let rows = c.rows("SHOW POOLS").await;
    let row = rows
        .maps()
        .into_iter()
        .find(|r| {
            r["database"].as_deref() == Some(TEST_DB) && r["user"].as_deref() == Some(TRUST_USER)
        })
        .unwrap_or_else(|| panic!("no sluice/sluice_trust pool in {rows:?}"));
    row.into_iter()
        .filter_map(|(k, v)| Some((k, v?.parse::<i64>().ok()?)))
        .collect()
}

/// Poll SHOW POOLS until `check` holds; the last counts either way.
async fn wait_pools(
    c: &mut Console,
    check: impl Fn(&HashMap<String, i64>) -> bool,
) -> HashMap<String, i64> {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let counts = pool_counts(c).await;
        if check(&counts) || tokio::time::Instant::now() >= deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// The column table.
// ---------------------------------------------------------------------------

const TEXT: u32 = 25;
const INT4: u32 = 23;
const INT8: u32 = 20;
const NUMERIC: u32 = 1700;

const CLIENT_COLUMNS: &[(&str, u32)] = &[
    ("type", TEXT),
    ("user", TEXT),
    ("database", TEXT),
    ("replication", TEXT),
    ("state", TEXT),
    ("addr", TEXT),
    ("port", INT4),
    ("local_addr", TEXT),
    ("local_port", INT4),
    ("connect_time", TEXT),
    ("request_time", TEXT),
    ("wait", INT4),
    ("wait_us", INT4),
    ("close_needed", INT4),
    ("ptr", TEXT),
    ("link", TEXT),
    ("remote_pid", INT4),
    ("tls", TEXT),
    ("application_name", TEXT),
    ("prepared_statements", INT4),
    ("id", INT4),
];

const SOCKET_EXTRA: &[(&str, u32)] = &[
    ("recv_pos", INT4),
    ("pkt_pos", INT4),
    ("pkt_remain", INT4),
    ("send_pos", INT4),
    ("send_remain", INT4),
    ("pkt_avail", INT4),
    ("send_avail", INT4),
];

const STATS_COUNTERS: &[&str] = &[
    "server_assignment_count",
    "xact_count",
    "query_count",
    "bytes_received",
    "bytes_sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_parse_count",
    "server_parse_count",
    "bind_count",
    "client_login_count",
];

/// Every SHOW that answers with rows, its columns in order with PgBouncer's
/// types (admin-console.md for names; PgBouncer's RowDescription format
/// strings for types — statistics numeric, times text).
fn expected_columns() -> Vec<(&'static str, Vec<(String, u32)>)> {
    let owned = |cols: &[(&str, u32)]| -> Vec<(String, u32)> {
        cols.iter().map(|(n, t)| (n.to_string(), *t)).collect()
    };
    let mut sockets = owned(CLIENT_COLUMNS);
    sockets.extend(owned(SOCKET_EXTRA));
    let mut stats = vec![("database".to_string(), TEXT)];
    for prefix in ["total_", "avg_"] {
        for counter in STATS_COUNTERS {
            let name = match (prefix, *counter) {
                ("total_", "bytes_received") => "total_received".to_string(),
                ("total_", "bytes_sent") => "total_sent".to_string(),
                ("avg_", "bytes_received") => "avg_recv".to_string(),
                ("avg_", "bytes_sent") => "avg_sent".to_string(),
                _ => format!("{prefix}{counter}"),
            };
            stats.push((name, NUMERIC));
        }
    }
    let mut stats_totals = vec![("database".to_string(), TEXT)];
    stats_totals.extend(STATS_COUNTERS.iter().map(|c| (c.to_string(), NUMERIC)));
    let mut stats_averages = vec![("database".to_string(), TEXT)];
    stats_averages.extend(STATS_COUNTERS.iter().enumerate().map(|(i, c)| {
        // The four prepared-statement/login counters carry an avg_ prefix.
        let name = if i >= 8 {
            format!("avg_{c}")
        } else {
            c.to_string()
        };
        (name, NUMERIC)
    }));
    vec![
        (
            "POOLS",
            owned(&[
                ("database", TEXT),
                ("user", TEXT),
                ("cl_active", INT4),
                ("cl_waiting", INT4),
                ("cl_active_cancel_req", INT4),
                ("cl_waiting_cancel_req", INT4),
                ("sv_active", INT4),
                ("sv_active_cancel", INT4),
                ("sv_being_canceled", INT4),
                ("sv_idle", INT4),
                ("sv_used", INT4),
                ("sv_tested", INT4),
                ("sv_login", INT4),
                ("maxwait", INT4),
                ("maxwait_us", INT4),
                ("pool_mode", TEXT),
                ("load_balance_hosts", TEXT),
            ]),
        ),
        ("CLIENTS", owned(CLIENT_COLUMNS)),
        ("SERVERS", owned(CLIENT_COLUMNS)),
        ("SOCKETS", sockets.clone()),
        ("ACTIVE_SOCKETS", sockets),
        ("STATS", stats),
        ("STATS_TOTALS", stats_totals),
        ("STATS_AVERAGES", stats_averages),
        ("TOTALS", owned(&[("name", TEXT), ("value", NUMERIC)])),
        (
            "DATABASES",
            owned(&[
                ("name", TEXT),
                ("host", TEXT),
                ("port", INT4),
                ("database", TEXT),
                ("force_user", TEXT),
                ("pool_size", INT4),
                ("min_pool_size", INT4),
                ("reserve_pool_size", INT4),
                ("server_lifetime", INT4),
                ("pool_mode", TEXT),
                ("load_balance_hosts", TEXT),
                ("max_connections", INT4),
                ("current_connections", INT4),
                ("max_client_connections", INT4),
                ("current_client_connections", INT4),
                ("paused", INT4),
                ("disabled", INT4),
            ]),
        ),
        (
            "USERS",
            owned(&[
                ("name", TEXT),
                ("pool_size", TEXT),
                ("reserve_pool_size", TEXT),
                ("pool_mode", TEXT),
                ("max_user_connections", INT4),
                ("current_connections", INT4),
                ("max_user_client_connections", INT4),
                ("current_client_connections", INT4),
            ]),
        ),
        ("LISTS", owned(&[("list", TEXT), ("items", INT4)])),
        (
            "CONFIG",
            owned(&[
                ("key", TEXT),
                ("value", TEXT),
                ("default", TEXT),
                ("changeable", TEXT),
            ]),
        ),
        (
            "PEERS",
            owned(&[
                ("peer_id", INT4),
                ("host", TEXT),
                ("port", INT4),
                ("pool_size", INT4),
            ]),
        ),
        (
            "PEER_POOLS",
            owned(&[
                ("peer_id", INT4),
                ("cl_active_cancel_req", INT4),
                ("cl_waiting_cancel_req", INT4),
                ("sv_active_cancel", INT4),
                ("sv_login", INT4),
            ]),
        ),
        ("STATE", owned(&[("key", TEXT), ("value", TEXT)])),
        (
            "MEM",
            owned(&[
                ("name", TEXT),
                ("size", INT4),
                ("used", INT4),
                ("free", INT4),
                ("memtotal", INT4),
            ]),
        ),
        (
            "DNS_HOSTS",
            owned(&[("hostname", TEXT), ("ttl", INT8), ("addrs", TEXT)]),
        ),
        (
            "DNS_ZONES",
            owned(&[("zonename", TEXT), ("serial", INT8), ("count", INT4)]),
        ),
        ("VERSION", owned(&[("version", TEXT)])),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_show_has_pgbouncer_columns_and_types() {
    let (_pg, pooler) = start(&[]);
    // A pool, a client and a server, so the per-connection SHOWs have rows too.
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let mut c = console(&pooler, ADMIN).await;
    for (show, columns) in expected_columns() {
        for verb in ["SHOW", "select"] {
            let rows = c.rows(&format!("{verb} {show}")).await;
            assert_eq!(rows.columns, columns, "{verb} {show}");
            assert_eq!(rows.tag, "SHOW", "{verb} {show}");
            for row in &rows.rows {
                assert_eq!(row.len(), columns.len(), "{show}: {row:?}");
                // A value must parse as its column's type.
                for (value, (name, oid)) in row.iter().zip(&columns) {
                    if let (Some(v), INT4 | INT8 | NUMERIC) = (value, *oid) {
                        assert!(
                            v.parse::<i64>().is_ok() || v.parse::<u64>().is_ok(),
                            "{show}.{name} = {v:?}"
                        );
                    }
                }
            }
        }
    }
    // Rows that must be there.
    let lists = c.rows("SHOW LISTS").await;
    let names: Vec<_> = lists.rows.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(
        names,
        [
            "databases",
            "users",
            "peers",
            "pools",
            "peer_pools",
            "free_clients",
            "used_clients",
            "login_clients",
            "free_servers",
            "used_servers",
            "dns_names",
            "dns_zones",
            "dns_queries",
            "dns_pending"
        ]
    );
    let state = c.rows("SHOW STATE").await;
    let keys: Vec<_> = state.rows.iter().map(|r| r[0].clone().unwrap()).collect();
    assert_eq!(keys, ["active", "paused", "suspended"]);
    // Filtered by database: PgBouncer lists the console's own client too.
    for (show, what) in [
        ("CLIENTS", "the one pooled client"),
        ("SERVERS", "its server"),
    ] {
        let rows = c.rows_of(show, TEST_DB).await;
        assert_eq!(rows.len(), 1, "{what}: {rows:?}");
    }
    let config = c.rows("SHOW CONFIG").await;
    let keys: Vec<_> = config.rows.iter().map(|r| r[0].clone().unwrap()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "SHOW CONFIG is sorted by key");
    assert!(keys.iter().any(|k| k == "default_pool_size"));
    assert!(config
        .rows
        .iter()
        .all(|r| matches!(r[3].as_deref(), Some("yes" | "no"))));
    let version = c.rows("SHOW VERSION").await;
    assert!(version.rows[0][0]
        .as_deref()
        .unwrap()
        .starts_with("pgsluice "));

    // The probed settings answer fixed values in one text column named after them.
    for (name, value) in [
        ("client_encoding", "UTF-8"),
        ("default_transaction_isolation", "read committed"),
        ("standard_conforming_strings", "on"),
        ("datestyle", "ISO"),
        ("timezone", "GMT"),
    ] {
        let rows = c.rows(&format!("SHOW {name}")).await;
        assert_eq!(rows.columns, [(name.to_string(), TEXT)]);
        assert_eq!(rows.rows, [[Some(value.to_string())]]);
    }

    // SHOW HELP is a notice; SHOW FDS is gone.
    let help = c.query("SHOW HELP").await;
    assert!(help.error.is_none());
    assert_eq!(help.notices[0].0, "Console usage");
    assert!(help.notices[0].1.contains("SHOW HELP|CONFIG|DATABASES"));
    assert_eq!(help.results[0].tag, "SHOW");
    assert!(c.query("SHOW FDS").await.error.is_some());
    assert!(c.query("SUSPEND").await.error.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_grammar_and_errors() {
    let (_pg, pooler) = start(&[]);
    let mut c = console(&pooler, ADMIN).await;
    assert_eq!(
        c.error("SHOW NOTHING").await,
        "invalid command 'SHOW NOTHING', use SHOW HELP;"
    );
    assert_eq!(
        c.error("VACUUM;").await,
        "invalid command 'VACUUM;', use SHOW HELP;"
    );
    // Statements run in order; the first error ends the query.
    let answer = c.query("SHOW VERSION; show state; FOO; SHOW LISTS").await;
    assert_eq!(answer.results.len(), 2);
    assert_eq!(
        answer.error.unwrap().1,
        "invalid command 'FOO', use SHOW HELP;"
    );
    // Parse/Bind get an error, and after Sync the session goes on.
    c.send(b'P', b"\0SHOW POOLS\0\0\0").await;
    c.send(b'B', b"\0\0\0\0\0\0\0\0").await;
    c.send(b'E', b"\0\0\0\0\0").await;
    c.send(b'S', b"").await;
    let answer = c.answer().await;
    assert_eq!(
        answer.error.unwrap().1,
        "extended query protocol not supported by admin console"
    );
    assert_eq!(c.rows("SHOW STATE").await.rows.len(), 3);
    // SET of a real setting, shown by SHOW CONFIG; fake ones are accepted no-ops.
    let answer = c.query("SET default_pool_size = 7").await;
    assert!(answer.error.is_none(), "{answer:?}");
    assert_eq!(answer.results[0].tag, "SET default_pool_size=7");
    let config = c.rows("SHOW CONFIG").await;
    let pool_size = config
        .rows
        .iter()
        .find(|r| r[0].as_deref() == Some("default_pool_size"))
        .unwrap();
    assert_eq!(pool_size[1].as_deref(), Some("7"));
    let answer = c.query("SET client_encoding TO 'UTF8'").await;
    assert_eq!(answer.notices[0].0, "SET ignored");
    assert_eq!(answer.results[0].tag, "SET");
    assert_eq!(c.error("SET no_such_setting = 1").await, "SET failed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pools_follows_active_and_waiting_clients() {
    let (_pg, pooler) = start(&[("default_pool_size", "1")]);
    // Everyone logs in first: the scenario is about queries, not logins.
    let holder = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let waiter = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let _idle = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let mut c = console(&pooler, ADMIN).await;

    holder.simple_query("BEGIN").await.unwrap();
    holder.simple_query("SELECT 1").await.unwrap();
    let waiting = tokio::spawn(async move {
        waiter.simple_query("SELECT 1").await.unwrap();
        waiter
    });
    let counts = wait_pools(&mut c, |p| p["cl_waiting"] == 1).await;
    assert_eq!(counts["cl_waiting"], 1, "{counts:?}");
    // The holder and the idle client are active (PgBouncer counts idle
    // logged-in clients as active); the pool's one server is busy.
    assert_eq!(counts["cl_active"], 2, "{counts:?}");
    assert_eq!(counts["sv_active"], 1, "{counts:?}");
    assert_eq!(counts["sv_idle"], 0, "{counts:?}");
    // maxwait counts the waiter's seconds.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let counts = pool_counts(&mut c).await;
    assert!(counts["maxwait"] >= 1, "{counts:?}");
    assert!((0..1_000_000).contains(&counts["maxwait_us"]), "{counts:?}");

    holder.simple_query("COMMIT").await.unwrap();
    let _waiter = pooler
        .within(STEP, "the waiting query", waiting)
        .await
        .unwrap();
    let counts = wait_pools(&mut c, |p| p["sv_active"] == 0 && p["cl_waiting"] == 0).await;
    assert_eq!(counts["cl_active"], 3, "{counts:?}");
    assert_eq!(counts["cl_waiting"], 0, "{counts:?}");
    assert_eq!(counts["sv_active"], 0, "{counts:?}");
    assert_eq!(counts["sv_idle"] + counts["sv_used"], 1, "{counts:?}");
    assert_eq!(counts["maxwait"], 0, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_users_may_look_but_not_pause() {
    let (_pg, pooler) = start(&[]);
    let mut c = console(&pooler, STATS).await;
    assert_eq!(c.rows("SHOW POOLS").await.tag, "SHOW");
    for sql in [
        "PAUSE",
        "PAUSE sluice",
        "RESUME",
        "KILL sluice",
        "RELOAD",
        "SHUTDOWN",
    ] {
        assert_eq!(c.error(sql).await, "admin access needed", "{sql}");
    }
    assert_eq!(
        c.error("SET default_pool_size = 3").await,
        "admin access needed"
    );
    // Still usable, and the pooler was not paused.
    let state = c.rows("SHOW STATE").await;
    assert_eq!(state.rows[1], [Some("paused".into()), Some("no".into())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_users_cannot_open_the_console() {
    let (_pg, pooler) = start(&[]);
    let err = Console::connect(pooler.port, TRUST_USER)
        .await
        .err()
        .expect("a user in neither list is refused");
    assert!(err.contains("not allowed"), "{err}");
    // The same user may still use a real database.
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    // And the console itself works for its users.
    console(&pooler, ADMIN).await;
    console(&pooler, STATS).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_totals_count_every_transaction() {
    let (_pg, pooler) = start(&[]);
    // One login, then 1000 single-statement transactions over the simple
    // protocol. tokio-postgres sends nothing of its own at login or between
    // queries, and the pooler's own traffic to servers (parameter SETs, checks)
    // is not client traffic, so the database's counters are exactly 1000.
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    for _ in 0..1000 {
        client.simple_query("SELECT 1").await.unwrap();
    }
    let mut c = console(&pooler, ADMIN).await;
    let deadline = tokio::time::Instant::now() + STEP;
    let row = loop {
        let rows = c.rows("SHOW STATS_TOTALS").await;
        let row = rows
            .maps()
            .into_iter()
            .find(|r| r["database"].as_deref() == Some(TEST_DB));
        let n = |row: &HashMap<String, Option<String>>, k: &str| -> u64 {
            row[k].as_deref().unwrap().parse().unwrap()
        };
        match row {
            // The last transaction may be counted just after its answer went out.
            Some(row) if n(&row, "xact_count") >= 1000 => break row,
            _ if tokio::time::Instant::now() >= deadline => {
                panic!("sluice never reached 1000 transactions: {rows:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let n = |k: &str| -> u64 { row[k].as_deref().unwrap().parse().unwrap() };
    assert_eq!(n("xact_count"), 1000, "{row:?}");
    assert_eq!(n("query_count"), 1000, "{row:?}");
    assert_eq!(n("client_login_count"), 1, "{row:?}");
    // A server is assigned at least once, and never more than once a transaction.
    assert!(
        (1..=1000).contains(&n("server_assignment_count")),
        "{row:?}"
    );
    // "SELECT 1" is 14 bytes on the wire each time, and its answer more.
    assert!(n("bytes_received") >= 14_000, "{row:?}");
    assert!(n("bytes_sent") > n("bytes_received"), "{row:?}");
    assert!(n("xact_time") >= n("query_time"), "{row:?}");
    assert_eq!(n("client_parse_count"), 0, "{row:?}");

    // SHOW STATS carries the same totals, SHOW TOTALS at least them.
    let stats = c.rows("SHOW STATS").await.maps();
    let sluice = stats
        .iter()
        .find(|r| r["database"].as_deref() == Some(TEST_DB))
        .unwrap();
    assert_eq!(sluice["total_xact_count"].as_deref(), Some("1000"));
    assert_eq!(sluice["total_query_count"].as_deref(), Some("1000"));
    let totals = c.rows("SHOW TOTALS").await;
    let xacts: u64 = totals
        .rows
        .iter()
        .find(|r| r[0].as_deref() == Some("total_xact_count"))
        .and_then(|r| r[1].as_deref()?.parse().ok())
        .expect("a total_xact_count row");
    // The console's `pgbouncer` row: its one login is one transaction and one
    // query, as PgBouncer counts it; the SHOW commands are not counted.
    let console_row = c
        .rows("SHOW STATS_TOTALS")
        .await
        .maps()
        .into_iter()
        .find(|r| r["database"].as_deref() == Some("pgbouncer"))
        .expect("a pgbouncer row");
    for counter in ["xact_count", "query_count", "client_login_count"] {
        assert_eq!(
            console_row[counter].as_deref(),
            Some("1"),
            "{console_row:?}"
        );
    }
    assert_eq!(xacts, 1001, "{totals:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_returns_only_after_the_open_transaction_ends() {
    let (_pg, pooler) = start(&[]);
    let holder = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    holder.simple_query("BEGIN").await.unwrap();
    holder.simple_query("SELECT 1").await.unwrap();

    let mut admin = console(&pooler, ADMIN).await;
    let pause = tokio::spawn(async move {
        let answer = admin.query("PAUSE sluice").await;
        (admin, answer)
    });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !pause.is_finished(),
        "PAUSE returned while a transaction was open"
    );
    holder.simple_query("COMMIT").await.unwrap();
    let (mut admin, answer) = pooler
        .within(STEP, "PAUSE after COMMIT", pause)
        .await
        .unwrap();
    assert!(answer.error.is_none(), "{answer:?}");
    assert_eq!(answer.results[0].tag, "PAUSE");
    // The server given back was closed, in PgBouncer's words.
    let closed = pooler.server_log_lines("closing because: pause mode (age=");
    assert_eq!(closed.len(), 1, "{}", pooler.log());
    let dbs = admin.rows("SHOW DATABASES").await.maps();
    let sluice = dbs
        .iter()
        .find(|r| r["name"].as_deref() == Some(TEST_DB))
        .unwrap();
    assert_eq!(sluice["paused"].as_deref(), Some("1"));
    assert_eq!(sluice["disabled"].as_deref(), Some("0"));
    assert_eq!(admin.rows("RESUME sluice").await.tag, "RESUME");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_releases_waiting_queries() {
    let (_pg, pooler) = start(&[]);
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    client.simple_query("SELECT 1").await.unwrap();
    let mut admin = console(&pooler, ADMIN).await;
    assert_eq!(admin.rows("PAUSE sluice").await.tag, "PAUSE");

    let query = tokio::spawn(async move { client.simple_query("SELECT 2").await.map(|_| ()) });
    let counts = wait_pools(&mut admin, |p| p["cl_waiting"] == 1).await;
    assert_eq!(counts["cl_waiting"], 1, "the query waits: {counts:?}");
    assert!(!query.is_finished(), "a query ran on a paused database");

    assert_eq!(admin.rows("RESUME sluice").await.tag, "RESUME");
    pooler
        .within(
            Duration::from_secs(10),
            "the query released by RESUME",
            query,
        )
        .await
        .unwrap()
        .unwrap();
    assert!(
        !admin.error("RESUME sluice").await.is_empty(),
        "RESUME of a running database is an error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_closes_the_clients_of_one_database() {
    let (_pg, pooler) = start(&[]);
    let victim = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    victim.simple_query("SELECT 1").await.unwrap();
    let bystander = pooler.connect(TRUST_USER, "postgres", None).await.unwrap();
    bystander.simple_query("SELECT 1").await.unwrap();

    let mut admin = console(&pooler, ADMIN).await;
    assert_eq!(admin.rows("KILL sluice").await.tag, "KILL");
    // The victim's idle server was closed, in PgBouncer 1.18's words.
    let closed = pooler.server_log_lines("closing because: database removed (age=");
    assert_eq!(closed.len(), 1, "{}", pooler.log());
    let result = pooler
        .within(
            STEP,
            "a query of a killed client",
            victim.simple_query("SELECT 1"),
        )
        .await;
    assert!(result.is_err(), "the killed client could still query");
    bystander
        .simple_query("SELECT 1")
        .await
        .expect("a client of another database survives KILL sluice");
    let clients = admin.rows("SHOW CLIENTS").await.maps();
    assert!(
        clients
            .iter()
            .all(|r| r["database"].as_deref() != Some(TEST_DB)),
        "{clients:?}"
    );
    // KILL leaves the database paused, as in PgBouncer, until RESUME.
    assert_eq!(admin.rows("RESUME sluice").await.tag, "RESUME");
    let again = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    again.simple_query("SELECT 1").await.unwrap();
}

/// SHOW CLIENTS gives each client's two ends: addr/port is the client's side,
/// local_addr/local_port the pooler's. A listener bound to one address and a
/// wildcard one (`*`) learn the local end differently, so both are checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_clients_reports_both_ends_of_a_connection() {
    for listen_addr in ["127.0.0.1", "*"] {
        let (_pg, pooler) = start(&[("listen_addr", listen_addr)]);
        let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
        client.simple_query("SELECT 1").await.unwrap();
        let mut admin = console(&pooler, ADMIN).await;
        let clients = admin.rows_of("CLIENTS", TEST_DB).await;
        let [me] = &clients[..] else {
            panic!("one client expected: {clients:?}");
        };
        assert_eq!(me["addr"].as_deref(), Some("127.0.0.1"), "{listen_addr}");
        let port: u16 = me["port"].as_deref().unwrap().parse().unwrap();
        assert!(port != 0 && port != pooler.port, "client port {port}");
        assert_eq!(
            me["local_addr"].as_deref(),
            Some("127.0.0.1"),
            "{listen_addr}"
        );
        assert_eq!(
            me["local_port"].as_deref(),
            Some(pooler.port.to_string().as_str()),
            "{listen_addr}"
        );
    }
}

/// Over Unix sockets, as PgBouncer shows them: a client's port and local_port
/// are the pooler's listen_port and its remote_pid is the client's process id;
/// a server's port is the one in PostgreSQL's socket name (local_port again
/// the pooler's), and its remote_pid the backend's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_connections_show_ports_and_process_ids() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    let unix_db = "sluice_unix";
    cfg.set("auth_type", "trust")
        .set("admin_users", ADMIN)
        .user_secret(ADMIN, "adminpass")
        .database(
            unix_db,
            &format!(
                "host={} port={} dbname={TEST_DB}",
                pg.socket_dir.display(),
                pg.port
            ),
        );
    let pooler = Pooler::start(&cfg);
    let (client, connection) = tokio_postgres::connect(
        &format!(
            "host={} port={} user={TRUST_USER} dbname={unix_db}",
            cfg.dir().display(),
            pooler.port
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("login over the pooler's Unix socket");
    tokio::spawn(connection);
    client.batch_execute("BEGIN").await.unwrap();
    let backend = backend_pid(&client).await;

    let listen_port = pooler.port.to_string();
    let mut admin = console(&pooler, ADMIN).await;
    let clients = admin.rows_of("CLIENTS", unix_db).await;
    let [me] = &clients[..] else {
        panic!("one client expected: {clients:?}");
    };
    assert_eq!(me["addr"].as_deref(), Some("unix"), "{me:?}");
    assert_eq!(me["port"].as_deref(), Some(listen_port.as_str()), "{me:?}");
    assert_eq!(me["local_addr"].as_deref(), Some("unix"), "{me:?}");
    assert_eq!(
        me["local_port"].as_deref(),
        Some(listen_port.as_str()),
        "{me:?}"
    );
    let my_pid = std::process::id().to_string();
    assert_eq!(me["remote_pid"].as_deref(), Some(my_pid.as_str()), "{me:?}");

    let servers = admin.rows_of("SERVERS", unix_db).await;
    let [server] = &servers[..] else {
        panic!("one server expected: {servers:?}");
    };
    assert_eq!(server["addr"].as_deref(), Some("unix"), "{server:?}");
    let pg_port = pg.port.to_string();
    assert_eq!(
        server["port"].as_deref(),
        Some(pg_port.as_str()),
        "{server:?}"
    );
    assert_eq!(
        server["local_port"].as_deref(),
        Some(listen_port.as_str()),
        "{server:?}"
    );
    let backend = backend.to_string();
    assert_eq!(
        server["remote_pid"].as_deref(),
        Some(backend.as_str()),
        "{server:?}"
    );
    client.batch_execute("COMMIT").await.unwrap();
}

/// Console connections are clients too: PgBouncer lists them in SHOW CLIENTS
/// under the `pgbouncer` database and counts them in a `pgbouncer` pool
/// (statement mode). KILL of every database spares them; KILL_CLIENT does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_connections_are_listed_under_the_pgbouncer_pool() {
    let (_pg, pooler) = start(&[]);
    let mut admin = console(&pooler, ADMIN).await;
    let mut watcher = console(&pooler, STATS).await;
    let watcher_port = watcher.stream.get_ref().local_addr().unwrap().port();

    let consoles = admin.rows_of("CLIENTS", "pgbouncer").await;
    assert_eq!(consoles.len(), 2, "{consoles:?}");
    let watcher_row = consoles
        .iter()
        .find(|r| r["port"].as_deref() == Some(watcher_port.to_string().as_str()))
        .unwrap_or_else(|| panic!("no row for the watcher's port {watcher_port}: {consoles:?}"));
    assert_eq!(watcher_row["user"].as_deref(), Some(STATS));
    assert_eq!(watcher_row["state"].as_deref(), Some("active"));
    assert_eq!(watcher_row["addr"].as_deref(), Some("127.0.0.1"));

    let pools = admin.rows_of("POOLS", "pgbouncer").await;
    let [row] = &pools[..] else {
        panic!("one pgbouncer pool expected: {pools:?}");
    };
    assert_eq!(row["user"].as_deref(), Some("pgbouncer"));
    assert_eq!(row["cl_active"].as_deref(), Some("2"));
    assert_eq!(row["pool_mode"].as_deref(), Some("statement"));
    let lists = admin.rows("SHOW LISTS").await.rows;
    let item = |name: &str| {
        lists
            .iter()
            .find(|r| r[0].as_deref() == Some(name))
            .and_then(|r| r[1].clone())
    };
    assert_eq!(item("used_clients").as_deref(), Some("2"));
    assert_eq!(item("login_clients").as_deref(), Some("0"));
    assert_eq!(item("pools").as_deref(), Some("1"));

    // KILL of all databases closes pooled clients only.
    assert_eq!(admin.rows("KILL").await.tag, "KILL");
    assert_eq!(watcher.rows("SHOW VERSION").await.rows.len(), 1);
    assert_eq!(admin.rows("RESUME").await.tag, "RESUME");

    let id = watcher_row["id"].clone().unwrap();
    assert_eq!(
        admin.rows(&format!("KILL_CLIENT {id}")).await.tag,
        "KILL_CLIENT"
    );
    let (tag, body) = tokio::time::timeout(STEP, watcher.read())
        .await
        .expect("the killed console is told in time")
        .expect("a message before the close");
    let mut f = fields(&body);
    assert_eq!(
        (tag, f.remove(&b'C'), f.remove(&b'M')),
        (b'E', Some("57P01".into()), Some("admin kill".into()))
    );
    assert!(
        tokio::time::timeout(STEP, watcher.read())
            .await
            .expect("closed in time")
            .is_err(),
        "the killed console's connection stays open"
    );
    let pools = admin.rows_of("POOLS", "pgbouncer").await;
    assert_eq!(pools[0]["cl_active"].as_deref(), Some("1"), "{pools:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_client_closes_one_client_by_id() {
    let (_pg, pooler) = start(&[]);
    let victim = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    victim.simple_query("SELECT 1").await.unwrap();
    let mut admin = console(&pooler, ADMIN).await;
    // PgBouncer lists the console's own clients too (database `pgbouncer`).
    let clients = admin.rows_of("CLIENTS", TEST_DB).await;
    assert_eq!(clients.len(), 1, "{clients:?}");
    let id = clients[0]["id"].clone().unwrap();
    assert_eq!(
        admin.rows(&format!("KILL_CLIENT {id}")).await.tag,
        "KILL_CLIENT"
    );
    let result = pooler
        .within(
            STEP,
            "a query of a killed client",
            victim.simple_query("SELECT 1"),
        )
        .await;
    assert!(result.is_err());
    assert!(!admin.error("KILL_CLIENT nonsense").await.is_empty());
    // Other clients are untouched and the database is not paused.
    let other = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    other.simple_query("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_refuses_new_clients() {
    let (_pg, pooler) = start(&[]);
    let connected = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    connected.simple_query("SELECT 1").await.unwrap();
    let mut admin = console(&pooler, ADMIN).await;
    assert_eq!(admin.rows("DISABLE sluice").await.tag, "DISABLE");

    let err = pooler
        .connect(TRUST_USER, TEST_DB, None)
        .await
        .expect_err("a new client of a disabled database is refused");
    assert_eq!(db_message(&err), "database \"sluice\" is disabled");
    connected
        .simple_query("SELECT 1")
        .await
        .expect("clients already connected carry on");
    let dbs = admin.rows("SHOW DATABASES").await.maps();
    let sluice = dbs
        .iter()
        .find(|r| r["name"].as_deref() == Some(TEST_DB))
        .unwrap();
    assert_eq!(sluice["disabled"].as_deref(), Some("1"));

    assert_eq!(admin.rows("ENABLE sluice").await.tag, "ENABLE");
    let later = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    later.simple_query("SELECT 1").await.unwrap();
}

/// What an exporter does: psycopg (simple protocol, autocommit, rows as dicts)
/// reads columns by name and expects numbers where numbers belong.
const PSYCOPG_READER: &str = r#"
import decimal, sys
import psycopg
from psycopg.rows import dict_row

port, user = sys.argv[1], sys.argv[2]
conn = psycopg.connect(host="127.0.0.1", port=port, user=user, dbname="pgbouncer",
                       autocommit=True, row_factory=dict_row)
def show(what):
    return conn.execute("SHOW " + what).fetchall()
def number(v):
    return isinstance(v, (int, decimal.Decimal)) and not isinstance(v, bool)

stats = {r["database"]: r for r in show("STATS")}
s = stats["sluice"]
assert number(s["total_xact_count"]) and s["total_xact_count"] > 0, s
for k, v in s.items():
    assert k == "database" or number(v), (k, v)

pools = [r for r in show("POOLS") if r["database"] == "sluice"]
assert pools, "no sluice pool"
for p in pools:
    for k in ("cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "maxwait"):
        assert isinstance(p[k], int), (k, p[k])
    assert p["pool_mode"] == "transaction", p

dbs = {r["name"]: r for r in show("DATABASES")}
d = dbs["sluice"]
assert d["paused"] in (0, 1) and d["disabled"] in (0, 1), d
assert isinstance(d["pool_size"], int) and isinstance(d["current_connections"], int), d

lists = {r["list"]: r["items"] for r in show("LISTS")}
assert all(isinstance(v, int) for v in lists.values()), lists
assert lists["pools"] >= 1 and lists["used_clients"] >= 1, lists

config = {r["key"]: r for r in show("CONFIG")}
assert config["pool_mode"]["value"] == "transaction", config["pool_mode"]
assert all(r["changeable"] in ("yes", "no") for r in config.values())
print("OK", s["total_xact_count"])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn psycopg_reads_the_console_by_column_name_under_load() {
    let (_pg, pooler) = start(&[]);
    let pooler = Arc::new(pooler);
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let pooler = pooler.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    client.simple_query("SELECT 1").await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let port = pooler.port.to_string();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = support::debian_python();
        cmd.args(["-c", PSYCOPG_READER, &port, ADMIN]);
        run_bounded(&mut cmd, STEP, "python3 psycopg reader")
    })
    .await
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        assert!(w.await.unwrap() > 0);
    }
    assert!(
        out.status.success(),
        "psycopg reader failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK "));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_replaces_servers_after_their_current_use() {
    let (pg, pooler) = start(&[("default_pool_size", "1")]);
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let before = backend_pid(&client).await;
    // A transaction is open on the only server when RECONNECT comes.
    client.batch_execute("BEGIN").await.unwrap();
    assert_eq!(backend_pid(&client).await, before);
    let mut admin = console(&pooler, ADMIN).await;
    assert_eq!(admin.rows("RECONNECT sluice").await.tag, "RECONNECT");
    // Marked to be closed, as PgBouncer marks it.
    let servers = admin.rows("SHOW SERVERS").await.maps();
    assert_eq!(servers.len(), 1, "{servers:?}");
    assert_eq!(servers[0]["state"].as_deref(), Some("active"));
    assert_eq!(servers[0]["close_needed"].as_deref(), Some("1"));
    // The transaction carries on, on the same server.
    assert_eq!(
        backend_pid(&client).await,
        before,
        "RECONNECT must not cut a transaction"
    );
    client.batch_execute("COMMIT").await.unwrap();
    // After that use the server is replaced, and WAIT_CLOSE sees it gone.
    assert_eq!(admin.rows("WAIT_CLOSE sluice").await.tag, "WAIT_CLOSE");
    let after = backend_pid(&client).await;
    assert_ne!(after, before, "the old server was reused after RECONNECT");
    assert_eq!(
        pg.sql(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = {before}"
        )),
        "0",
        "the old server connection is closed"
    );
}

/// Poll until tokio-postgres has seen `client`'s connection end (bounded).
async fn closed_within(client: &tokio_postgres::Client, what: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    while !client.is_closed() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still connected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_fast_close_ends_retired_sessions_when_their_transaction_ends() {
    let (_pg, pooler) = start(&[("pool_mode", "session"), ("server_fast_close", "1")]);
    let idle = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let busy = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    backend_pid(&idle).await;
    let busy_pid = backend_pid(&busy).await;
    busy.batch_execute("BEGIN").await.unwrap();
    let mark = pooler.log_mark();
    let mut admin = console(&pooler, ADMIN).await;
    assert_eq!(admin.rows("RECONNECT sluice").await.tag, "RECONNECT");

    // The idle session loses its server at once, and the client goes with it.
    closed_within(&idle, "the idle session after RECONNECT").await;
    assert!(
        pooler
            .log_since(mark)
            .contains("database configuration changed"),
        "{}",
        pooler.log_since(mark)
    );
    // The session in a transaction keeps its server until the transaction ends.
    assert_eq!(backend_pid(&busy).await, busy_pid);
    busy.batch_execute("COMMIT").await.unwrap();
    closed_within(&busy, "the session after its COMMIT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_server_fast_close_a_session_keeps_its_retired_server() {
    let (_pg, pooler) = start(&[("pool_mode", "session")]);
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let pid = backend_pid(&client).await;
    let mut admin = console(&pooler, ADMIN).await;
    assert_eq!(admin.rows("RECONNECT sluice").await.tag, "RECONNECT");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        backend_pid(&client).await,
        pid,
        "the session keeps its server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_wait_for_clients_lets_connected_clients_finish() {
    let (_pg, mut pooler) = start(&[]);
    let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    client.batch_execute("BEGIN").await.unwrap();
    let mut admin = console(&pooler, ADMIN).await;
    assert_eq!(
        admin.rows("SHUTDOWN WAIT_FOR_CLIENTS").await.tag,
        "SHUTDOWN"
    );
    // No new clients.
    assert!(
        wait_until(STEP, || std::net::TcpStream::connect((
            "127.0.0.1",
            pooler.port
        ))
        .is_err()),
        "the listener still accepts after SHUTDOWN WAIT_FOR_CLIENTS"
    );
    // The connected client finishes its work.
    client.batch_execute("SELECT 1; COMMIT").await.unwrap();
    assert!(pooler.is_running(), "exited while a client was connected");
    drop(client);
    drop(admin);
    let status = pooler
        .wait_exit(STEP)
        .expect("pgsluice exits once its clients are gone");
    assert!(status.success(), "{status}");
}

/// The daemon's own OS user reaches the console as `pgbouncer` over the Unix
/// socket without a password (its uid, read with SO_PEERCRED, is the proof);
/// another OS user is asked for one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemons_own_os_user_logs_in_to_the_console_without_a_password() {
    let (_pg, pooler) = start(&[]);
    let version = pooler
        .psql_unix_as_daemon_user("pgbouncer", "pgbouncer", "SHOW VERSION")
        .expect("console login as pgbouncer by the daemon's user");
    assert!(version.starts_with("pgsluice "), "{version}");
    if support::pg_os_user().is_some() {
        // Root is not the daemon's user: no password, no entry.
        let refused = pooler.psql_unix("pgbouncer", "pgbouncer", "SHOW VERSION");
        assert!(refused.is_err(), "root got in as pgbouncer: {refused:?}");
    }
}

/// SHOW DNS_HOSTS as a [databases] host name is looked up and kept.
async fn dns_host(c: &mut Console) -> (String, u64, String) {
    let hosts = c.rows("SHOW DNS_HOSTS").await.maps();
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    let field = |name: &str| hosts[0][name].clone().unwrap_or_default();
    let ttl = field("ttl").parse().expect("ttl is a number");
    (field("hostname"), ttl, field("addrs"))
}

/// A server's host name is looked up once and kept for dns_max_ttl: SHOW
/// DNS_HOSTS lists it with its addresses and the seconds left, and SHOW LISTS
/// counts it. A new server connection while it is kept does not look it up
/// again (the seconds left keep going down); once a smaller dns_max_ttl makes
/// it stale, the next one does (they start over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_host_names_are_looked_up_and_kept_for_dns_max_ttl() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("auth_type", "trust")
        .set("admin_users", ADMIN)
        .user_secret(ADMIN, "adminpass")
        .set("default_pool_size", "1")
        .set("dns_max_ttl", "60")
        .database(
            "named",
            &format!("host=localhost port={} dbname={TEST_DB}", pg.port),
        );
    let pooler = Pooler::start(&cfg);
    let mut admin = console(&pooler, ADMIN).await;
    assert!(admin.rows("SHOW DNS_HOSTS").await.rows.is_empty());

    let client = pooler.connect(TRUST_USER, "named", None).await.unwrap();
    let first_server = backend_pid(&client).await;
    let (name, ttl, addrs) = dns_host(&mut admin).await;
    assert_eq!(name, "localhost");
    // Each with port 0, as PgBouncer shows them.
    assert!(addrs.split(',').any(|a| a == "127.0.0.1:0"), "{addrs}");
    assert!((58..=60).contains(&ttl), "just looked up: {ttl}");
    let lists = admin.rows("SHOW LISTS").await.rows;
    let dns_names = lists.iter().find(|r| r[0].as_deref() == Some("dns_names"));
    assert_eq!(dns_names.unwrap()[1].as_deref(), Some("1"));

    // A new server connection 2.5 s later uses the answer kept.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    replace_server(&mut admin, "named").await;
    let second_server = backend_pid(&client).await;
    assert_ne!(second_server, first_server, "RECONNECT gave a new server");
    let (_, ttl, _) = dns_host(&mut admin).await;
    assert!(ttl <= 58, "not looked up again: {ttl} s left");

    // dns_max_ttl = 2 makes the 2.5 s old answer stale (0 s left); the next
    // server connection looks the name up again.
    admin.rows("SET dns_max_ttl = 2").await;
    assert_eq!(dns_host(&mut admin).await.1, 0);
    replace_server(&mut admin, "named").await;
    assert_ne!(backend_pid(&client).await, second_server);
    assert!(dns_host(&mut admin).await.1 >= 1, "looked up again");
}

/// Have `database`'s servers replaced: the next query gets a new one.
async fn replace_server(admin: &mut Console, database: &str) {
    admin.rows(&format!("RECONNECT {database}")).await;
    admin.rows(&format!("WAIT_CLOSE {database}")).await;
}
