//! pgsluice as a systemd service: socket activation (under the real
//! `systemd-socket-activate`), sd_notify (READY, RELOADING with MONOTONIC_USEC,
//! STATUS, STOPPING, WATCHDOG — read from a datagram socket the test owns, as
//! systemd's would be), the watchdog stopping when the process is stalled,
//! PgBouncer's signals, and `-d`.
//!
//! When the tests run as root (as CI does), pgsluice is started as root with
//! `user = postgres`, as systemd would start it, and drops privileges itself.

mod support;

use support::process::{without_service_manager, Proc};

use std::collections::BTreeSet;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::{
    free_port, libpq_command, read_log, run_bounded, temp_dir, wait_until, write_pg_file, Pooler,
    PoolerConfig, Postgres,
};

const START: Duration = Duration::from_secs(20);
const STEP: Duration = Duration::from_secs(20);
const SOCKET_ACTIVATE: &str = "/usr/bin/systemd-socket-activate";

// ---------------------------------------------------------------------------
// A pgsluice process started the way a service manager would start it.

fn pgsluice_bin() -> &'static str {
    env!("CARGO_BIN_EXE_pgsluice")
}

/// A command with a clean service-manager environment.
fn command(program: &str) -> Command {
    let mut cmd = without_service_manager(program);
    cmd.env("RUST_BACKTRACE", "1");
    cmd
}

/// `psql -c sql` as the trust user through `host` (an address or a socket
/// directory) and `port`.
fn psql(host: &str, port: u16, sql: &str) -> Result<String, String> {
    let mut cmd = libpq_command("psql");
    cmd.args(["-XAtq", "-w", "-v", "ON_ERROR_STOP=1", "-h", host])
        .args([
            "-p",
            &port.to_string(),
            "-U",
            TRUST_USER,
            "-d",
            TEST_DB,
            "-c",
            sql,
        ])
        .env("PGPASSWORD", TRUST_PASSWORD);
    let out = run_bounded(&mut cmd, Duration::from_secs(60), &format!("psql {sql}"));
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok()
}

/// The TCP ports and Unix socket paths `pid` listens on, from /proc.
fn listening_sockets(pid: u32) -> (BTreeSet<u16>, BTreeSet<String>) {
    let mut inodes = BTreeSet::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/PID/fd") {
        let Ok(target) = fs::read_link(entry.expect("fd entry").path()) else {
            continue;
        };
        let target = target.to_string_lossy().into_owned();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.insert(inode.to_string());
        }
    }
    let mut ports = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().expect("port");
                ports.insert(u16::from_str_radix(port, 16).expect("hex port"));
            }
        }
    }
    let mut paths = BTreeSet::new();
    let text = fs::read_to_string("/proc/net/unix").expect("/proc/net/unix");
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 = listening
        let listening = f
            .get(3)
            .and_then(|flags| u32::from_str_radix(flags, 16).ok())
            .is_some_and(|flags| flags & 0x10000 != 0);
        if f.len() > 7 && listening && inodes.contains(f[6]) {
            paths.insert(f[7].to_string());
        }
    }
    (ports, paths)
}

// ---------------------------------------------------------------------------
// Socket activation

#[test]
fn serves_the_sockets_systemd_socket_activate_passes_and_binds_nothing() {
    assert!(
        Path::new(SOCKET_ACTIVATE).exists(),
        "{SOCKET_ACTIVATE} is missing: install the systemd package (scripts/install-deps.sh)"
    );
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    let ini = cfg.write_for_service();
    let configured_port = cfg.port();
    let sock_dir = temp_dir("activated");
    let passed_port = free_port();
    let unix_path = sock_dir.path().join(format!(".s.PGSQL.{passed_port}"));

    let mut cmd = command(SOCKET_ACTIVATE);
    cmd.arg(format!("--listen=127.0.0.1:{passed_port}"))
        .arg(format!("--listen={}", unix_path.display()))
        .arg("--fdname=pg-tcp:pg-unix")
        .args(["-E", "RUST_BACKTRACE=1", pgsluice_bin()])
        .arg(&ini);
    let proc = Proc::spawn(cmd, &cfg.dir().join("activated.log"));
    assert!(
        wait_until(START, || proc.log().contains("as 4.")),
        "systemd-socket-activate did not listen:\n{}",
        proc.log()
    );

    // The first connection makes systemd-socket-activate exec pgsluice, which
    // then serves it from the passed socket.
    assert_eq!(
        psql("127.0.0.1", passed_port, "SELECT 'tcp'").as_deref(),
        Ok("tcp")
    );
    proc.wait_for_log("process up");
    assert_eq!(
        psql(
            &sock_dir.path().to_string_lossy(),
            passed_port,
            "SELECT 'unix'"
        )
        .as_deref(),
        Ok("unix")
    );
    let log = proc.log();
    assert!(
        log.contains(&format!("127.0.0.1:{passed_port} (fd name \"pg-tcp\")")),
        "the TCP socket is logged with its name:\n{log}"
    );
    assert!(
        log.contains(&format!(
            "unix:{} (fd name \"pg-unix\")",
            unix_path.display()
        )),
        "the Unix socket is logged with its name:\n{log}"
    );

    // pgsluice (the same pid: systemd-socket-activate execs it) listens on
    // exactly the passed sockets, and bound nothing of its own.
    let (ports, paths) = listening_sockets(proc.pid);
    assert_eq!(ports, BTreeSet::from([passed_port]), "TCP listeners");
    assert_eq!(
        paths,
        BTreeSet::from([unix_path.display().to_string()]),
        "Unix listeners"
    );
    assert!(!accepts(configured_port), "listen_port must not be bound");
    let configured_socket = cfg.dir().join(format!(".s.PGSQL.{configured_port}"));
    assert!(
        !configured_socket.exists(),
        "unix_socket_dir must not be bound"
    );
}

