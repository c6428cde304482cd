//! A pgsluice process per test, started from a pgbouncer.ini the test builds.

use std::fs;
use std::future::Future;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::postgres::{Postgres, MD5_USER, SCRAM_USER, TEST_DB, TRUST_USER};
use super::{
    as_pg_user, free_port, libpq_command, pg_os_user, read_log, run_bounded,
    run_bounded_with_input, stop_child, tail, temp_dir, wait_child, write_pg_file,
};

/// The plaintext password `sluice_trust` has in the default userlist
/// (the server itself trusts that role).
pub const TRUST_PASSWORD: &str = "trustpass";

/// How long pgsluice may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a tokio-postgres login through the pooler may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one psql call through the pooler may take.
const PSQL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long one pgbench run may take.
const PGBENCH_TIMEOUT: Duration = Duration::from_secs(300);

/// The contents of a pgbouncer.ini and its userlist.txt, section by section,
/// in the order written.
#[derive(Clone, Debug)]
pub struct PoolerConfig {
    /// `[pgbouncer]` settings.
    pub general: Vec<(String, String)>,
    /// `[databases]` entries: name = libpq connection string.
    pub databases: Vec<(String, String)>,
    /// `[users]` entries: name = settings.
    pub users: Vec<(String, String)>,
    /// `[peers]` entries: peer id = connection string.
    pub peers: Vec<(String, String)>,
    /// auth_file lines: name, secret.
    pub userlist: Vec<(String, String)>,
    /// Command-line options before the config file's path.
    pub args: Vec<String>,
    /// Environment variables pgsluice is started with.
    pub env: Vec<(String, String)>,
    dir: Arc<tempfile::TempDir>,
}

fn replace_or_push(list: &mut Vec<(String, String)>, key: &str, value: &str) {
    match list.iter_mut().find(|(k, _)| k == key) {
        Some(entry) => entry.1 = value.to_string(),
        None => list.push((key.to_string(), value.to_string())),
    }
}

impl PoolerConfig {
    /// A transaction-mode config in front of `pg`, listening on a free port of
    /// 127.0.0.1, md5 client auth, a userlist for the three test roles.
    pub fn new(pg: &Postgres) -> PoolerConfig {
        let dir = temp_dir("pooler");
        let path = dir.path().to_string_lossy().into_owned();
        let port = free_port();
        let general = [
            ("listen_addr", "127.0.0.1".to_string()),
            ("listen_port", port.to_string()),
            ("unix_socket_dir", path.clone()),
            ("auth_type", "md5".to_string()),
            ("auth_file", format!("{path}/userlist.txt")),
            ("pool_mode", "transaction".to_string()),
            ("default_pool_size", "5".to_string()),
            ("max_client_conn", "1000".to_string()),
            ("admin_users", "postgres".to_string()),
        ];
        let databases = [
            (
                TEST_DB.to_string(),
                format!("host=127.0.0.1 port={} dbname={TEST_DB}", pg.port),
            ),
            ("*".to_string(), format!("host=127.0.0.1 port={}", pg.port)),
        ];
        let userlist = [
            (TRUST_USER.to_string(), TRUST_PASSWORD.to_string()),
            (MD5_USER.to_string(), pg.rolpassword(MD5_USER)),
            (SCRAM_USER.to_string(), pg.rolpassword(SCRAM_USER)),
        ];
        PoolerConfig {
            general: general
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            databases: databases.into_iter().collect(),
            users: Vec::new(),
            peers: Vec::new(),
            userlist: userlist.into_iter().collect(),
            args: Vec::new(),
            env: Vec::new(),
            dir: Arc::new(dir),
        }
    }

    /// Set a `[pgbouncer]` setting (replacing it if present).
    pub fn set(&mut self, key: &str, value: &str) -> &mut Self {
        replace_or_push(&mut self.general, key, value);
        self
    }

