//! Sending log lines to the local syslog daemon (`syslog = 1`), as
//! `syslog_ident` with `syslog_facility`, through the syslog crate.
//!
//! The socket is `/dev/log` (or the crate's other usual paths). The
//! environment variable `PGSLUICE_SYSLOG_SOCKET` replaces that path; it exists
//! for the integration tests, which cannot own `/dev/log`, and is not a setting
//! for operators.
//!
//! A syslog daemon that is missing or restarting must not stall or stop the
//! pooler: the datagram socket is non-blocking (a full queue drops the line, as
//! the journal's own rate limit would), and a broken connection is dropped and
//! retried at most once a second.

use std::str::FromStr;
use std::time::{Duration, Instant};

use log::Level;
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

/// The test-only override of the syslog socket path.
const SOCKET_OVERRIDE: &str = "PGSLUICE_SYSLOG_SOCKET";

/// How long to wait before trying a broken syslog connection again.
const RETRY: Duration = Duration::from_secs(1);

/// `syslog_ident` and `syslog_facility`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslogSettings {
    pub ident: String,
    pub facility: String,
}

impl SyslogSettings {
    /// From the config: `None` unless `syslog = 1`.
    pub fn from_general(general: &crate::config::General) -> Option<SyslogSettings> {
        general.syslog.then(|| SyslogSettings {
            ident: general.syslog_ident.clone(),
            facility: general.syslog_facility.clone(),
        })
    }
}

pub(super) struct Syslog {
    settings: SyslogSettings,
    facility: Facility,
    logger: Option<Logger<LoggerBackend, Formatter3164>>,
    last_attempt: Instant,
}

impl Syslog {
    /// Connect. Returns the sink (which retries later if this failed) and a
    /// problem worth a warning, if any.
    pub(super) fn open(settings: SyslogSettings) -> (Syslog, Option<String>) {
        let mut problems = Vec::new();
        let facility = Facility::from_str(&settings.facility).unwrap_or_else(|()| {
            problems.push(format!(
                "syslog_facility '{}' is unknown; using daemon",
                settings.facility
            ));
            Facility::LOG_DAEMON
        });
        let mut sink = Syslog {
            settings,
            facility,
            logger: None,
            last_attempt: Instant::now(),
        };
        if let Err(e) = sink.connect() {
            problems.push(format!("syslog: {e}; will retry"));
        }
        let problem = (!problems.is_empty()).then(|| problems.join("; "));
        (sink, problem)
    }

    pub(super) fn settings(&self) -> &SyslogSettings {
        &self.settings
    }

    fn connect(&mut self) -> Result<(), String> {
        self.last_attempt = Instant::now();
        let formatter = Formatter3164 {
            facility: self.facility,
            // Local syslog: the daemon adds the host name itself.
            hostname: None,
            process: self.settings.ident.clone(),
            pid: std::process::id(),
        };
        let logger = match std::env::var_os(SOCKET_OVERRIDE) {
            Some(path) => syslog::unix_custom(formatter, &path)
                .map_err(|e| format!("cannot connect to {}: {e}", path.to_string_lossy()))?,
            None => syslog::unix(formatter).map_err(|e| format!("cannot connect: {e}"))?,
        };
        if let LoggerBackend::Unix(socket) = &logger.backend {
            let _ = socket.set_nonblocking(true);
        }
        self.logger = Some(logger);
        Ok(())
    }

    /// Send one message; on failure drop the connection (retried later).
    pub(super) fn send(&mut self, level: Level, message: &str) {
        if self.logger.is_none() && (self.last_attempt.elapsed() < RETRY || self.connect().is_err())
        {
            return;
        }
        let Some(logger) = self.logger.as_mut() else {
            return;
        };
        // After -d the process has a new pid.
        logger.formatter.pid = std::process::id();
        let sent = match level {
            Level::Error => logger.err(message),
            Level::Warn => logger.warning(message),
            Level::Info => logger.info(message),
            Level::Debug | Level::Trace => logger.debug(message),
        };
        if let Err(e) = sent {
            let would_block = matches!(
                &e,
                syslog::Error::Io(io) | syslog::Error::Write(io)
                    if io.kind() == std::io::ErrorKind::WouldBlock
            );
            if !would_block {
                self.logger = None;
            }
        }
    }
}
