//! Tests of the test harness itself, straight against PostgreSQL: they do not
//! need pgsluice to work, and prove that a failing pooler test fails because of
//! the pooler.

mod support;

use std::collections::HashSet;
use std::net::TcpStream;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use support::postgres::{MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, TEST_DB, TRUST_USER};
use support::{free_port, wait_until, Pooler, PoolerConfig, Postgres, RawClient, RawError};
use tokio_postgres::error::SqlState;
use tokio_postgres::NoTls;

fn panic_text(e: Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn postgres_starts_with_roles_database_and_settings() {
    let pg = Postgres::start();
    assert_eq!(pg.sql("SELECT 1"), "1");
    assert!(
        pg.sql("SHOW server_version_num").starts_with("15"),
        "expected PostgreSQL 15"
    );
    assert_eq!(pg.sql("SHOW fsync"), "off");
    assert_eq!(pg.sql("SHOW max_connections"), "300");
    assert_eq!(pg.sql("SHOW listen_addresses"), "127.0.0.1");
    assert_eq!(pg.sql("SHOW port"), pg.port.to_string());
    assert_eq!(
        pg.sql("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE 'sluice%' AND rolcanlogin"),
        "sluice_md5,sluice_scram,sluice_trust"
    );
    assert_eq!(
        pg.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'sluice'"),
        TRUST_USER
    );
    assert_eq!(pg.sql_db(TEST_DB, "SELECT current_database()"), TEST_DB);
    // Several statements in one call run in order; the last result is returned.
    assert_eq!(
        pg.sql("CREATE TABLE harness_t(v int); INSERT INTO harness_t VALUES (7); SELECT v FROM harness_t"),
        "7"
    );
    // The socket dir is the one we were told.
    assert!(pg.socket_dir.join(format!(".s.PGSQL.{}", pg.port)).exists());
}

#[test]
fn sql_failure_panics_with_psql_stderr() {
    let pg = Postgres::start();
    let err = catch_unwind(AssertUnwindSafe(|| pg.sql("SELECT * FROM no_such_table")))
        .expect_err("bad SQL must panic");
    let text = panic_text(err);
    assert!(
        text.contains("no_such_table") && text.contains("does not exist"),
        "panic should carry psql's error, got: {text}"
    );
}

#[test]
fn rolpassword_has_the_stored_secret_shapes() {
    let pg = Postgres::start();
    let md5 = pg.rolpassword(MD5_USER);
    let expected = {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        h.update(MD5_PASSWORD.as_bytes());
        h.update(MD5_USER.as_bytes());
        format!("md5{:x}", h.finalize())
    };
    assert_eq!(md5, expected, "md5 secret is md5(password || user)");

    let scram = pg.rolpassword(SCRAM_USER);
    // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
    let rest = scram
        .strip_prefix("SCRAM-SHA-256$")
        .unwrap_or_else(|| panic!("not a SCRAM verifier: {scram}"));
    let (iter_salt, keys) = rest.split_once('$').expect("two $-separated parts");
    let (iterations, salt) = iter_salt.split_once(':').expect("iterations:salt");
    assert_eq!(iterations, "4096");
    assert!(!salt.is_empty());
    let (stored, server) = keys.split_once(':').expect("StoredKey:ServerKey");
    // 32-byte keys in base64 are 44 characters.
    assert_eq!(stored.len(), 44, "{scram}");
    assert_eq!(server.len(), 44, "{scram}");

    assert!(
        catch_unwind(AssertUnwindSafe(|| pg.rolpassword(TRUST_USER))).is_err(),
        "sluice_trust has no password; rolpassword must say so"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_counts_client_sessions_of_a_user() {
    let pg = Postgres::start();
    assert_eq!(pg.backends(TRUST_USER), 0);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (client, conn) = tokio_postgres::connect(&pg.connstr(TRUST_USER, TEST_DB, None), NoTls)
            .await
            .expect("trust login straight to PostgreSQL");
        tokio::spawn(conn);
        client.simple_query("SELECT 1").await.unwrap();
        clients.push(client);
    }
    assert_eq!(pg.backends(TRUST_USER), 3);
    assert_eq!(pg.backends(MD5_USER), 0);
    // The sampler sees the same.
    let sampler = pg.sample_backends(TRUST_USER);
    tokio::time::sleep(Duration::from_millis(300)).await;
    clients.pop();
    let samples = sampler.stop();
    assert_eq!(samples.max, 3, "{samples:?}");
    assert!(samples.count >= 2, "{samples:?}");
    drop(clients);
    assert!(
        wait_until(Duration::from_secs(10), || pg.backends(TRUST_USER) == 0),
        "backends did not go back to 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_logins_follow_pg_hba() {
    let pg = Postgres::start();
    let login = |user: &str, password: Option<&str>| {
        let connstr = pg.connstr(user, TEST_DB, password);
        async move {
            let (client, conn) = tokio_postgres::connect(&connstr, NoTls).await?;
            tokio::spawn(conn);
            let row = client.query_one("SELECT current_user::text", &[]).await?;
            Ok::<String, tokio_postgres::Error>(row.get(0))
        }
    };

    // trust needs no password.
    assert_eq!(login(TRUST_USER, None).await.unwrap(), TRUST_USER);

    // md5 and SCRAM users need their password over TCP.
    for (user, password) in [(MD5_USER, MD5_PASSWORD), (SCRAM_USER, SCRAM_PASSWORD)] {
        let missing = login(user, None).await.expect_err("no password must fail");
        // tokio-postgres reports "password missing" as a config error (in its source).
        assert!(
            format!("{missing:?}").contains("password missing"),
            "{user} without password: {missing:?}"
        );
        let wrong = login(user, Some("wrong"))
            .await
            .expect_err("wrong password");
        assert_eq!(
            wrong.as_db_error().map(|e| e.code()),
            Some(&SqlState::INVALID_PASSWORD),
            "{user}: {wrong}"
        );
        assert_eq!(login(user, Some(password)).await.unwrap(), user);
    }

    // The server really asks the SCRAM user for SCRAM and the md5 user for md5.
    let methods = pg.sql(
        "SELECT string_agg(user_name[1] || '=' || auth_method, ',' ORDER BY line_number) \
         FROM pg_hba_file_rules WHERE type = 'host'",
    );
    assert_eq!(
        methods,
        "sluice_md5=md5,sluice_scram=scram-sha-256,all=trust"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_client_sends_arbitrary_startup_parameters() {
    let pg = Postgres::start();
    let mut c = RawClient::connect(
        pg.port,
        &[
            ("user", MD5_USER),
            ("database", TEST_DB),
            ("TimeZone", "Asia/Tokyo"),
            ("DateStyle", "German, DMY"),
        ],
        Some(MD5_PASSWORD),
    )
    .await
    .expect("md5 login with the raw client");
    assert_eq!(
        c.parameters.get("TimeZone").map(String::as_str),
        Some("Asia/Tokyo")
    );
    assert!(c.backend_key.is_some());
    assert_eq!(
        c.query_value("SHOW TimeZone").await.unwrap().as_deref(),
        Some("Asia/Tokyo")
    );
    assert_eq!(
        c.query_value("SHOW DateStyle").await.unwrap().as_deref(),
        Some("German, DMY")
    );
    let rows = c
        .simple_query("SELECT 1, NULL; SELECT 2, 'x'")
        .await
        .unwrap();
    assert_eq!(
        rows,
        vec![
            vec![Some("1".to_string()), None],
            vec![Some("2".to_string()), Some("x".to_string())]
        ]
    );
    let err = c
        .simple_query("SELECT 1/0")
        .await
        .expect_err("division by zero");
    assert_eq!(err.code(), Some("22012"), "{err}");
    // The connection is still usable after an error.
    assert_eq!(
        c.query_value("SELECT 3").await.unwrap().as_deref(),
        Some("3")
    );
    // A SET is reported back as ParameterStatus.
    c.simple_query("SET TimeZone = 'UTC'").await.unwrap();
    assert_eq!(
        c.parameters.get("TimeZone").map(String::as_str),
        Some("UTC")
    );
    c.terminate().await;

    let wrong = RawClient::connect(
        pg.port,
        &[("user", MD5_USER), ("database", TEST_DB)],
        Some("wrong"),
    )
    .await
    .expect_err("wrong password must fail");
    assert_eq!(wrong.code(), Some("28P01"), "{wrong}");

    let scram = RawClient::connect(
        pg.port,
        &[("user", SCRAM_USER), ("database", TEST_DB)],
        Some(SCRAM_PASSWORD),
    )
    .await
    .expect_err("SCRAM is not spoken by the raw client");
    assert!(
        matches!(scram, RawError::Io(ref m) if m.contains("not supported")),
        "{scram}"
    );
}

#[test]
fn parallel_servers_are_independent() {
    let handles: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                let pg = Postgres::start();
                pg.sql(&format!("CREATE TABLE only_here_{i}(v int)"));
                let tables =
                    pg.sql("SELECT count(*) FROM pg_tables WHERE tablename LIKE 'only_here_%'");
                (pg.port, tables)
            })
        })
        .collect();
    let mut ports = HashSet::new();
    for h in handles {
        let (port, tables) = h.join().expect("a server thread panicked");
        assert_eq!(tables, "1", "each server sees only its own table");
        ports.insert(port);
    }
    assert_eq!(ports.len(), 3);
}

#[test]
fn drop_stops_the_server_and_removes_its_directory() {
    let pg = Postgres::start();
    let port = pg.port;
    let dir = pg.dir().to_path_buf();
    assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
    drop(pg);
    assert!(!dir.exists(), "{} still exists", dir.display());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "PostgreSQL still listening on {port}"
    );
}

