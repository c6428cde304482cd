//! Where a CancelRequest for a server goes, and the cancel requests still on
//! their way to it.
//!
//! A cancel request travels on a connection of its own, so it can reach
//! PostgreSQL after the query it was meant for has finished. Had the server
//! gone back to the pool by then, the cancel would stop another client's query.
//! So a server with a cancel in flight is held ("being_canceled", as PgBouncer
//! calls it) until PostgreSQL has taken the request: it closes the cancel
//! connection once it has signalled the backend, and a backend that is idle
//! ignores the signal.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use super::address::ServerAddress;
use crate::pool::PoolKey;

/// A server's address and BackendKeyData, its pool, and its cancels in flight.
#[derive(Debug)]
pub struct CancelTarget {
    pub address: ServerAddress,
    pub pid: i32,
    pub secret: i32,
    /// The pool the server belongs to: SHOW CLIENTS and SHOW SERVERS list a
    /// cancel's connections under it.
    pub pool: PoolKey,
    in_flight: AtomicU32,
    /// Woken when `in_flight` drops to zero.
    settled: Notify,
    /// The cancels in flight to any server of this server's pool (SHOW POOLS).
    pool_in_flight: Arc<AtomicU32>,
}

impl CancelTarget {
    pub fn new(
        address: ServerAddress,
        (pid, secret): (i32, i32),
        pool: PoolKey,
        pool_in_flight: Arc<AtomicU32>,
    ) -> CancelTarget {
        CancelTarget {
            address,
            pid,
            secret,
            pool,
            in_flight: AtomicU32::new(0),
            settled: Notify::new(),
            pool_in_flight,
        }
    }

    /// Count a cancel request to this server until the returned guard drops.
    /// Callers must hold the client's cancel link (see `CancelLink::begin`), so
    /// that the count is visible to the session before it releases the server.
    pub fn begin(self: &Arc<Self>) -> CancelInFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.pool_in_flight.fetch_add(1, Ordering::Relaxed);
        CancelInFlight {
            target: self.clone(),
        }
    }

    /// Whether a cancel request to this server is on its way.
    pub fn in_flight(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Wait until no cancel request to this server is on its way.
    pub async fn settled(&self) {
        loop {
            let notified = self.settled.notified();
            tokio::pin!(notified);
            // Registered before the check, so a drop to zero in between wakes it.
            notified.as_mut().enable();
            if !self.in_flight() {
                return;
            }
            notified.await;
        }
    }
}

/// One cancel request on its way to a server; dropping it marks it delivered
/// (or given up).
#[derive(Debug)]
pub struct CancelInFlight {
    target: Arc<CancelTarget>,
}

impl CancelInFlight {
    pub fn target(&self) -> &CancelTarget {
        &self.target
    }
}

impl Drop for CancelInFlight {
    fn drop(&mut self) {
        self.target.pool_in_flight.fetch_sub(1, Ordering::Relaxed);
        if self.target.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.target.settled.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn target(pool: &Arc<AtomicU32>) -> Arc<CancelTarget> {
        let address = ServerAddress::Tcp {
            host: "h".into(),
            port: 1,
        };
        let key = PoolKey {
            database: "db".into(),
            user: "u".into(),
        };
        Arc::new(CancelTarget::new(address, (7, 8), key, pool.clone()))
    }

    #[tokio::test]
    async fn settled_waits_for_the_last_cancel() {
        let pool = Arc::new(AtomicU32::new(0));
        let (a, b) = (target(&pool), target(&pool));
        let first = a.begin();
        let second = a.begin();
        let other = b.begin();
        assert!(a.in_flight());
        assert_eq!(pool.load(Ordering::Relaxed), 3, "counted for the pool");

        let waiter = tokio::spawn({
            let a = a.clone();
            async move { a.settled().await }
        });
        drop(first);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one cancel is still on its way");
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("settled once both were delivered")
            .unwrap();
        assert!(!a.in_flight());
        assert!(b.in_flight(), "another server's cancel is its own");
        drop(other);
        assert_eq!(pool.load(Ordering::Relaxed), 0);
        // Nothing in flight: returns at once.
        b.settled().await;
    }
}
