//! Client authentication through pgsluice, and the pooler's own login to the
//! server on the client's behalf.
//!
//! The test server requires md5 from `sluice_md5` and SCRAM-SHA-256 from
//! `sluice_scram` over TCP, and trusts `sluice_trust`; see tests/support/postgres.rs.
//! SQLSTATEs follow PostgreSQL (28P01, 3D000, 53300) as docs/architecture.md asks;
//! PgBouncer itself sends 08P01 for these, with the same wording.

mod support;

use std::time::Duration;

use support::pooler::TRUST_PASSWORD;
use support::postgres::{MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, TEST_DB, TRUST_USER};
use support::{db_message, wait_until, Pooler, PoolerConfig, Postgres, RawClient, RawError};
use tokio_postgres::error::SqlState;

const LOGIN: Duration = Duration::from_secs(30);

/// A server and a pooler with `auth_type`, after `tweak`.
fn setup(auth_type: &str, tweak: impl FnOnce(&mut PoolerConfig)) -> (Postgres, Pooler) {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("auth_type", auth_type);
    tweak(&mut cfg);
    let pooler = Pooler::start(&cfg);
    (pg, pooler)
}

/// The authentication method the pooler asks a client for: the raw client
/// speaks only trust/cleartext/md5 and names any other request's code
/// (10 = SASL, i.e. SCRAM-SHA-256).
async fn raw_login(pooler: &Pooler, user: &str, password: &str) -> Result<(), RawError> {
    let c = pooler
        .within(
            LOGIN,
            "raw client login",
            RawClient::connect(
                pooler.port,
                &[("user", user), ("database", TEST_DB)],
                Some(password),
            ),
        )
        .await?;
    c.terminate().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_lets_clients_in_and_the_pooler_logs_in_with_the_userlist() {
    // With client trust the client sends no password, so the pooler can answer a
    // SCRAM server only with a plaintext password from the userlist.
    let (_pg, pooler) = setup("trust", |cfg| {
        cfg.user_secret(SCRAM_USER, SCRAM_PASSWORD);
    });
    pooler.assert_logs_in(TRUST_USER, None).await;
    // The server requires md5: the pooler answers with the md5 secret of the userlist.
    pooler.assert_logs_in(MD5_USER, None).await;
    // The server requires SCRAM: the pooler answers from the plaintext password.
    pooler.assert_logs_in(SCRAM_USER, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_auth_uses_plain_md5_and_scram_secrets() {
    let (_pg, pooler) = setup("md5", |_| {});
    // Plaintext secret, server trusts the role.
    pooler
        .assert_logs_in(TRUST_USER, Some(TRUST_PASSWORD))
        .await;
    // md5 secret from pg_authid; the server requires md5 too.
    pooler.assert_logs_in(MD5_USER, Some(MD5_PASSWORD)).await;
    raw_login(&pooler, MD5_USER, MD5_PASSWORD)
        .await
        .expect("auth_type md5 with an md5 secret asks for md5");
    // SCRAM verifier from pg_authid: with auth_type md5 the client is asked for
    // SCRAM, and the pooler logs in to the SCRAM server with the keys the client proved.
    pooler
        .assert_logs_in(SCRAM_USER, Some(SCRAM_PASSWORD))
        .await;
    let asked = raw_login(&pooler, SCRAM_USER, SCRAM_PASSWORD)
        .await
        .expect_err("a SCRAM secret must make the pooler ask for SCRAM, not md5");
    assert!(
        matches!(asked, RawError::Io(ref m) if m.contains("method 10")),
        "expected an AuthenticationSASL request, got: {asked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_auth_with_verifier_and_plaintext_secrets() {
    let (_pg, pooler) = setup("scram-sha-256", |cfg| {
        // An md5 secret cannot answer SCRAM; plaintext can, and lets the pooler
        // answer the md5 server.
        cfg.user_secret(MD5_USER, MD5_PASSWORD);
    });
    pooler
        .assert_logs_in(TRUST_USER, Some(TRUST_PASSWORD))
        .await;
    pooler.assert_logs_in(MD5_USER, Some(MD5_PASSWORD)).await;
    // SCRAM pass-through: the userlist holds the server's own verifier.
    pooler
        .assert_logs_in(SCRAM_USER, Some(SCRAM_PASSWORD))
        .await;
    let asked = raw_login(&pooler, MD5_USER, MD5_PASSWORD)
        .await
        .expect_err("auth_type scram-sha-256 must not offer md5");
    assert!(
        matches!(asked, RawError::Io(ref m) if m.contains("method 10")),
        "expected an AuthenticationSASL request, got: {asked}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_refused_with_28p01() {
    let (_pg, pooler) = setup("md5", |_| {});
    for (user, right) in [
        (MD5_USER, MD5_PASSWORD),
        (SCRAM_USER, SCRAM_PASSWORD),
        (TRUST_USER, TRUST_PASSWORD),
        // Not in the userlist at all: refused the same way, not revealed.
        ("nobody_here", "whatever"),
    ] {
        let err = pooler
            .within(
                LOGIN,
                "login",
                pooler.connect(user, TEST_DB, Some("wrong-password")),
            )
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logged in with a wrong password"));
        assert_eq!(
            err.as_db_error().map(|d| d.code()),
            Some(&SqlState::INVALID_PASSWORD),
            "{user}: {err:?}"
        );
        let psql = pooler.psql(user, TEST_DB, Some("wrong-password"), "SELECT 1");
        let stderr = psql.expect_err("psql with a wrong password must fail");
        assert!(
            stderr.contains("authentication failed"),
            "{user}: psql said {stderr}"
        );
        if user != "nobody_here" {
            assert_eq!(
                pooler
                    .psql(user, TEST_DB, Some(right), "SELECT 1")
                    .as_deref(),
                Ok("1"),
                "{user} with the right password after failures"
            );
        }
    }
    assert!(
        wait_until(Duration::from_secs(5), || pooler
            .log()
            .to_lowercase()
            .contains("password authentication failed")),
        "the pooler log does not mention the failed password:\n{}",
        pooler.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_database_gives_3d000() {
    // Without a `*` entry the pooler itself refuses the name.
    let (_pg, pooler) = setup("md5", |cfg| {
        cfg.remove_database("*");
    });
    let err = pooler
        .within(
            LOGIN,
            "login",
            pooler.connect(TRUST_USER, "no_such_db", Some(TRUST_PASSWORD)),
        )
        .await
        .expect_err("an unknown database must be refused");
    assert_eq!(
        err.as_db_error().map(|d| d.code()),
        Some(&SqlState::INVALID_CATALOG_NAME),
        "{err:?}"
    );
    assert!(db_message(&err).contains("no_such_db"), "{err:?}");
    // The configured database still works.
    assert_eq!(
        pooler
            .psql(
                TRUST_USER,
                TEST_DB,
                Some(TRUST_PASSWORD),
                "SELECT current_database()"
            )
            .as_deref(),
        Ok(TEST_DB)
    );
    drop(pooler);

    // With the `*` fallback the name goes to the server, which refuses it; the
    // pooler passes the server's error on.
    let (_pg, pooler) = setup("md5", |_| {});
    let err = pooler
        .within(
            LOGIN,
            "login",
            pooler.connect(TRUST_USER, "no_such_db", Some(TRUST_PASSWORD)),
        )
        .await
        .expect_err("a database the server does not have must be refused");
    assert_eq!(
        err.as_db_error().map(|d| d.code()),
        Some(&SqlState::INVALID_CATALOG_NAME),
        "{err:?}"
    );
    assert!(db_message(&err).contains("no_such_db"), "{err:?}");
    // `*` also serves databases the server has: `postgres` here.
    assert_eq!(
        pooler
            .psql(
                TRUST_USER,
                "postgres",
                Some(TRUST_PASSWORD),
                "SELECT current_database()"
            )
            .as_deref(),
        Ok("postgres")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_client_conn_refuses_the_third_client_with_53300() {
    let (_pg, pooler) = setup("md5", |cfg| {
        cfg.set("max_client_conn", "2");
    });
    let connect = || pooler.connect(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD));
    let first = pooler
        .within(LOGIN, "first login", connect())
        .await
        .expect("first client");
    let second = pooler
        .within(LOGIN, "second login", connect())
        .await
        .expect("second client");
    first
        .simple_query("SELECT 1")
        .await
        .expect("first client works");
    second
        .simple_query("SELECT 1")
        .await
        .expect("second client works");

    let err = pooler
        .within(LOGIN, "third login", connect())
        .await
        .expect_err("a third client must be refused with max_client_conn = 2");
    assert_eq!(
        err.as_db_error().map(|d| d.code()),
        Some(&SqlState::TOO_MANY_CONNECTIONS),
        "{err:?}"
    );
    // PgBouncer's wording, which operators grep for.
    assert!(
        db_message(&err).contains("no more connections allowed"),
        "{err:?}"
    );
    // The connected clients are untouched.
    second
        .simple_query("SELECT 2")
        .await
        .expect("second client still works");

    // A slot freed is a slot to take again.
    drop(first);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let again = loop {
        match pooler
            .within(LOGIN, "login after a slot was freed", connect())
            .await
        {
            Ok(c) => break c,
            Err(e) if std::time::Instant::now() < deadline => {
                assert_eq!(
                    e.as_db_error().map(|d| d.code()),
                    Some(&SqlState::TOO_MANY_CONNECTIONS),
                    "{e:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no slot within 10 s after a client left: {e:?}"),
        }
    };
    again
        .simple_query("SELECT 3")
        .await
        .expect("new client works");
}

/// The iteration count the pooler asks a SCRAM client for, with a plaintext
/// secret in the auth file: the server-first-message's `i=`, read by a raw
/// exchange up to that message.
async fn scram_iterations_offered(pooler: &Pooler, user: &str) -> String {
    use support::wire::{message, startup_packet, PROTOCOL_3_0};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", pooler.port))
        .await
        .unwrap();
    let startup = startup_packet(PROTOCOL_3_0, &[("user", user), ("database", TEST_DB)]);
    s.write_all(&startup).await.unwrap();
    async fn read_auth(s: &mut tokio::net::TcpStream) -> (i32, Vec<u8>) {
        let tag = s.read_u8().await.unwrap();
        let len = s.read_i32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        s.read_exact(&mut body).await.unwrap();
        assert_eq!(tag, b'R', "{}", String::from_utf8_lossy(&body));
        let code = i32::from_be_bytes(body[..4].try_into().unwrap());
        (code, body[4..].to_vec())
    }
    assert_eq!(read_auth(&mut s).await.0, 10, "AuthenticationSASL");
    let first = b"n,,n=,r=fyko+d2lbbFgONRv9qkxdawL";
    let mut body = b"SCRAM-SHA-256\0".to_vec();
    body.extend_from_slice(&(first.len() as i32).to_be_bytes());
    body.extend_from_slice(first);
    s.write_all(&message(b'p', &body)).await.unwrap();
    let (code, data) = read_auth(&mut s).await;
    assert_eq!(code, 11, "AuthenticationSASLContinue");
    let server_first = String::from_utf8(data).unwrap();
    server_first
        .split(',')
        .find_map(|f| f.strip_prefix("i="))
        .unwrap_or_else(|| panic!("no i= in {server_first}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_iterations_sets_the_count_for_plaintext_secrets() {
    let (_pg, default) = setup("scram-sha-256", |_| {});
    assert_eq!(scram_iterations_offered(&default, TRUST_USER).await, "4096");
    let (_pg, pooler) = setup("scram-sha-256", |cfg| {
        cfg.set("scram_iterations", "5000");
    });
    assert_eq!(scram_iterations_offered(&pooler, TRUST_USER).await, "5000");
    // A verifier keeps its own count (the server's, 4096).
    assert_eq!(scram_iterations_offered(&pooler, SCRAM_USER).await, "4096");
    // And logins still work.
    pooler
        .assert_logs_in(TRUST_USER, Some(TRUST_PASSWORD))
        .await;
}

/// Write a file the pooler reads (it runs as the PostgreSQL OS user).
fn write_pooler_file(path: &std::path::Path, text: &str) {
    std::fs::write(path, text).unwrap();
    support::give_to_pg_user(path);
}

/// SIGHUP, then wait for `expect` in what the pooler logs after it.
fn reload_expecting(pooler: &Pooler, expect: &str) {
    let mark = pooler.log_mark();
    pooler.reload();
    assert!(
        pooler.wait_for_log_since(mark, expect, Duration::from_secs(10)),
        "no {expect:?} after SIGHUP:\n{}",
        pooler.log_since(mark)
    );
}

/// auth_type = hba reads auth_hba_file at start and at every reload; a file
/// that does not parse is reported with its line and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_rules_follow_reloads_and_a_broken_file_changes_nothing() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    let hba = cfg.dir().join("hba.conf");
    let write_hba = |text: &str| write_pooler_file(&hba, text);
    write_hba("host all all 127.0.0.1/32 reject\n");
    cfg.set("auth_type", "hba")
        .set("auth_hba_file", &hba.to_string_lossy());
    let pooler = Pooler::start(&cfg);
    let reload = |expect: &str| reload_expecting(&pooler, expect);

    let Err(err) = pooler
        .connect(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD))
        .await
    else {
        panic!("the reject line let the client in");
    };
    assert_eq!(
        (err.as_db_error().map(|d| d.code().code()), db_message(&err)),
        (Some("28000"), "login rejected".to_owned())
    );

    write_hba("# now md5\nhost all all 127.0.0.1/32 md5\n");
    reload("config reloaded");
    pooler
        .assert_logs_in(TRUST_USER, Some(TRUST_PASSWORD))
        .await;

    write_hba("host all all 127.0.0.1/32 md5\nhost all all 10.0.0.0/99 md5\n");
    reload("hba.conf:2: invalid address \"10.0.0.0/99\"");
    // The rules in force are still the last good ones.
    pooler
        .assert_logs_in(TRUST_USER, Some(TRUST_PASSWORD))
        .await;
}

/// `peer` lines of auth_hba_file: the OS user on the other end of the Unix
/// socket logs in as the user its auth_ident_file map lists for it (`map=`),
/// or without a map only as itself; anything else gets PgBouncer's "unix
/// socket login rejected", and the log says why. A map file that does not
/// parse is reported with its line and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hba_peer_lines_follow_the_ident_map() {
    let os_user = nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .expect("the test's OS user has a name")
        .name;
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    let (hba, ident) = (cfg.dir().join("hba.conf"), cfg.dir().join("ident.conf"));
    let write = write_pooler_file;
    write(&hba, "local all all peer map=ops\n");
    write(
        &ident,
        &format!("# MAP SYSTEM-USER DATABASE-USER\nops {os_user} {MD5_USER}\n"),
    );
    cfg.set("auth_type", "hba")
        .set("auth_hba_file", &hba.to_string_lossy())
        .set("auth_ident_file", &ident.to_string_lossy());
    let pooler = Pooler::start(&cfg);
    let reload = |expect: &str| reload_expecting(&pooler, expect);
    let refused = |user: &str, logged: &str| {
        let mark = pooler.log_mark();
        let err = pooler
            .psql_unix(user, TEST_DB, "SELECT 1")
            .expect_err("the peer may not log in as this user");
        assert!(err.contains("unix socket login rejected"), "{err}");
        let log = pooler.log_since(mark);
        assert!(log.contains(logged), "{log}");
    };

    // No password is asked for: psql runs with -w and none is given.
    let mapped = pooler.psql_unix(MD5_USER, TEST_DB, "SELECT current_user");
    assert_eq!(mapped.as_deref(), Ok(MD5_USER));
    refused(
        TRUST_USER,
        &format!("ident map \"ops\" does not let \"{os_user}\" log in as \"{TRUST_USER}\""),
    );

    write(&ident, "ops /^(.*)$ \\1\n");
    reload("ident.conf:1: regular expressions (\"/^(.*)$\") are not supported");
    // The map in force is still the last good one.
    let still = pooler.psql_unix(MD5_USER, TEST_DB, "SELECT current_user");
    assert_eq!(still.as_deref(), Ok(MD5_USER));

    write(&hba, "local all all peer\n");
    write(&ident, "");
    reload("config reloaded");
    refused(
        MD5_USER,
        &format!("\"{os_user}\" is not user \"{MD5_USER}\""),
    );
}
