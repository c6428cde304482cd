//! A pooler process a test starts itself, with exactly the command line and
//! environment it needs (socket activation, NOTIFY_SOCKET, JOURNAL_STREAM, -u,
//! -d …). [`crate::support::Pooler`] covers the common case; this is for the
//! tests of how the process meets its environment.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{read_log, stop_child, tail, wait_child, wait_until};

/// How long a process gets to log an expected line.
pub const LOG_WAIT: Duration = Duration::from_secs(20);

/// The variables systemd hands a service; a test process starts without the
/// runner's and sets the ones it tests.
const SERVICE_MANAGER_ENV: [&str; 8] = [
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "JOURNAL_STREAM",
    "INVOCATION_ID",
];

/// A command for `program` with none of the service manager's variables inherited.
pub fn without_service_manager(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    for var in SERVICE_MANAGER_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// A command running the pgsluice binary under test, with none of the service
/// manager's variables inherited.
pub fn pgsluice_command() -> Command {
    without_service_manager(env!("CARGO_BIN_EXE_pgsluice"))
}

/// A started process, its stdout and stderr in one log file. Dropping it stops
/// it (CONT, then QUIT, then KILL) and, when the test is failing, prints its log.
pub struct Proc {
    pub child: Child,
    pub pid: u32,
    log_path: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log_path: &Path) -> Proc {
        let log = fs::File::create(log_path).expect("create log");
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        Proc {
            pid: child.id(),
            child,
            log_path: log_path.to_path_buf(),
        }
    }

    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }

    /// Wait (up to [`LOG_WAIT`]) for `needle` in the log; panic with the log if not.
    pub fn wait_for_log(&self, needle: &str) {
        assert!(
            wait_until(LOG_WAIT, || self.log().contains(needle)),
            "no {needle:?} in the log within {LOG_WAIT:?}:\n{}",
            tail(&self.log(), 60)
        );
    }

    pub fn signal(&self, sig: Signal) {
        kill(Pid::from_raw(self.pid as i32), sig).expect("kill");
    }

    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Wait for the process to exit; panic with its log if it does not.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_child(&mut self.child, timeout).unwrap_or_else(|| {
            panic!(
                "pid {} still running after {timeout:?}:\n{}",
                self.pid,
                tail(&self.log(), 60)
            )
        })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- log of pid {} ---\n{}", self.pid, tail(&self.log(), 80));
        }
        // A test may have stopped it (SIGSTOP) to stall it.
        let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGCONT);
        stop_child(&mut self.child, Signal::SIGQUIT, Duration::from_secs(5));
    }
}
