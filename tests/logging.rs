//! Where log lines go: under the journal (`JOURNAL_STREAM` naming our stderr)
//! stderr lines carry the `<N>` syslog priority and no timestamp; elsewhere
//! they are PgBouncer's timestamped lines; the logfile is always timestamped;
//! `syslog = 1` sends to the syslog socket as `syslog_ident` with
//! `syslog_facility`.
//!
//! The syslog socket is a datagram socket the test binds at a temporary path,
//! named to pgsluice by `PGSLUICE_SYSLOG_SOCKET` (a test-only override of
//! `/dev/log`).

mod support;

use support::process::{pgsluice_command, Proc};

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::{
    libpq_command, read_log, run_bounded, temp_dir, write_pg_file, PoolerConfig, Postgres,
};

const STEP: Duration = Duration::from_secs(20);

/// pgsluice started by the test with extra environment (as root, the config
/// says `user = postgres`).
fn start(ini: &Path, log_path: &Path, env: &[(&str, &str)]) -> Proc {
    let mut cmd = pgsluice_command();
    cmd.envs(env.iter().copied()).arg(ini);
    Proc::spawn(cmd, log_path)
}

fn psql(port: u16) {
    let mut cmd = libpq_command("psql");
    cmd.args(["-XAtq", "-w", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", TRUST_USER, "-d", TEST_DB, "-c", "SELECT 1"])
        .env("PGPASSWORD", TRUST_PASSWORD);
    let out = run_bounded(&mut cmd, Duration::from_secs(60), "psql");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Make a reload fail: an ini pgsluice cannot load.
fn break_config(ini: &Path) {
    write_pg_file(ini, "[pgbouncer]\nlisten_port = not-a-port\n", 0o644);
}

/// PgBouncer's timestamp, as in `2024-01-01 12:00:00.000 UTC [123] LOG ...`.
fn is_timestamped(line: &str) -> bool {
    line.len() > 24 && line.as_bytes()[4] == b'-' && line.contains(" UTC [")
}

#[test]
fn journal_lines_carry_the_priority_and_no_timestamp() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    let logfile = cfg.dir().join("pgsluice.log");
    cfg.set("logfile", &logfile.to_string_lossy())
        .set("log_connections", "1")
        .set("no_such_setting", "1");
    let ini = cfg.write_for_service();
    // As systemd does: JOURNAL_STREAM names the device and inode of the
    // stream that is our stderr.
    let stderr_path = cfg.dir().join("stderr.log");
    fs::File::create(&stderr_path).expect("create");
    let meta = fs::metadata(&stderr_path).expect("stat");
    let stream = format!("{}:{}", meta.dev(), meta.ino());
    let proc = start(&ini, &stderr_path, &[("JOURNAL_STREAM", &stream)]);
    proc.wait_for_log("process up");

    psql(cfg.port());
    proc.wait_for_log("login attempt");
    break_config(&ini);
    proc.signal(Signal::SIGHUP);
    proc.wait_for_log("reload failed");

    let log = proc.log();
    for line in log.lines() {
        assert!(
            line.starts_with('<') && line.as_bytes().get(2) == Some(&b'>'),
            "every journal line starts with <N>: {line:?}"
        );
        assert!(!is_timestamped(&line[3..]), "no timestamp: {line:?}");
    }
    let find = |needle: &str| {
        log.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} line in:\n{log}"))
            .to_string()
    };
    assert!(find("login attempt").starts_with("<6>LOG "));
    assert!(find("reload failed").starts_with("<3>ERROR "));
    assert!(find("no_such_setting").starts_with("<4>WARNING "));

    // The log file is for people reading files: timestamps, no priorities.
    let file = read_log(&logfile);
    let line = file
        .lines()
        .find(|l| l.contains("login attempt"))
        .unwrap_or_else(|| panic!("logfile:\n{file}"));
    assert!(is_timestamped(line), "{line:?}");
}

#[test]
fn a_journal_stream_that_is_not_our_stderr_is_ignored() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    let ini = cfg.write_for_service();
    // Inherited from a parent whose stderr was the journal; ours is a file.
    let proc = start(
        &ini,
        &cfg.dir().join("stderr.log"),
        &[("JOURNAL_STREAM", "1:1")],
    );
    proc.wait_for_log("process up");
    let log = proc.log();
    let line = log
        .lines()
        .find(|l| l.contains("process up"))
        .expect("process up");
    assert!(is_timestamped(line), "plain timestamped line: {line:?}");
}

#[test]
fn syslog_receives_lines_with_ident_and_facility() {
    let pg = Postgres::start();
    let dir = temp_dir("syslog");
    let path = dir.path().join("log.sock");
    let socket = UnixDatagram::bind(&path).expect("bind the syslog socket");
    // pgsluice reconnects (if it must) after dropping privileges.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).expect("chmod");
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let (tx, rx) = mpsc::channel::<String>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        loop {
            let text = match socket.recv(&mut buf) {
                Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
                Err(_) => String::new(),
            };
            if tx.send(text).is_err() {
                return;
            }
        }
    });
    let wait_for = |needle: &str| -> String {
        let deadline = Instant::now() + STEP;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            if let Ok(text) = rx.recv_timeout(Duration::from_millis(200)) {
                if text.contains(needle) {
                    return text;
                }
                if !text.is_empty() {
                    seen.push(text);
                }
            }
        }
        panic!("no syslog message with {needle:?}; got {seen:#?}");
    };

    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("syslog", "1")
        .set("syslog_ident", "pgsluice-test")
        .set("syslog_facility", "local3");
    let ini = cfg.write_for_service();
    let proc = start(
        &ini,
        &cfg.dir().join("stderr.log"),
        &[("PGSLUICE_SYSLOG_SOCKET", &path.to_string_lossy())],
    );
    // local3 is facility 19: priority 19 * 8 + 6 (info) = 158, + 3 (err) = 155.
    let up = wait_for("process up");
    assert!(up.starts_with("<158>"), "{up:?}");
    assert!(
        up.contains(&format!("pgsluice-test[{}]: LOG process up", proc.pid)),
        "ident, pid and level: {up:?}"
    );

    break_config(&ini);
    proc.signal(Signal::SIGHUP);
    let error = wait_for("reload failed");
    assert!(error.starts_with("<155>"), "{error:?}");
    assert!(error.contains("ERROR reload failed"), "{error:?}");
    // stderr still gets its lines too.
    assert!(proc.log().contains("reload failed"));
}
