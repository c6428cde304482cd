//! A connected socket: TCP, Unix-domain, or TCP carrying TLS.
//!
//! An enum instead of a boxed trait object keeps the relay's reads and writes
//! statically dispatched.
//!
//! A TLS stream may hold written bytes that are not on the socket yet (rustls
//! encrypts into a buffer and writes what the socket takes), so whoever writes
//! to a stream must flush it before waiting on anything else: [`Stream::send`]
//! does both, and the relay flushes before it calls a transaction done.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};

#[derive(Debug)]
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// TLS over TCP, with a client (pgsluice the TLS server) or with a server
    /// (pgsluice the TLS client). Boxed: rustls' state is large, and most
    /// connections are not TLS.
    Tls(Box<TlsStream<TcpStream>>),
    /// A TCP stream lost in a TLS handshake that failed or was cut short:
    /// reads see the end, writes fail.
    Closed,
}

/// Where a peer is, for logs and the admin console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerAddr {
    Tcp(std::net::SocketAddr),
    /// A Unix socket peer has no address. PgBouncer shows the port number of
    /// the socket (`.s.PGSQL.<port>`) and, for a client, its process id (0:
    /// unknown).
    Unix {
        port: u16,
        pid: i32,
    },
}

impl PeerAddr {
    /// The IP address of a TCP peer; none for a Unix socket.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        match self {
            PeerAddr::Tcp(addr) => Some(addr.ip()),
            PeerAddr::Unix { .. } => None,
        }
    }
}

impl std::fmt::Display for PeerAddr {
    /// As PgBouncer's log lines write them: `10.0.0.5:41234`,
    /// `unix(1234):6432` for a client, `unix:5432` for a server.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerAddr::Tcp(addr) => write!(f, "{}:{}", addr.ip(), addr.port()),
            PeerAddr::Unix { port, pid: 0 } => write!(f, "unix:{port}"),
            PeerAddr::Unix { port, pid } => write!(f, "unix({pid}):{port}"),
        }
    }
}

/// The port number in the name of a PostgreSQL-style socket file
/// (`/run/postgresql/.s.PGSQL.5432` → 5432); 0 for any other name.
pub fn socket_file_port(path: &std::path::Path) -> u16 {
    path.file_name()
        .and_then(|name| name.to_str()?.strip_prefix(".s.PGSQL.")?.parse().ok())
        .unwrap_or(0)
}

fn closed() -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        "connection lost in the TLS handshake",
    )
}

