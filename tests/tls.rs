//! TLS between clients and pgsluice (`client_tls_*`), with psql (libpq and
//! OpenSSL) as the client and certificates made by rcgen for each test.
//!
//! What PgBouncer 1.18 does, and these tests hold pgsluice to: with
//! `client_tls_sslmode = require` a TCP client without TLS gets FATAL 08P01
//! "SSL required", a Unix-socket client is let in without TLS, bytes sent
//! after an SSLRequest and before the handshake get "received unencrypted data
//! after SSL request", and SHOW CLIENTS' `tls` column reads like
//! `TLSv1.3/TLS_AES_256_GCM_SHA384`.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use md5::{Digest, Md5};
use support::pki::Pki;
use support::postgres::{MD5_PASSWORD, MD5_USER, TEST_DB};
use support::{libpq_command, run_bounded, within, Pooler, PoolerConfig, Postgres, RawClient};

const STEP: Duration = Duration::from_secs(60);

/// A pooler offering TLS with a server certificate for 127.0.0.1 from a test CA.
fn tls_pooler(mode: &str, tweak: impl FnOnce(&mut PoolerConfig, &Pki)) -> (Postgres, Pooler, Pki) {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    let pki = Pki::new(cfg.dir(), "test");
    let (crt, key) = pki.issue("server", &["localhost", "127.0.0.1"]);
    cfg.set("client_tls_sslmode", mode)
        .set("client_tls_cert_file", &crt.to_string_lossy())
        .set("client_tls_key_file", &key.to_string_lossy())
        .set("log_connections", "1")
        .set("admin_users", MD5_USER);
    tweak(&mut cfg, &pki);
    let pooler = Pooler::start(&cfg);
    (pg, pooler, pki)
}

/// psql through the pooler over TCP with libpq's TLS settings in `env`.
fn psql_tls(pooler: &Pooler, db: &str, env: &[(&str, &str)], sql: &str) -> Result<String, String> {
    pooler.psql_env(MD5_USER, db, Some(MD5_PASSWORD), env, sql)
}

/// What libpq says of the connection (`\conninfo`) names TLS and its protocol.
fn assert_on_tls(conninfo: &Result<String, String>) {
    let text = conninfo.as_ref().expect("psql \\conninfo");
    assert!(
        text.contains("SSL connection (protocol: TLSv1."),
        "libpq reports a TLS connection: {text}"
    );
}

#[test]
fn required_tls_serves_tls_clients_and_refuses_plain_tcp() {
    let (pg, pooler, pki) = tls_pooler("require", |_, _| {});
    let ca = pki.path("test-ca.crt");
    let verify_full = [
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", ca.to_str().unwrap()),
    ];

    // libpq checks the chain and the name (127.0.0.1) and gets its answer.
    assert_on_tls(&psql_tls(&pooler, TEST_DB, &verify_full, "\\conninfo"));
    assert_eq!(
        psql_tls(&pooler, TEST_DB, &verify_full, "SELECT 6 * 7").as_deref(),
        Ok("42")
    );

    // Plain TCP is refused the way PgBouncer refuses it.
    let plain = psql_tls(&pooler, TEST_DB, &[("PGSSLMODE", "disable")], "SELECT 1");
    let err = plain.expect_err("a plain TCP client is refused");
    assert!(err.contains("FATAL:  SSL required"), "{err}");
    assert!(
        pooler.wait_for_log("pooler error: SSL required", STEP),
        "the refusal is logged"
    );

    // The Unix socket needs no TLS.
    let mut unix = libpq_command("psql");
    unix.args(["-XAtq", "-w", "-c", "SELECT 'over unix'"])
        .args(["-h", &pooler.dir.to_string_lossy()])
        .args([
            "-p",
            &pooler.port.to_string(),
            "-U",
            MD5_USER,
            "-d",
            TEST_DB,
        ])
        .env("PGPASSWORD", MD5_PASSWORD);
    let out = run_bounded(&mut unix, STEP, "psql over the Unix socket");
    assert_eq!(support::success_stdout(&out), "over unix");

    // SHOW CLIENTS tells TLS sessions by protocol and cipher, as PgBouncer does.
    let tls_column = psql_tls(&pooler, "pgbouncer", &verify_full, "SHOW CLIENTS")
        .expect("SHOW CLIENTS over TLS");
    assert!(
        tls_column.contains("|TLSv1.3/TLS_AES_"),
        "the console's own TLS session shows in the tls column: {tls_column}"
    );
    let log = pooler.log();
    assert!(
        log.contains("user=sluice_md5 tls=TLSv1.3/TLS_"),
        "the login line names the TLS session:\n{log}"
    );

    // TLS 1.2 is named with OpenSSL's cipher and curve names.
    let tls12 = psql_tls(
        &pooler,
        "pgbouncer",
        &[
            ("PGSSLMODE", "require"),
            ("PGSSLMAXPROTOCOLVERSION", "TLSv1.2"),
        ],
        "SHOW CLIENTS",
    )
    .expect("SHOW CLIENTS over TLS 1.2");
    assert!(
        tls12.contains("|TLSv1.2/ECDHE-") && tls12.contains("/ECDH="),
        "{tls12}"
    );
    drop(pg);
}