#[test]
fn a_passed_datagram_socket_is_an_error_naming_it() {
    let dir = temp_dir("dgram");
    let mut cfg = PoolerConfig::new(&Postgres::start());
    let ini = cfg.write_for_service();
    let path = dir.path().join("dgram.sock");
    let mut cmd = command(SOCKET_ACTIVATE);
    cmd.args(["--datagram", &format!("--listen={}", path.display())])
        .args(["--fdname=pg-dgram", pgsluice_bin()])
        .arg(&ini);
    let mut proc = Proc::spawn(cmd, &dir.path().join("dgram.log"));
    assert!(
        wait_until(START, || path.exists()),
        "systemd-socket-activate did not bind {}:\n{}",
        path.display(),
        proc.log()
    );
    // A datagram is what makes systemd-socket-activate start the service.
    UnixDatagram::unbound()
        .expect("socket")
        .send_to(b"hello", &path)
        .expect("send a datagram");
    let status = proc.wait_exit(STEP);
    assert!(!status.success(), "must refuse a datagram socket");
    let log = proc.log();
    assert!(
        log.contains("passed fd 3 (name \"pg-dgram\") is a datagram socket"),
        "the error names the socket:\n{log}"
    );
}

#[test]
fn a_passed_socket_that_is_not_listening_is_an_error_naming_it() {
    let dir = temp_dir("notlistening");
    let mut cfg = PoolerConfig::new(&Postgres::start());
    let ini = cfg.write_for_service();
    // systemd-socket-activate only passes listening sockets: pass a bound, not
    // listening TCP socket as fd 3 by hand, with LISTEN_PID set to the pid
    // that execs pgsluice.
    let script = "import os, socket, sys\n\
                  s = socket.socket()\n\
                  s.bind(('127.0.0.1', 0))\n\
                  if s.fileno() != 3: os.dup2(s.fileno(), 3)\n\
                  os.set_inheritable(3, True)\n\
                  os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='idle')\n\
                  os.execv(sys.argv[1], sys.argv[1:])\n";
    let mut cmd = command("python3");
    cmd.args(["-c", script, pgsluice_bin()]).arg(&ini);
    let mut proc = Proc::spawn(cmd, &dir.path().join("notlistening.log"));
    let status = proc.wait_exit(STEP);
    assert!(
        !status.success(),
        "must refuse a socket that is not listening"
    );
    let log = proc.log();
    assert!(
        log.contains("passed fd 3 (name \"idle\") is not listening"),
        "the error names the socket:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// sd_notify and the watchdog

/// The test's stand-in for systemd's notify socket.
struct NotifySocket {
    path: PathBuf,
    rx: Receiver<(Instant, String)>,
    seen: Vec<String>,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    fn bind() -> NotifySocket {
        let dir = temp_dir("notify");
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        // pgsluice sends after dropping privileges.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match socket.recv(&mut buf) {
                    Ok(n) => {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if tx.send((Instant::now(), text)).is_err() {
                            return;
                        }
                    }
                    Err(_) => {
                        // Timeout: stop once nobody listens any more.
                        if tx.send((Instant::now(), String::new())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        NotifySocket {
            path,
            rx,
            seen: Vec::new(),
            _dir: dir,
        }
    }

    /// The next datagram within `timeout`, if any.
    fn next(&mut self, timeout: Duration) -> Option<(Instant, String)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((_, text)) if text.is_empty() => {}
                Ok((at, text)) => {
                    self.seen.push(text.clone());
                    return Some((at, text));
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => panic!("notify reader stopped"),
            }
        }
    }

    /// Skip datagrams until one satisfies `pred`; panic after `timeout`.
    fn wait_for(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> (Instant, String) {
        let deadline = Instant::now() + STEP;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some((at, text)) if pred(&text) => return (at, text),
                Some(_) => {}
                None => break,
            }
        }
        panic!(
            "no {what} within {STEP:?}; datagrams seen so far:\n{:#?}",
            self.seen
        );
    }

    /// Everything that arrives within `period`.
    fn collect(&mut self, period: Duration) -> Vec<(Instant, String)> {
        let deadline = Instant::now() + period;
        let mut all = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next(left) {
                Some(item) => all.push(item),
                None => break,
            }
        }
        all
    }
}

