//! The `log` backend: PgBouncer-style lines on stderr and, with `logfile`, in a
//! file that a reload reopens (for logrotate).
//!
//! Level names follow PgBouncer: ERROR, WARNING, LOG (info), DEBUG, NOISE (trace).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use log::{Level, LevelFilter, Log, Metadata, Record};

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
    file: Mutex<Option<(PathBuf, File)>>,
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
        file: Mutex::new(file),
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
        *self.0.file.lock().unwrap_or_else(|e| e.into_inner()) = file;
        log::set_max_level(settings.level());
        Ok(())
    }
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
        let line = format!(
            "{} [{}] {} {}\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S%.3f UTC"),
            std::process::id(),
            level_name(record.level()),
            record.args()
        );
        if !self.0.quiet {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
        if let Some((_, file)) = self
            .0
            .file
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            let _ = file.write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}