#[test]
fn bytes_after_an_ssl_request_are_refused_and_a_broken_handshake_harms_no_one() {
    let (_pg, pooler, _pki) = tls_pooler("require", |_, _| {});
    let ssl_request = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

    // An SSLRequest with more bytes behind it, before any handshake.
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", pooler.port)).unwrap();
    sock.set_read_timeout(Some(STEP)).unwrap();
    let mut injected = ssl_request.to_vec();
    injected.extend_from_slice(b"Q\0\0\0\x0dSELECT 1\0");
    sock.write_all(&injected).unwrap();
    let mut answer = Vec::new();
    sock.read_to_end(&mut answer).unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.contains("C08P01") && text.contains("received unencrypted data after SSL request"),
        "{text:?}"
    );

    // An SSLRequest answered 'S', then garbage instead of a ClientHello.
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", pooler.port)).unwrap();
    sock.set_read_timeout(Some(STEP)).unwrap();
    sock.write_all(&ssl_request).unwrap();
    let mut s = [0u8; 1];
    sock.read_exact(&mut s).unwrap();
    assert_eq!(&s, b"S");
    sock.write_all(b"this is not TLS at all\r\n\r\n").unwrap();
    let _ = sock.read_to_end(&mut Vec::new());
    assert!(
        pooler.wait_for_log("TLS handshake error", STEP),
        "the failed handshake is logged:\n{}",
        pooler.log()
    );

    // The pooler carries on.
    assert_eq!(
        psql_tls(&pooler, TEST_DB, &[("PGSSLMODE", "require")], "SELECT 1").as_deref(),
        Ok("1")
    );
}

