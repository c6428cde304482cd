//! The integration-test harness: a throwaway PostgreSQL per test, a pgsluice
//! process per test, and small clients to talk to them.
//!
//! Every test file uses it with `mod support;`. Tests run in parallel threads
//! of one process, so nothing here keeps global mutable state except what is
//! set once (the initdb template, the port registry) behind a lock.
//!
//! When the tests run as root (as CI does), PostgreSQL and pgsluice run as the
//! `postgres` OS user: initdb refuses root, and a pooler should not run as root.
//! Temporary directories live under /tmp, are named
//! `pgsluice-test-<pid>-<kind>-XXXXXX`, and are owned by `postgres` in that case.
//! Directories (and processes) left behind by a test process that was killed
//! are cleaned up by the next test process.
//!
//! Every wait is bounded; a wait that runs out panics with the logs that explain it.

// Each test file uses only part of the harness.
#![allow(dead_code)]

pub mod clients;
pub mod dns;
pub mod pki;
pub mod pooler;
pub mod postgres;
pub mod process;
pub mod wire;

#[allow(unused_imports)]
pub use clients::{RawClient, RawError};
#[allow(unused_imports)]
pub use pooler::{Pooler, PoolerConfig};
#[allow(unused_imports)]
pub use postgres::{BackendSampler, Postgres};

use std::collections::HashSet;
use std::fs;
use std::future::Future;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid, User};

/// Where Debian 12 puts the PostgreSQL 15 programs; `PGSLUICE_TEST_PG_BIN` overrides it.
const DEFAULT_PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Prefix of every temporary directory the harness makes under /tmp.
const TEMP_PREFIX: &str = "pgsluice-test-";

/// The directory holding `initdb`, `postgres`, `psql`, `pgbench`, `pg_isready`.
pub fn pg_bin_dir() -> PathBuf {
    let dir = std::env::var_os("PGSLUICE_TEST_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PG_BIN));
    assert!(
        dir.join("postgres").exists(),
        "PostgreSQL 15 server programs not found in {} (install them with `make deps`, \
         or point PGSLUICE_TEST_PG_BIN at another bin directory)",
        dir.display()
    );
    dir
}

/// The full path of one PostgreSQL program.
pub fn pg_bin(program: &str) -> PathBuf {
    pg_bin_dir().join(program)
}

/// The uid/gid of the `postgres` OS user when this process is root (then the
/// servers run as that user); `None` when we are not root and run them as ourselves.
pub fn pg_os_user() -> Option<(Uid, Gid)> {
    static IDS: OnceLock<Option<(Uid, Gid)>> = OnceLock::new();
    *IDS.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        let user = User::from_name("postgres")
            .expect("looking up the postgres OS user")
            .expect(
                "running as root, but there is no `postgres` OS user to run PostgreSQL as \
                 (install postgresql-15 with `make deps`)",
            );
        Some((user.uid, user.gid))
    })
}

/// Make a command run as the `postgres` OS user when we are root.
pub fn as_pg_user(cmd: &mut Command) -> &mut Command {
    if let Some((uid, gid)) = pg_os_user() {
        cmd.uid(uid.as_raw()).gid(gid.as_raw());
    }
    cmd
}

/// Give a file or directory to the `postgres` OS user when we are root.
pub fn give_to_pg_user(path: &Path) {
    if let Some((uid, gid)) = pg_os_user() {
        nix::unistd::chown(path, Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown {} to postgres: {e}", path.display()));
    }
}

/// A fresh directory under /tmp, mode 0755, owned by `postgres` when we are root.
/// `kind` names what it is for; it shows in the directory name.
pub fn temp_dir(kind: &str) -> tempfile::TempDir {
    cleanup_stale_once();
    let dir = tempfile::Builder::new()
        .prefix(&format!("{TEMP_PREFIX}{}-{kind}-", std::process::id()))
        .tempdir_in("/tmp")
        .unwrap_or_else(|e| panic!("creating a temporary directory in /tmp: {e}"));
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))
        .expect("chmod temporary directory");
    give_to_pg_user(dir.path());
    dir
}

/// A directory under /tmp that lives as long as the test process (the initdb
/// template, a copy of the binary): removed when the process exits normally,
/// and by the next test process otherwise.
pub fn process_dir(kind: &str) -> PathBuf {
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    extern "C" fn remove_process_dirs() {
        let dirs = DIRS.lock().map(|d| d.clone()).unwrap_or_default();
        for dir in dirs {
            let _ = fs::remove_dir_all(dir);
        }
    }
    let path = temp_dir(kind).keep();
    let mut dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if dirs.is_empty() {
        // SAFETY: registers a plain function to run at exit; it only removes files.
        unsafe {
            nix::libc::atexit(remove_process_dirs);
        }
    }
    dirs.push(path.clone());
    path
}

/// Write a file and give it to the `postgres` OS user (when root).
pub fn write_pg_file(path: &Path, contents: &str, mode: u32) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
    give_to_pg_user(path);
}

