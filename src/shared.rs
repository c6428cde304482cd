//! The state every task shares: the configuration in force, the auth file's
//! secrets, the pools, the connections and the cancel keys. Passed around as
//! `Arc<Shared>`; nothing here is a global.

use foldhash::HashMap;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio::sync::{broadcast, watch};

use crate::auth::Secret;
use crate::client::cancel::CancelRegistry;
use crate::config::Config;
use crate::control::conn_info::ConnRegistry;
use crate::control::{ControlEvent, ShutdownMode};
use crate::log::LogHandle;
use crate::net::listener::ListenerOptions;
use crate::pool::Registry;
use crate::server::dns::DnsCache;
use crate::stats::{Averages, PoolStats};

/// What PAUSE, KILL and DISABLE have switched, by database name.
#[derive(Debug, Default)]
pub struct Switches {
    /// PAUSE (or KILL) without a database: everything.
    pub all_paused: bool,
    pub paused: HashSet<String>,
    pub disabled: HashSet<String>,
}

impl Switches {
    pub fn is_paused(&self, database: &str) -> bool {
        self.all_paused || self.paused.contains(database)
    }
}

pub struct Shared {
    /// The configuration in force; replaced whole by a reload.
    pub config: ArcSwap<Config>,
    /// The auth file's users and secrets; replaced whole by a reload.
    pub secrets: ArcSwap<HashMap<String, Secret>>,
    pub pools: Registry,
    pub cancels: CancelRegistry,
    /// Every statement prepared with tracking on, by query (see `prepared`).
    pub statements: Arc<crate::prepared::Registry>,
    /// Logged-in clients, and server connections, for the admin console.
    pub clients: Arc<ConnRegistry>,
    pub servers: Arc<ConnRegistry>,
    /// The listening sockets, for the options a reload or SET changes.
    pub listeners: ListenerOptions,
    /// Servers' (and peers') host names, looked up and kept (SHOW DNS_HOSTS).
    pub dns: Arc<DnsCache>,
    /// Where `auth_type = pam` logins are checked, one at a time.
    pub pam: crate::auth::pam::PamThread,
    /// Connected clients, logged in or not (for max_client_conn).
    pub client_count: AtomicUsize,
    pub switches: Mutex<Switches>,
    pub stats_averages: Averages,
    /// The admin console's `pgbouncer` row of SHOW STATS. As in PgBouncer, each
    /// console login counts as one transaction and one query; commands do not.
    pub console_stats: PoolStats,
    /// Set once to ask the daemon to stop.
    pub shutdown: watch::Sender<Option<ShutdownMode>>,
    /// What the control core did, for observers (sd_notify, D-Bus).
    pub events: broadcast::Sender<ControlEvent>,
    /// The log backend, reconfigured by reload (absent in unit tests).
    pub logger: Option<LogHandle>,
    /// `-v` count from the command line, added to `verbose` on reload.
    pub cli_verbose: u32,
    next_id: AtomicU64,
}

impl Shared {
    pub fn new(
        config: Config,
        secrets: HashMap<String, Secret>,
        dns: DnsCache,
        logger: Option<LogHandle>,
        cli_verbose: u32,
    ) -> Arc<Shared> {
        let servers = Arc::new(ConnRegistry::default());
        let dns = Arc::new(dns);
        Arc::new(Shared {
            config: ArcSwap::from_pointee(config),
            secrets: ArcSwap::from_pointee(secrets),
            pools: Registry::new(servers.clone(), dns.clone()),
            dns,
            listeners: ListenerOptions::default(),
            pam: Default::default(),
            cancels: CancelRegistry::default(),
            statements: Default::default(),
            clients: Arc::new(ConnRegistry::default()),
            servers,
            client_count: AtomicUsize::new(0),
            switches: Mutex::new(Switches::default()),
            stats_averages: Averages::default(),
            console_stats: PoolStats::default(),
            shutdown: watch::channel(None).0,
            events: broadcast::channel(64).0,
            logger,
            cli_verbose,
            next_id: AtomicU64::new(1),
        })
    }

    /// Ids for clients (servers have their own sequence in the pool registry).
    pub fn next_client_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub fn switches(&self) -> std::sync::MutexGuard<'_, Switches> {
        self.switches.lock().unwrap_or_else(|e| e.into_inner())
    }
}
