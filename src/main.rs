//! The `pgsluice` command: PgBouncer's command line, then the start-up steps
//! that must happen before the tokio runtime exists, then the runtime.
//!
//! Order, and why:
//! 1. refuse `-d` under a service manager (it would fork away from it);
//! 2. take the sockets systemd passed — this edits the environment, which is
//!    only sound while the process has one thread;
//! 3. load the config and start logging (the log file is opened while we may
//!    still be root);
//! 4. bind the configured sockets, unless systemd passed some (ports < 1024 and
//!    root-owned directories need root);
//! 5. `-d`: fork (only the forking thread survives a fork, so no runtime yet);
//! 6. write the pidfile, then drop privileges for good;
//! 7. start the runtime and serve (`daemon::run`), which tells systemd READY=1.
//!
//! A failure anywhere is reported to stderr (or the log), to systemd
//! (`STATUS=`, `ERRNO=`) and, after `-d`, to the waiting parent; the exit
//! status is then non-zero.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use pgsluice::control::reload;
use pgsluice::daemon;
use pgsluice::log::{LogHandle, LogSettings, SyslogSettings};
use pgsluice::net::listener;
use pgsluice::systemd::{self, activation, detach, privileges};

/// A PostgreSQL connection pooler that reads pgbouncer.ini.
#[derive(Parser, Debug)]
#[command(name = "pgsluice", version, about)]
struct Cli {
    /// Run in the background (for hosts without systemd; refused under a
    /// service manager). Needs logfile= or syslog = 1.
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Log nothing to stderr.
    #[arg(short = 'q', long = "quiet")]
    quiet: bool,
    /// More logging; repeat for more.
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    verbose: u8,
    /// Switch to this user at start (overrides `user` in the config).
    #[arg(short = 'u', long = "user", value_name = "USER")]
    user: Option<String>,
    /// Threads serving connections. 1, the default, serves everything from one
    /// thread, as PgBouncer does: the least CPU per transaction. More spread
    /// the connections over that many cores, for hosts where one is not enough.
    #[arg(long = "threads", value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    threads: u16,
    /// The configuration file (pgbouncer.ini syntax).
    config: PathBuf,
}

/// Why start-up (or the run) failed: the message, and the OS error if one is
/// known (for systemd's `ERRNO=`).
struct Failure {
    message: String,
    errno: Option<i32>,
}

impl Failure {
    fn new(message: impl ToString, errno: Option<i32>) -> Failure {
        Failure {
            message: message.to_string(),
            errno,
        }
    }
}

macro_rules! failure_from {
    ($($t:ty => $errno:expr),* $(,)?) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Failure {
                let errno = ($errno)(&e);
                Failure::new(e, errno)
            }
        }
    )*};
}

failure_from! {
    activation::ActivationError => activation::ActivationError::errno,
    detach::DetachError => detach::DetachError::errno,
    privileges::PrivilegeError => privileges::PrivilegeError::errno,
    daemon::DaemonError => daemon::DaemonError::errno,
    listener::ListenError => |e: &listener::ListenError| e.source.raw_os_error(),
    pgsluice::config::ConfigError => |_: &pgsluice::config::ConfigError| None,
}

/// Where a failure has to be told, as far as start-up got.
#[derive(Default)]
struct Reporter {
    logger: Option<LogHandle>,
    detached: Option<detach::Detached>,
}

impl Reporter {
    fn report(&mut self, failure: &Failure) {
        systemd::notify::startup_failed(failure.errno, &failure.message);
        match &self.logger {
            Some(logger) => {
                log::error!("{}", failure.message);
                if logger.quiet() {
                    pgsluice::log::early_error(&failure.message);
                }
            }
            None => pgsluice::log::early_error(&failure.message),
        }
        if let Some(detached) = self.detached.take() {
            detached.failed(&failure.message);
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut reporter = Reporter::default();
    match start(cli, &mut reporter) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            reporter.report(&failure);
            ExitCode::FAILURE
        }
    }
}

fn start(cli: Cli, reporter: &mut Reporter) -> Result<(), Failure> {
    if cli.daemon {
        detach::refuse_under_service_manager()?;
    }
    let passed = activation::take()?;

    let loaded = reload::load_quiet(&cli.config)?;
    let general = &loaded.config.general;
    let logfile_is_new = general.logfile.as_ref().is_some_and(|p| !p.exists());
    let logger = pgsluice::log::init(&LogSettings {
        quiet: cli.quiet,
        verbose: u32::from(cli.verbose) + general.verbose,
        logfile: general.logfile.clone(),
    })
    .map_err(|e| {
        let path = general.logfile.as_deref().unwrap_or("?".as_ref());
        Failure::new(
            format!("cannot open logfile {}: {e}", path.display()),
            e.raw_os_error(),
        )
    })?;
    reporter.logger = Some(logger.clone());
    logger.set_syslog(SyslogSettings::from_general(general));
    for warning in reload::warnings(&loaded.config) {
        log::warn!("{warning}");
    }

    let target = privileges::resolve(cli.user.as_deref().or(general.user.as_deref()))?;

    let listeners = if passed.is_empty() {
        listener::bind_all(general)?
    } else {
        log::info!(
            "socket activation: serving the {} socket(s) systemd passed; \
             listen_addr, listen_port and unix_socket_dir are not bound",
            passed.len()
        );
        passed
    };
    if listeners.is_empty() {
        return Err(daemon::DaemonError::NoListeners.into());
    }

    if cli.daemon {
        if general.logfile.is_none() && !general.syslog {
            return Err(detach::DetachError::NowhereToLog.into());
        }
        reporter.detached = Some(detach::detach()?);
    }

    let pidfile = general.pidfile.clone();
    if let Some(path) = &pidfile {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|e| {
            Failure::new(
                format!("cannot write pidfile {}: {e}", path.display()),
                e.raw_os_error(),
            )
        })?;
    }

    // From here on a failure removes the pidfile again.
    let result = drop_privileges(target.as_ref(), logfile_is_new, general.logfile.as_deref())
        .and_then(|()| {
            if let Some(detached) = reporter.detached.take() {
                detached.started();
            }
            let options = daemon::Options {
                cli_verbose: u32::from(cli.verbose),
                pidfile: pidfile.clone(),
                threads: usize::from(cli.threads),
            };
            daemon::run(loaded, logger, options, listeners).map_err(Failure::from)
        });
    if result.is_err() {
        if let Some(path) = &pidfile {
            let _ = std::fs::remove_file(path);
        }
    }
    result
}

/// Become the configured user (if any), giving it the log file we just created
/// so that it can reopen it on reload.
fn drop_privileges(
    target: Option<&privileges::Target>,
    logfile_is_new: bool,
    logfile: Option<&std::path::Path>,
) -> Result<(), Failure> {
    let Some(target) = target else {
        return Ok(());
    };
    if let (true, Some(path)) = (logfile_is_new, logfile) {
        privileges::give_file(path, target)?;
    }
    privileges::drop_to(target)?;
    log::info!(
        "switched to user {} (uid {}, gid {})",
        target.name,
        target.uid,
        target.gid
    );
    Ok(())
}
