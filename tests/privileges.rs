//! Privilege drop: started as root with `user = postgres` (or `-u postgres`),
//! pgsluice binds, opens its log file, then becomes postgres for good — real,
//! effective and saved ids — and keeps serving and reloading. Root without a
//! user to become is refused. After the drop an unreadable config is a reload
//! error, not a crash.
//!
//! The root cases need root (CI runs as root); run as another user, the tests
//! check what that user can: switching to someone else is refused.

mod support;

use support::process::{pgsluice_command, Proc};

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::{Gid, Pid, Uid};

use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::{libpq_command, pg_os_user, read_log, run_bounded, PoolerConfig, Postgres};

const STEP: Duration = Duration::from_secs(20);

/// pgsluice started by the test itself, as root (the harness's `Pooler` starts
/// it as postgres already).
fn start(args: &[&str], ini: &Path, log_path: &Path) -> Proc {
    let mut cmd = pgsluice_command();
    cmd.args(args).arg(ini);
    Proc::spawn(cmd, log_path)
}

fn psql(port: u16, sql: &str) -> Result<String, String> {
    let mut cmd = libpq_command("psql");
    cmd.args(["-XAtq", "-w", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", TRUST_USER, "-d", TEST_DB, "-c", sql])
        .env("PGPASSWORD", TRUST_PASSWORD);
    let out = run_bounded(&mut cmd, Duration::from_secs(60), "psql");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The four ids (real, effective, saved, filesystem) of a `Uid:`/`Gid:` line
/// of /proc/PID/status, and the supplementary groups.
fn ids(pid: u32) -> (Vec<u32>, Vec<u32>, Vec<u32>) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> Vec<u32> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or_default()
            .split_whitespace()
            .map(|v| v.parse().expect("id"))
            .collect()
    };
    (field("Uid:"), field("Gid:"), field("Groups:"))
}

fn assert_runs_as(pid: u32, uid: Uid, gid: Gid) {
    let (uids, gids, groups) = ids(pid);
    assert_eq!(
        uids,
        vec![uid.as_raw(); 4],
        "real, effective, saved, fs uid"
    );
    assert_eq!(
        gids,
        vec![gid.as_raw(); 4],
        "real, effective, saved, fs gid"
    );
    assert!(
        !groups.contains(&0),
        "no root among the supplementary groups: {groups:?}"
    );
}

#[test]
fn root_with_user_drops_to_it_and_still_serves_and_reloads() {
    let Some((uid, gid)) = pg_os_user() else {
        return not_root_cannot_switch_users();
    };
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    // A log file that does not exist yet: created as root, then given to
    // postgres, so that a reload can reopen it.
    let logfile = cfg.dir().join("new.log");
    cfg.set("user", "postgres")
        .set("logfile", &logfile.to_string_lossy());
    let ini = cfg.write();
    let mut proc = start(&[], &ini, &cfg.dir().join("stderr.log"));
    proc.wait_for_log("process up");

    assert_runs_as(proc.pid, uid, gid);
    assert_eq!(fs::metadata(&logfile).expect("logfile").uid(), uid.as_raw());
    assert_eq!(psql(cfg.port(), "SELECT 1").as_deref(), Ok("1"));

    // A reload reads the config and reopens the log file as postgres.
    cfg.set("default_pool_size", "3");
    cfg.write();
    let mark = proc.log().len();
    kill(Pid::from_raw(proc.pid as i32), Signal::SIGHUP).expect("SIGHUP");
    proc.wait_for_log("config reloaded");
    assert!(!proc.log()[mark..].contains("ERROR"), "{}", proc.log());
    assert!(read_log(&logfile).contains("config reloaded"));

    // Now a config postgres may not read: a reload error, not a crash.
    fs::set_permissions(&ini, fs::Permissions::from_mode(0o000)).expect("chmod");
    kill(Pid::from_raw(proc.pid as i32), Signal::SIGHUP).expect("SIGHUP");
    proc.wait_for_log("reload failed");
    assert!(
        proc.log().contains("Permission denied"),
        "the error says why:\n{}",
        proc.log()
    );
    assert!(
        proc.running(),
        "an unreadable config must not stop pgsluice"
    );
    assert_eq!(psql(cfg.port(), "SELECT 2").as_deref(), Ok("2"));
}

#[test]
fn dash_u_names_the_user_too() {
    let Some((uid, gid)) = pg_os_user() else {
        return not_root_cannot_switch_users();
    };
    let pg = Postgres::start();
    let cfg = PoolerConfig::new(&pg);
    let ini = cfg.write();
    let proc = start(&["-u", "postgres"], &ini, &cfg.dir().join("stderr.log"));
    proc.wait_for_log("process up");
    assert_runs_as(proc.pid, uid, gid);
    assert_eq!(psql(cfg.port(), "SELECT 1").as_deref(), Ok("1"));
}

#[test]
fn root_without_a_user_is_refused() {
    if pg_os_user().is_none() {
        return not_root_cannot_switch_users();
    }
    let pg = Postgres::start();
    let cfg = PoolerConfig::new(&pg);
    let ini = cfg.write();
    let mut cmd = pgsluice_command();
    cmd.arg(&ini);
    let out = run_bounded(&mut cmd, STEP, "pgsluice as root");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refusing to run as root: set user= or -u"),
        "{stderr}"
    );
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", cfg.port())).is_ok(),
        "nothing may be left listening"
    );
}

/// Not root: `user=` naming another user cannot be honoured.
fn not_root_cannot_switch_users() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("user", "root");
    let ini = cfg.write();
    let mut cmd = pgsluice_command();
    cmd.arg(&ini);
    let out = run_bounded(&mut cmd, STEP, "pgsluice user=root");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("only root can switch users"), "{stderr}");
}
