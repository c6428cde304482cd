//! The listening sockets: binding those named by `listen_addr`, `listen_port`
//! and `unix_socket_dir` (or taking the ones systemd passed, see
//! `crate::systemd::activation`), and accepting from them.
//!
//! Sockets are made in two steps. [`Bound`] is a plain std socket, made before the
//! tokio runtime exists: binding must happen while the process may still be root
//! (before the privilege drop) and before `-d` forks, and neither may happen once
//! runtime threads run. [`Bound::into_listener`] then hands it to tokio.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, UnixListener};

use super::stream::{socket_file_port, PeerAddr};
use super::Stream;
use crate::config::General;

/// The listeners, as a reload and SET reach them: `tcp_defer_accept` is set
/// on them before either reports done, so a connection made after "config
/// reloaded" (or after SET's answer) meets the new setting. Weak: an accept
/// task dropped at shutdown still closes its listener.
#[derive(Default)]
pub struct ListenerOptions {
    /// The listeners, and the tcp_defer_accept last set on them.
    state: Mutex<(Vec<Weak<Listener>>, Option<bool>)>,
}

impl ListenerOptions {
    /// Follow `listener` from now on (it is given the current options at the
    /// next `apply`).
    pub fn track(&self, listener: &Arc<Listener>) {
        let mut state = self.lock();
        state.0.push(Arc::downgrade(listener));
        state.1 = None;
    }

    /// Set `general`'s tcp_defer_accept on every listener, when it differs
    /// from what was set last. A failure is logged and leaves that listener
    /// accepting as before.
    pub fn apply(&self, general: &General) {
        let wanted = general.tcp_defer_accept;
        let mut state = self.lock();
        if state.1 == Some(wanted) {
            return;
        }
        for listener in state.0.iter().filter_map(Weak::upgrade) {
            if let Err(e) = listener.set_defer_accept(wanted) {
                log::warn!(
                    "cannot set TCP_DEFER_ACCEPT on {}: {e}",
                    listener.describe()
                );
            }
        }
        state.1 = Some(wanted);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Weak<Listener>>, Option<bool>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One listening socket.
#[derive(Debug)]
pub enum Listener {
    /// A TCP socket, and its address when every connection shares it: a socket
    /// bound to one address (not a wildcard) accepts only on that address, so
    /// its connections need no getsockname() of their own.
    Tcp(TcpListener, Option<SocketAddr>),
    /// A Unix socket, the file pgsluice bound it to (removed again on drop;
    /// `None` for a socket systemd passed), and the port number in the
    /// socket's name, which PgBouncer shows as its clients' port.
    Unix {
        listener: UnixListener,
        socket_file: Option<PathBuf>,
        port: u16,
    },
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {what}: {source}")]
pub struct ListenError {
    pub what: String,
    #[source]
    pub source: io::Error,
}

/// A connection just accepted, with the addresses the admin console and the
/// logs show for it.
pub struct Accepted {
    pub stream: Stream,
    pub peer: PeerAddr,
    /// The local end of a TCP connection (`None` for Unix sockets, or if the
    /// kernel would not say).
    pub local: Option<SocketAddr>,
}

impl Listener {
    /// Wait for the next connection. The peer's address comes with accept() and
    /// the local one from the listener where it can, saving two system calls
    /// per login.
    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Listener::Tcp(l, fixed_local) => {
                let (s, peer) = l.accept().await?;
                let local = fixed_local.or_else(|| s.local_addr().ok());
                Ok(Accepted {
                    stream: Stream::Tcp(s),
                    peer: PeerAddr::Tcp(peer),
                    local,
                })
            }
            Listener::Unix { listener, port, .. } => {
                let (s, _) = listener.accept().await?;
                // The client's process id, for SHOW CLIENTS' remote_pid.
                let pid = s.peer_cred().ok().and_then(|c| c.pid()).unwrap_or(0);
                Ok(Accepted {
                    stream: Stream::Unix(s),
                    peer: PeerAddr::Unix { port: *port, pid },
                    local: None,
                })
            }
        }
    }

    /// Apply `tcp_defer_accept` (TCP sockets only; Unix sockets have no such option).
    pub fn set_defer_accept(&self, on: bool) -> io::Result<()> {
        match self {
            Listener::Tcp(l, _) => super::tuning::set_defer_accept(l, on),
            Listener::Unix { .. } => Ok(()),
        }
    }

    /// A description for logs: `127.0.0.1:6432` or `unix:/tmp/.s.PGSQL.6432`.
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l, _) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp:?".into()),
            Listener::Unix {
                listener,
                socket_file,
                ..
            } => match socket_file {
                Some(p) => format!("unix:{}", p.display()),
                None => listener
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                    .unwrap_or_else(|| "unix:?".into()),
            },
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix {
            socket_file: Some(path),
            ..
        } = self
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A listening std socket, bound by us or passed by systemd, not yet handed to
/// the runtime. Non-blocking already, as tokio requires.
#[derive(Debug)]
pub struct Bound {
    socket: BoundSocket,
    /// The socket file we created, removed again when the socket goes away.
    /// `None` for a passed socket: its file belongs to the `.socket` unit.
    socket_file: Option<SocketFile>,
    /// The name systemd gave a passed socket (`FileDescriptorName=`).
    name: Option<String>,
}

#[derive(Debug)]
enum BoundSocket {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

impl Bound {
    /// A socket systemd passed: a listening TCP socket. Sets it non-blocking.
    pub fn passed_tcp(listener: std::net::TcpListener, name: String) -> io::Result<Bound> {
        listener.set_nonblocking(true)?;
        Ok(Bound {
            socket: BoundSocket::Tcp(listener),
            socket_file: None,
            name: Some(name),
        })
    }

