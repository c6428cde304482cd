//! TLS between clients and pgsluice (`client_tls_*`) and between pgsluice and
//! PostgreSQL (`server_tls_*`), with psql (libpq and OpenSSL) and `openssl
//! s_client` as clients, PostgreSQL 15 with `ssl=on` as the server, and
//! certificates made by rcgen for each test.
//!
//! What PgBouncer 1.18 does, and these tests hold pgsluice to: with
//! `client_tls_sslmode = require` a TCP client without TLS gets FATAL 08P01
//! "SSL required", a Unix-socket client is let in without TLS, bytes sent
//! after an SSLRequest and before the handshake get "received unencrypted data
//! after SSL request", and the `tls` column reads like
//! `TLSv1.3/TLS_AES_256_GCM_SHA384`; with the default `server_tls_sslmode =
//! prefer` a server that offers TLS is used over TLS.

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
    let (_pg, pooler, pki) = tls_pooler("require", |_, _| {});
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
}

#[test]
fn bytes_after_an_ssl_request_are_refused_and_a_broken_handshake_harms_no_one() {
    let (_pg, pooler, _pki) = tls_pooler("require", |_, _| {});
    let ssl_request = support::wire::ssl_request();

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

/// `clients` pgbench clients, each running 100 three-statement transactions
/// through the pooler with TLS required by libpq; all must complete.
fn pgbench_transactions_over_tls(pooler: &Pooler, clients: u32) {
    let mut pgbench = libpq_command("pgbench");
    pgbench
        .args(["-n", "-h", "127.0.0.1", "-p", &pooler.port.to_string()])
        .args([
            "-U",
            MD5_USER,
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-t",
            "100",
        ])
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
    let processed = format!("processed: {0}/{0}", clients * 100);
    assert!(
        out.status.success() && report.contains(&processed),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// psql, with TLS required, COPYs 100,000 rows into a temporary table through
/// the pooler; all of them must arrive.
fn copy_100k_rows_over_tls(pooler: &Pooler) {
    let mut input = "CREATE TEMP TABLE t(a int, b text);\nCOPY t FROM STDIN;\n".to_string();
    for i in 0..100_000 {
        input.push_str(&format!("{i}\tvalue {i}\n"));
    }
    input.push_str("\\.\nSELECT count(*), sum(a) FROM t;\n");
    let mut cmd = pooler.psql_command(MD5_USER, TEST_DB, Some(MD5_PASSWORD));
    cmd.env("PGSSLMODE", "require");
    let out =
        support::run_bounded_with_input(&mut cmd, Some(input.as_bytes()), STEP, "COPY over TLS");
    assert_eq!(support::success_stdout(&out), "100000|4999950000");
}

#[test]
fn transactions_and_large_results_cross_tls_intact() {
    let (pg, pooler, _pki) = tls_pooler("require", |_, _| {});
    // Many clients on few servers, through TLS, in transaction pooling.
    pgbench_transactions_over_tls(&pooler, 20);

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

    copy_100k_rows_over_tls(&pooler);
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
        psql_with_certificate(&pooler, Some(MD5_PASSWORD), crt, key, "SELECT 'certified'")
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

/// psql over TLS as MD5_USER with the client certificate `crt` and its key,
/// and `password` if any (certificate authentication must not ask for one).
fn psql_with_certificate(
    pooler: &Pooler,
    password: Option<&str>,
    crt: &Path,
    key: &Path,
    sql: &str,
) -> Result<String, String> {
    pooler.psql_env(
        MD5_USER,
        TEST_DB,
        password,
        &[
            ("PGSSLMODE", "require"),
            ("PGSSLCERT", crt.to_str().unwrap()),
            ("PGSSLKEY", key.to_str().unwrap()),
        ],
        sql,
    )
}

/// auth_type = cert: a client whose verified certificate names the user as
/// its common name logs in without a password; a certificate for someone
/// else is refused with PgBouncer's words, and the log says why.
#[test]
fn cert_auth_takes_the_user_from_the_certificate() {
    let (_pg, pooler, pki) = tls_pooler("verify-full", |cfg, pki| {
        cfg.set(
            "client_tls_ca_file",
            &pki.path("test-ca.crt").to_string_lossy(),
        )
        .set("auth_type", "cert");
    });
    let (crt, key) = pki.issue_client("client", &[MD5_USER]);
    let (other_crt, other_key) = pki.issue_client("mallory", &["mallory"]);
    let login_with = |crt: &Path, key: &Path| {
        psql_with_certificate(&pooler, None, crt, key, "SELECT current_user")
    };
    assert_eq!(login_with(&crt, &key).as_deref(), Ok(MD5_USER));
    let mark = pooler.log_mark();
    let err = login_with(&other_crt, &other_key).expect_err("mallory's certificate");
    assert!(err.contains("certificate authentication failed"), "{err}");
    let log = pooler.log_since(mark);
    assert!(
        log.contains(&format!(
            "TLS certificate name mismatch: common name \"mallory\" is not user \"{MD5_USER}\""
        )),
        "{log}"
    );
}

/// `cert` lines of auth_hba_file under client_tls_sslmode = require, as
/// PgBouncer allows: with client_tls_ca_file set, clients are asked for a
/// certificate they may leave out. Over TLS the certificate decides, through
/// the line's auth_ident_file map; without one, or on the Unix socket, which
/// has no TLS, the line can only refuse. A certificate from another CA fails
/// the handshake.
#[test]
fn hba_cert_lines_map_certificates_to_users() {
    let (_pg, pooler, pki) = tls_pooler("require", |cfg, pki| {
        let (hba, ident) = (cfg.dir().join("hba.conf"), cfg.dir().join("ident.conf"));
        let write = |path: &Path, text: &str| {
            std::fs::write(path, text).unwrap();
            support::give_to_pg_user(path);
        };
        write(
            &hba,
            "local all all cert\nhostssl all all 127.0.0.1/32 cert map=certs\n",
        );
        write(&ident, &format!("certs app.example.org {MD5_USER}\n"));
        cfg.set(
            "client_tls_ca_file",
            &pki.path("test-ca.crt").to_string_lossy(),
        )
        .set("auth_type", "hba")
        .set("auth_hba_file", &hba.to_string_lossy())
        .set("auth_ident_file", &ident.to_string_lossy());
    });
    let (app_crt, app_key) = pki.issue_client("app", &["app.example.org"]);
    let over_tls = psql_with_certificate(&pooler, None, &app_crt, &app_key, "SELECT current_user");
    assert_eq!(over_tls.as_deref(), Ok(MD5_USER));

    let refused = |outcome: Result<String, String>, logged: &str| {
        let err = outcome.expect_err(logged);
        assert!(err.contains("certificate authentication failed"), "{err}");
        assert!(
            pooler.wait_for_log(logged, Duration::from_secs(10)),
            "{}",
            pooler.log()
        );
    };
    // Under a map, a certificate naming the user itself is not enough.
    let (crt, key) = pki.issue_client("client", &[MD5_USER]);
    refused(
        psql_with_certificate(&pooler, None, &crt, &key, "SELECT 1"),
        &format!("ident map \"certs\" does not let \"{MD5_USER}\" log in as \"{MD5_USER}\""),
    );
    let nowhere = Path::new("/nonexistent");
    refused(
        psql_with_certificate(&pooler, None, nowhere, nowhere, "SELECT 1"),
        "TLS client certificate required",
    );
    refused(
        pooler.psql_unix(MD5_USER, TEST_DB, "SELECT 1"),
        "TLS connection required",
    );

    let other = Pki::new(&pooler.dir, "other");
    let (other_crt, other_key) = other.issue_client("stranger", &["app.example.org"]);
    let stranger = psql_with_certificate(&pooler, None, &other_crt, &other_key, "SELECT 1");
    let err = stranger.expect_err("a certificate from another CA");
    assert!(!err.contains("certificate authentication failed"), "{err}");
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
    // The failed reload kept what SET made: prefer, with the old key.
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

/// An OpenSSL client's TLS handshake with the pooler (after PostgreSQL's
/// SSLRequest) offering only what `args` allow: what it negotiated, as
/// `s_client -brief` prints it, or why it failed.
fn openssl_handshake(pooler: &Pooler, args: &[&str]) -> Result<String, String> {
    let mut cmd = std::process::Command::new("openssl");
    let address = format!("127.0.0.1:{}", pooler.port);
    cmd.args(["s_client", "-brief", "-starttls", "postgres", "-connect"])
        .arg(&address)
        .args(args);
    let out = run_bounded(&mut cmd, STEP, "openssl s_client");
    // -brief prints what was negotiated on stderr.
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() && text.contains("CONNECTION ESTABLISHED") {
        Ok(text)
    } else {
        Err(text)
    }
}

/// client_tls_ciphers (TLS 1.2, OpenSSL's list syntax), client_tls13_ciphers
/// and client_tls_ecdhcurve narrow what clients are offered: a client that
/// wants only something left out fails the handshake, one that takes what is
/// left gets it, and SHOW CLIENTS names it. SET changes them for the next
/// handshake, and a value that leaves nothing is refused.
#[test]
fn cipher_and_curve_settings_narrow_what_clients_are_offered() {
    let (_pg, pooler, _pki) = tls_pooler("require", |cfg, _| {
        cfg.set("client_tls_ciphers", "HIGH:!aRSA:!AES256:!AES128")
            .set("client_tls13_ciphers", "TLS_AES_128_GCM_SHA256")
            .set("client_tls_ecdhcurve", "secp384r1");
    });
    // In TLS 1.2 the groups a client lists also bound the curve of an ECDSA
    // certificate, so each list keeps P-256 (the test certificate's) last.
    let tls12 = |cipher: &str, group: &str| {
        let groups = format!("{group}:P-256");
        openssl_handshake(&pooler, &["-tls1_2", "-cipher", cipher, "-groups", &groups])
    };
    let chacha = tls12("ECDHE-ECDSA-CHACHA20-POLY1305", "P-384").expect("the one suite left");
    assert!(
        chacha.contains("Ciphersuite: ECDHE-ECDSA-CHACHA20-POLY1305"),
        "{chacha}"
    );
    assert!(chacha.contains("secp384r1"), "{chacha}");
    tls12("ECDHE-ECDSA-AES256-GCM-SHA384", "P-384").expect_err("AES256 is left out");
    tls12("ECDHE-ECDSA-CHACHA20-POLY1305", "X25519").expect_err("only P-384 is allowed");
    let tls13 = |suite: &str| {
        openssl_handshake(
            &pooler,
            &["-tls1_3", "-ciphersuites", suite, "-groups", "P-384"],
        )
    };
    let aes128 = tls13("TLS_AES_128_GCM_SHA256").expect("the TLS 1.3 suite allowed");
    assert!(
        aes128.contains("Ciphersuite: TLS_AES_128_GCM_SHA256"),
        "{aes128}"
    );
    tls13("TLS_AES_256_GCM_SHA384").expect_err("TLS_AES_256_GCM_SHA384 is left out");

    // psql (libpq) gets the allowed suites, and SHOW CLIENTS names them.
    let console = |env: &[(&str, &str)], sql: &str| psql_tls(&pooler, "pgbouncer", env, sql);
    let tls12_env = [
        ("PGSSLMODE", "require"),
        ("PGSSLMAXPROTOCOLVERSION", "TLSv1.2"),
    ];
    let clients = console(&tls12_env, "SHOW CLIENTS").expect("SHOW CLIENTS over TLS 1.2");
    assert!(
        clients.contains("TLSv1.2/ECDHE-ECDSA-CHACHA20-POLY1305/ECDH=secp384r1"),
        "{clients}"
    );
    let require = [("PGSSLMODE", "require")];
    let conninfo = psql_tls(&pooler, TEST_DB, &require, "\\conninfo").expect("\\conninfo");
    assert!(
        conninfo.contains("TLSv1.3, cipher: TLS_AES_128_GCM_SHA256"),
        "{conninfo}"
    );

    // SET: the next handshake gets the new list; a list that selects nothing,
    // or ecdhcurve = none, is refused and changes nothing.
    console(
        &require,
        "SET client_tls_ciphers = 'ECDHE-ECDSA-AES256-GCM-SHA384'",
    )
    .expect("SET client_tls_ciphers");
    tls12("ECDHE-ECDSA-AES256-GCM-SHA384", "P-384").expect("AES256 after SET");
    tls12("ECDHE-ECDSA-CHACHA20-POLY1305", "P-384").expect_err("ChaCha20 after SET");
    let err = console(
        &require,
        "SET client_tls_ciphers = 'DHE-RSA-AES256-SHA:3DES'",
    )
    .expect_err("a list that selects nothing");
    assert!(
        err.contains("selects none of the TLS 1.2 cipher suites"),
        "{err}"
    );
    let err = console(&require, "SET client_tls_ecdhcurve = 'none'").expect_err("no ECDHE");
    assert!(err.contains("client_tls_ecdhcurve"), "{err}");
    tls12("ECDHE-ECDSA-AES256-GCM-SHA384", "P-384").expect("unchanged by refused SETs");
}

/// server_tls_ciphers and server_tls13_ciphers choose what pgsluice offers
/// PostgreSQL, and pg_stat_ssl shows PostgreSQL agreed to it.
#[test]
fn cipher_settings_choose_what_servers_are_offered() {
    let (pg, _pki, _dir) = tls_postgres(&["localhost", "127.0.0.1"]);
    let cipher = |settings: &[(&str, &str)]| {
        let mut all = vec![("server_tls_sslmode", "require")];
        all.extend_from_slice(settings);
        let pooler = pooler_with(&pg, &all);
        psql_tls(
            &pooler,
            TEST_DB,
            &[("PGSSLMODE", "disable")],
            "SELECT version || ' ' || cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
    };
    assert_eq!(
        cipher(&[
            ("server_tls_protocols", "tlsv1.2"),
            ("server_tls_ciphers", "ECDHE-ECDSA-CHACHA20-POLY1305"),
        ])
        .as_deref(),
        Ok("TLSv1.2 ECDHE-ECDSA-CHACHA20-POLY1305")
    );
    assert_eq!(
        cipher(&[("server_tls13_ciphers", "TLS_CHACHA20_POLY1305_SHA256")]).as_deref(),
        Ok("TLSv1.3 TLS_CHACHA20_POLY1305_SHA256")
    );
}

#[test]
fn tls_settings_that_cannot_work_stop_the_start() {
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
            "server_tls_sslmode = verify-full needs server_tls_ca_file",
        ),
        (
            "server_tls_ciphers",
            "DHE-RSA-AES256-SHA",
            "selects none of the TLS 1.2 cipher suites pgsluice offers",
        ),
        (
            "server_tls13_ciphers",
            "TLS_AES_512_GCM_SHA512",
            "unknown TLS 1.3 cipher suite 'TLS_AES_512_GCM_SHA512'",
        ),
    ] {
        let mut cfg = PoolerConfig::new(&pg);
        cfg.set(key, value);
        let ini = cfg.write();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pgsluice"));
        cmd.arg(&ini);
        support::as_pg_user(&mut cmd);
        let out = run_bounded(
            &mut cmd,
            STEP,
            "pgsluice with TLS settings that cannot work",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key} = {value}: {stderr}");
        assert!(stderr.contains(expected), "{key} = {value}: {stderr}");
    }
}

/// A PostgreSQL serving TLS with a certificate for `names` from its own CA,
/// and the CA (whose certificate is `server-ca.crt` in its directory).
fn tls_postgres(names: &[&str]) -> (Postgres, Pki, tempfile::TempDir) {
    let dir = support::temp_dir("pki");
    let pki = Pki::new(dir.path(), "server");
    let (crt, key) = pki.issue("postgres", names);
    (Postgres::start_with_tls(&crt, &key), pki, dir)
}

/// Whether the session a query runs on reached PostgreSQL over TLS, in
/// PostgreSQL's own words (pg_stat_ssl).
fn server_side_ssl(pooler: &Pooler) -> Result<String, String> {
    let sql =
        "SELECT ssl || ' ' || coalesce(version, '') FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    psql_tls(pooler, TEST_DB, &[("PGSSLMODE", "disable")], sql)
}

fn pooler_with(pg: &Postgres, settings: &[(&str, &str)]) -> Pooler {
    let mut cfg = PoolerConfig::new(pg);
    cfg.set("admin_users", MD5_USER);
    for (key, value) in settings {
        cfg.set(key, value);
    }
    Pooler::start(&cfg)
}

#[test]
fn servers_are_reached_over_tls_as_server_tls_sslmode_says() {
    let (pg, pki, _dir) = tls_postgres(&["localhost", "127.0.0.1"]);
    let ca = pki.path("server-ca.crt").to_string_lossy().into_owned();

    // PgBouncer's default, prefer: TLS, because the server offers it.
    let pooler = pooler_with(&pg, &[("verbose", "1")]);
    assert_eq!(server_side_ssl(&pooler).as_deref(), Ok("true TLSv1.3"));
    let servers = psql_tls(
        &pooler,
        "pgbouncer",
        &[("PGSSLMODE", "disable")],
        "SHOW SERVERS",
    )
    .expect("SHOW SERVERS");
    assert!(
        servers.contains("|TLSv1.3/TLS_AES_") && servers.contains("/ECDH=prime256v1|"),
        "SHOW SERVERS names the TLS session as PgBouncer does: {servers}"
    );
    assert!(pooler.log().contains("SSL established: TLSv1.3/"));

    // disable: no SSLRequest at all.
    let pooler = pooler_with(&pg, &[("server_tls_sslmode", "disable")]);
    assert_eq!(server_side_ssl(&pooler).as_deref(), Ok("false"));

    // verify-full: the chain leads to the CA and the name (127.0.0.1) is in
    // the certificate.
    let pooler = pooler_with(
        &pg,
        &[
            ("server_tls_sslmode", "verify-full"),
            ("server_tls_ca_file", &ca),
        ],
    );
    assert_eq!(server_side_ssl(&pooler).as_deref(), Ok("true TLSv1.3"));

    // ... and not with another CA.
    let other = Pki::new(&pooler.dir, "other");
    let pooler = pooler_with(
        &pg,
        &[
            ("server_tls_sslmode", "verify-ca"),
            (
                "server_tls_ca_file",
                &other.path("other-ca.crt").to_string_lossy(),
            ),
        ],
    );
    let err = server_side_ssl(&pooler).expect_err("a server certificate from an unknown CA");
    assert!(
        err.contains("TLS with 127.0.0.1: handshake failed") && err.contains("UnknownIssuer"),
        "{err}"
    );
}

#[test]
fn verify_ca_checks_the_chain_and_verify_full_also_the_name() {
    let (pg, pki, _dir) = tls_postgres(&["db.example"]);
    let ca = pki.path("server-ca.crt").to_string_lossy().into_owned();
    let verify = |mode: &str| {
        let pooler = pooler_with(
            &pg,
            &[("server_tls_sslmode", mode), ("server_tls_ca_file", &ca)],
        );
        server_side_ssl(&pooler)
    };
    assert_eq!(verify("verify-ca").as_deref(), Ok("true TLSv1.3"));
    let err = verify("verify-full").expect_err("127.0.0.1 is not db.example");
    assert!(err.contains("certificate not valid for name"), "{err}");
}

#[test]
fn require_refuses_a_server_without_tls() {
    let pg = Postgres::start();
    let pooler = pooler_with(&pg, &[("server_tls_sslmode", "require")]);
    let err = server_side_ssl(&pooler).expect_err("the server has no TLS");
    assert!(
        err.contains(
            "the server does not accept TLS, and server_tls_sslmode = require requires it"
        ),
        "{err}"
    );
    // prefer settles for plain TCP.
    let pooler = pooler_with(&pg, &[("server_tls_sslmode", "prefer")]);
    assert_eq!(server_side_ssl(&pooler).as_deref(), Ok("false"));
}

/// Both sides on TLS at once: pgbench's transactions, a large COPY up and a
/// large result down, and a cancel, which goes to the server in the clear as
/// libpq's does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_sides_carries_transactions_copy_and_cancel() {
    let (pg, pki, _dir) = tls_postgres(&["localhost", "127.0.0.1"]);
    let ca = pki.path("server-ca.crt").to_string_lossy().into_owned();
    let mut cfg = PoolerConfig::new(&pg);
    let client_pki = Pki::new(cfg.dir(), "clients");
    let (crt, key) = client_pki.issue("pooler", &["localhost", "127.0.0.1"]);
    cfg.set("client_tls_sslmode", "require")
        .set("client_tls_cert_file", &crt.to_string_lossy())
        .set("client_tls_key_file", &key.to_string_lossy())
        .set("server_tls_sslmode", "verify-full")
        .set("server_tls_ca_file", &ca)
        .set("default_pool_size", "3");
    let pooler = Pooler::start(&cfg);
    let require = [("PGSSLMODE", "require")];
    assert_eq!(
        psql_tls(
            &pooler,
            TEST_DB,
            &require,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
        )
        .as_deref(),
        Ok("t")
    );

    pgbench_transactions_over_tls(&pooler, 12);

    copy_100k_rows_over_tls(&pooler);

    let big = "SELECT count(*) FROM (SELECT g FROM generate_series(1, 100000) g) s";
    assert_eq!(
        psql_tls(&pooler, TEST_DB, &require, big).as_deref(),
        Ok("100000")
    );
    let rows = psql_tls(
        &pooler,
        TEST_DB,
        &require,
        "SELECT repeat('x', 100) FROM generate_series(1, 50000)",
    )
    .unwrap();
    assert_eq!(rows.lines().count(), 50_000);

    // A cancel from psql (on SIGINT) reaches the TLS server's query.
    let mut sleeper = pooler.psql_command(MD5_USER, TEST_DB, Some(MD5_PASSWORD));
    sleeper
        .env("PGSSLMODE", "require")
        .args(["-c", "SELECT pg_sleep(30)"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = sleeper.spawn().unwrap();
    let started = std::time::Instant::now();
    assert!(
        support::wait_until(STEP, || {
            pg.sql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%' AND state = 'active'") == "1"
        }),
        "the query runs"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = support::wait_output(child, STEP, "the cancelled psql");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("canceling statement due to user request"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(25));
}

#[test]
fn servers_that_ask_for_a_client_certificate_get_server_tls_cert_file() {
    let dir = support::temp_dir("pki");
    let pki = Pki::new(dir.path(), "server");
    let (crt, key) = pki.issue("postgres", &["localhost", "127.0.0.1"]);
    let (ours, our_key) = pki.issue("to-servers", &["pgsluice-pooler"]);
    // ssl_ca_file makes PostgreSQL ask clients for a certificate.
    let options = [
        format!("ssl_cert_file={}", crt.display()),
        format!("ssl_key_file={}", key.display()),
        format!("ssl_ca_file={}", pki.path("server-ca.crt").display()),
    ];
    let pg = Postgres::start_with(&[
        "-c",
        "ssl=on",
        "-c",
        &options[0],
        "-c",
        &options[1],
        "-c",
        &options[2],
    ]);
    let pooler = pooler_with(
        &pg,
        &[
            ("server_tls_sslmode", "require"),
            ("server_tls_cert_file", &ours.to_string_lossy()),
            ("server_tls_key_file", &our_key.to_string_lossy()),
        ],
    );
    let sql = "SELECT client_dn FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(
        psql_tls(&pooler, TEST_DB, &[("PGSSLMODE", "disable")], sql).as_deref(),
        Ok("/CN=pgsluice-pooler")
    );
}

/// The other direction of `a_slow_tls_client_gets_the_end_of_every_answer`:
/// a server that reads a COPY slower than the pooler writes keeps the
/// pooler's socket full, so the end of the COPY waits in rustls' buffer; it
/// must still be sent, or the server waits for it forever.
#[test]
fn a_slow_tls_server_gets_the_end_of_every_request() {
    let (pg, _pki, _dir) = tls_postgres(&["localhost", "127.0.0.1"]);
    let pooler = pooler_with(
        &pg,
        &[
            ("server_tls_sslmode", "require"),
            ("tcp_socket_buffer", "32768"),
        ],
    );
    let mut input = String::from(
        "BEGIN;\n\
         CREATE TEMP TABLE t(a int, b text);\n\
         CREATE FUNCTION pg_temp.slow() RETURNS trigger LANGUAGE plpgsql\n\
           AS $$ BEGIN PERFORM pg_sleep(0.01); RETURN NEW; END $$;\n\
         CREATE TRIGGER slow BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION pg_temp.slow();\n\
         COPY t FROM STDIN;\n",
    );
    let filler = "y".repeat(40_000);
    for i in 0..300 {
        input.push_str(&format!("{i}\t{filler}\n"));
    }
    input.push_str("\\.\nSELECT count(*) FROM t;\nCOMMIT;\n");
    let mut cmd = pooler.psql_command(MD5_USER, TEST_DB, Some(MD5_PASSWORD));
    cmd.env("PGSSLMODE", "disable");
    let out =
        support::run_bounded_with_input(&mut cmd, Some(input.as_bytes()), STEP, "a slow COPY");
    assert_eq!(support::success_stdout(&out), "300");
}

/// A version 1 certificate, signed the way PostgreSQL's documentation shows
/// (`openssl x509 -req` without extensions), as PEM files `v1.crt` and
/// `v1.key` in `dir` for the `postgres` OS user.
fn openssl_v1_certificate(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new("openssl");
        cmd.args(args).current_dir(dir);
        let out = run_bounded(&mut cmd, STEP, "openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=v1 CA",
            "-days",
            "2",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "v1.key",
            "-out",
            "v1.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    run(&[
        "x509",
        "-req",
        "-in",
        "v1.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "v1.crt",
        "-days",
        "2",
    ]);
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", "v1.crt"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("Version: 1 (0x0)"),
        "openssl made a version 1 certificate"
    );
    let (crt, key) = (dir.join("v1.crt"), dir.join("v1.key"));
    for file in [&crt, &key] {
        let text = std::fs::read_to_string(file).unwrap();
        support::write_pg_file(file, &text, 0o600);
    }
    (crt, key)
}

#[test]
fn version_1_certificates_are_served_and_accepted_unchecked() {
    let dir = support::temp_dir("pki");
    let (crt, key) = openssl_v1_certificate(dir.path());
    // PostgreSQL serves it; pgsluice's default prefer takes it, as PgBouncer does.
    let pg = Postgres::start_with_tls(&crt, &key);
    let crt_text = crt.to_string_lossy().into_owned();
    let key_text = key.to_string_lossy().into_owned();
    let pooler = pooler_with(
        &pg,
        &[
            // And pgsluice serves it to its own clients.
            ("client_tls_sslmode", "require"),
            ("client_tls_cert_file", &crt_text),
            ("client_tls_key_file", &key_text),
        ],
    );
    let sql = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
    assert_eq!(
        psql_tls(&pooler, TEST_DB, &[("PGSSLMODE", "require")], sql).as_deref(),
        Ok("t")
    );
    assert_on_tls(&psql_tls(
        &pooler,
        TEST_DB,
        &[("PGSSLMODE", "require")],
        "\\conninfo",
    ));
}
