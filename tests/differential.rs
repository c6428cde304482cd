//! Differential test against Debian's PgBouncer (1.18): the same config and the
//! same scripted workload on both poolers, side by side on one PostgreSQL, give
//! the same SHOW POOLS and SHOW DATABASES values in every column PgBouncer 1.18
//! also has (times excepted: they depend on the moment of the snapshot),
//! the console's own `pgbouncer` database and pool included; and with
//! `client_tls_sslmode = require`, the same refusals and the same `tls` column;
//! SHOW USERS; SHOW STATS_TOTALS' `pgbouncer` row; and the outcomes of logins
//! looked up with auth_query, and of one to a server that cannot be reached;
//! autodb_idle_timeout; disable_pqexec; and auth_type = hba.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::postgres::{TEST_DB, TRUST_USER};
use support::{wait_until, Pooler, PoolerConfig, Postgres};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";
const STEP: Duration = Duration::from_secs(30);

/// One row of a SHOW command, by column name.
type Row = BTreeMap<String, String>;

/// Run a SHOW on a pooler's console and return its rows by column name.
fn show(pooler: &Pooler, command: &str) -> Vec<Row> {
    // Unaligned with a header (psql_command's -t would drop it).
    let out = support::libpq_command("psql")
        .args([
            "-XAq",
            "-w",
            "-P",
            "footer=off",
            "-F",
            "\t",
            "-h",
            "127.0.0.1",
        ])
        .args([
            "-p",
            &pooler.port.to_string(),
            "-U",
            TRUST_USER,
            "-d",
            "pgbouncer",
        ])
        .args(["-c", command])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap_or_default()
        .split('\t')
        .map(str::to_owned)
        .collect();
    lines
        .map(|line| {
            header
                .iter()
                .cloned()
                .zip(line.split('\t').map(str::to_owned))
                .collect()
        })
        .collect()
}

/// The row of the test database (PgBouncer also lists its own console).
fn row_of(rows: &[Row], key: &str, value: &str) -> Row {
    rows.iter()
        .find(|r| r.get(key).map(String::as_str) == Some(value))
        .cloned()
        .unwrap_or_else(|| panic!("no row with {key} = {value} in {rows:#?}"))
}

/// The columns both rows have, minus the ones that measure time.
fn comparable(a: &Row, b: &Row, skip: &[&str]) -> Vec<String> {
    a.keys()
        .filter(|k| b.contains_key(*k) && !skip.contains(&k.as_str()))
        .cloned()
        .collect()
}

fn start_pair(pg: &Postgres) -> (Pooler, Pooler) {
    let config = || {
        let mut cfg = PoolerConfig::new(pg);
        cfg.set("auth_type", "trust")
            .set("pool_mode", "transaction")
            .set("default_pool_size", "2")
            .set("admin_users", TRUST_USER);
        cfg
    };
    let sluice = Pooler::start(&config());
    let bouncer = Pooler::start_with(&config(), Path::new(PGBOUNCER));
    (sluice, bouncer)
}

/// The scripted workload: two clients hold both servers inside transactions,
/// a third waits for one, a fourth is logged in and idle. Returns the clients
/// and the waiting query's task.
async fn hold(pooler: &Pooler) -> (Vec<tokio_postgres::Client>, tokio::task::JoinHandle<()>) {
    let mut clients = Vec::new();
    for _ in 0..2 {
        let c = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
        c.batch_execute("BEGIN; SELECT 1").await.unwrap();
        clients.push(c);
    }
    let waiter = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
    let task = tokio::spawn(async move {
        tokio::time::timeout(STEP, waiter.simple_query("SELECT 1"))
            .await
            .expect("the waiting client gets a server once one is free")
            .unwrap();
    });
    clients.push(pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap());
    (clients, task)
}