    /// A socket systemd passed: a listening Unix stream socket. Sets it non-blocking.
    pub fn passed_unix(
        listener: std::os::unix::net::UnixListener,
        name: String,
    ) -> io::Result<Bound> {
        listener.set_nonblocking(true)?;
        Ok(Bound {
            socket: BoundSocket::Unix(listener),
            socket_file: None,
            name: Some(name),
        })
    }

    /// Whether systemd passed this socket (rather than pgsluice binding it).
    pub fn is_passed(&self) -> bool {
        self.name.is_some()
    }

    /// For logs: `127.0.0.1:6432` or `unix:/run/pgsluice/.s.PGSQL.6432`, with the
    /// systemd name of a passed socket: `[::]:6432 (fd name "pgsluice.socket")`.
    pub fn describe(&self) -> String {
        let addr = match &self.socket {
            BoundSocket::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "tcp:?".into()),
            BoundSocket::Unix(l) => match &self.socket_file {
                Some(f) => format!("unix:{}", f.0.display()),
                None => unix_name(l.local_addr().ok().as_ref()),
            },
        };
        match &self.name {
            Some(name) => format!("{addr} (fd name \"{name}\")"),
            None => addr,
        }
    }

    /// Hand the socket to tokio. Must run inside the runtime.
    pub fn into_listener(self) -> io::Result<Listener> {
        Ok(match self.socket {
            BoundSocket::Tcp(l) => {
                let fixed_local = l.local_addr().ok().filter(|a| !a.ip().is_unspecified());
                Listener::Tcp(TcpListener::from_std(l)?, fixed_local)
            }
            BoundSocket::Unix(l) => {
                let port = l
                    .local_addr()
                    .ok()
                    .as_ref()
                    .and_then(|a| a.as_pathname().map(socket_file_port))
                    .unwrap_or(0);
                Listener::Unix {
                    listener: UnixListener::from_std(l)?,
                    socket_file: self.socket_file.map(SocketFile::hand_over),
                    port,
                }
            }
        })
    }
}

/// A socket file pgsluice created. If start-up fails before the socket is
/// served, dropping this removes the file; once served, the `Listener` owns it.
#[derive(Debug)]
struct SocketFile(PathBuf);

impl SocketFile {
    fn hand_over(self) -> PathBuf {
        let path = self.0.clone();
        std::mem::forget(self);
        path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn unix_name(addr: Option<&std::os::unix::net::SocketAddr>) -> String {
    use std::os::linux::net::SocketAddrExt;
    match addr {
        Some(a) => match (a.as_pathname(), a.as_abstract_name()) {
            (Some(p), _) => format!("unix:{}", p.display()),
            (None, Some(name)) => format!("unix:@{}", String::from_utf8_lossy(name)),
            _ => "unix:(unnamed)".into(),
        },
        None => "unix:?".into(),
    }
}

/// Bind every listener the configuration asks for, as std sockets: before the
/// runtime starts and before privileges are dropped.
pub fn bind_all(general: &General) -> Result<Vec<Bound>, ListenError> {
    let mut listeners = Vec::new();
    for addr in tcp_addresses(general)? {
        listeners.push(
            bind_tcp(addr, general.listen_backlog, general.so_reuseport).map_err(|source| {
                ListenError {
                    what: addr.to_string(),
                    source,
                }
            })?,
        );
    }
    if let Some(dir) = &general.unix_socket_dir {
        let path = dir.join(format!(".s.PGSQL.{}", general.listen_port));
        listeners.push(bind_unix(&path, general).map_err(|source| ListenError {
            what: path.display().to_string(),
            source,
        })?);
    }
    Ok(listeners)
}

/// Expand `listen_addr`: `*` means every IPv4 and IPv6 address; names resolve.
fn tcp_addresses(general: &General) -> Result<Vec<SocketAddr>, ListenError> {
    let port = general.listen_port;
    let mut addrs = Vec::new();
    for item in &general.listen_addr {
        if item == "*" {
            addrs.push(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port));
            addrs.push(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port));
            continue;
        }
        let resolved = (item.as_str(), port)
            .to_socket_addrs()
            .map_err(|source| ListenError {
                what: item.clone(),
                source,
            })?;
        for addr in resolved {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    Ok(addrs)
}

/// `reuse_port` (so_reuseport) lets other processes bind the same address,
/// the kernel spreading new connections among them.
fn bind_tcp(addr: SocketAddr, backlog: u32, reuse_port: bool) -> io::Result<Bound> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(reuse_port)?;
    if addr.is_ipv6() {
        // With `*` both families are bound; keep the IPv6 socket to IPv6 only.
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog.min(i32::MAX as u32) as i32)?;
    Ok(Bound {
        socket: BoundSocket::Tcp(socket.into()),
        socket_file: None,
        name: None,
    })
}

fn bind_unix(path: &Path, general: &General) -> io::Result<Bound> {
    remove_stale_socket(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    // From here on a failure removes the file again.
    let socket_file = SocketFile(path.to_path_buf());
    socket.listen(general.listen_backlog.min(i32::MAX as u32) as i32)?;
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(general.unix_socket_mode),
    )?;
    if let Some(group) = &general.unix_socket_group {
        let gid = nix::unistd::Group::from_name(group)
            .map_err(io::Error::from)?
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, format!("no such group: {group}"))
            })?
            .gid;
        nix::unistd::chown(path, None, Some(gid)).map_err(io::Error::from)?;
    }
    Ok(Bound {
        socket: BoundSocket::Unix(socket.into()),
        socket_file: Some(socket_file),
        name: None,
    })
}

/// A socket file left by a crashed process is removed; one that still answers
/// belongs to a running pooler and is an error.
fn remove_stale_socket(path: &Path) -> io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on this socket",
        ));
    }
    std::fs::remove_file(path)
}
