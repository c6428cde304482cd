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
    match login::login(&shared, stream, id).await {
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
