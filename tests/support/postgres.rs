//! A throwaway PostgreSQL 15 server per test.
//!
//! `initdb` runs once per test process into a template that already holds the
//! test roles, the `sluice` database and the pg_hba.conf; each [`Postgres::start`]
//! copies the template and starts a server on a free port with its own socket dir.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::{
    as_pg_user, free_port, libpq_command, pg_bin, process_dir, read_log, run_bounded, stop_child,
    tail, temp_dir, write_pg_file,
};

/// The roles every test server has.
pub const TRUST_USER: &str = "sluice_trust";
pub const MD5_USER: &str = "sluice_md5";
pub const MD5_PASSWORD: &str = "md5pass";
pub const SCRAM_USER: &str = "sluice_scram";
pub const SCRAM_PASSWORD: &str = "scrampass";
/// The database every test server has (owned by `sluice_trust`).
pub const TEST_DB: &str = "sluice";

/// pg_hba.conf of every test server: Unix socket is trust; over TCP the md5 user
/// must use md5, the SCRAM user must use SCRAM, everyone else is trusted.
const PG_HBA: &str = "\
local all postgres trust
local all all trust
host all sluice_md5 127.0.0.1/32 md5
host all sluice_scram 127.0.0.1/32 scram-sha-256
host all all 127.0.0.1/32 trust
";

/// How long a server may take to start before the test gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one psql call may take.
const SQL_TIMEOUT: Duration = Duration::from_secs(60);

/// A running PostgreSQL server owned by one test. Dropping it stops the server
/// and removes its directory.
pub struct Postgres {
    /// TCP port on 127.0.0.1 (also the number of the Unix socket file).
    pub port: u16,
    /// Directory holding the server's Unix socket.
    pub socket_dir: PathBuf,
    /// Data directory (a copy of the template).
    pub data_dir: PathBuf,
    log_path: PathBuf,
    /// The extra `postgres` options it was started with (for a restart).
    options: Vec<String>,
    child: Child,
    dir: tempfile::TempDir,
}

/// Where to reach a server with psql; cheap to clone into a sampler thread.
#[derive(Clone, Debug)]
pub struct PgAddr {
    pub port: u16,
    pub socket_dir: PathBuf,
    pub log_path: PathBuf,
}

