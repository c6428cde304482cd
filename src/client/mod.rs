//! One client connection, from its first packet to its last: the startup
//! handshake and authentication (`login`), then the pooling loop (`session`).

pub mod cancel;
pub mod login;
pub mod relay;
pub mod session;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::net::Stream;
use crate::protocol::error::{put_error, Severity};
use crate::shared::Shared;

/// Serve one accepted connection until it ends.
pub async fn serve(shared: Arc<Shared>, stream: Stream) {
    let _count = ClientCount::enter(&shared);
    let id = shared.next_client_id();
    // Boxed, like the phases of a session: a task's future is as large as its
    // largest state, and an idle client should not carry the login's.
    match Box::pin(login::login(&shared, stream, id)).await {
        Some(login::Login::Pooled(mut session)) => session.run().await,
        Some(login::Login::Console {
            mut stream,
            role,
            user,
        }) => crate::admin::serve(shared.clone(), &mut stream, role, &user).await,
        None => {}
    }
}

/// Counts a connected client for max_client_conn while it lives.
struct ClientCount<'a>(&'a Shared);

impl<'a> ClientCount<'a> {
    fn enter(shared: &'a Shared) -> ClientCount<'a> {
        shared.client_count.fetch_add(1, Ordering::Relaxed);
        ClientCount(shared)
    }
}

impl Drop for ClientCount<'_> {
    fn drop(&mut self) {
        self.0.client_count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Send a FATAL error to a client that is about to be disconnected.
pub async fn send_fatal(stream: &mut Stream, code: &str, message: &str) {
    let mut buf = BytesMut::with_capacity(64 + message.len());
    put_error(&mut buf, Severity::Fatal, code, message);
    let _ = stream.write_all(&buf).await;
}

#[cfg(test)]
mod tests {
    /// A connected client's task future is allocated once and kept until the
    /// client leaves, so its size is paid by every idle client. The login, the
    /// server checkout and the relay are boxed to keep it small (it was 3136
    /// bytes before that); this keeps it from growing back unnoticed.
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
        let stream = crate::net::Stream::Unix(tokio::net::UnixStream::from_std(ours).unwrap());
        let config =
            crate::config::Config::from_text(std::path::Path::new("/test.ini"), "[pgbouncer]\n")
                .unwrap();
        let shared = crate::shared::Shared::new(config, Default::default(), None, 0);
        let task = super::serve(shared, stream);
        let size = size_of_future(&task);
        assert!(size <= 1024, "the client task future is {size} bytes");
    }
}