fn is_watchdog(text: &str) -> bool {
    text.lines().any(|l| l == "WATCHDOG=1")
}

fn has(text: &str, line: &str) -> bool {
    text.lines().any(|l| l == line)
}

fn has_prefix(text: &str, prefix: &str) -> bool {
    text.lines().any(|l| l.starts_with(prefix))
}

/// The process state letter from /proc/PID/stat (`T` when stopped).
fn proc_state(pid: u32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

#[test]
fn notifies_ready_reload_status_watchdog_and_stopping() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("stats_period", "1");
    let ini = cfg.write_for_service();
    let mut notify = NotifySocket::bind();

    // WATCHDOG_PID must be the pid that ends up running pgsluice: the shell's
    // own, which exec keeps.
    let mut cmd = command("sh");
    cmd.args([
        "-c",
        "export WATCHDOG_PID=$$; exec \"$0\" \"$@\"",
        pgsluice_bin(),
    ])
    .arg(&ini)
    .env("NOTIFY_SOCKET", &notify.path)
    .env("WATCHDOG_USEC", "1000000");
    let mut proc = Proc::spawn(cmd, &cfg.dir().join("notify.log"));

    // READY=1 first, once the listeners answer.
    let (_, first) = notify
        .next(START)
        .unwrap_or_else(|| panic!("no notification within {START:?}:\n{}", proc.log()));
    assert!(has(&first, "READY=1"), "first datagram: {first:?}");
    assert!(
        has_prefix(&first, "STATUS=") && first.contains("clients"),
        "READY carries a status summary: {first:?}"
    );
    assert_eq!(
        psql("127.0.0.1", cfg.port(), "SELECT 1").as_deref(),
        Ok("1"),
        "serving when READY=1 arrives"
    );

    // Periodic STATUS= lines (stats_period = 1).
    let statuses = notify
        .collect(Duration::from_millis(2500))
        .into_iter()
        .filter(|(_, t)| has_prefix(t, "STATUS=") && t.contains("xact/s"))
        .count();
    assert!(statuses >= 2, "STATUS= lines: {:#?}", notify.seen);

    // SIGHUP: RELOADING=1 and MONOTONIC_USEC= in one datagram, then READY=1.
    proc.signal(Signal::SIGHUP);
    let (_, reloading) = notify.wait_for("RELOADING=1", |t| has(t, "RELOADING=1"));
    assert!(
        has_prefix(&reloading, "MONOTONIC_USEC="),
        "RELOADING=1 travels with MONOTONIC_USEC=: {reloading:?}"
    );
    let (_, ready) = notify.wait_for("READY=1 after the reload", |t| has(t, "READY=1"));
    assert!(ready.contains("STATUS=configuration reloaded"), "{ready:?}");

    // A refused reload: READY=1 again (the old config serves) with the error.
    let good_ini = fs::read_to_string(&ini).expect("read ini");
    write_pg_file(&ini, "[pgbouncer]\nlisten_port = not-a-port\n", 0o644);
    proc.signal(Signal::SIGHUP);
    notify.wait_for("RELOADING=1", |t| has(t, "RELOADING=1"));
    let (_, ready) = notify.wait_for("READY=1 after a refused reload", |t| has(t, "READY=1"));
    assert!(
        ready.contains("STATUS=reload failed") && ready.contains("listen_port"),
        "the status names the error: {ready:?}"
    );
    write_pg_file(&ini, &good_ini, 0o644);
    assert_eq!(
        psql("127.0.0.1", cfg.port(), "SELECT 2").as_deref(),
        Ok("2")
    );

    // WATCHDOG=1 about every half of WATCHDOG_USEC (1 s).
    let pings: Vec<Instant> = notify
        .collect(Duration::from_millis(3000))
        .into_iter()
        .filter(|(_, t)| is_watchdog(t))
        .map(|(at, _)| at)
        .collect();
    assert!(pings.len() >= 4, "WATCHDOG=1 pings in 3 s: {}", pings.len());
    let mut gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median >= Duration::from_millis(350) && median <= Duration::from_millis(750),
        "pings every ~500 ms, median gap {median:?} ({gaps:?})"
    );

    // A stalled process sends no pings (so systemd would restart it).
    proc.signal(Signal::SIGSTOP);
    assert!(
        wait_until(Duration::from_secs(5), || proc_state(proc.pid) == Some('T')),
        "process did not stop"
    );
    // What was sent before the stop may still be queued.
    while notify.next(Duration::from_millis(200)).is_some() {}
    let during = notify.collect(Duration::from_millis(2500));
    proc.signal(Signal::SIGCONT);
    assert!(
        during.iter().all(|(_, t)| !is_watchdog(t)),
        "WATCHDOG=1 while stopped: {during:?}"
    );
    notify.wait_for("WATCHDOG=1 after SIGCONT", is_watchdog);

    // SIGTERM: STOPPING=1, then a clean exit.
    proc.signal(Signal::SIGTERM);
    let (_, stopping) = notify.wait_for("STOPPING=1", |t| has(t, "STOPPING=1"));
    assert!(
        has_prefix(&stopping, "STATUS=shutting down"),
        "{stopping:?}"
    );
    let status = proc.wait_exit(STEP);
    assert!(status.success(), "exit status after SIGTERM: {status}");
}