fn assert_same(what: &str, sluice: &Row, bouncer: &Row, skip: &[&str]) {
    let columns = comparable(sluice, bouncer, skip);
    assert!(
        columns.len() >= 5,
        "{what}: too few shared columns: {columns:?}"
    );
    for c in &columns {
        assert_eq!(
            sluice[c], bouncer[c],
            "{what}: column {c} differs\npgsluice:  {sluice:?}\nPgBouncer: {bouncer:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn show_pools_and_databases_match_pgbouncer() {
    assert!(
        Path::new(PGBOUNCER).exists(),
        "{PGBOUNCER} is missing: `make deps` installs Debian's pgbouncer"
    );
    let pg = Postgres::start();
    let (sluice, bouncer) = start_pair(&pg);

    let (sluice_clients, sluice_waiter) = hold(&sluice).await;
    let (bouncer_clients, bouncer_waiter) = hold(&bouncer).await;
    let waiting =
        |p: &Pooler| row_of(&show(p, "SHOW POOLS"), "database", TEST_DB)["cl_waiting"] == "1";
    assert!(
        wait_until(STEP, || waiting(&sluice) && waiting(&bouncer)),
        "a client waits on both"
    );

    let time_columns = ["maxwait", "maxwait_us"];
    let busy_s = row_of(&show(&sluice, "SHOW POOLS"), "database", TEST_DB);
    let busy_b = row_of(&show(&bouncer, "SHOW POOLS"), "database", TEST_DB);
    assert_eq!(busy_s["sv_active"], "2", "{busy_s:?}");
    assert_same("SHOW POOLS while busy", &busy_s, &busy_b, &time_columns);
    // The psql asking is a console connection, counted in the `pgbouncer` pool
    // of the built-in `pgbouncer` database.
    assert_same(
        "SHOW POOLS, the console's pool",
        &row_of(&show(&sluice, "SHOW POOLS"), "database", "pgbouncer"),
        &row_of(&show(&bouncer, "SHOW POOLS"), "database", "pgbouncer"),
        &time_columns,
    );
    let console_db = |p: &Pooler| {
        let mut row = row_of(&show(p, "SHOW DATABASES"), "name", "pgbouncer");
        // Each pooler's own listen_port: they differ by construction.
        let port = row.remove("port");
        assert_eq!(port, Some(p.port.to_string()), "{row:?}");
        row
    };
    assert_same(
        "SHOW DATABASES, the console's database",
        &console_db(&sluice),
        &console_db(&bouncer),
        &[],
    );
    assert_same(
        "SHOW DATABASES while busy",
        &row_of(&show(&sluice, "SHOW DATABASES"), "name", TEST_DB),
        &row_of(&show(&bouncer, "SHOW DATABASES"), "name", TEST_DB),
        &[],
    );

    // Both transactions end: the waiting client runs, then everyone is idle.
    for clients in [&sluice_clients, &bouncer_clients] {
        for c in &clients[..2] {
            c.batch_execute("COMMIT").await.unwrap();
        }
    }
    sluice_waiter.await.unwrap();
    bouncer_waiter.await.unwrap();
    let settled = |p: &Pooler| {
        let r = row_of(&show(p, "SHOW POOLS"), "database", TEST_DB);
        r["sv_active"] == "0" && r["cl_waiting"] == "0"
    };
    assert!(wait_until(STEP, || settled(&sluice) && settled(&bouncer)));
    let idle_s = row_of(&show(&sluice, "SHOW POOLS"), "database", TEST_DB);
    let idle_b = row_of(&show(&bouncer, "SHOW POOLS"), "database", TEST_DB);
    // The waiting client's task ended and dropped it: three remain.
    assert_eq!(idle_s["cl_active"], "3", "{idle_s:?}");
    assert_same("SHOW POOLS when idle", &idle_s, &idle_b, &time_columns);
    assert_same(
        "SHOW DATABASES when idle",
        &row_of(&show(&sluice, "SHOW DATABASES"), "name", TEST_DB),
        &row_of(&show(&bouncer, "SHOW DATABASES"), "name", TEST_DB),
        &[],
    );
}

/// The SQLSTATE and message of the ErrorResponse a pooler answers an
/// SSLRequest with when unencrypted bytes follow it before any handshake.
fn answer_to_injected_bytes(pooler: &Pooler) -> (String, String) {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", pooler.port)).unwrap();
    sock.set_read_timeout(Some(STEP)).unwrap();
    let mut bytes = support::wire::ssl_request();
    bytes.extend_from_slice(b"Q\0\0\0\x0dSELECT 1\0");
    sock.write_all(&bytes).unwrap();
    let mut answer = Vec::new();
    let _ = sock.read_to_end(&mut answer);
    assert_eq!(answer.first(), Some(&b'E'), "{answer:?}");
    let field = |tag: u8| {
        answer[5..]
            .split(|b| *b == 0)
            .find(|f| f.first() == Some(&tag))
            .map(|f| String::from_utf8_lossy(&f[1..]).into_owned())
            .unwrap_or_default()
    };
    (field(b'C'), field(b'M'))
}

/// With `client_tls_sslmode = require` and the same certificate, both poolers
/// refuse plain TCP with the same words, refuse bytes sent ahead of the TLS
/// handshake the same way, and name a TLS 1.3 session alike in SHOW CLIENTS.
#[test]
fn tls_refusals_and_the_tls_column_match_pgbouncer() {
    let pg = Postgres::start();
    let config = || {
        let mut cfg = PoolerConfig::new(&pg);
        let pki = support::pki::Pki::new(cfg.dir(), "differential");
        let (crt, key) = pki.issue("server", &["localhost", "127.0.0.1"]);
        cfg.set("auth_type", "trust")
            .set("admin_users", TRUST_USER)
            .set("client_tls_sslmode", "require")
            .set("client_tls_cert_file", &crt.to_string_lossy())
            .set("client_tls_key_file", &key.to_string_lossy());
        cfg
    };
    let sluice = Pooler::start(&config());
    let bouncer = Pooler::start_with(&config(), Path::new(PGBOUNCER));

    let refusal = |pooler: &Pooler| {
        let plain = [("PGSSLMODE", "disable")];
        let err = pooler
            .psql_env(TRUST_USER, TEST_DB, None, &plain, "SELECT 1")
            .expect_err("plain TCP is refused");
        // libpq's prefix names the port, which differs.
        err.split_once("failed: ")
            .map(|(_, why)| why.trim().to_owned())
            .unwrap_or(err)
    };
    assert_eq!(refusal(&sluice), refusal(&bouncer));
    assert_eq!(refusal(&sluice), "FATAL:  SSL required");

    assert_eq!(
        answer_to_injected_bytes(&sluice),
        answer_to_injected_bytes(&bouncer)
    );

    // The console connection asking is itself on TLS 1.3 (libpq prefers TLS).
    let tls_of_console = |pooler: &Pooler| {
        row_of(&show(pooler, "SHOW CLIENTS"), "database", "pgbouncer")["tls"].clone()
    };
    let (ours, theirs) = (tls_of_console(&sluice), tls_of_console(&bouncer));
    assert!(theirs.starts_with("TLSv1.3/"), "{theirs}");
    assert_eq!(ours, theirs);
}

/// SHOW USERS lists the users PgBouncer 1.18 lists (the `[users]` entries,
/// the auth file's users and the console's own `pgbouncer`), in its order and
/// with its pool_mode, and SHOW LISTS counts them alike.
#[test]
fn show_users_matches_pgbouncer() {
    let pg = Postgres::start();
    let config = || {
        let mut cfg = PoolerConfig::new(&pg);
        cfg.set("auth_type", "trust")
            .set("admin_users", TRUST_USER)
            .user("only_in_users_section", "pool_mode=session");
        cfg
    };
    let sluice = Pooler::start(&config());
    let bouncer = Pooler::start_with(&config(), Path::new(PGBOUNCER));
    let users = |p: &Pooler| -> Vec<(String, String)> {
        show(p, "SHOW USERS")
            .iter()
            .map(|r| (r["name"].clone(), r["pool_mode"].clone()))
            .collect()
    };
    let theirs = users(&bouncer);
    assert!(
        theirs.iter().any(|(name, _)| name == "pgbouncer")
            && theirs.iter().any(|(name, _)| name == TRUST_USER),
        "{theirs:?}"
    );
    assert_eq!(users(&sluice), theirs);
    let count = |p: &Pooler| row_of(&show(p, "SHOW LISTS"), "list", "users")["items"].clone();
    assert_eq!(count(&sluice), count(&bouncer));
}

/// Console logins count in the `pgbouncer` row of SHOW STATS_TOTALS as one
/// transaction and one query each, whatever the commands run.
#[test]
fn the_console_row_of_show_stats_totals_matches_pgbouncer() {
    let pg = Postgres::start();
    let (sluice, bouncer) = start_pair(&pg);
    let console_row = |pooler: &Pooler| {
        for _ in 0..3 {
            let answer = pooler.psql(TRUST_USER, "pgbouncer", None, "SHOW VERSION");
            assert!(answer.is_ok(), "{answer:?}");
        }
        row_of(&show(pooler, "SHOW STATS_TOTALS"), "database", "pgbouncer")
    };
    let (ours, theirs) = (console_row(&sluice), console_row(&bouncer));
    // Three logins with one command, and the login of the SHOW itself.
    assert_eq!(theirs["xact_count"], "4", "{theirs:?}");
    assert_same("SHOW STATS_TOTALS pgbouncer", &ours, &theirs, &[]);
}

/// With auth_user and auth_query, users missing from the auth file log in
/// (md5 and SCRAM secrets), a wrong password is refused, and a broken query is
/// a "bouncer config error", through both poolers alike. (An unknown user
/// differs on purpose: PgBouncer 1.18 says "no such user" before asking for a
/// password; pgsluice asks, and refuses it like a wrong password.)
#[test]
fn auth_query_outcomes_match_pgbouncer() {
    use support::postgres::{MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER};
    let pg = Postgres::start();
    let config = |query: &str| {
        let mut cfg = PoolerConfig::new(&pg);
        cfg.userlist
            .retain(|(user, _)| user != MD5_USER && user != SCRAM_USER);
        cfg.set("auth_type", "md5")
            .set("auth_user", "postgres")
            .set("auth_query", query);
        cfg
    };
    // Both poolers' answers, the failures' psql messages cut to their last line.
    let outcomes = |query: &str, logins: &[(&str, &str)]| -> [Vec<Result<String, String>>; 2] {
        let sluice = Pooler::start(&config(query));
        let bouncer = Pooler::start_with(&config(query), Path::new(PGBOUNCER));
        [&sluice, &bouncer].map(|pooler| {
            logins
                .iter()
                .map(|(user, password)| {
                    pooler
                        .psql(user, TEST_DB, Some(password), "SELECT current_user")
                        .map_err(|e| e.trim().lines().last().unwrap_or_default().to_owned())
                })
                .collect()
        })
    };
    let [ours, theirs] = outcomes(
        "SELECT rolname, rolpassword FROM pg_authid WHERE rolname=$1",
        &[
            (MD5_USER, MD5_PASSWORD),
            (SCRAM_USER, SCRAM_PASSWORD),
            (MD5_USER, "wrong"),
        ],
    );
    for got in [&ours, &theirs] {
        assert_eq!(got[0].as_deref(), Ok(MD5_USER), "{ours:?} / {theirs:?}");
        assert_eq!(got[1].as_deref(), Ok(SCRAM_USER), "{ours:?} / {theirs:?}");
        assert!(
            got[2]
                .as_ref()
                .is_err_and(|e| e.contains("FATAL:  password authentication failed")),
            "{ours:?} / {theirs:?}"
        );
    }
    let [ours, theirs] = outcomes(
        "SELECT rolname, rolpassword FROM no_such_table WHERE rolname=$1",
        &[(MD5_USER, MD5_PASSWORD)],
    );
    for got in [&ours, &theirs] {
        assert!(
            got[0]
                .as_ref()
                .is_err_and(|e| e.ends_with("FATAL:  bouncer config error")),
            "{ours:?} / {theirs:?}"
        );
    }
}

/// A login to a database whose server cannot be reached waits, and ends at
/// client_login_timeout with the same words from both poolers.
#[test]
fn a_login_to_an_unreachable_server_ends_alike() {
    let pg = Postgres::start();
    let nobody = support::free_port();
    let config = || {
        let mut cfg = PoolerConfig::new(&pg);
        cfg.set("auth_type", "trust")
            .set("client_login_timeout", "2")
            .set("server_login_retry", "1")
            .database("down", &format!("host=127.0.0.1 port={nobody} dbname=x"));
        cfg
    };
    let sluice = Pooler::start(&config());
    let bouncer = Pooler::start_with(&config(), Path::new(PGBOUNCER));
    let answer = |pooler: &Pooler| {
        let err = pooler
            .psql(TRUST_USER, "down", None, "SELECT 1")
            .expect_err("no server");
        // What the pooler said, without psql's "connection to … port N failed: ".
        let last = err.trim().lines().last().unwrap_or_default();
        last.split_once("failed: ")
            .map_or(last, |(_, said)| said)
            .to_owned()
    };
    let theirs = answer(&bouncer);
    assert_eq!(theirs, "FATAL:  client_login_timeout (server down)");
    assert_eq!(answer(&sluice), theirs);
}

/// A database made from `*` and then left by its client stays in SHOW
/// DATABASES while its server is open, and goes once server_idle_timeout has
/// closed the server and autodb_idle_timeout has passed, in both poolers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_star_databases_are_forgotten_alike() {
    let pg = Postgres::start();
    let config = || {
        let mut cfg = PoolerConfig::new(&pg);
        cfg.set("auth_type", "trust")
            .set("admin_users", TRUST_USER)
            .set("autodb_idle_timeout", "1")
            .set("server_idle_timeout", "4");
        cfg
    };
    let sluice = Pooler::start(&config());
    let bouncer = Pooler::start_with(&config(), Path::new(PGBOUNCER));
    let listed = |pooler: &Pooler| {
        show(pooler, "SHOW DATABASES")
            .iter()
            .any(|r| r["name"] == "postgres")
    };
    for pooler in [&sluice, &bouncer] {
        let client = pooler.connect(TRUST_USER, "postgres", None).await.unwrap();
        client.simple_query("SELECT 1").await.unwrap();
    }
    // Both clients gone; their servers stay idle for 4 s.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!((listed(&sluice), listed(&bouncer)), (true, true));
    for pooler in [&sluice, &bouncer] {
        assert!(
            wait_until(Duration::from_secs(15), || !listed(pooler)),
            "port {}: the unused * database is still listed",
            pooler.port
        );
    }
}

/// disable_pqexec: a simple Query closes the client with the same words in
/// both poolers, on the console too (which serves nothing else), while the
/// extended protocol is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_pqexec_refuses_simple_queries_alike() {
    let pg = Postgres::start();
    let config = || {
        let mut cfg = PoolerConfig::new(&pg);
        cfg.set("auth_type", "trust")
            .set("admin_users", TRUST_USER)
            .set("disable_pqexec", "1");
        cfg
    };
    let sluice = Pooler::start(&config());
    let bouncer = Pooler::start_with(&config(), Path::new(PGBOUNCER));
    for pooler in [&sluice, &bouncer] {
        let port = pooler.port;
        let err = pooler
            .psql(TRUST_USER, TEST_DB, None, "SELECT 1")
            .expect_err("a simple query");
        assert!(
            err.contains("FATAL:  PQexec disallowed"),
            "port {port}: {err}"
        );
        let client = pooler.connect(TRUST_USER, TEST_DB, None).await.unwrap();
        let row = client
            .query_typed_one(
                "SELECT $1::int4 + 1",
                &[(&41i32, tokio_postgres::types::Type::INT4)],
            )
            .await
            .unwrap_or_else(|e| panic!("port {port}: extended protocol: {e}"));
        assert_eq!(row.get::<_, i32>(0), 42);
        let err = pooler
            .psql(TRUST_USER, "pgbouncer", None, "SHOW VERSION")
            .expect_err("a simple query on the console");
        assert!(
            err.contains("FATAL:  PQexec disallowed"),
            "port {port}: {err}"
        );
    }
}