/// A TCP port on 127.0.0.1 that is free right now and not handed out before by
/// this process. Ports are drawn below the kernel's ephemeral range, so the
/// outgoing connections of the tests themselves never take one in the window
/// between this call and the server binding it.
pub fn free_port() -> u16 {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(|| Mutex::new(HashSet::new()));
    let (low, high) = ephemeral_range();
    // Prefer 15000..low; fall back to whatever the kernel offers.
    let candidates_end = low.clamp(15001, 32768);
    for _ in 0..2000 {
        let port = rand::random::<u16>() % (candidates_end - 15000) + 15000;
        if port >= low && port <= high {
            continue;
        }
        let mut given = given.lock().unwrap_or_else(|e| e.into_inner());
        if given.contains(&port) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    let mut given = given.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

fn ephemeral_range() -> (u16, u16) {
    let text = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap_or_default();
    let mut parts = text
        .split_whitespace()
        .filter_map(|p| p.parse::<u16>().ok());
    match (parts.next(), parts.next()) {
        (Some(low), Some(high)) => (low, high),
        _ => (32768, 60999),
    }
}

/// The trimmed standard output of a command that must have succeeded; panics
/// with its standard error otherwise.
pub fn success_stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Run a command to completion, bounded by `timeout`; panic (with whatever it
/// printed so far) if it runs out or cannot start. Stdin is empty.
pub fn run_bounded(cmd: &mut Command, timeout: Duration, what: &str) -> Output {
    run_bounded_with_input(cmd, None, timeout, what)
}

/// Like [`run_bounded`], feeding `input` to the command's stdin.
pub fn run_bounded_with_input(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
    what: &str,
) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: cannot start {:?}: {e}", cmd.get_program()));
    let writer = input.map(|bytes| {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let bytes = bytes.to_vec();
        thread::spawn(move || {
            // The command may exit before reading everything; that is its business.
            let _ = stdin.write_all(&bytes);
        })
    });
    let output = wait_output(child, timeout, what);
    if let Some(writer) = writer {
        let _ = writer.join();
    }
    output
}

/// Wait for a spawned child whose stdout/stderr are piped; bounded.
pub fn wait_output(mut child: Child, timeout: Duration, what: &str) -> Output {
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_child(&mut child, timeout);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        let stdout = out.join().unwrap_or_default();
        let stderr = err.join().unwrap_or_default();
        panic!(
            "{what}: still running after {timeout:?}, killed it.\n--- stdout ---\n{}\n--- stderr ---\n{}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        );
    };
    Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

/// Poll a child until it exits or `timeout` passes.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => {}
            Err(e) => panic!("waiting for child {}: {e}", child.id()),
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Stop a child: `first` signal, up to `grace`; then SIGKILL and reap it.
/// Returns true when it exited within the grace period.
pub fn stop_child(child: &mut Child, first: Signal, grace: Duration) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return true;
    }
    let _ = kill(Pid::from_raw(child.id() as i32), first);
    if wait_child(child, grace).is_some() {
        return true;
    }
    let _ = child.kill();
    let _ = wait_child(child, Duration::from_secs(10));
    false
}

/// Poll `check` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Await `fut` for at most `timeout`; panic naming `what` when it runs out.
pub async fn within<F: Future>(timeout: Duration, what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(timeout, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {timeout:?}"),
    }
}

/// The last `lines` lines of a text, for panic messages.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// Read a log file as text (empty if it is missing).
pub fn read_log(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Remove what earlier, killed test processes left under /tmp: their directories,
/// and the PostgreSQL or pgsluice processes still running out of them.
fn cleanup_stale_once() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(cleanup_stale);
}

fn cleanup_stale() {
    let Ok(entries) = fs::read_dir("/tmp") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let Some(owner) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if owner == std::process::id() || Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let dir = entry.path();
        for pid_file in [dir.join("data/postmaster.pid"), dir.join("harness.pid")] {
            kill_leftover(&pid_file, &dir);
        }
        let _ = fs::remove_dir_all(&dir);
    }
}

/// SIGKILL the process named by the first line of `pid_file`, but only if its
/// command line still points into `dir` (the pid may have been reused).
fn kill_leftover(pid_file: &Path, dir: &Path) {
    let Ok(text) = fs::read_to_string(pid_file) else {
        return;
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return;
    };
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
        return;
    };
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if cmdline.contains(&*dir.to_string_lossy()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        thread::sleep(Duration::from_millis(100));
    }
}

/// Environment variables that would change what psql/pgbench/libpq connect to.
pub const LIBPQ_ENV: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGTZ",
    "PGDATESTYLE",
    "PGCLIENTENCODING",
    "PGCONNECT_TIMEOUT",
    "PGTARGETSESSIONATTRS",
];

/// A libpq program (psql, pgbench, pg_isready) with a clean libpq environment:
/// no password file, no inherited connection settings.
pub fn libpq_command(program: &str) -> Command {
    with_clean_libpq_env(Command::new(pg_bin(program)))
}

fn with_clean_libpq_env(mut cmd: Command) -> Command {
    for var in LIBPQ_ENV {
        cmd.env_remove(var);
    }
    cmd.env("PGPASSFILE", "/dev/null")
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGAPPNAME", "pgsluice-tests");
    cmd
}

/// Debian's Python 3 (it has python3-psycopg, which another python3 on PATH
/// may lack), with the libpq environment cleaned as for [`libpq_command`].
pub fn debian_python() -> Command {
    with_clean_libpq_env(Command::new("/usr/bin/python3"))
}

/// The rows of a simple query's answer (a SHOW on the console), each as
/// column name → text value.
pub fn rows_by_name(
    messages: &[tokio_postgres::SimpleQueryMessage],
) -> Vec<std::collections::HashMap<String, Option<String>>> {
    messages
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                row.columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), row.get(i).map(str::to_string)))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

/// The SQLSTATE of a tokio-postgres error, when it is a server (or pooler) error.
pub fn db_code(e: &tokio_postgres::Error) -> Option<String> {
    e.as_db_error().map(|d| d.code().code().to_string())
}

/// The message of a tokio-postgres error: the server's message, or the whole error.
pub fn db_message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| format!("{e:?}"))
}

/// The PostgreSQL backend that runs a query for `client` now (in transaction
/// pooling, the server it has been given for this query).
pub async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}