#[test]
fn without_watchdog_pid_match_there_is_no_watchdog() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    let ini = cfg.write_for_service();
    let mut notify = NotifySocket::bind();
    // WATCHDOG_PID names another process: the watchdog is not ours.
    let mut cmd = command(pgsluice_bin());
    cmd.arg(&ini)
        .env("NOTIFY_SOCKET", &notify.path)
        .env("WATCHDOG_USEC", "400000")
        .env("WATCHDOG_PID", "1");
    let _proc = Proc::spawn(cmd, &cfg.dir().join("nowatchdog.log"));
    notify.wait_for("READY=1", |t| has(t, "READY=1"));
    let after = notify.collect(Duration::from_millis(1500));
    assert!(
        after.iter().all(|(_, t)| !is_watchdog(t)),
        "WATCHDOG=1 sent for someone else's watchdog: {after:?}"
    );
}

#[test]
fn a_failed_start_tells_systemd_why() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    // Someone else holds the port.
    let holder = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = holder.local_addr().expect("addr").port();
    cfg.set("listen_port", &port.to_string());
    let ini = cfg.write_for_service();
    let mut notify = NotifySocket::bind();
    let mut cmd = command(pgsluice_bin());
    cmd.arg(&ini).env("NOTIFY_SOCKET", &notify.path);
    let mut proc = Proc::spawn(cmd, &cfg.dir().join("failed.log"));
    let status = proc.wait_exit(STEP);
    assert!(!status.success());
    let (_, why) = notify.wait_for("STATUS= with the reason", |t| {
        has_prefix(t, "STATUS=failed to start")
    });
    assert!(
        why.contains(&port.to_string()) && has(&why, "ERRNO=98"),
        "STATUS names the address and ERRNO is EADDRINUSE: {why:?}"
    );
    assert!(!why.contains("READY=1"));
}

