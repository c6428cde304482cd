//! `auth_type = pam`: the client's password, asked for in the clear, is checked by a
//! real Linux-PAM stack under the service name `pgbouncer`, and the pool logs in to
//! PostgreSQL with the password PAM accepted. The stack is a service file in a test
//! directory (`PGSLUICE_PAM_CONFDIR`): `pam_exec` runs a script that accepts each test
//! role's PostgreSQL password and writes down what PAM told it.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use support::postgres::{MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER, TEST_DB};
use support::{temp_dir, wait_until, write_pg_file, Pooler, PoolerConfig, Postgres};
use tokio_postgres::error::SqlState;

const LOGIN: Duration = Duration::from_secs(30);

/// A PAM service directory holding `pgbouncer`, its checking script, and the file
/// the script writes each check to.
struct PamStack {
    dir: tempfile::TempDir,
}

impl PamStack {
    fn new() -> PamStack {
        let dir = temp_dir("pam");
        let script = dir.path().join("check-password");
        let checks = dir.path().join("checks.log");
        write_pg_file(&checks, "", 0o644);
        // pam_exec hands the password over on standard input, ended by a NUL.
        write_pg_file(
            &script,
            &format!(
                "#!/bin/bash\n\
                 IFS= read -r -d '' password || true\n\
                 echo \"service=$PAM_SERVICE user=$PAM_USER rhost=$PAM_RHOST\" >> {checks}\n\
                 case \"$PAM_USER:$password\" in\n\
                 \"{MD5_USER}:{MD5_PASSWORD}\"|\"{SCRAM_USER}:{SCRAM_PASSWORD}\") exit 0 ;;\n\
                 esac\n\
                 exit 1\n",
                checks = checks.display()
            ),
            0o755,
        );
        write_pg_file(
            &dir.path().join("pgbouncer"),
            &format!(
                "auth required pam_exec.so expose_authtok quiet {}\n\
                 account required pam_permit.so\n",
                script.display()
            ),
            0o644,
        );
        PamStack { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    fn checks(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("checks.log")).unwrap_or_default()
    }
}

fn setup(stack: &Path, tweak: impl FnOnce(&mut PoolerConfig)) -> (Postgres, Pooler) {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("auth_type", "pam");
    cfg.env.push((
        "PGSLUICE_PAM_CONFDIR".into(),
        stack.to_string_lossy().into_owned(),
    ));
    tweak(&mut cfg);
    let pooler = Pooler::start(&cfg);
    (pg, pooler)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pam_checks_the_password_and_the_pool_logs_in_with_it() {
    let stack = PamStack::new();
    let (_pg, pooler) = setup(&stack.path(), |cfg| {
        // The auth file is not read under PAM: wrong secrets here change nothing.
        cfg.user_secret(MD5_USER, "not-the-password");
        cfg.user_secret(SCRAM_USER, "not-the-password-either");
    });
    // PostgreSQL asks md5 of one role and SCRAM of the other: the pool answers
    // both with the password the client gave and PAM accepted.
    for (user, password) in [(MD5_USER, MD5_PASSWORD), (SCRAM_USER, SCRAM_PASSWORD)] {
        pooler.assert_logs_in(user, Some(password)).await;
    }
    let checks = stack.checks();
    for user in [MD5_USER, SCRAM_USER] {
        assert!(
            checks.contains(&format!("service=pgbouncer user={user} rhost=127.0.0.1")),
            "PAM was not asked about {user} under service pgbouncer from 127.0.0.1:\n{checks}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_pam_refuses_is_refused_with_28p01() {
    let stack = PamStack::new();
    let (_pg, pooler) = setup(&stack.path(), |_| {});
    for user in [MD5_USER, "nobody_here"] {
        let err = pooler
            .within(LOGIN, "login", pooler.connect(user, TEST_DB, Some("wrong")))
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} logged in with a password PAM refuses"));
        assert_eq!(
            err.as_db_error().map(|d| d.code()),
            Some(&SqlState::INVALID_PASSWORD),
            "{user}: {err:?}"
        );
        // PgBouncer's words (it sends them with 08P01; the code is PostgreSQL's).
        assert_eq!(
            err.as_db_error().map(|d| d.message()),
            Some("PAM authentication failed"),
        );
    }
    assert!(
        stack.checks().contains("user=nobody_here"),
        "PAM was not asked about a user the auth file lacks:\n{}",
        stack.checks()
    );
    // A refusal leaves nothing behind: the right password works next.
    assert_eq!(
        pooler
            .psql(MD5_USER, TEST_DB, Some(MD5_PASSWORD), "SELECT 1")
            .as_deref(),
        Ok("1")
    );
    // The log names the client, the step that failed and PAM's reason.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let log = pooler.log();
            log.lines().any(|line| {
                line.contains("/nobody_here@127.0.0.1:")
                    && line.contains("PAM authentication failed: pam_authenticate() failed: ")
            })
        }),
        "the pooler log does not mention the refusal:\n{}",
        pooler.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_console_logs_in_through_pam_too() {
    let stack = PamStack::new();
    let (_pg, pooler) = setup(&stack.path(), |cfg| {
        cfg.set("admin_users", MD5_USER);
    });
    let version = pooler.psql(MD5_USER, "pgbouncer", Some(MD5_PASSWORD), "SHOW VERSION");
    assert!(
        version.as_deref().is_ok_and(|v| v.starts_with("pgsluice")),
        "SHOW VERSION through a PAM login: {version:?}"
    );
    let refused = pooler.psql(MD5_USER, "pgbouncer", Some("wrong"), "SHOW VERSION");
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("PAM authentication failed")),
        "console login with a password PAM refuses: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_pam_service_refuses_logins_and_says_so() {
    // An empty directory: no `pgbouncer` service file (Linux-PAM then falls back to
    // `other`, which is not there either).
    let empty = temp_dir("pam-empty");
    let (_pg, pooler) = setup(empty.path(), |_| {});
    let refused = pooler.psql(MD5_USER, TEST_DB, Some(MD5_PASSWORD), "SELECT 1");
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.contains("PAM authentication failed")),
        "logged in without a PAM service: {refused:?}"
    );
    assert!(
        wait_until(Duration::from_secs(5), || pooler
            .log()
            .contains("PAM authentication failed: pam_")),
        "the pooler log does not say which PAM step failed:\n{}",
        pooler.log()
    );
}
