//! Socket activation: take the listening sockets systemd passed (`LISTEN_FDS`
//! for this pid, named by `LISTEN_FDNAMES`) and serve them instead of binding
//! `listen_addr` / `unix_socket_dir`.
//!
//! Why the order below matters:
//! - `sd_notify::listen_fds_with_names()` reads the names but checks
//!   `LISTEN_PID`, which `listenfd` removes from the environment: names first.
//! - `listenfd` edits the environment, which is only sound while the process has
//!   one thread: call [`take`] from `main`, before the tokio runtime starts.
//! - `listenfd` returns blocking std sockets; tokio needs them non-blocking
//!   (done in [`Bound::passed_tcp`] / [`Bound::passed_unix`]).
//!
//! Only listening stream sockets can carry PostgreSQL connections. Anything
//! else a `.socket` unit passes (a datagram socket, a socket that is not
//! listening, a FIFO) is a configuration mistake, reported with its fd and name.

use std::io;
use std::os::fd::{BorrowedFd, RawFd};

use listenfd::ListenFd;
use socket2::{Domain, SockRef, Type};

use crate::net::listener::Bound;

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    #[error("socket activation: cannot read LISTEN_FDS/LISTEN_FDNAMES: {0}")]
    Environment(io::Error),
    #[error("socket activation: passed fd {fd} (name \"{name}\") {problem}")]
    Unusable {
        fd: RawFd,
        name: String,
        problem: String,
    },
    #[error("socket activation: cannot take passed fd {fd} (name \"{name}\"): {source}")]
    Take {
        fd: RawFd,
        name: String,
        #[source]
        source: io::Error,
    },
}

impl ActivationError {
    /// The OS error behind the failure, for `ERRNO=`.
    pub fn errno(&self) -> Option<i32> {
        match self {
            ActivationError::Environment(e) | ActivationError::Take { source: e, .. } => {
                e.raw_os_error()
            }
            ActivationError::Unusable { .. } => None,
        }
    }
}

/// Take every socket systemd passed to this process. Empty when not socket
/// activated (no `LISTEN_FDS`, or `LISTEN_PID` names another process).
///
/// Must be called while the process is single-threaded (see the module docs).
/// Clears `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` either way, so that
/// nothing we might start later mistakes them for its own.
pub fn take() -> Result<Vec<Bound>, ActivationError> {
    let named: Result<Vec<(RawFd, String)>, io::Error> =
        sd_notify::listen_fds_with_names().map(Iterator::collect);
    let named = match named {
        Ok(named) => named,
        Err(e) => {
            clear_environment();
            return Err(ActivationError::Environment(e));
        }
    };
    if named.is_empty() {
        clear_environment();
        return Ok(Vec::new());
    }
    // listenfd honours this non-systemd variable and would then count from
    // elsewhere than fd 3, where systemd (and sd-notify) put the sockets.
    std::env::remove_var("LISTEN_FDS_FIRST_FD");
    let mut fds = ListenFd::from_env();
    clear_environment();
    if fds.len() != named.len() {
        return Err(ActivationError::Environment(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "LISTEN_FDS says {} sockets, LISTEN_FDNAMES names {}",
                fds.len(),
                named.len()
            ),
        )));
    }
    let mut sockets = Vec::with_capacity(named.len());
    for (index, (fd, name)) in named.into_iter().enumerate() {
        let family = check_listening_stream(fd).map_err(|problem| ActivationError::Unusable {
            fd,
            name: name.clone(),
            problem,
        })?;
        let take_error = |source| ActivationError::Take {
            fd,
            name: name.clone(),
            source,
        };
        let taken = match family {
            Family::Inet => fds
                .take_tcp_listener(index)
                .map_err(take_error)?
                .map(|l| Bound::passed_tcp(l, name.clone())),
            Family::Unix => fds
                .take_unix_listener(index)
                .map_err(take_error)?
                .map(|l| Bound::passed_unix(l, name.clone())),
        };
        let bound = taken
            .ok_or_else(|| ActivationError::Unusable {
                fd,
                name: name.clone(),
                problem: "was already taken".into(),
            })?
            .map_err(take_error)?;
        sockets.push(bound);
    }
    Ok(sockets)
}

enum Family {
    Inet,
    Unix,
}

/// What kind of socket the fd is, or why it cannot be served.
fn check_listening_stream(fd: RawFd) -> Result<Family, String> {
    // SAFETY: systemd passed the fd to this process and nothing else uses it
    // yet; it stays open for the duration of this borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let socket = SockRef::from(&borrowed);
    let kind = socket.r#type().map_err(|e| match e.raw_os_error() {
        Some(nix::libc::ENOTSOCK) => "is not a socket".to_string(),
        _ => format!("cannot be inspected: {e}"),
    })?;
    if kind != Type::STREAM {
        let what = match kind {
            Type::DGRAM => "a datagram socket",
            Type::SEQPACKET => "a seqpacket socket",
            _ => "not a stream socket",
        };
        return Err(format!(
            "is {what}; pgsluice serves stream sockets only (ListenStream=)"
        ));
    }
    let family = match socket.domain() {
        Ok(Domain::IPV4) | Ok(Domain::IPV6) => Family::Inet,
        Ok(Domain::UNIX) => Family::Unix,
        Ok(other) => return Err(format!("has an unsupported address family ({other:?})")),
        Err(e) => return Err(format!("cannot be inspected: {e}")),
    };
    match socket.is_listener() {
        Ok(true) => Ok(family),
        Ok(false) => Err("is not listening (a .socket unit with Accept=yes?)".into()),
        Err(e) => Err(format!("cannot be inspected: {e}")),
    }
}

fn clear_environment() {
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
}
