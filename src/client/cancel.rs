//! Cancel requests. Each client gets a pooler-made BackendKeyData; a
//! CancelRequest carrying it is forwarded to the server that client is using at
//! that moment, with that server's real key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use rand::Rng;
use tokio::io::AsyncWriteExt;

use crate::net::tuning::TcpTuning;
use crate::protocol::frontend;

pub use crate::server::CancelTarget;

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

    pub fn get(&self) -> Option<Arc<CancelTarget>> {
        self.target
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
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

/// Send a CancelRequest for `target` on a new connection to its server.
pub async fn forward(target: &CancelTarget) -> std::io::Result<()> {
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
        let target = CancelTarget {
            address: ServerAddress::Tcp {
                host: "h".into(),
                port: 1,
            },
            pid: 7,
            secret: 8,
        };
        link_a.set(Some(Arc::new(target.clone())));
        assert_eq!(registry.lookup(a).unwrap().get().as_deref(), Some(&target));
        registry.unregister(a);
        assert!(registry.lookup(a).is_none());
        assert!(registry.lookup(b).is_some());
    }
}
