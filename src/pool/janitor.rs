//! Periodic upkeep of all pools: retire idle servers past server_lifetime or
//! server_idle_timeout (or opened for an old target, or at an address their
//! host name lost), open servers up to
//! min_pool_size, and forget databases made from the `*` entry once they have
//! had neither a client nor a server for autodb_idle_timeout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Pool, Registry};
use crate::shared::Shared;

/// How often the janitor looks; timeouts are honoured to within this.
pub const PERIOD: Duration = Duration::from_millis(500);

pub async fn run(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut autodbs = AutoDatabases::default();
    loop {
        tick.tick().await;
        retire_moved(&shared);
        sweep(&shared.pools);
        autodbs.forget_unused(&shared, Instant::now());
    }
}

/// Since when each database made from the `*` entry has had no client and no
/// server.
#[derive(Default)]
struct AutoDatabases {
    unused_since: HashMap<Arc<str>, Instant>,
}

impl AutoDatabases {
    /// Forget (with their statistics, as PgBouncer does) the pools of `*`
    /// databases unused for autodb_idle_timeout (0: never).
    fn forget_unused(&mut self, shared: &Shared, now: Instant) {
        let config = shared.config.load();
        let timeout = config.general.autodb_idle_timeout;
        if timeout.is_zero() {
            self.unused_since.clear();
            return;
        }
        // Each `*` database, and whether one of its pools has a server: as in
        // PgBouncer, a database is in use while it has a client or a server
        // (idle servers go after server_idle_timeout).
        let mut has_servers: HashMap<Arc<str>, bool> = HashMap::new();
        for pool in shared.pools.all() {
            if !config.databases.contains_key(&*pool.key.database) {
                *has_servers.entry(pool.key.database.clone()).or_default() |=
                    pool.counts().total > 0;
            }
        }
        self.unused_since
            .retain(|db, _| has_servers.contains_key(db));
        for (db, servers) in has_servers {
            if servers || shared.clients.count_database(&db) > 0 {
                self.unused_since.remove(&db);
                continue;
            }
            let since = *self.unused_since.entry(db.clone()).or_insert(now);
            if now.duration_since(since) >= timeout {
                log::info!("auto-database \"{db}\" unused for {timeout:?}, forgetting it");
                shared.pools.forget_database(&db);
                self.unused_since.remove(&db);
            }
        }
    }
}

/// Servers at an address their host name no longer has (a new lookup, after
/// dns_max_ttl or a zone's new serial, found it without) are replaced.
fn retire_moved(shared: &Shared) {
    for moved in shared.dns.take_moved() {
        let marked = shared.pools.retire_servers_at(&moved.host, &moved.gone);
        // Quieter when nothing was connected there (a peer's name, say).
        let level = if marked > 0 {
            log::Level::Info
        } else {
            log::Level::Debug
        };
        log::log!(
            level,
            "host '{}' no longer has {} (now {}): replacing its {marked} server(s) there",
            moved.host,
            list(&moved.gone),
            list(&moved.now)
        );
    }
}

fn list(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One pass over every pool.
pub fn sweep(registry: &Registry) {
    let now = Instant::now();
    for pool in registry.all() {
        for (server, why) in pool.take_expired(now) {
            server.close(why);
        }
        for _ in 0..pool.missing_for_min() {
            tokio::spawn(prewarm(pool.clone()));
        }
    }
}

/// Open one server for min_pool_size and put it in the idle list.
async fn prewarm(pool: Arc<Pool>) {
    let slot = {
        let mut st = pool.lock();
        pool.try_slot(&mut st, false)
    };
    let Ok(slot) = slot else { return };
    if let Ok(server) = pool.open(slot).await {
        pool.release(server);
    }
}
