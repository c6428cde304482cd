//! The systemd watchdog: with `WatchdogSec=` set, systemd passes
//! `WATCHDOG_USEC` (and `WATCHDOG_PID`) and restarts the service when no
//! `WATCHDOG=1` arrives within that interval.
//!
//! The pings come from a task on the same tokio runtime that serves clients,
//! at half the interval. A dedicated thread would keep pinging while the
//! runtime is wedged (every worker blocked), which is exactly the failure the
//! watchdog exists to catch; a task only runs when the runtime does.

use std::time::Duration;

/// The interval systemd expects pings within, if the watchdog is on for this
/// process (`sd_notify::watchdog_enabled` checks `WATCHDOG_PID` too).
pub fn interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
}

/// Ping every half interval, forever. Spawn on the serving runtime.
pub async fn run(interval: Duration) {
    let period = interval / 2;
    loop {
        super::notify::watchdog();
        tokio::time::sleep(period).await;
    }
}
