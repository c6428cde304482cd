//! All pools, found by (database, user), and the counters shared between pools
//! of one database or one user.

use foldhash::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::{ConnCounter, Pool, PoolSettings, RegistryLinks};
use crate::auth::Secret;
use crate::config::Config;
use crate::control::conn_info::{ConnInfo, ConnRegistry};
use crate::net::stream::PeerAddr;
use crate::server::close_reason;
use crate::server::dns::DnsCache;

/// A pool is identified by the database name clients use and the user name it
/// logs in to the server with. Every connection's record carries its pool's
/// key, so the names are shared rather than copied.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolKey {
    pub database: Arc<str>,
    pub user: Arc<str>,
}

/// The admin console's database and user names in SHOW POOLS and SHOW CLIENTS,
/// as PgBouncer lists its console connections.
const CONSOLE: &str = "pgbouncer";

impl PoolKey {
    /// The key the admin console's connections are listed under. It is never a
    /// real pool's: logins to this database name go to the console.
    pub fn console() -> PoolKey {
        PoolKey {
            database: CONSOLE.into(),
            user: CONSOLE.into(),
        }
    }

    pub fn is_console(&self) -> bool {
        *self.database == *CONSOLE
    }
}

/// The pools by key; pools keep a weak reference to find their siblings.
pub type PoolMap = RwLock<HashMap<PoolKey, Arc<Pool>>>;

pub struct Registry {
    pools: Arc<PoolMap>,
    db_counters: Mutex<HashMap<String, Arc<ConnCounter>>>,
    user_counters: Mutex<HashMap<String, Arc<ConnCounter>>>,
    links: RegistryLinks,
}

fn counter(map: &Mutex<HashMap<String, Arc<ConnCounter>>>, name: &str) -> Arc<ConnCounter> {
    map.lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name.to_owned())
        .or_default()
        .clone()
}

impl Registry {
    pub fn new(servers: Arc<ConnRegistry>, dns: Arc<DnsCache>) -> Registry {
        let pools: Arc<PoolMap> = Arc::default();
        Registry {
            links: RegistryLinks {
                next_server_id: Arc::new(AtomicU64::new(1)),
                servers,
                siblings: Arc::downgrade(&pools),
                dns,
            },
            pools,
            db_counters: Mutex::default(),
            user_counters: Mutex::default(),
        }
    }

    /// An id for a server connection of no pool's own (a cancel request's).
    pub fn next_server_id(&self) -> u64 {
        self.links.next_server_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn get(&self, key: &PoolKey) -> Option<Arc<Pool>> {
        self.pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned()
    }

    /// The pool for `key`, created with `settings()` (and paused if its
    /// database is) if it does not exist yet.
    pub fn get_or_create(
        &self,
        key: &PoolKey,
        paused: bool,
        settings: impl FnOnce() -> PoolSettings,
    ) -> Arc<Pool> {
        if let Some(pool) = self.get(key) {
            return pool;
        }
        let mut pools = self.pools.write().unwrap_or_else(|e| e.into_inner());
        pools
            .entry(key.clone())
            .or_insert_with(|| {
                let pool = Pool::new(
                    key.clone(),
                    settings(),
                    counter(&self.db_counters, &key.database),
                    counter(&self.user_counters, &key.user),
                    self.links.clone(),
                );
                if paused {
                    pool.pause(close_reason::PAUSE_MODE);
                }
                pool
            })
            .clone()
    }

    /// The pools of one database, or all pools for `None`.
    pub fn of_database(&self, database: Option<&str>) -> Vec<Arc<Pool>> {
        let mut pools = self.all();
        if let Some(db) = database {
            pools.retain(|p| *p.key.database == *db);
        }
        pools
    }

    /// Servers open to a database across its pools (for SHOW DATABASES).
    pub fn db_connections(&self, database: &str) -> usize {
        self.db_counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(database)
            .map_or(0, |c| c.get())
    }

    /// Servers open for a user across its pools (for SHOW USERS).
    pub fn user_connections(&self, user: &str) -> usize {
        self.user_counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(user)
            .map_or(0, |c| c.get())
    }

    pub fn all(&self) -> Vec<Arc<Pool>> {
        let mut pools: Vec<_> = self
            .pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        pools.sort_by(|a, b| a.key.cmp(&b.key));
        pools
    }

    /// Mark for closing the servers that pools connecting to `host` have at
    /// one of the addresses in `gone`: an idle one closes at the janitor's
    /// next sweep, one in use when it comes back (PgBouncer's
    /// `close_needed`). Returns how many were marked.
    pub fn retire_servers_at(&self, host: &str, gone: &[IpAddr]) -> usize {
        let at_gone = |server: &ConnInfo| matches!(server.peer, PeerAddr::Tcp(addr) if gone.contains(&addr.ip()));
        self.all()
            .iter()
            .filter(|pool| pool.connects_to(host))
            .map(|pool| pool.mark_servers_close_needed(at_gone))
            .sum()
    }

    /// Close and drop every pool of `database` (a `*` database no longer
    /// used): servers still idle in it close now, its statistics go.
    pub fn forget_database(&self, database: &str) {
        let mut pools = self.pools.write().unwrap_or_else(|e| e.into_inner());
        pools.retain(|key, pool| {
            let keep = *key.database != *database;
            if !keep {
                pool.close(close_reason::AUTODB_IDLE);
            }
            keep
        });
    }

    /// After a reload: give every pool its new settings, and close the pools
    /// whose database entry is gone (their connected clients keep their
    /// current server until they leave).
    pub fn apply(&self, config: &Config, secrets: &HashMap<String, Secret>) {
        let mut pools = self.pools.write().unwrap_or_else(|e| e.into_inner());
        pools.retain(|key, pool| match config.database(&key.database) {
            Some(def) => {
                // A user auth_query found keeps its secret until auth_file has one.
                let queried = pool.queried_secret();
                let secret = secrets.get(&*key.user).or(queried.as_ref());
                pool.update_settings(PoolSettings::build(
                    config,
                    def,
                    &key.database,
                    &key.user,
                    secret,
                ));
                true
            }
            None => {
                pool.close(close_reason::CONFIG_CHANGED);
                false
            }
        });
    }
}
