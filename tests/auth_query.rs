//! auth_user and auth_query: users missing from auth_file are looked up in
//! PostgreSQL, and log in (and are logged in to the server) with the secret
//! found there, as with PgBouncer.
//!
//! The test server requires md5 from `sluice_md5` and SCRAM-SHA-256 from
//! `sluice_scram` over TCP and trusts everyone else, `postgres` included, so
//! `postgres` serves as auth_user with the default auth_query (pg_authid). Both
//! roles are taken out of the auth file: only the lookup can let them in.

mod support;

use std::time::Duration;

use support::pooler::TRUST_PASSWORD;
use support::postgres::{MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, TEST_DB, TRUST_USER};
use support::{db_code, db_message, wait_until, Pooler, PoolerConfig, Postgres};

/// A server and a pooler with `auth_type` and `auth_user = postgres`, the md5
/// and SCRAM roles missing from the auth file, after `tweak`.
fn setup(auth_type: &str, tweak: impl FnOnce(&mut PoolerConfig)) -> (Postgres, Pooler) {
    let pg = Postgres::start();
    let mut cfg = lookup_config(&pg, auth_type);
    tweak(&mut cfg);
    let pooler = Pooler::start(&cfg);
    (pg, pooler)
}

fn lookup_config(pg: &Postgres, auth_type: &str) -> PoolerConfig {
    let mut cfg = PoolerConfig::new(pg);
    cfg.userlist
        .retain(|(user, _)| user != MD5_USER && user != SCRAM_USER);
    cfg.set("auth_type", auth_type)
        .set("auth_user", "postgres")
        .set("admin_users", TRUST_USER);
    cfg
}

/// The error a tokio-postgres login as `user` gets: (SQLSTATE, message).
async fn login_error(pooler: &Pooler, user: &str, password: Option<&str>) -> (String, String) {
    let err = pooler
        .connect(user, TEST_DB, password)
        .await
        .err()
        .unwrap_or_else(|| panic!("{user} logged in"));
    (db_code(&err).unwrap_or_default(), db_message(&err))
}

