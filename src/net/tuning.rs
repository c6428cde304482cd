//! Socket options for TCP connections, clients' and servers' alike, from the
//! `tcp_*` settings, applied the way PgBouncer applies them: keepalive and its
//! three timers (a timer of 0 keeps the kernel's default), the socket buffer
//! sizes, and TCP_USER_TIMEOUT.

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

#[cfg(test)]
mod tests {
    use super::*;

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