/// auth_type = hba: the same hba file gives the same outcomes through both
/// poolers: each method by its line, a reject line and no matching line
/// refused with "login rejected", trust on the Unix socket.
#[test]
fn hba_outcomes_match_pgbouncer() {
    use support::pooler::TRUST_PASSWORD;
    use support::postgres::{MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER};
    let pg = Postgres::start();
    let config = || {
        let mut cfg = PoolerConfig::new(&pg);
        let hba = cfg.dir().join("hba.conf");
        std::fs::write(
            &hba,
            "# the test's rules\n\
             local    all    all                          trust\n\
             host     all    sluice_md5    127.0.0.1/32   md5\n\
             host     all    sluice_scram  127.0.0.1 255.255.255.255 scram-sha-256\n\
             host     sluice sluice_trust  127.0.0.1/32   password\n\
             host     all    nobody        all            reject\n",
        )
        .unwrap();
        support::give_to_pg_user(&hba);
        cfg.set("auth_type", "hba")
            .set("auth_hba_file", &hba.to_string_lossy());
        cfg
    };
    let sluice = Pooler::start(&config());
    let bouncer = Pooler::start_with(&config(), Path::new(PGBOUNCER));
    let attempts: [(&str, &str, &str); 6] = [
        (MD5_USER, TEST_DB, MD5_PASSWORD),
        (MD5_USER, TEST_DB, "wrong"),
        (SCRAM_USER, TEST_DB, SCRAM_PASSWORD),
        (TRUST_USER, TEST_DB, TRUST_PASSWORD),
        // No line for this database over TCP, and a reject line.
        (TRUST_USER, "postgres", TRUST_PASSWORD),
        ("nobody", TEST_DB, "x"),
    ];
    let outcomes = |pooler: &Pooler| -> Vec<Result<String, String>> {
        let mut got: Vec<_> = attempts
            .iter()
            .map(|(user, db, password)| {
                pooler
                    .psql(user, db, Some(password), "SELECT current_user")
                    .map_err(|e| {
                        let last = e.trim().lines().last().unwrap_or_default();
                        last.split_once("failed: ")
                            .map_or(last, |(_, said)| said)
                            .to_owned()
                    })
            })
            .collect();
        // Over the Unix socket, without a password.
        got.push(
            pooler
                .psql_unix(TRUST_USER, TEST_DB, "SELECT current_user")
                .map_err(|e| e.trim().to_owned()),
        );
        got
    };
    let (ours, theirs) = (outcomes(&sluice), outcomes(&bouncer));
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "attempt {i}"),
            // pgsluice names the user in a password failure, as PostgreSQL does.
            (Err(a), Err(b)) if b == "FATAL:  password authentication failed" => {
                assert!(a.starts_with(b.as_str()), "attempt {i}: {a} / {b}")
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "attempt {i}"),
            _ => panic!("attempt {i} differs: pgsluice {a:?}, PgBouncer {b:?}"),
        }
    }
    assert_eq!(theirs[4], Err("FATAL:  login rejected".to_owned()));
    assert_eq!(theirs[5], Err("FATAL:  login rejected".to_owned()));
    assert_eq!(theirs[0].as_deref(), Ok(MD5_USER));
    assert_eq!(theirs[6].as_deref(), Ok(TRUST_USER));
}
