//! `sd_notify`: telling the service manager what state pgsluice is in.
//!
//! Every function here does nothing when `NOTIFY_SOCKET` is unset (not started by
//! systemd with `Type=notify`), so callers need no checks of their own. A failed
//! send is logged, never fatal: the pooler serving clients matters more than the
//! manager's view of it.
//!
//! States given to one `sd_notify::notify` call travel as one datagram. That is
//! what keeps `RELOADING=1` and `MONOTONIC_USEC=` together, as systemd ≥ 253
//! requires for `Type=notify-reload` (systemd 252 ignores both, harmlessly).

use std::fmt::Display;
use std::sync::atomic::{AtomicUsize, Ordering};

use sd_notify::NotifyState;

/// Reloads in progress. The service manager knows one service state, not one
/// per caller; when two reloads overlap (SIGHUP while an admin RELOAD runs, or a
/// caller that wraps a reload path which already notifies) it must see one
/// `RELOADING=1` … `READY=1` pair, with `READY=1` only when the last one ends.
/// This mirrors process-wide state (the one notify socket), which is why it is a
/// static and not part of `Shared`.
static RELOADS_IN_PROGRESS: AtomicUsize = AtomicUsize::new(0);

fn send(what: &str, states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        log::warn!("sd_notify {what}: {e}");
    }
}

/// Whether a service manager listens for notifications.
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some()
}

/// `READY=1`: the listeners serve, the config is loaded and privileges are
/// dropped. `status` is the first `STATUS=` line.
pub fn ready(status: &str) {
    send("READY", &[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STATUS=`: the one line `systemctl status` shows.
pub fn status(line: &str) {
    send("STATUS", &[NotifyState::Status(line)]);
}

/// `RELOADING=1` with `MONOTONIC_USEC=` in the same datagram. Call before every
/// reload, whatever asked for it (SIGHUP, admin RELOAD, D-Bus), and pair it with
/// [`notify_ready_after_reload`].
pub fn notify_reloading() {
    if RELOADS_IN_PROGRESS.fetch_add(1, Ordering::SeqCst) > 0 {
        return;
    }
    let mut states = vec![
        NotifyState::Reloading,
        NotifyState::Status("reloading configuration"),
    ];
    match NotifyState::monotonic_usec_now() {
        Ok(now) => states.insert(1, now),
        Err(e) => log::warn!("sd_notify RELOADING: cannot read CLOCK_MONOTONIC: {e}"),
    }
    send("RELOADING", &states);
}

/// After a reload: `READY=1`, and a `STATUS=` naming the error when the reload
/// was refused (the previous config stays in force, so the service is ready
/// either way).
pub fn notify_ready_after_reload<E: Display>(result: &Result<(), E>) {
    let status = match result {
        Ok(()) => "configuration reloaded".to_string(),
        Err(e) => one_line(&format!("reload failed, running the previous config: {e}")),
    };
    let previous = RELOADS_IN_PROGRESS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .unwrap_or(0);
    if previous > 1 {
        // Another reload is still running: it will send READY=1. Keep its
        // error visible meanwhile.
        if result.is_err() {
            self::status(&status);
        }
        return;
    }
    send("READY", &[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping(status: &str) {
    send(
        "STOPPING",
        &[NotifyState::Stopping, NotifyState::Status(status)],
    );
}

/// `WATCHDOG=1`.
pub fn watchdog() {
    send("WATCHDOG", &[NotifyState::Watchdog]);
}

/// Start-up failed: `STATUS=` with the reason and `ERRNO=`, so that
/// `systemctl status` says why before the process exits non-zero.
pub fn startup_failed(errno: Option<i32>, reason: &str) {
    let status = one_line(&format!("failed to start: {reason}"));
    // Without a specific OS error the cause is the configuration we were given.
    let errno = errno.unwrap_or(nix::libc::EINVAL);
    send(
        "start-up failure",
        &[
            NotifyState::Status(&status),
            NotifyState::Errno(errno.unsigned_abs()),
        ],
    );
}

/// `STATUS=` is one line; a newline would end the assignment early.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Follow the control core's events and tell systemd about every reload,
/// whatever triggered it (SIGHUP, the console's RELOAD, D-Bus). The receiver is
/// taken by the caller before any reload can happen, so none is missed.
pub async fn follow_control_events(
    mut events: tokio::sync::broadcast::Receiver<crate::control::ControlEvent>,
) {
    use crate::control::ControlEvent;
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match events.recv().await {
            Ok(ControlEvent::ReloadStarted) => notify_reloading(),
            Ok(ControlEvent::Reloaded(result)) => notify_ready_after_reload(&result),
            Ok(ControlEvent::StateChanged(_)) => {}
            Err(RecvError::Lagged(missed)) => {
                log::warn!("sd_notify: missed {missed} control events");
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_have_no_newlines() {
        assert_eq!(one_line("a\nb\r\nc"), "a b c");
        assert_eq!(one_line("plain"), "plain");
    }
}
