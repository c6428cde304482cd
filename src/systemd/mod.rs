//! What makes pgsluice a well-behaved service process: under systemd, and
//! without it.
//!
//! - [`activation`]: serve the listening sockets a `.socket` unit passes
//!   (`LISTEN_FDS`, `LISTEN_FDNAMES`) instead of binding our own.
//! - [`notify`]: tell the service manager about readiness, reloads, stopping and
//!   start-up failures (`sd_notify`: `READY=1`, `RELOADING=1`, `STATUS=` …).
//! - [`status`]: the one-line `STATUS=` summary, sent every `stats_period`.
//! - [`watchdog`]: `WATCHDOG=1` pings from the runtime that serves clients.
//! - [`privileges`]: started as root, switch to `user=` / `-u` once the sockets
//!   and the log file are open.
//! - [`detach`]: `-d`, forking into the background, for hosts without a
//!   service manager.
//!
//! Everything that reads or edits the process environment (`LISTEN_*`) or forks
//! runs in `main` before the tokio runtime starts; see each module for why.

pub mod activation;
pub mod detach;
pub mod notify;
pub mod privileges;
pub mod status;
pub mod watchdog;

pub use notify::{notify_ready_after_reload, notify_reloading};

/// The environment variables a service manager sets for the processes it starts:
/// if one is present, something supervises us and `-d` must not fork away.
const MANAGER_VARIABLES: [&str; 3] = ["INVOCATION_ID", "NOTIFY_SOCKET", "LISTEN_FDS"];

/// The first service-manager variable found in the environment, if any.
pub fn service_manager_variable() -> Option<&'static str> {
    MANAGER_VARIABLES
        .into_iter()
        .find(|var| std::env::var_os(var).is_some())
}
