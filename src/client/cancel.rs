//! Cancel requests. Each client gets a pooler-made BackendKeyData; a
//! CancelRequest carrying it is forwarded to the server that client is using at
//! that moment, with that server's real key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rand::Rng;
use tokio::io::AsyncWriteExt;

use crate::net::tuning::TcpTuning;
use crate::protocol::frontend;

pub use crate::server::{CancelInFlight, CancelTarget};

/// A client's entry: which server to cancel on, if any. Set and cleared on
/// every transaction, read only by a cancel request, so the lock is never
/// contended (an `ArcSwapOption` would make every store pay for readers).
#[derive(Debug, Default)]
pub struct CancelLink {
    target: Mutex<Option<Arc<CancelTarget>>>,
}

impl CancelLink {
    pub fn set(&self, target: Option<Arc<CancelTarget>>) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = target;
    }

    /// Start a cancel request to the server the client is using, if any. The
    /// count starts under the link's lock: a session that clears the link
    /// afterwards is sure to see it, and holds the server until it is done.
    pub fn begin(&self) -> Option<CancelInFlight> {
        self.target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|target| target.begin())
    }
}

/// The keys handed to clients. Touched at login, logout and cancel only.
#[derive(Default)]
pub struct CancelRegistry {
    links: Mutex<HashMap<(i32, i32), Arc<CancelLink>>>,
}

impl CancelRegistry {
    /// A fresh random key for a client, unique among connected clients.
    pub fn register(&self) -> ((i32, i32), Arc<CancelLink>) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let mut rng = rand::thread_rng();
        loop {
            let key = (rng.gen::<i32>() & 0x7fff_ffff, rng.gen::<i32>());
            if let std::collections::hash_map::Entry::Vacant(slot) = links.entry(key) {
                let link = Arc::new(CancelLink::default());
                slot.insert(link.clone());
                return (key, link);
            }
        }
    }

    pub fn unregister(&self, key: (i32, i32)) {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
    }

    pub fn lookup(&self, key: (i32, i32)) -> Option<Arc<CancelLink>> {
        self.links
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
    }
}

/// Send a cancel request and wait until PostgreSQL has taken it, giving up
/// after `cancel_wait_timeout` (zero: no limit). Failures are logged: the
/// client that asked gets no answer either way, as from PostgreSQL.
pub async fn deliver(cancel: CancelInFlight, wait_timeout: Duration) {
    let target = cancel.target();
    let sent = if wait_timeout.is_zero() {
        forward(target).await
    } else {
        match tokio::time::timeout(wait_timeout, forward(target)).await {
            Ok(sent) => sent,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("not taken within cancel_wait_timeout ({wait_timeout:?})"),
            )),
        }
    };
    if let Err(e) = sent {
        log::warn!("cancel request to {} failed: {e}", target.address);
    }
}

/// Send a CancelRequest for `target` on a new connection to its server, and
/// wait for PostgreSQL to close that connection, which it does once it has
/// signalled the backend.
async fn forward(target: &CancelTarget) -> std::io::Result<()> {
    // A connection that lives for one packet needs none of the tcp_* options.
    let mut stream = target.address.connect(&TcpTuning::default()).await?;
    let mut buf = BytesMut::with_capacity(16);
    frontend::put_cancel_request(&mut buf, target.pid, target.secret);
    stream.write_all(&buf).await?;
    // PostgreSQL closes the connection once it has read the request.
    let mut sink = [0u8; 1];
    let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::ServerAddress;

    #[test]
    fn keys_are_unique_and_removable() {
        let registry = CancelRegistry::default();
        let (a, link_a) = registry.register();
        let (b, _) = registry.register();
        assert_ne!(a, b);
        assert!(a.0 >= 0, "pids are positive like PostgreSQL's");
        let address = ServerAddress::Tcp {
            host: "h".into(),
            port: 1,
        };
        let target = Arc::new(CancelTarget::new(address, 7, 8, Default::default()));
        assert!(
            link_a.begin().is_none(),
            "no server linked: nothing to cancel"
        );
        link_a.set(Some(target.clone()));
        let cancel = registry.lookup(a).unwrap().begin().expect("linked");
        assert_eq!(cancel.target().pid, 7);
        assert!(target.in_flight(), "counted from the moment it began");
        drop(cancel);
        assert!(!target.in_flight());
        registry.unregister(a);
        assert!(registry.lookup(a).is_none());
        assert!(registry.lookup(b).is_some());
    }
}