    /// Remove a `[pgbouncer]` setting.
    pub fn unset(&mut self, key: &str) -> &mut Self {
        self.general.retain(|(k, _)| k != key);
        self
    }

    /// The value of a `[pgbouncer]` setting.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.general
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Set a `[databases]` entry (replacing it if present).
    pub fn database(&mut self, name: &str, connstr: &str) -> &mut Self {
        replace_or_push(&mut self.databases, name, connstr);
        self
    }

    /// Remove a `[databases]` entry (e.g. the `*` fallback).
    pub fn remove_database(&mut self, name: &str) -> &mut Self {
        self.databases.retain(|(k, _)| k != name);
        self
    }

    /// Set a `[users]` entry (replacing it if present).
    pub fn user(&mut self, name: &str, settings: &str) -> &mut Self {
        replace_or_push(&mut self.users, name, settings);
        self
    }

    /// Set a `[peers]` entry (replacing it if present).
    pub fn peer(&mut self, peer_id: u32, connstr: &str) -> &mut Self {
        replace_or_push(&mut self.peers, &peer_id.to_string(), connstr);
        self
    }

    /// Set a userlist secret (replacing it if present).
    pub fn user_secret(&mut self, name: &str, secret: &str) -> &mut Self {
        replace_or_push(&mut self.userlist, name, secret);
        self
    }

    /// The directory the ini, the userlist, the Unix socket and the log go to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configured listen_port.
    pub fn port(&self) -> u16 {
        self.get("listen_port")
            .and_then(|p| p.parse().ok())
            .expect("listen_port is set to a number")
    }

    /// Where the userlist is written: the configured auth_file.
    pub fn auth_file(&self) -> PathBuf {
        self.get("auth_file")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.dir().join("userlist.txt"))
    }

    /// The pgbouncer.ini text.
    pub fn render_ini(&self) -> String {
        let mut out = String::from("[pgbouncer]\n");
        for (k, v) in &self.general {
            out.push_str(&format!("{k} = {v}\n"));
        }
        out.push_str("\n[databases]\n");
        for (k, v) in &self.databases {
            out.push_str(&format!("{k} = {v}\n"));
        }
        for (section, entries) in [("users", &self.users), ("peers", &self.peers)] {
            if !entries.is_empty() {
                out.push_str(&format!("\n[{section}]\n"));
                for (k, v) in entries {
                    out.push_str(&format!("{k} = {v}\n"));
                }
            }
        }
        out
    }

    /// The userlist.txt text: `"name" "secret"` lines, `"` doubled.
    pub fn render_userlist(&self) -> String {
        self.userlist
            .iter()
            .map(|(name, secret)| {
                format!(
                    "\"{}\" \"{}\"\n",
                    name.replace('"', "\"\""),
                    secret.replace('"', "\"\"")
                )
            })
            .collect()
    }

    /// Write the ini to `ini` and the userlist to the configured auth_file,
    /// both readable by the `postgres` OS user (the userlist by it alone).
    pub fn write_files(&self, ini: &Path) {
        write_pg_file(ini, &self.render_ini(), 0o644);
        write_pg_file(&self.auth_file(), &self.render_userlist(), 0o600);
    }

    /// [`PoolerConfig::write_files`] to `pgbouncer.ini` in [`PoolerConfig::dir`];
    /// returns the ini's path.
    pub fn write(&self) -> PathBuf {
        let ini = self.dir().join("pgbouncer.ini");
        self.write_files(&ini);
        ini
    }

    /// For a pgsluice the test starts itself, the way a service manager would:
    /// as root, tell it to become `postgres` (`user =`), then [`PoolerConfig::write`].
    pub fn write_for_service(&mut self) -> PathBuf {
        if pg_os_user().is_some() {
            self.set("user", "postgres");
        }
        self.write()
    }

    /// The 1-based line number of `key = ...` in the `[pgbouncer]` section of
    /// [`PoolerConfig::render_ini`].
    pub fn ini_line_of(&self, key: &str) -> usize {
        let pos = self
            .general
            .iter()
            .position(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{key} is not set"));
        pos + 2
    }
}