#[test]
fn free_ports_are_distinct_and_bindable() {
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    let unique: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(unique.len(), ports.len());
    for port in ports.iter().take(20) {
        std::net::TcpListener::bind(("127.0.0.1", *port)).expect("port is free");
    }
}

#[test]
fn pooler_config_renders_ini_and_userlist() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("default_pool_size", "7")
        .set("server_lifetime", "2")
        .database("other", "host=127.0.0.1 port=1 dbname=x")
        .user("sluice_trust", "pool_mode=session")
        .user_secret("we\"ird", "se\"cret");
    let ini = cfg.render_ini();
    let lines: Vec<&str> = ini.lines().collect();
    assert_eq!(lines[0], "[pgbouncer]");
    assert!(lines.contains(&"default_pool_size = 7"), "{ini}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("default_pool_size"))
            .count(),
        1,
        "set replaces"
    );
    assert!(lines.contains(&"pool_mode = transaction"), "{ini}");
    assert!(lines.contains(&"auth_type = md5"), "{ini}");
    assert!(lines.contains(&"max_client_conn = 1000"), "{ini}");
    assert!(lines.contains(&"admin_users = postgres"), "{ini}");
    assert!(!ini.contains("logfile"), "{ini}");
    assert!(
        lines.contains(&format!("sluice = host=127.0.0.1 port={} dbname=sluice", pg.port).as_str()),
        "{ini}"
    );
    assert!(
        lines.contains(&format!("* = host=127.0.0.1 port={}", pg.port).as_str()),
        "{ini}"
    );
    assert!(lines.contains(&"[users]"), "{ini}");
    assert!(lines.contains(&"sluice_trust = pool_mode=session"), "{ini}");
    // ini_line_of names the real line.
    let n = cfg.ini_line_of("server_lifetime");
    assert_eq!(lines[n - 1], "server_lifetime = 2");
    assert_eq!(
        cfg.get("auth_file").unwrap(),
        cfg.dir().join("userlist.txt").to_str().unwrap()
    );
    assert_eq!(
        cfg.get("unix_socket_dir").unwrap(),
        cfg.dir().to_str().unwrap()
    );

    let userlist = cfg.render_userlist();
    assert!(
        userlist.contains("\"sluice_trust\" \"trustpass\"\n"),
        "{userlist}"
    );
    assert!(
        userlist.contains(&format!(
            "\"sluice_md5\" \"{}\"\n",
            pg.rolpassword(MD5_USER)
        )),
        "{userlist}"
    );
    assert!(
        userlist.contains(&format!(
            "\"sluice_scram\" \"{}\"\n",
            pg.rolpassword(SCRAM_USER)
        )),
        "{userlist}"
    );
    assert!(
        userlist.contains("\"we\"\"ird\" \"se\"\"cret\"\n"),
        "{userlist}"
    );
}

/// A pooler that cannot start makes `Pooler::start` panic with the reason and
/// its log, instead of hanging. A malformed value must stop pgsluice at start-up
/// (compat/settings.md), so this holds before and after the pooler core lands.
#[test]
fn pooler_start_reports_an_early_exit_with_the_log() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("max_client_conn", "abc");
    let started = std::time::Instant::now();
    let err = catch_unwind(AssertUnwindSafe(|| Pooler::start(&cfg))).err();
    let text = err.map(panic_text).unwrap_or_default();
    assert!(
        text.contains("pgsluice exited during start-up") && text.contains("pgsluice log"),
        "expected an early-exit panic with the log, got: {text:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // The config was written where the ini says, readable by the pooler's user.
    let ini = std::fs::read_to_string(cfg.dir().join("pgbouncer.ini")).unwrap();
    assert!(ini.contains("max_client_conn = abc"));
    let userlist = std::fs::read_to_string(cfg.auth_file()).unwrap();
    assert!(userlist.contains("sluice_trust"));
}
