//! Socket options for TCP connections, clients' and servers' alike, from the
//! `tcp_*` settings, applied the way PgBouncer applies them: keepalive and its
//! three timers (a timer of 0 keeps the kernel's default), the socket buffer
//! sizes, and TCP_USER_TIMEOUT; and TCP_DEFER_ACCEPT on listening sockets.

use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use crate::config::General;

/// The `tcp_*` settings in force, copied out of the config for a connect or
/// an accept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpTuning {
    pub keepalive: bool,
    /// Probes before the connection is dropped (TCP_KEEPCNT).
    pub keepcnt: u32,
    /// Seconds idle before the first probe (TCP_KEEPIDLE).
    pub keepidle: u32,
    /// Seconds between probes (TCP_KEEPINTVL).
    pub keepintvl: u32,
    /// Bytes for both SO_SNDBUF and SO_RCVBUF; 0 leaves the kernel to size
    /// (and grow) them.
    pub socket_buffer: u32,
    /// Milliseconds (TCP_USER_TIMEOUT).
    pub user_timeout_ms: u32,
}

impl TcpTuning {
    pub fn from_general(g: &General) -> TcpTuning {
        TcpTuning {
            keepalive: g.tcp_keepalive,
            keepcnt: g.tcp_keepcnt,
            keepidle: g.tcp_keepidle,
            keepintvl: g.tcp_keepintvl,
            socket_buffer: g.tcp_socket_buffer,
            user_timeout_ms: g.tcp_user_timeout,
        }
    }

    /// Set the options on a connected socket. A failure is logged, not fatal:
    /// the connection works without them, as it does in PgBouncer.
    pub fn apply(&self, stream: &TcpStream) {
        if let Err(e) = self.try_apply(stream) {
            log::warn!("setting TCP socket options failed: {e}");
        }
    }

    fn try_apply(&self, stream: &TcpStream) -> std::io::Result<()> {
        // Requests and answers are small and must not wait for more to come.
        stream.set_nodelay(true)?;
        let socket = SockRef::from(stream);
        socket.set_keepalive(self.keepalive)?;
        if self.keepalive {
            let mut timers = TcpKeepalive::new();
            let mut any = false;
            if self.keepidle > 0 {
                timers = timers.with_time(Duration::from_secs(self.keepidle.into()));
                any = true;
            }
            if self.keepintvl > 0 {
                timers = timers.with_interval(Duration::from_secs(self.keepintvl.into()));
                any = true;
            }
            if self.keepcnt > 0 {
                timers = timers.with_retries(self.keepcnt);
                any = true;
            }
            if any {
                socket.set_tcp_keepalive(&timers)?;
            }
        }
        if self.socket_buffer > 0 {
            let size = self.socket_buffer as usize;
            socket.set_send_buffer_size(size)?;
            socket.set_recv_buffer_size(size)?;
        }
        if self.user_timeout_ms > 0 {
            let timeout = Duration::from_millis(self.user_timeout_ms.into());
            socket.set_tcp_user_timeout(Some(timeout))?;
        }
        Ok(())
    }
}

/// Turn TCP_DEFER_ACCEPT on or off on a listening TCP socket (`tcp_defer_accept`).
///
/// On, the kernel completes an accept only once the client's first bytes (its
/// startup packet or SSLRequest) have arrived, so a login costs the pooler one
/// wake-up instead of two. PgBouncer sets the option to 1 (second): a client that
/// sends nothing is handed over after the kernel's first SYN-ACK retransmission.
pub fn set_defer_accept(listener: &impl AsFd, on: bool) -> std::io::Result<()> {
    let seconds: nix::libc::c_int = on.into();
    // SAFETY: the fd is borrowed from a live socket, and the option value is a
    // c_int whose size is passed alongside it, as setsockopt(2) requires.
    let rc = unsafe {
        nix::libc::setsockopt(
            listener.as_fd().as_raw_fd(),
            nix::libc::IPPROTO_TCP,
            nix::libc::TCP_DEFER_ACCEPT,
            (&seconds as *const nix::libc::c_int).cast(),
            std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option as the kernel reports it back: 0 when off.
    fn defer_accept_of(listener: &impl AsFd) -> nix::libc::c_int {
        let mut value: nix::libc::c_int = -1;
        let mut len = std::mem::size_of::<nix::libc::c_int>() as nix::libc::socklen_t;
        // SAFETY: value and len are live locals of the sizes getsockopt(2) is told.
        let rc = unsafe {
            nix::libc::getsockopt(
                listener.as_fd().as_raw_fd(),
                nix::libc::IPPROTO_TCP,
                nix::libc::TCP_DEFER_ACCEPT,
                (&mut value as *mut nix::libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
        value
    }

    #[test]
    fn defer_accept_turns_on_and_off() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert_eq!(defer_accept_of(&listener), 0);
        set_defer_accept(&listener, true).unwrap();
        assert!(defer_accept_of(&listener) > 0);
        set_defer_accept(&listener, false).unwrap();
        assert_eq!(defer_accept_of(&listener), 0);
    }

    #[tokio::test]
    async fn the_settings_reach_the_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let tuning = TcpTuning {
            keepalive: true,
            keepcnt: 3,
            keepidle: 70,
            keepintvl: 9,
            socket_buffer: 8192,
            user_timeout_ms: 4500,
        };
        tuning.apply(&stream);
        let socket = SockRef::from(&stream);
        assert!(stream.nodelay().unwrap());
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.keepalive_retries().unwrap(), 3);
        assert_eq!(socket.keepalive_time().unwrap(), Duration::from_secs(70));
        assert_eq!(socket.keepalive_interval().unwrap(), Duration::from_secs(9));
        // Linux doubles what it is asked for, to allow for its own overhead.
        assert_eq!(socket.send_buffer_size().unwrap(), 2 * 8192);
        assert_eq!(socket.recv_buffer_size().unwrap(), 2 * 8192);
        assert_eq!(
            socket.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(4500))
        );

        TcpTuning::default().apply(&stream);
        assert!(
            !socket.keepalive().unwrap(),
            "tcp_keepalive = 0 turns it off"
        );
    }
}