/// SHOW POOLS through the console: (database, user) of each pool.
fn pools(pooler: &Pooler) -> Vec<(String, String)> {
    let out = pooler
        .psql(TRUST_USER, "pgbouncer", Some(TRUST_PASSWORD), "SHOW POOLS")
        .expect("SHOW POOLS");
    out.lines()
        .map(|line| {
            let mut cols = line.split('|');
            let db = cols.next().unwrap_or_default().to_owned();
            (db, cols.next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// The PIDs of the pooler's server connections as `user` (TCP only: the
/// harness's own psql sessions use the Unix socket).
fn tcp_backends(pg: &Postgres, user: &str) -> String {
    pg.sql(&format!(
        "SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity \
         WHERE usename = '{user}' AND client_addr IS NOT NULL"
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_missing_from_auth_file_log_in_with_the_secret_auth_query_finds() {
    let (_pg, pooler) = setup("md5", |_| {});
    // The md5 secret checks the md5 answer, and logs in to the md5 server.
    pooler.assert_logs_in(MD5_USER, Some(MD5_PASSWORD)).await;
    // A SCRAM verifier asks the client for SCRAM, whose proof logs in to the
    // SCRAM server.
    pooler
        .assert_logs_in(SCRAM_USER, Some(SCRAM_PASSWORD))
        .await;
    // Users in the auth file are not looked up.
    pooler
        .assert_logs_in(TRUST_USER, Some(TRUST_PASSWORD))
        .await;
    // The lookup ran in auth_user's own pool, beside the users' pools.
    let pools = pools(&pooler);
    for user in ["postgres", MD5_USER, SCRAM_USER] {
        assert!(
            pools.contains(&(TEST_DB.to_owned(), user.to_owned())),
            "no {TEST_DB}/{user} pool in {pools:?}"
        );
    }
    assert!(
        !pooler.log().contains("not implemented"),
        "auth_user is acted on:\n{}",
        pooler.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_unknown_users_and_roles_without_password_are_refused_alike() {
    let (pg, pooler) = setup("md5", |_| {});
    pg.sql("CREATE ROLE sluice_nopw LOGIN");
    for (user, password) in [
        (MD5_USER, "wrong"),
        (SCRAM_USER, "wrong"),
        ("sluice_nopw", "anything"),
        ("nobody_here", "whatever"),
        // The name is a bound parameter, not spliced into the query.
        ("x' OR rolname = 'postgres", "whatever"),
    ] {
        let (code, message) = login_error(&pooler, user, Some(password)).await;
        assert_eq!(code, "28P01", "{user}: {message}");
        assert_eq!(
            message,
            format!("password authentication failed for user \"{user}\""),
            "{user}"
        );
    }
    // The right password still works after the failures.
    pooler.assert_logs_in(MD5_USER, Some(MD5_PASSWORD)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_trust_the_found_secret_logs_in_to_the_server_and_unknown_users_are_refused() {
    let (_pg, pooler) = setup("trust", |_| {});
    // The client gives no password; the server demands md5 from this role, and
    // the pooler answers with the md5 secret from pg_authid.
    pooler.assert_logs_in(MD5_USER, None).await;
    let (code, message) = login_error(&pooler, "nobody_here", None).await;
    assert_eq!((code.as_str(), message.as_str()), ("28000", "no such user"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_auth_query_is_a_config_error_and_its_server_stays_usable() {
    let pg = Postgres::start();
    let mut cfg = lookup_config(&pg, "md5");
    cfg.set(
        "auth_query",
        "SELECT rolname, rolpassword FROM no_such_table WHERE rolname=$1",
    );
    let pooler = Pooler::start(&cfg);
    let (code, message) = login_error(&pooler, MD5_USER, Some(MD5_PASSWORD)).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("08P01", "bouncer config error")
    );
    assert!(
        wait_until(Duration::from_secs(5), || pooler.log().contains(
            "error response from auth_query: relation \"no_such_table\" does not exist"
        )),
        "{}",
        pooler.log()
    );
    let auth_server = tcp_backends(&pg, "postgres");
    assert!(!auth_server.is_empty(), "the auth server was opened");

    cfg.set(
        "auth_query",
        "SELECT rolname, rolpassword, 1 FROM pg_authid WHERE rolname=$1",
    );
    pooler.reload_with(&cfg);
    let (code, message) = login_error(&pooler, MD5_USER, Some(MD5_PASSWORD)).await;
    assert_eq!(
        (code.as_str(), message.as_str()),
        ("08P01", "bouncer config error")
    );
    assert!(
        pooler
            .log()
            .contains("expected 2 columns from auth_query, not 3"),
        "{}",
        pooler.log()
    );

    cfg.unset("auth_query");
    pooler.reload_with(&cfg);
    pooler.assert_logs_in(MD5_USER, Some(MD5_PASSWORD)).await;
    // Both failures left the server idle and in the pool: the same one served
    // every lookup.
    assert_eq!(tcp_backends(&pg, "postgres"), auth_server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_counts_from_the_next_login_and_survives_a_reload() {
    let pg = Postgres::start();
    let cfg = lookup_config(&pg, "md5");
    let pooler = Pooler::start(&cfg);
    pooler.assert_logs_in(MD5_USER, Some(MD5_PASSWORD)).await;
    pg.sql("SET password_encryption = 'md5'; ALTER ROLE sluice_md5 PASSWORD 'changed'");
    let (code, _) = login_error(&pooler, MD5_USER, Some(MD5_PASSWORD)).await;
    assert_eq!(code, "28P01", "the old password is refused");
    // The server connections made with the old secret are retired: the next
    // one logs in with the new secret.
    pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'sluice_md5'");
    pooler.assert_logs_in(MD5_USER, Some("changed")).await;

    // A reload rebuilds every pool's login from auth_file, which does not have
    // this user: the secret found by the lookup must stay.
    pooler.reload_with(&cfg);
    pg.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'sluice_md5'");
    pooler.assert_logs_in(MD5_USER, Some("changed")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_dbname_and_a_database_entry_s_own_auth_user_are_honoured() {
    let pg = Postgres::start();
    // The lookup runs in the `authdb` entry (the server's `postgres` database).
    let mut cfg = lookup_config(&pg, "md5");
    cfg.database(
        "authdb",
        &format!("host=127.0.0.1 port={} dbname=postgres", pg.port),
    )
    .set("auth_dbname", "authdb");
    let pooler = Pooler::start(&cfg);
    pooler.assert_logs_in(MD5_USER, Some(MD5_PASSWORD)).await;
    let pools = pools(&pooler);
    assert!(
        pools.contains(&("authdb".to_owned(), "postgres".to_owned()))
            && !pools.contains(&(TEST_DB.to_owned(), "postgres".to_owned())),
        "{pools:?}"
    );
    drop(pooler);

    // No generic auth_user: only the entry that names one looks users up.
    let mut cfg = lookup_config(&pg, "md5");
    cfg.unset("auth_user").database(
        TEST_DB,
        &format!(
            "host=127.0.0.1 port={} dbname={TEST_DB} auth_user=postgres",
            pg.port
        ),
    );
    let pooler = Pooler::start(&cfg);
    pooler.assert_logs_in(MD5_USER, Some(MD5_PASSWORD)).await;
    // The `*` entry has no auth_user: the user is unknown there.
    let Err(err) = pooler
        .connect(MD5_USER, "postgres", Some(MD5_PASSWORD))
        .await
    else {
        panic!("{MD5_USER} logged in to a database without auth_user");
    };
    assert_eq!(db_code(&err).as_deref(), Some("28P01"), "{err:?}");
}