impl PgAddr {
    /// Run SQL as superuser `postgres` in `db` over the Unix socket; panic on failure.
    pub fn sql_db(&self, db: &str, sql: &str) -> String {
        let mut cmd = libpq_command("psql");
        cmd.args(["-XAtq", "-w", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(&self.socket_dir)
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                db,
                "-c",
                sql,
            ]);
        let out = run_bounded(&mut cmd, SQL_TIMEOUT, &format!("psql -c {sql:?}"));
        if !out.status.success() {
            panic!(
                "SQL failed ({}): {sql}\n--- psql stderr ---\n{}\n--- server log (tail) ---\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                tail(&read_log(&self.log_path), 60)
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Client backends of `user` in pg_stat_activity, not counting this query's own session.
    pub fn backends(&self, user: &str) -> i64 {
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE usename = {} AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
            quote_literal(user)
        );
        let out = self.sql_db("postgres", &sql);
        out.parse()
            .unwrap_or_else(|_| panic!("backend count is not a number: {out:?}"))
    }
}

/// The template data directory, made once per test process.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(make_template)
}

fn make_template() -> PathBuf {
    let root = process_dir("template");
    let data = root.join("data");
    let mut initdb = Command::new(pg_bin("initdb"));
    initdb
        .args(["--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8"])
        .arg("--locale=C")
        .arg("-D")
        .arg(&data)
        .current_dir(&root)
        .env("LC_ALL", "C");
    as_pg_user(&mut initdb);
    let out = run_bounded(&mut initdb, Duration::from_secs(120), "initdb");
    assert!(
        out.status.success(),
        "initdb failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Start the template once, Unix socket only, to create roles and the database.
    let log_path = root.join("setup.log");
    let port = free_port();
    let mut child = spawn_postgres(&data, port, &root, &log_path, &["-c", "listen_addresses="]);
    let addr = PgAddr {
        port,
        socket_dir: root.clone(),
        log_path: log_path.clone(),
    };
    wait_ready(&mut child, &addr);
    for sql in [
        "SET password_encryption = 'md5'; CREATE ROLE sluice_md5 LOGIN PASSWORD 'md5pass'",
        "SET password_encryption = 'scram-sha-256'; \
         CREATE ROLE sluice_scram LOGIN PASSWORD 'scrampass'",
        "CREATE ROLE sluice_trust LOGIN",
        "CREATE DATABASE sluice OWNER sluice_trust",
        "GRANT ALL ON DATABASE sluice TO sluice_trust, sluice_md5, sluice_scram",
    ] {
        addr.sql_db("postgres", sql);
    }
    addr.sql_db("sluice", "GRANT ALL ON SCHEMA public TO PUBLIC");
    write_pg_file(&data.join("pg_hba.conf"), PG_HBA, 0o600);
    addr.sql_db("postgres", "SELECT pg_reload_conf()");
    if !stop_child(&mut child, Signal::SIGINT, Duration::from_secs(30)) {
        panic!(
            "template server did not shut down within 30 s\n{}",
            tail(&read_log(&log_path), 60)
        );
    }
    data
}

fn spawn_postgres(
    data: &Path,
    port: u16,
    socket_dir: &Path,
    log_path: &Path,
    extra: &[&str],
) -> Child {
    // Appended to: a restarted server keeps the log of its first run.
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", log_path.display()));
    let log2 = log.try_clone().expect("dup log fd");
    let mut cmd = Command::new(pg_bin("postgres"));
    cmd.arg("-D")
        .arg(data)
        .args(["-p", &port.to_string(), "-k"])
        .arg(socket_dir)
        .args([
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
            "-c",
            "unix_socket_permissions=0777",
        ])
        .args(extra)
        .current_dir(socket_dir)
        .env("LC_ALL", "C")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    as_pg_user(&mut cmd);
    cmd.spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", pg_bin("postgres").display()))
}

/// Why a server did not come up.
enum StartFailure {
    /// The port was taken between choosing it and binding it: try another one.
    PortInUse,
}

fn wait_ready(child: &mut Child, addr: &PgAddr) {
    if let Err(StartFailure::PortInUse) = try_wait_ready(child, addr) {
        panic!(
            "PostgreSQL could not bind port {}\n{}",
            addr.port,
            read_log(&addr.log_path)
        );
    }
}

fn try_wait_ready(child: &mut Child, addr: &PgAddr) -> Result<(), StartFailure> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait postgres") {
            let log = read_log(&addr.log_path);
            if log.contains("could not bind") || log.contains("already in use") {
                return Err(StartFailure::PortInUse);
            }
            panic!("PostgreSQL exited during start-up ({status}):\n{log}");
        }
        let mut isready = libpq_command("pg_isready");
        isready
            .arg("-h")
            .arg(&addr.socket_dir)
            .args([
                "-p",
                &addr.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-t", "2"]);
        if run_bounded(&mut isready, Duration::from_secs(10), "pg_isready")
            .status
            .success()
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "PostgreSQL did not accept connections within {START_TIMEOUT:?}\n--- server log ---\n{}",
                read_log(&addr.log_path)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Postgres {
    /// A new server from the template, on a free port, accepting connections.
    pub fn start() -> Postgres {
        Postgres::start_with(&[])
    }

    /// [`Postgres::start`] with TLS on, serving this certificate and key
    /// (PEM files the `postgres` OS user can read).
    pub fn start_with_tls(cert: &Path, key: &Path) -> Postgres {
        let cert = format!("ssl_cert_file={}", cert.display());
        let key = format!("ssl_key_file={}", key.display());
        Postgres::start_with(&["-c", "ssl=on", "-c", &cert, "-c", &key])
    }

    /// [`Postgres::start`] with more `postgres` command-line options.
    pub fn start_with(options: &[&str]) -> Postgres {
        let template = template();
        let dir = temp_dir("pg");
        let data_dir = dir.path().join("data");
        let mut cp = Command::new("cp");
        // As root, -a keeps the postgres ownership of the template's files.
        cp.arg("-a").arg(template).arg(&data_dir);
        let out = run_bounded(&mut cp, Duration::from_secs(60), "copying the template");
        assert!(
            out.status.success(),
            "cp -a {} {} failed: {}",
            template.display(),
            data_dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let socket_dir = dir.path().join("sock");
        fs::create_dir(&socket_dir).expect("mkdir socket dir");
        super::give_to_pg_user(&socket_dir);
        let log_path = dir.path().join("postgres.log");

        for _attempt in 0..5 {
            let port = free_port();
            let mut child = spawn_postgres(
                &data_dir,
                port,
                &socket_dir,
                &log_path,
                &[&["-c", "listen_addresses=127.0.0.1"], options].concat(),
            );
            let addr = PgAddr {
                port,
                socket_dir: socket_dir.clone(),
                log_path: log_path.clone(),
            };
            match try_wait_ready(&mut child, &addr) {
                Ok(()) => {
                    return Postgres {
                        port,
                        socket_dir,
                        data_dir,
                        log_path,
                        options: options.iter().map(|o| o.to_string()).collect(),
                        child,
                        dir,
                    }
                }
                Err(StartFailure::PortInUse) => continue,
            }
        }
        panic!(
            "PostgreSQL could not find a free port in 5 attempts\n{}",
            read_log(&log_path)
        );
    }

    /// Stop the server (fast shutdown: sessions are terminated) and wait for
    /// it to exit; [`Postgres::start_again`] brings it back.
    pub fn stop(&mut self) {
        assert!(
            stop_child(&mut self.child, Signal::SIGINT, Duration::from_secs(10)),
            "PostgreSQL did not stop"
        );
    }

    /// Start a stopped server again, on the same port and data, and wait until
    /// it accepts connections.
    pub fn start_again(&mut self) {
        let options: Vec<&str> = self.options.iter().map(String::as_str).collect();
        self.child = spawn_postgres(
            &self.data_dir,
            self.port,
            &self.socket_dir,
            &self.log_path,
            &[&["-c", "listen_addresses=127.0.0.1"], &options[..]].concat(),
        );
        let addr = self.addr();
        wait_ready(&mut self.child, &addr);
    }

    /// Address for psql calls from other threads.
    pub fn addr(&self) -> PgAddr {
        PgAddr {
            port: self.port,
            socket_dir: self.socket_dir.clone(),
            log_path: self.log_path.clone(),
        }
    }

    /// Run SQL as superuser `postgres` (database `postgres`) over the Unix socket
    /// with `psql -XAtq`; panic with psql's stderr on failure; stdout, trimmed.
    /// Several statements in one string run as one implicit transaction.
    pub fn sql(&self, sql: &str) -> String {
        self.addr().sql_db("postgres", sql)
    }

    /// Like [`Postgres::sql`], in another database.
    pub fn sql_db(&self, db: &str, sql: &str) -> String {
        self.addr().sql_db(db, sql)
    }

    /// The stored secret of a role: `md5…` or `SCRAM-SHA-256$…` as in pg_authid.
    pub fn rolpassword(&self, role: &str) -> String {
        let out = self.sql(&format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = {}",
            quote_literal(role)
        ));
        assert!(!out.is_empty(), "role {role} has no password in pg_authid");
        out
    }

    /// Client backends of `user` in pg_stat_activity (the harness's own session excluded).
    pub fn backends(&self, user: &str) -> i64 {
        self.addr().backends(user)
    }

    /// Sample [`Postgres::backends`] for `user` in a background thread until
    /// [`BackendSampler::stop`].
    pub fn sample_backends(&self, user: &str) -> BackendSampler {
        BackendSampler::start(self.addr(), user)
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// The server's own directory (data, socket and log live under it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A tokio-postgres connection string straight to the server over TCP.
    pub fn connstr(&self, user: &str, db: &str, password: Option<&str>) -> String {
        super::pooler::tcp_connstr(self.port, user, db, password)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "--- PostgreSQL log (tail) of port {} ---\n{}",
                self.port,
                tail(&self.log(), 80)
            );
        }
        // SIGINT is PostgreSQL's fast shutdown.
        stop_child(&mut self.child, Signal::SIGINT, Duration::from_secs(10));
    }
}

/// The result of sampling backend counts.
#[derive(Debug, Clone)]
pub struct Samples {
    pub max: i64,
    pub count: usize,
    pub values: Vec<i64>,
}

/// Polls the backend count of one user in a thread.
pub struct BackendSampler {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<i64>>>,
}

impl BackendSampler {
    pub fn start(addr: PgAddr, user: &str) -> BackendSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let user = user.to_string();
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let mut values = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                values.push(addr.backends(&user));
                thread::sleep(Duration::from_millis(20));
            }
            values.push(addr.backends(&user));
            values
        });
        BackendSampler {
            stop,
            handle: Some(handle),
        }
    }

    /// Stop sampling and return what was seen.
    pub fn stop(mut self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        let values = self
            .handle
            .take()
            .expect("sampler already stopped")
            .join()
            .unwrap_or_else(|_| panic!("the backend sampler thread panicked"));
        Samples {
            max: values.iter().copied().max().unwrap_or(0),
            count: values.len(),
            values,
        }
    }
}

impl Drop for BackendSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// A SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