// ---------------------------------------------------------------------------
// Signals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_open_client_finish_and_refuses_new_ones() {
    let pg = Postgres::start();
    let cfg = PoolerConfig::new(&pg);
    let mut pooler = Pooler::start(&cfg);
    let client = pooler
        .connect(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD))
        .await
        .expect("login");
    let work = tokio::spawn(async move {
        let rows = client
            .simple_query("BEGIN; SELECT pg_sleep(2); SELECT 'done'; COMMIT")
            .await;
        (client, rows)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    pooler.signal(Signal::SIGTERM);

    let port = pooler.port;
    let refused =
        tokio::task::spawn_blocking(move || wait_until(Duration::from_secs(5), || !accepts(port)))
            .await
            .expect("join");
    assert!(refused, "new connections are refused after SIGTERM");

    let (client, rows) = pooler
        .within(STEP, "the client's work", work)
        .await
        .expect("join");
    let rows = rows.expect("the open transaction finishes after SIGTERM");
    let done = rows.iter().any(
        |m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(r) if r.get(0) == Some("done")),
    );
    assert!(done, "the client got its result");
    assert!(
        pooler.is_running(),
        "still running while the client is connected"
    );
    drop(client);
    let status = pooler
        .wait_exit(STEP)
        .expect("pgsluice exits once the client left");
    assert_eq!(status.code(), Some(0), "exit status {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr1_pauses_and_sigusr2_resumes() {
    let pg = Postgres::start();
    let cfg = PoolerConfig::new(&pg);
    let pooler = Pooler::start(&cfg);
    let client = pooler
        .connect(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD))
        .await
        .expect("login");
    client.simple_query("SELECT 1").await.expect("before pause");

    let mark = pooler.log_mark();
    pooler.signal(Signal::SIGUSR1);
    assert!(
        pooler.wait_for_log_since(mark, "PAUSE (all): done", STEP),
        "PAUSE did not finish:\n{}",
        pooler.log_since(mark)
    );
    let query = tokio::spawn(async move {
        let r = client.simple_query("SELECT 'resumed'").await;
        (client, r)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!query.is_finished(), "a query must wait while paused");

    pooler.signal(Signal::SIGUSR2);
    let (_client, result) = pooler
        .within(STEP, "the query after SIGUSR2", query)
        .await
        .expect("join");
    result.expect("the query runs after RESUME");
}

// ---------------------------------------------------------------------------
// -d

fn daemon_config(pg: &Postgres) -> (PoolerConfig, PathBuf, PathBuf) {
    let mut cfg = PoolerConfig::new(pg);
    let pidfile = cfg.dir().join("pgsluice.pid");
    let logfile = cfg.dir().join("pgsluice.log");
    cfg.set("pidfile", &pidfile.to_string_lossy());
    cfg.set("logfile", &logfile.to_string_lossy());
    let ini = cfg.write_for_service();
    (cfg, ini, pidfile)
}

#[test]
fn daemon_mode_is_refused_under_a_service_manager() {
    let pg = Postgres::start();
    let (_cfg, ini, pidfile) = daemon_config(&pg);
    for (var, value) in [
        ("INVOCATION_ID", "0123456789abcdef0123456789abcdef"),
        ("NOTIFY_SOCKET", "/run/systemd/notify"),
        ("LISTEN_FDS", "1"),
    ] {
        let mut cmd = command(pgsluice_bin());
        cmd.arg("-d").arg(&ini).env(var, value);
        let out = run_bounded(&mut cmd, STEP, "pgsluice -d");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "-d with {var} set must fail");
        assert!(
            stderr.contains("refusing -d under a service manager") && stderr.contains(var),
            "clear error naming {var}: {stderr}"
        );
        assert!(!pidfile.exists(), "no pidfile when refused");
    }
}

#[test]
fn daemon_mode_detaches_and_writes_the_pidfile() {
    let pg = Postgres::start();
    let (cfg, ini, pidfile) = daemon_config(&pg);
    let mut cmd = command(pgsluice_bin());
    cmd.arg("-d").arg(&ini);
    let out = run_bounded(&mut cmd, STEP, "pgsluice -d");
    assert!(
        out.status.success(),
        "pgsluice -d: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The parent returns once the child has written the pidfile.
    let text = fs::read_to_string(&pidfile).expect("pidfile written before -d returns");
    let pid: i32 = text.trim().parse().expect("pid in pidfile");
    let stop = scopeguard(pid);

    // A new session of its own, stdio on /dev/null, no longer our child.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon runs");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .collect();
    // state ppid pgrp session
    assert_eq!(fields[3], pid.to_string(), "setsid: session id is its pid");
    assert_ne!(
        fields[1],
        std::process::id().to_string(),
        "detached from us"
    );
    for fd in 0..3 {
        let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).expect("readlink fd");
        assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
    }
    assert_eq!(
        psql("127.0.0.1", cfg.port(), "SELECT 'bg'").as_deref(),
        Ok("bg")
    );

    kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM the daemon");
    assert!(
        wait_until(
            STEP,
            || !matches!(proc_state(pid as u32), Some(s) if s != 'Z')
        ),
        "daemon did not exit after SIGTERM"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !pidfile.exists()),
        "pidfile removed at exit"
    );
    let log = read_log(&cfg.dir().join("pgsluice.log"));
    assert!(log.contains("process up"), "logs go to logfile:\n{log}");
    drop(stop);
}

/// SIGKILL a detached daemon if the test fails before stopping it.
fn scopeguard(pid: i32) -> impl Drop {
    struct Guard(i32);
    impl Drop for Guard {
        fn drop(&mut self) {
            if matches!(proc_state(self.0 as u32), Some(s) if s != 'Z') {
                let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
            }
        }
    }
    Guard(pid)
}
