//! `-d`: run in the background, for hosts without a service manager.
//!
//! The process forks; the child starts a new session (no controlling terminal),
//! points stdin/stdout/stderr at /dev/null and carries on; the parent waits
//! until the child reports that it has started (pidfile written, privileges
//! dropped) or why it could not, prints that, and exits 0 or 1. So a script
//! running `pgsluice -d` learns about a failed start from the exit status.
//!
//! Under a service manager `-d` is refused: systemd tracks the process it
//! started, and a process that forks away from it looks dead to it.
//!
//! The fork must happen before the tokio runtime starts: only the forking thread
//! survives in the child, and a runtime's worker threads would be gone.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::fcntl::OFlag;
use nix::unistd::ForkResult;

#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    #[error(
        "refusing -d under a service manager ({0} is set): let the service manager run \
         pgsluice in the foreground"
    )]
    UnderServiceManager(&'static str),
    #[error("-d needs somewhere to log: set logfile= or syslog = 1")]
    NowhereToLog,
    #[error("cannot go to the background: {0} failed: {1}")]
    Os(&'static str, nix::Error),
}

impl DetachError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            DetachError::Os(_, e) => Some(*e as i32),
            _ => None,
        }
    }
}

/// Refuse `-d` when a service manager started us.
pub fn refuse_under_service_manager() -> Result<(), DetachError> {
    match super::service_manager_variable() {
        Some(var) => Err(DetachError::UnderServiceManager(var)),
        None => Ok(()),
    }
}

/// The background child's line back to the waiting parent.
#[derive(Debug)]
pub struct Detached {
    report: File,
}

impl Detached {
    /// Start-up went well: the parent exits 0.
    pub fn started(mut self) {
        let _ = self.report.write_all(b"ok");
    }

    /// Start-up failed: the parent prints `reason` and exits 1.
    pub fn failed(mut self, reason: &str) {
        let _ = self.report.write_all(format!("error: {reason}").as_bytes());
    }
}

/// Fork. Returns in the child only; the parent waits for the child's report
/// and exits. Must be called while the process is single-threaded.
pub fn detach() -> Result<Detached, DetachError> {
    let (read_end, write_end) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| DetachError::Os("pipe", e))?;
    // SAFETY: called from main before any other thread exists, so the child
    // has a consistent copy of every lock and allocator state.
    match unsafe { nix::unistd::fork() }.map_err(|e| DetachError::Os("fork", e))? {
        ForkResult::Parent { child } => {
            drop(write_end);
            let code = wait_for_child(read_end, child.as_raw());
            // Exit without running destructors: the sockets and socket files
            // this process holds now belong to the child.
            std::process::exit(code);
        }
        ForkResult::Child => {
            drop(read_end);
            nix::unistd::setsid().map_err(|e| DetachError::Os("setsid", e))?;
            redirect_stdio()?;
            Ok(Detached {
                report: File::from(write_end),
            })
        }
    }
}

fn wait_for_child(read_end: OwnedFd, pid: i32) -> i32 {
    let mut report = String::new();
    let _ = File::from(read_end).read_to_string(&mut report);
    match report.as_str() {
        "ok" => 0,
        "" => {
            eprintln!(
                "pgsluice: the background process (pid {pid}) exited during start-up; see the log"
            );
            1
        }
        other => {
            eprintln!(
                "pgsluice: {}",
                other.strip_prefix("error: ").unwrap_or(other)
            );
            1
        }
    }
}

fn redirect_stdio() -> Result<(), DetachError> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| {
            DetachError::Os(
                "open /dev/null",
                nix::Error::from_raw(e.raw_os_error().unwrap_or(0)),
            )
        })?;
    for fd in 0..=2 {
        nix::unistd::dup2(null.as_raw_fd(), fd).map_err(|e| DetachError::Os("dup2", e))?;
    }
    Ok(())
}