/// A tokio-postgres connection string to 127.0.0.1:`port`.
pub fn tcp_connstr(port: u16, user: &str, db: &str, password: Option<&str>) -> String {
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    let mut s = format!(
        "host=127.0.0.1 port={port} user={} dbname={} connect_timeout=10 \
         application_name=pgsluice-tests",
        quote(user),
        quote(db)
    );
    if let Some(password) = password {
        s.push_str(&format!(" password={}", quote(password)));
    }
    s
}

/// The pooler binary, at a path the `postgres` OS user may execute: pgsluice as
/// built by cargo, or whatever `PGSLUICE_TEST_POOLER_BIN` names (e.g.
/// `/usr/sbin/pgbouncer`, to see how PgBouncer behaves under the same tests).
fn pgsluice_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(other) = std::env::var_os("PGSLUICE_TEST_POOLER_BIN") {
            return PathBuf::from(other);
        }
        let built = PathBuf::from(env!("CARGO_BIN_EXE_pgsluice"));
        if pg_os_user().is_none() {
            return built;
        }
        // The checkout may sit where `postgres` cannot reach (e.g. under /root):
        // then run a copy from /tmp.
        let mut test = Command::new("test");
        test.arg("-x").arg(&built);
        as_pg_user(&mut test);
        if run_bounded(&mut test, Duration::from_secs(10), "test -x pgsluice")
            .status
            .success()
        {
            return built;
        }
        let dir = super::process_dir("bin");
        let copy = dir.join("pgsluice");
        fs::copy(&built, &copy)
            .unwrap_or_else(|e| panic!("copying {} to {}: {e}", built.display(), copy.display()));
        copy
    })
}

/// A running pgsluice. Dropping it stops the process (SIGTERM, then SIGKILL).
pub struct Pooler {
    /// The TCP port it listens on (127.0.0.1).
    pub port: u16,
    /// Its directory: ini, userlist, Unix socket, log.
    pub dir: PathBuf,
    /// The pgbouncer.ini it was started with.
    pub ini_path: PathBuf,
    /// Its process id.
    pub pid: u32,
    log_path: PathBuf,
    child: Child,
    _dir: Arc<tempfile::TempDir>,
}

impl Pooler {
    /// Write the ini and userlist into the config's directory, start pgsluice
    /// on it (as `postgres` when root) and wait until its TCP port accepts.
    pub fn start(cfg: &PoolerConfig) -> Pooler {
        Pooler::start_with(cfg, pgsluice_bin())
    }

    /// Like [`Pooler::start`], with another pooler binary (PgBouncer, for the
    /// differential tests that run both side by side).
    pub fn start_with(cfg: &PoolerConfig, binary: &Path) -> Pooler {
        let dir = cfg.dir().to_path_buf();
        let ini_path = dir.join("pgbouncer.ini");
        let log_path = dir.join("pgsluice.log");
        write_config(cfg, &ini_path, cfg.port());

        let log = fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let log2 = log.try_clone().expect("dup log fd");
        let mut cmd = Command::new(binary);
        cmd.args(&cfg.args)
            .arg(&ini_path)
            .current_dir(&dir)
            .env("RUST_BACKTRACE", "1")
            // Not started by systemd: no socket activation, no notify socket, no journal.
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("LISTEN_FDNAMES")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("JOURNAL_STREAM")
            // Never a real system bus: a test pooler must not take the name.
            .env(
                "DBUS_SYSTEM_BUS_ADDRESS",
                "unix:path=/nonexistent/pgsluice-test-bus",
            )
            .envs(cfg.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        as_pg_user(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        let pid = child.id();
        // Lets a later test process clean up after this one if it is killed.
        let _ = fs::write(dir.join("harness.pid"), format!("{pid}\n"));
        let mut pooler = Pooler {
            port: cfg.port(),
            dir,
            ini_path,
            pid,
            log_path,
            child,
            _dir: cfg.dir.clone(),
        };
        pooler.wait_listening();
        pooler
    }

    fn wait_listening(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait pgsluice") {
                panic!(
                    "pgsluice exited during start-up ({status}) with {}:\n--- pgsluice log ---\n{}",
                    self.ini_path.display(),
                    self.log()
                );
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "pgsluice did not accept TCP connections on {addr} within {START_TIMEOUT:?}\n\
                     --- pgsluice log ---\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Rewrite the ini and userlist in place (then [`Pooler::reload`]).
    /// listen_port stays the running one.
    pub fn rewrite(&self, cfg: &PoolerConfig) {
        write_config(cfg, &self.ini_path, self.port);
    }

    /// Write raw text as the ini (for broken configs).
    pub fn rewrite_ini_text(&self, text: &str) {
        write_pg_file(&self.ini_path, text, 0o644);
    }

    /// Send a signal to the pgsluice process.
    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid as i32), sig)
            .unwrap_or_else(|e| panic!("kill -{sig} {}: {e}", self.pid));
    }

