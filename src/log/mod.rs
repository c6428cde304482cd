//! The `log` backend. One record goes to up to three places:
//!
//! - stderr, unless `-q`: under the systemd journal (see [`journal`]) as
//!   `<6>LOG message` (the journal reads the `<N>` syslog priority and stamps
//!   the time itself); elsewhere as PgBouncer-style timestamped lines;
//! - `logfile`, timestamped, reopened on reload (for logrotate);
//! - syslog with `syslog = 1`, as `syslog_ident` to `syslog_facility`.
//!
//! Level names follow PgBouncer: ERROR, WARNING, LOG (info), DEBUG, NOISE (trace).

mod journal;
mod syslog;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use log::{Level, LevelFilter, Log, Metadata, Record};

pub use self::syslog::SyslogSettings;

/// How to log, from the command line and the config.
#[derive(Clone, Debug, Default)]
pub struct LogSettings {
    /// `-q`: nothing on stderr.
    pub quiet: bool,
    /// `-v` count plus the `verbose` setting.
    pub verbose: u32,
    pub logfile: Option<PathBuf>,
}

impl LogSettings {
    fn level(&self) -> LevelFilter {
        match self.verbose {
            0 => LevelFilter::Info,
            1 => LevelFilter::Debug,
            _ => LevelFilter::Trace,
        }
    }
}

/// The installed logger; keep the handle to reopen the log file.
#[derive(Clone)]
pub struct LogHandle(Arc<Logger>);

struct Logger {
    quiet: bool,
    /// stderr is the journal's stream: `<N>` prefixes, no timestamps.
    journal: bool,
    file: Mutex<Option<(PathBuf, File)>>,
    syslog: Mutex<Option<syslog::Syslog>>,
}

fn open_logfile(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Install the logger. Fails if the log file cannot be opened.
pub fn init(settings: &LogSettings) -> std::io::Result<LogHandle> {
    let file = match &settings.logfile {
        Some(path) => Some((path.clone(), open_logfile(path)?)),
        None => None,
    };
    let logger = Arc::new(Logger {
        quiet: settings.quiet,
        journal: journal::stderr_is_journal(),
        file: Mutex::new(file),
        syslog: Mutex::new(None),
    });
    log::set_boxed_logger(Box::new(LogHandle(logger.clone())))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    log::set_max_level(settings.level());
    Ok(LogHandle(logger))
}

impl LogHandle {
    /// After a reload: reopen (or switch, or stop using) the log file and apply
    /// the verbosity.
    pub fn reconfigure(&self, settings: &LogSettings) -> std::io::Result<()> {
        let file = match &settings.logfile {
            Some(path) => Some((path.clone(), open_logfile(path)?)),
            None => None,
        };
        *lock(&self.0.file) = file;
        log::set_max_level(settings.level());
        Ok(())
    }

    /// Start, change or stop sending to syslog (`syslog`, `syslog_ident`,
    /// `syslog_facility`). Not reaching the syslog socket is not fatal — the
    /// other destinations still work — so it is only logged; sending retries.
    pub fn set_syslog(&self, settings: Option<SyslogSettings>) {
        let mut slot = lock(&self.0.syslog);
        match settings {
            None => *slot = None,
            Some(settings) => {
                if slot.as_ref().is_some_and(|s| s.settings() == &settings) {
                    return;
                }
                let (syslog, problem) = syslog::Syslog::open(settings);
                *slot = Some(syslog);
                drop(slot);
                if let Some(problem) = problem {
                    log::warn!("{problem}");
                }
            }
        }
    }

    /// Whether `-q` silenced stderr.
    pub fn quiet(&self) -> bool {
        self.0.quiet
    }
}

/// An error before the logger exists (or with `-q`): one line on stderr,
/// with the journal's priority prefix when stderr is the journal.
pub fn early_error(message: &str) {
    let line = if journal::stderr_is_journal() {
        journal::line(Level::Error, level_name(Level::Error), message)
    } else {
        format!("pgsluice: {message}\n")
    };
    let _ = std::io::stderr().write_all(line.as_bytes());
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "LOG",
        Level::Debug => "DEBUG",
        Level::Trace => "NOISE",
    }
}

impl Log for LogHandle {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = record.level();
        let message = record.args().to_string();
        let timestamped = || {
            format!(
                "{} [{}] {} {}\n",
                chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f UTC"),
                std::process::id(),
                level_name(level),
                message
            )
        };
        let mut stamped_line = None;
        if !self.0.quiet {
            let line = if self.0.journal {
                journal::line(level, level_name(level), &message)
            } else {
                stamped_line.get_or_insert_with(timestamped).clone()
            };
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        if let Some((_, file)) = lock(&self.0.file).as_mut() {
            let line = stamped_line.get_or_insert_with(timestamped);
            let _ = file.write_all(line.as_bytes());
        }
        if let Some(syslog) = lock(&self.0.syslog).as_mut() {
            syslog.send(level, &format!("{} {message}", level_name(level)));
        }
    }

    fn flush(&self) {}
}
