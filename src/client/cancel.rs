//! Cancel requests. Each client gets a pooler-made BackendKeyData; a
//! CancelRequest carrying it is forwarded to the server that client is using at
//! that moment, with that server's real key. With peering on, a request for a
//! peer's client is passed on to that peer (see `peering`).

use foldhash::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use rand::Rng;
use tokio::io::AsyncWriteExt;

use super::peering::{self, Route};
use super::Listed;
use crate::control::conn_info::{self, ConnInfo, ConnState};
use crate::net::stream::PeerAddr;
use crate::net::tuning::TcpTuning;
use crate::net::Stream;
use crate::protocol::frontend;
use crate::shared::Shared;

use crate::server::dns::{DnsCache, DnsTtl};
use crate::server::ServerAddress;
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

/// The keys handed to clients, and the requests being passed on to peers.
/// Touched at login, logout and cancel only.
#[derive(Default)]
pub struct CancelRegistry {
    links: Mutex<HashMap<(i32, i32), Arc<CancelLink>>>,
    /// Requests on their way to each peer, by peer id.
    passing_on: Mutex<HashMap<u32, usize>>,
}

impl CancelRegistry {
    /// A fresh random key for a client, unique among connected clients, that
    /// names this process when `peer_id` is set.
    pub fn register(&self, peer_id: u32) -> ((i32, i32), Arc<CancelLink>) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        let mut rng = rand::thread_rng();
        loop {
            let key = (peering::key_pid(rng.gen(), peer_id), rng.gen::<i32>());
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

    /// How many requests are on their way to peer `peer_id` (SHOW PEER_POOLS).
    pub fn passing_on_to(&self, peer_id: u32) -> usize {
        let counts = self.passing_on.lock().unwrap_or_else(|e| e.into_inner());
        counts.get(&peer_id).copied().unwrap_or(0)
    }

    /// Count a request on its way to `peer_id` until the guard is dropped.
    fn passing_on(&self, peer_id: u32) -> PassingOn<'_> {
        let mut counts = self.passing_on.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry(peer_id).or_default() += 1;
        PassingOn {
            registry: self,
            peer_id,
        }
    }
}

/// One request counted in `CancelRegistry::passing_on_to`.
struct PassingOn<'a> {
    registry: &'a CancelRegistry,
    peer_id: u32,
}

impl Drop for PassingOn<'_> {
    fn drop(&mut self) {
        let registry = self.registry;
        let mut counts = registry
            .passing_on
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.peer_id) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer_id);
            }
        }
    }
}

/// Who sent a CancelRequest: its connection's id and addresses, for its SHOW
/// CLIENTS row while the request is on its way.
pub struct Requester {
    pub id: u64,
    pub peer: PeerAddr,
    pub local: Option<SocketAddr>,
}

/// A CancelRequest carrying `(pid, secret)` from `requester`: cancel the query
/// of the client the key was handed to, here or, with peering on, at the peer
/// that handed it out. Failures are logged; the requester gets no answer
/// either way.
pub async fn handle_request(shared: &Shared, requester: Requester, (pid, secret): (i32, i32)) {
    let config = shared.config.load_full();
    let wait = config.general.cancel_wait_timeout;
    match peering::route(pid, config.general.peer_id) {
        Route::Here(pid) => {
            if let Some(cancel) = shared.cancels.lookup((pid, secret)).and_then(|l| l.begin()) {
                deliver(shared, cancel, wait, Some(requester)).await;
            }
        }
        Route::Peer(peer_id) => match config.peers.get(&peer_id) {
            Some(peer) => {
                let _counted = shared.cancels.passing_on(peer_id);
                let dns = (&*shared.dns, DnsTtl::of(&config.general));
                if let Err(e) = peering::pass_on(peer, (pid, secret), wait, dns).await {
                    log::warn!("cancel request to peer {peer_id} failed: {e}");
                }
            }
            None => log::warn!("cancel request for peer {peer_id}, which [peers] lacks: dropped"),
        },
        Route::Misrouted(peer_id) => {
            log::warn!("cancel request passed on by a peer, but for peer {peer_id}: dropped");
        }
    }
}

/// Send a cancel request and wait until PostgreSQL has taken it, giving up
/// after `cancel_wait_timeout` (zero: no limit). Failures are logged: the
/// client that asked gets no answer either way, as from PostgreSQL.
///
/// Meanwhile, as in PgBouncer, SHOW CLIENTS lists the requester (if a client
/// asked) as `active_cancel_req`, and SHOW SERVERS the connection carrying the
/// request as `active_cancel`, linked, under the pool of the server canceled.
pub async fn deliver(
    shared: &Shared,
    cancel: CancelInFlight,
    wait_timeout: Duration,
    requester: Option<Requester>,
) {
    let target = cancel.target();
    let listed_row = |id, peer, local, state| {
        let user = target.pool.user.clone();
        let info = Arc::new(ConnInfo::new(id, target.pool.clone(), user, peer, local));
        info.set_state(state);
        info
    };
    let client = requester.map(|r| listed_row(r.id, r.peer, r.local, ConnState::ActiveCancelReq));
    let _client_listed = client.clone().map(|c| Listed::new(&shared.clients, c));
    let list_server = |stream: &Stream| {
        let id = shared.pools.next_server_id();
        let server = listed_row(
            id,
            stream.peer_addr(),
            stream.local_addr(),
            ConnState::ActiveCancel,
        );
        if let Some(client) = &client {
            conn_info::link(client, &server);
        }
        Listed::new(&shared.servers, server)
    };
    // The address is the one the server answered on: nothing to look up.
    let sent = send_request(
        &target.address,
        (target.pid, target.secret),
        wait_timeout,
        None,
        list_server,
    )
    .await;
    if let Err(e) = sent {
        log::warn!("cancel request to {} failed: {e}", target.address);
    }
}

/// Send a CancelRequest for `(pid, secret)` on a new connection to `address`
/// (a host name looked up in `dns`, if given), and wait until the other end
/// closes it: PostgreSQL does once it has signalled the backend, a peer once
/// it has dealt with the request. Gives up after `wait_timeout` (zero: no
/// limit). `connected` is called with the connection once made, and what it
/// returns is kept until the end.
pub(super) async fn send_request<G>(
    address: &ServerAddress,
    (pid, secret): (i32, i32),
    wait_timeout: Duration,
    dns: Option<(&DnsCache, DnsTtl)>,
    connected: impl FnOnce(&Stream) -> G,
) -> std::io::Result<()> {
    let send = async {
        // A connection that lives for one packet needs none of the tcp_* options.
        let mut stream = address.connect(&TcpTuning::default(), dns).await?;
        let _kept = connected(&stream);
        let mut buf = BytesMut::with_capacity(16);
        frontend::put_cancel_request(&mut buf, pid, secret);
        stream.write_all(&buf).await?;
        let mut sink = [0u8; 1];
        let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await;
        Ok(())
    };
    if wait_timeout.is_zero() {
        return send.await;
    }
    tokio::time::timeout(wait_timeout, send)
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("not taken within cancel_wait_timeout ({wait_timeout:?})"),
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_removable() {
        let registry = CancelRegistry::default();
        let (a, link_a) = registry.register(0);
        let (b, _) = registry.register(0);
        assert_ne!(a, b);
        assert!(a.0 >= 0, "pids are positive like PostgreSQL's");
        let address = ServerAddress::Tcp {
            host: "h".into(),
            port: 1,
        };
        let key = crate::pool::PoolKey {
            database: "db".into(),
            user: "u".into(),
        };
        let target = Arc::new(CancelTarget::new(address, (7, 8), key, Default::default()));
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