impl Stream {
    /// The peer of a connection the pooler opened (to a server): a Unix
    /// socket's port is read from the server's socket file name.
    pub fn peer_addr(&self) -> PeerAddr {
        let unknown = PeerAddr::Unix { port: 0, pid: 0 };
        let tcp = match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => s.get_ref().0,
            Stream::Unix(s) => {
                let port = s
                    .peer_addr()
                    .ok()
                    .as_ref()
                    .and_then(|a| a.as_pathname().map(socket_file_port));
                return PeerAddr::Unix {
                    port: port.unwrap_or(0),
                    pid: 0,
                };
            }
            Stream::Closed => return unknown,
        };
        tcp.peer_addr().map(PeerAddr::Tcp).unwrap_or(unknown)
    }

    /// Answer the SSLRequest just read from a TCP client and make this stream
    /// the TLS session that follows. On failure the stream is `Closed`.
    pub async fn accept_tls(&mut self, acceptor: &TlsAcceptor) -> io::Result<()> {
        let Stream::Tcp(mut tcp) = std::mem::replace(self, Stream::Closed) else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS is offered on TCP connections only",
            ));
        };
        tcp.write_all(b"S").await?;
        let tls = acceptor.accept(tcp).await?;
        *self = Stream::Tls(Box::new(TlsStream::Server(tls)));
        Ok(())
    }

    /// Run the TLS handshake with a server that answered 'S' to our
    /// SSLRequest. On failure the stream is `Closed`.
    pub async fn connect_tls(
        &mut self,
        connector: &TlsConnector,
        name: ServerName<'static>,
    ) -> io::Result<()> {
        let Stream::Tcp(tcp) = std::mem::replace(self, Stream::Closed) else {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "TLS is used on TCP connections only",
            ));
        };
        let tls = connector.connect(name, tcp).await?;
        *self = Stream::Tls(Box::new(TlsStream::Client(tls)));
        Ok(())
    }

    /// The TLS session's protocol and cipher, as SHOW CLIENTS and SHOW
    /// SERVERS show them; `None` for a plain connection.
    pub fn tls_description(&self) -> Option<String> {
        let Stream::Tls(s) = self else {
            return None;
        };
        let we_are_client = matches!(**s, TlsStream::Client(_));
        Some(super::tls::describe(s.get_ref().1, we_are_client))
    }

    /// The OS user id of the process on the other end of a Unix socket
    /// (`None` for TCP, or if the kernel would not say).
    pub fn peer_uid(&self) -> Option<u32> {
        match self {
            Stream::Unix(unix) => unix.peer_cred().ok().map(|cred| cred.uid()),
            _ => None,
        }
    }

    /// The certificate (DER) the peer presented in the TLS handshake. The
    /// acceptor asks clients for one, and checks it against
    /// client_tls_ca_file, whenever that file is set.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Stream::Tls(s) => s
                .get_ref()
                .1
                .peer_certificates()?
                .first()
                .map(|c| c.as_ref()),
            _ => None,
        }
    }

    /// This end's address, for a TCP connection.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Stream::Tcp(s) => s.local_addr().ok(),
            Stream::Tls(s) => s.get_ref().0.local_addr().ok(),
            Stream::Unix(_) | Stream::Closed => None,
        }
    }

    /// Write what the socket takes at once, ignoring errors: a courtesy before a
    /// close. A TLS stream also says close_notify.
    pub fn try_write_now(&mut self, bytes: &[u8]) {
        let _ = match self {
            Stream::Tcp(s) => s.try_write(bytes),
            Stream::Unix(s) => s.try_write(bytes),
            Stream::Tls(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut s = Pin::new(&mut **s);
                let _ = s.as_mut().poll_write(&mut cx, bytes);
                let _ = s.poll_shutdown(&mut cx);
                Ok(0)
            }
            Stream::Closed => Ok(0),
        };
    }

    /// Write all of `bytes` and flush them onto the socket.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await?;
        self.flush().await
    }

    /// Tell a TLS client the session ends (close_notify) before the socket
    /// closes, so that it reads the last message and a clean end rather than
    /// a truncated stream. Nothing for plain connections.
    pub async fn close_tls(&mut self) {
        if let Stream::Tls(s) = self {
            let _ = s.shutdown().await;
        }
    }

    /// Does a flush still have bytes to put on the socket? Only a TLS stream
    /// ever holds any.
    pub fn wants_flush(&self) -> bool {
        match self {
            Stream::Tls(s) => s.get_ref().1.wants_write(),
            _ => false,
        }
    }

    /// Ready when the socket has bytes to read (or is closed), without taking a
    /// buffer. Keeps no state of the caller's: the waker is stored with the socket.
    ///
    /// For TLS it is always ready: readable ciphertext may not make a whole
    /// record, and rustls may hold plaintext already. The read that follows
    /// tells, and registers the task for the socket when it finds nothing.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Stream::Tcp(s) => s.poll_read_ready(cx),
            Stream::Unix(s) => s.poll_read_ready(cx),
            Stream::Tls(_) | Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    /// Read what is there without waiting; `WouldBlock` when nothing is.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.try_read(buf),
            Stream::Unix(s) => s.try_read(buf),
            Stream::Tls(s) => {
                let mut cx = Context::from_waker(std::task::Waker::noop());
                let mut read = ReadBuf::new(buf);
                match Pin::new(&mut **s).poll_read(&mut cx, &mut read) {
                    Poll::Ready(Ok(())) => Ok(read.filled().len()),
                    Poll::Ready(Err(e)) => Err(e),
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
            Stream::Closed => Ok(0),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Stream::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_flush(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Stream::Closed => Poll::Ready(Ok(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn socket_files_carry_their_port_in_the_name() {
        assert_eq!(
            socket_file_port(Path::new("/run/postgresql/.s.PGSQL.5432")),
            5432
        );
        assert_eq!(socket_file_port(Path::new(".s.PGSQL.6432")), 6432);
        assert_eq!(socket_file_port(Path::new("/tmp/pgsluice.sock")), 0);
        assert_eq!(socket_file_port(Path::new("/tmp/.s.PGSQL.99999")), 0);
    }

    #[test]
    fn peers_are_written_as_pgbouncer_logs_them() {
        let tcp = PeerAddr::Tcp("10.0.0.5:41234".parse().unwrap());
        assert_eq!(tcp.to_string(), "10.0.0.5:41234");
        let client = PeerAddr::Unix {
            port: 6432,
            pid: 1234,
        };
        assert_eq!(client.to_string(), "unix(1234):6432");
        let server = PeerAddr::Unix { port: 5432, pid: 0 };
        assert_eq!(server.to_string(), "unix:5432");
    }
}
