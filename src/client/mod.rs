//! One client connection, from its first packet to its last: the startup
//! handshake and authentication (`login`, with `auth_query` for users missing
//! from auth_file), then the pooling loop (`session`).

mod admission;
mod auth_method;
mod auth_query;
mod buffers;
pub mod cancel;
mod console_login;
mod copy_in;
pub mod login;
mod login_wait;
mod peering;
pub mod relay;
pub mod session;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;

use crate::control::conn_info::{ConnInfo, ConnRegistry};
use crate::net::listener::Accepted;
use crate::net::Stream;
use crate::protocol::error::{put_error, sqlstate, Severity};
use crate::shared::Shared;

/// What a client closed by KILL or KILL_CLIENT is told (SQLSTATE 57P01).
const KILLED: &str = "admin kill";

/// Serve one accepted connection until it ends.
///
/// Not an `async fn`: its arguments would stay in the client task's future for
/// the client's whole life, and that future is paid for by every idle client.
/// The login gets the stream and is boxed (it is large) at once; once logged
/// in, the session or console has it.
pub fn serve(shared: Arc<Shared>, accepted: Accepted) -> impl Future<Output = ()> + Send {
    let count = ClientCount::enter(shared.clone());
    let id = shared.next_client_id();
    let login = {
        let shared = shared.clone();
        Box::pin(async move { login::login(&shared, accepted, id).await })
    };
    async move {
        let _count = count;
        match login.await {
            Some(login::Login::Pooled(mut session)) => session.run().await,
            Some(login::Login::Console(console)) => Box::pin(serve_console(shared, *console)).await,
            None => {}
        }
    }
}

async fn serve_console(shared: Arc<Shared>, console: login::ConsoleLogin) {
    let login::ConsoleLogin {
        mut stream,
        role,
        user,
        pipelined,
        info,
    } = console;
    let _listed = Listed::new(&shared.clients, info.clone());
    let killed = tokio::select! {
        biased;
        _ = info.killed() => true,
        _ = crate::admin::serve(shared.clone(), &mut stream, role, &user, pipelined) => false,
    };
    if killed {
        send_fatal(&mut stream, sqlstate::ADMIN_SHUTDOWN, KILLED).await;
    }
}

/// Keeps a connection in SHOW CLIENTS or SHOW SERVERS (`registry`) while it
/// lives: a console connection (within reach of KILL_CLIENT), or a cancel
/// request's two ends. Sessions and pooled servers list themselves.
struct Listed<'a> {
    registry: &'a ConnRegistry,
    id: u64,
}

impl<'a> Listed<'a> {
    fn new(registry: &'a ConnRegistry, info: Arc<ConnInfo>) -> Listed<'a> {
        let id = info.id;
        registry.insert(info);
        Listed { registry, id }
    }
}

impl Drop for Listed<'_> {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// Counts a connected client for max_client_conn while it lives.
struct ClientCount(Arc<Shared>);

impl ClientCount {
    fn enter(shared: Arc<Shared>) -> ClientCount {
        shared.client_count.fetch_add(1, Ordering::Relaxed);
        ClientCount(shared)
    }
}

impl Drop for ClientCount {
    fn drop(&mut self) {
        self.0.client_count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Send a FATAL error to a client that is about to be disconnected.
pub async fn send_fatal(stream: &mut Stream, code: &str, message: &str) {
    let mut buf = BytesMut::with_capacity(64 + message.len());
    put_error(&mut buf, Severity::Fatal, code, message);
    if stream.send(&buf).await.is_ok() {
        stream.close_tls().await;
    }
}

#[cfg(test)]
mod tests {
    /// A connected client's task future is allocated once and kept until the
    /// client leaves, so its size is paid by every idle client. The login, the
    /// round (server checkout and relay) and the console are boxed, the idle wait
    /// is written by hand to keep no state of its own, and `serve` is not an
    /// `async fn` (its arguments would stay): the future was 3136 bytes before
    /// the boxing, 888 before the idle wait, and is 136 now.
    /// This keeps it from growing back unnoticed.
    #[test]
    fn an_idle_clients_task_stays_small() {
        fn size_of_future<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let (ours, _theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let accepted = crate::net::listener::Accepted {
            stream: crate::net::Stream::Unix(tokio::net::UnixStream::from_std(ours).unwrap()),
            peer: crate::net::stream::PeerAddr::Unix { port: 0, pid: 0 },
            local: None,
        };
        let config =
            crate::config::Config::from_text(std::path::Path::new("/test.ini"), "[pgbouncer]\n")
                .unwrap();
        let shared =
            crate::shared::Shared::new(config, Default::default(), Default::default(), None, 0);
        let task = super::serve(shared, accepted);
        let size = size_of_future(&task);
        // tokio rounds a task to 128 bytes: 144 or less keeps it at 256 in all.
        assert!(size <= 144, "the client task future is {size} bytes");
    }
}