#[test]
fn transactions_and_large_results_cross_tls_intact() {
    let (pg, pooler, _pki) = tls_pooler("require", |_, _| {});
    // Many clients on few servers, through TLS, in transaction pooling.
    let mut pgbench = libpq_command("pgbench");
    pgbench
        .args(["-n", "-h", "127.0.0.1", "-p", &pooler.port.to_string()])
        .args(["-U", MD5_USER, "-c", "20", "-j", "2", "-t", "100"])
        .args(["-f", "-", TEST_DB])
        .env("PGPASSWORD", MD5_PASSWORD)
        .env("PGSSLMODE", "require");
    let out = support::run_bounded_with_input(
        &mut pgbench,
        Some(b"BEGIN;\nSELECT g FROM generate_series(1, 50) g;\nCOMMIT;\n"),
        STEP,
        "pgbench over TLS",
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && report.contains("processed: 2000/2000"),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A result far larger than the socket and TLS buffers arrives whole, and a
    // COPY of 100,000 rows goes up whole.
    let sql =
        "SELECT md5(string_agg(g::text || repeat('x', 40), ',')) FROM generate_series(1, 100000) g";
    let direct = pg.sql_db(TEST_DB, sql);
    let big = "SELECT g::text || repeat('x', 40) FROM generate_series(1, 100000) g";
    let through = psql_tls(&pooler, TEST_DB, &[("PGSSLMODE", "require")], big).unwrap();
    let digest = format!(
        "{:x}",
        Md5::digest(through.lines().collect::<Vec<_>>().join(","))
    );
    assert_eq!(digest, direct, "the large result arrives unchanged");

    let copy = "CREATE TEMP TABLE t(a int, b text);\n\
                COPY t FROM STDIN;\n";
    let mut input = copy.to_string();
    for i in 0..100_000 {
        input.push_str(&format!("{i}\tvalue {i}\n"));
    }
    input.push_str("\\.\nSELECT count(*), sum(a) FROM t;\n");
    let mut cmd = pooler.psql_command(MD5_USER, TEST_DB, Some(MD5_PASSWORD));
    cmd.env("PGSSLMODE", "require");
    cmd.args(["-v", "ON_ERROR_STOP=1"]);
    let out =
        support::run_bounded_with_input(&mut cmd, Some(input.as_bytes()), STEP, "COPY over TLS");
    assert_eq!(support::success_stdout(&out), "100000|4999950000");
}

/// A client that reads slower than the pooler writes keeps the pooler's
/// socket full, so the end of each answer waits in rustls' buffer;
/// it must still be sent before the server goes back to the pool and the
/// client is left idle (without the flush, the answer never completes).
#[tokio::test]
async fn a_slow_tls_client_gets_the_end_of_every_answer() {
    // Small socket buffers, so that the pooler's socket is full whenever the
    // client pauses.
    let (_pg, pooler, pki) = tls_pooler("require", |cfg, _| {
        cfg.set("tcp_socket_buffer", "32768");
    });
    let ca = pki.path("test-ca.crt");
    let login = RawClient::connect_tls(
        pooler.port,
        &[("user", MD5_USER), ("database", TEST_DB)],
        Some(MD5_PASSWORD),
        &ca,
        4096,
    );
    let mut client = within(STEP, "TLS login", login).await.expect("TLS login");
    for round in 0..3 {
        let sql = "SELECT repeat('x', 1000) FROM generate_series(1, 1000)";
        let paced = client.simple_query_paced(sql, Duration::from_millis(5));
        let rows = within(STEP, "a paced read of 1 MB", paced)
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(rows.len(), 1000, "round {round}");
    }
    let last = within(STEP, "a query after", client.query_value("SELECT 'next'")).await;
    assert_eq!(last.unwrap().as_deref(), Some("next"));
}

#[test]
fn verify_ca_wants_a_client_certificate_from_the_ca() {
    let (_pg, pooler, pki) = tls_pooler("verify-ca", |cfg, pki| {
        cfg.set(
            "client_tls_ca_file",
            &pki.path("test-ca.crt").to_string_lossy(),
        );
    });
    let (crt, key) = pki.issue_client("client", &[MD5_USER]);
    let other = Pki::new(&pooler.dir, "other");
    let (other_crt, other_key) = other.issue_client("stranger", &[MD5_USER]);
    let with_cert = |crt: &Path, key: &Path| {
        psql_tls(
            &pooler,
            TEST_DB,
            &[
                ("PGSSLMODE", "require"),
                ("PGSSLCERT", crt.to_str().unwrap()),
                ("PGSSLKEY", key.to_str().unwrap()),
            ],
            "SELECT 'certified'",
        )
    };
    assert_eq!(with_cert(&crt, &key).as_deref(), Ok("certified"));
    let stranger = with_cert(&other_crt, &other_key);
    assert!(
        stranger.is_err(),
        "a certificate from another CA: {stranger:?}"
    );
    let none = psql_tls(
        &pooler,
        TEST_DB,
        &[
            ("PGSSLMODE", "require"),
            ("PGSSLCERT", "/nonexistent"),
            ("PGSSLKEY", "/nonexistent"),
        ],
        "SELECT 1",
    );
    let err = none.expect_err("no client certificate");
    assert!(err.contains("certificate required"), "{err}");
}

#[test]
fn tls_settings_change_by_set_and_reload_and_bad_ones_change_nothing() {
    let (_pg, pooler, pki) = tls_pooler("require", |_, _| {});
    let require = [("PGSSLMODE", "require")];
    let plain = [("PGSSLMODE", "disable")];
    let console = |sql: &str| psql_tls(&pooler, "pgbouncer", &require, sql);
    assert!(psql_tls(&pooler, TEST_DB, &plain, "SELECT 1").is_err());

    // SET: prefer lets plain TCP in, and TLS is still offered.
    console("SET client_tls_sslmode = 'prefer'").expect("SET sslmode");
    assert_eq!(
        psql_tls(&pooler, TEST_DB, &plain, "SELECT 1").as_deref(),
        Ok("1")
    );
    assert_on_tls(&psql_tls(&pooler, TEST_DB, &require, "\\conninfo"));

    // A key file that is not there is refused, and TLS goes on as before.
    let err = console("SET client_tls_key_file = '/nonexistent/server.key'")
        .expect_err("SET to a missing key file");
    assert!(err.contains("/nonexistent/server.key"), "{err}");
    assert_on_tls(&psql_tls(&pooler, TEST_DB, &require, "\\conninfo"));

    // A reload whose key does not belong to the certificate fails whole.
    let (_, wrong_key) = pki.issue("unrelated", &["unrelated"]);
    let text = std::fs::read_to_string(&pooler.ini_path).unwrap();
    let key_line = text
        .lines()
        .find(|l| l.starts_with("client_tls_key_file"))
        .unwrap()
        .to_string();
    let broken = text.replace(
        &key_line,
        &format!("client_tls_key_file = {}", wrong_key.display()),
    );
    pooler.rewrite_ini_text(&broken);
    let mark = pooler.log_mark();
    pooler.reload();
    assert!(
        pooler.wait_for_log_since(mark, "does not belong to the certificate", STEP),
        "{}",
        pooler.log_since(mark)
    );
    // Still require from before the reload? No: SET made it prefer, and the
    // failed reload kept that.
    assert_eq!(
        psql_tls(&pooler, TEST_DB, &plain, "SELECT 1").as_deref(),
        Ok("1")
    );
    assert_on_tls(&psql_tls(&pooler, TEST_DB, &require, "\\conninfo"));

    // A good reload brings the file's require back.
    pooler.rewrite_ini_text(&text);
    let mark = pooler.log_mark();
    pooler.reload();
    assert!(pooler.wait_for_log_since(mark, "config reloaded", STEP));
    assert!(psql_tls(&pooler, TEST_DB, &plain, "SELECT 1").is_err());
}

#[test]
fn tls_settings_pgsluice_cannot_honour_stop_the_start() {
    let pg = Postgres::start();
    for (key, value, expected) in [
        (
            "client_tls_sslmode",
            "require",
            "client_tls_key_file and client_tls_cert_file must be set",
        ),
        (
            "server_tls_sslmode",
            "verify-full",
            "pgsluice does not use TLS to servers yet",
        ),
    ] {
        let mut cfg = PoolerConfig::new(&pg);
        cfg.set(key, value);
        let ini = cfg.write();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"));
        cmd.arg(&ini);
        support::as_pg_user(&mut cmd);
        let out = run_bounded(&mut cmd, STEP, "pgsluice with TLS it cannot give");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key} = {value}: {stderr}");
        assert!(stderr.contains(expected), "{key} = {value}: {stderr}");
    }
}