    /// SIGHUP: reload the config.
    pub fn reload(&self) {
        self.signal(Signal::SIGHUP);
    }

    /// Write `cfg` over the running config, reload, and wait (bounded) until
    /// the pooler logs that the new config is in effect.
    pub fn reload_with(&self, cfg: &PoolerConfig) {
        let mark = self.log_mark();
        self.rewrite(cfg);
        self.reload();
        assert!(
            self.wait_for_log_since(mark, "config reloaded", Duration::from_secs(10)),
            "no \"config reloaded\" after SIGHUP:\n{}",
            self.log_since(mark)
        );
    }

    /// Everything pgsluice printed so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// The log lines about server connections (`S-<n>: db/user@address ...`)
    /// that contain `what`.
    pub fn server_log_lines(&self, what: &str) -> Vec<String> {
        self.log()
            .lines()
            .filter(|line| line.contains(" S-") && line.contains(what))
            .map(str::to_owned)
            .collect()
    }

    /// The current length of the log, to look only at what comes after.
    pub fn log_mark(&self) -> usize {
        self.log().len()
    }

    /// The log from a [`Pooler::log_mark`] on.
    pub fn log_since(&self, mark: usize) -> String {
        let log = self.log();
        log.get(mark..).unwrap_or("").to_string()
    }

    /// Wait (bounded) until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        self.wait_for_log_since(0, needle, timeout)
    }

    /// Wait (bounded) until the log after `mark` contains `needle`.
    pub fn wait_for_log_since(&self, mark: usize, needle: &str, timeout: Duration) -> bool {
        super::wait_until(timeout, || self.log_since(mark).contains(needle))
    }

    /// A psql command through the pooler (TCP), without the SQL: add `-c`, `-f`,
    /// environment, then run it with [`super::run_bounded`].
    pub fn psql_command(&self, user: &str, db: &str, password: Option<&str>) -> Command {
        let mut cmd = libpq_command("psql");
        cmd.args(["-XAtq", "-w", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
            .args(["-p", &self.port.to_string(), "-U", user, "-d", db]);
        if let Some(password) = password {
            cmd.env("PGPASSWORD", password);
        }
        cmd
    }

    /// `psql -XAtq -c sql` through the pooler: stdout trimmed, or stderr.
    pub fn psql(
        &self,
        user: &str,
        db: &str,
        password: Option<&str>,
        sql: &str,
    ) -> Result<String, String> {
        let mut cmd = self.psql_command(user, db, password);
        cmd.args(["-c", sql]);
        self.finish_psql(&mut cmd, None, sql)
    }

    /// `psql -XAtq -c sql` through the pooler's Unix socket, without a
    /// password: stdout trimmed, or stderr.
    pub fn psql_unix(&self, user: &str, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = self.psql_unix_command(user, db, sql);
        self.finish_psql(&mut cmd, None, sql)
    }

    /// [`Pooler::psql_unix`] run as the OS user the pooler runs as (`postgres`
    /// when the tests run as root).
    pub fn psql_unix_as_daemon_user(
        &self,
        user: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        let mut cmd = self.psql_unix_command(user, db, sql);
        as_pg_user(&mut cmd);
        self.finish_psql(&mut cmd, None, sql)
    }

    fn psql_unix_command(&self, user: &str, db: &str, sql: &str) -> Command {
        let mut cmd = libpq_command("psql");
        cmd.args(["-XAtq", "-w", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-U", user, "-d", db])
            .args(["-c", sql]);
        cmd
    }

    /// `psql -c sql` through the pooler with extra environment (e.g. PGTZ).
    pub fn psql_env(
        &self,
        user: &str,
        db: &str,
        password: Option<&str>,
        env: &[(&str, &str)],
        sql: &str,
    ) -> Result<String, String> {
        let mut cmd = self.psql_command(user, db, password);
        cmd.args(["-c", sql]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        self.finish_psql(&mut cmd, None, sql)
    }

    /// `psql -c sql` through the pooler with `input` on stdin (COPY FROM STDIN).
    pub fn psql_with_input(
        &self,
        user: &str,
        db: &str,
        password: Option<&str>,
        sql: &str,
        input: &[u8],
    ) -> Result<String, String> {
        let mut cmd = self.psql_command(user, db, password);
        cmd.args(["-c", sql]);
        self.finish_psql(&mut cmd, Some(input), sql)
    }

    fn finish_psql(
        &self,
        cmd: &mut Command,
        input: Option<&[u8]>,
        sql: &str,
    ) -> Result<String, String> {
        let out = self.run_bounded_with_log(cmd, input, PSQL_TIMEOUT, &format!("psql {sql:?}"));
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Run a command, bounded; on timeout panic with the pooler's log too.
    fn run_bounded_with_log(
        &self,
        cmd: &mut Command,
        input: Option<&[u8]>,
        timeout: Duration,
        what: &str,
    ) -> Output {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_bounded_with_input(cmd, input, timeout, what)
        }));
        match result {
            Ok(out) => out,
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!(
                    "{msg}\n--- pgsluice log (tail) ---\n{}",
                    tail(&self.log(), 80)
                );
            }
        }
    }

    /// A tokio-postgres connection string to the pooler.
    pub fn connstr(&self, user: &str, db: &str, password: Option<&str>) -> String {
        tcp_connstr(self.port, user, db, password)
    }

    /// Connect with tokio-postgres (NoTls) and spawn the connection task.
    /// Login is bounded: if it does not finish in 20 s the test panics with the log.
    pub async fn connect(
        &self,
        user: &str,
        db: &str,
        password: Option<&str>,
    ) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let connstr = self.connstr(user, db, password);
        let (client, connection) = self
            .within(
                CONNECT_TIMEOUT,
                &format!("tokio-postgres login as {user} to {db}"),
                tokio_postgres::connect(&connstr, tokio_postgres::NoTls),
            )
            .await?;
        tokio::spawn(async move {
            // Errors after login surface on the client's next call.
            let _ = connection.await;
        });
        Ok(client)
    }

    /// Log in as the test user (`TRUST_USER`, password `TRUST_PASSWORD`) to
    /// `TEST_DB` with tokio-postgres, bounded like `connect`; panics with `what`,
    /// the error and the pooler's log when it fails.
    pub async fn connect_trust(&self, what: &str) -> tokio_postgres::Client {
        self.connect(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{what}: {e}\n--- pgsluice log (tail) ---\n{}",
                    tail(&self.log(), 80)
                )
            })
    }

    /// SHOW `what` on the admin console, logged in with tokio-postgres as
    /// `user`; each row as column name → text value.
    pub async fn show(
        &self,
        user: &str,
        password: Option<&str>,
        what: &str,
    ) -> Vec<std::collections::HashMap<String, Option<String>>> {
        let console = self
            .connect(user, "pgbouncer", password)
            .await
            .unwrap_or_else(|e| panic!("console login as {user}: {e}"));
        let messages = self
            .within(
                Duration::from_secs(30),
                "SHOW on the console",
                console.simple_query(&format!("SHOW {what}")),
            )
            .await
            .unwrap_or_else(|e| panic!("SHOW {what}: {e}"));
        super::rows_by_name(&messages)
    }

    /// Await `fut` for at most `timeout`; on timeout panic with the pooler's log.
    pub async fn within<F: Future>(&self, timeout: Duration, what: &str, fut: F) -> F::Output {
        match tokio::time::timeout(timeout, fut).await {
            Ok(v) => v,
            Err(_) => panic!(
                "{what}: no result within {timeout:?}\n--- pgsluice log (tail) ---\n{}",
                tail(&self.log(), 80)
            ),
        }
    }

    /// Log in as `user` with psql and with tokio-postgres, and check that the server
    /// reports `user` as `current_user` over the simple and the extended protocol.
    pub async fn assert_logs_in(&self, user: &str, password: Option<&str>) {
        let via_psql = self.psql(user, TEST_DB, password, "SELECT current_user");
        assert_eq!(via_psql.as_deref(), Ok(user), "psql login as {user}");

        let client = self
            .connect(user, TEST_DB, password)
            .await
            .unwrap_or_else(|e| panic!("tokio-postgres login as {user}: {e:?}"));
        let rows = self
            .within(
                CONNECT_TIMEOUT,
                "simple query",
                client.simple_query("SELECT current_user"),
            )
            .await
            .unwrap_or_else(|e| panic!("simple query as {user}: {e:?}"));
        let name = rows
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                _ => None,
            })
            .expect("a row");
        assert_eq!(name, user);
        let row = self
            .within(
                CONNECT_TIMEOUT,
                "extended query",
                client.query_typed_one(
                    "SELECT current_user::text, $1::int4",
                    &[(&7i32, tokio_postgres::types::Type::INT4)],
                ),
            )
            .await
            .unwrap_or_else(|e| panic!("extended query as {user}: {e:?}"));
        assert_eq!(row.get::<_, String>(0), user);
        assert_eq!(row.get::<_, i32>(1), 7);
    }

    /// `pgbench -h 127.0.0.1 -p port -U user <args> sluice` through the pooler, bounded.
    pub fn pgbench(&self, user: &str, password: Option<&str>, args: &[&str]) -> Output {
        let mut cmd = libpq_command("pgbench");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", user])
            .args(args)
            .arg(TEST_DB);
        if let Some(password) = password {
            cmd.env("PGPASSWORD", password);
        }
        self.run_bounded_with_log(
            &mut cmd,
            None,
            PGBENCH_TIMEOUT,
            &format!("pgbench {}", args.join(" ")),
        )
    }

    /// Wait (bounded) for pgsluice to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, timeout)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

fn write_config(cfg: &PoolerConfig, ini_path: &Path, port: u16) {
    let mut cfg = cfg.clone();
    cfg.set("listen_port", &port.to_string());
    cfg.write_files(ini_path);
}

impl Drop for Pooler {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- pgsluice log (tail) of {} ---\n{}",
                self.ini_path.display(),
                tail(&self.log(), 120)
            );
        }
        // SIGTERM lets connected clients finish (PgBouncer's SHUTDOWN WAIT_FOR_CLIENTS),
        // and the test's clients may still be connected: a second SIGTERM means
        // "exit now". Then SIGKILL.
        if matches!(self.child.try_wait(), Ok(None)) {
            let pid = Pid::from_raw(self.pid as i32);
            let _ = kill(pid, Signal::SIGTERM);
            if wait_child(&mut self.child, Duration::from_secs(1)).is_none() {
                stop_child(&mut self.child, Signal::SIGTERM, Duration::from_secs(2));
            }
        }
    }
}
