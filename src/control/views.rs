//! Building the snapshots from live state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::conn_info::{now_us, ConnInfo, ConnState};
use super::snapshot::*;
use crate::config::{Config, PoolMode};
use crate::net::stream::PeerAddr;
use crate::pool::PoolKey;
use crate::shared::Shared;

/// SHOW POOLS: the pools, and while console connections exist the
/// `pgbouncer` pseudo-pool that PgBouncer lists them under.
pub fn pools(shared: &Arc<Shared>) -> Vec<PoolRow> {
    let clients = shared.clients.all();
    let mut rows = server_pools(shared, &clients);
    let consoles = console_clients(&clients);
    if consoles > 0 {
        let key = PoolKey::console();
        rows.push(PoolRow {
            database: key.database.to_string(),
            user: key.user.to_string(),
            cl_active: consoles as u64,
            pool_mode: mode_name(PoolMode::Statement).to_owned(),
            ..Default::default()
        });
        rows.sort_by(|a, b| (&a.database, &a.user).cmp(&(&b.database, &b.user)));
    }
    rows
}

/// How many of `clients` are admin console connections.
fn console_clients(clients: &[Arc<ConnInfo>]) -> usize {
    clients.iter().filter(|c| c.pool.is_console()).count()
}

fn server_pools(shared: &Arc<Shared>, clients: &[Arc<ConnInfo>]) -> Vec<PoolRow> {
    let servers = shared.servers.all();
    let now = now_us();
    shared
        .pools
        .all()
        .into_iter()
        .map(|pool| {
            let counts = pool.counts();
            let settings = pool.settings();
            let mine = |c: &&Arc<ConnInfo>| c.pool == pool.key;
            let cl_in = |state| {
                clients
                    .iter()
                    .filter(mine)
                    .filter(|c| c.state() == state)
                    .count()
            };
            let cl_waiting = cl_in(ConnState::Waiting);
            // Cancel request connections are counted apart, from the pool.
            let cl_active = clients.iter().filter(mine).count()
                - cl_waiting
                - cl_in(ConnState::ActiveCancelReq);
            let servers_in = |state| {
                servers
                    .iter()
                    .filter(mine)
                    .filter(|s| s.state() == state)
                    .count() as u64
            };
            let cancels = u64::from(pool.cancels_in_flight());
            let oldest_wait = clients
                .iter()
                .filter(mine)
                .filter_map(|c| c.wait_since_us())
                .min()
                .map_or(0, |since| now.saturating_sub(since));
            PoolRow {
                database: pool.key.database.to_string(),
                user: pool.key.user.to_string(),
                cl_active: cl_active as u64,
                cl_waiting: cl_waiting as u64,
                cl_active_cancel_req: cancels,
                sv_active: servers_in(ConnState::Active),
                sv_active_cancel: cancels,
                sv_being_canceled: servers_in(ConnState::BeingCanceled),
                sv_idle: counts.idle as u64,
                sv_used: counts.used as u64,
                sv_login: counts.connecting as u64,
                maxwait: oldest_wait / 1_000_000,
                maxwait_us: oldest_wait % 1_000_000,
                pool_mode: mode_name(settings.mode).to_owned(),
                load_balance_hosts: None,
                ..Default::default()
            }
        })
        .collect()
}

fn mode_name(mode: PoolMode) -> &'static str {
    match mode {
        PoolMode::Session => "session",
        PoolMode::Transaction => "transaction",
        PoolMode::Statement => "statement",
    }
}

/// "YYYY-MM-DD HH:MM:SS UTC" for microseconds since the epoch.
fn timestamp(us: u64) -> String {
    chrono::DateTime::from_timestamp_micros(us as i64)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

/// A stable opaque handle for a connection, like PgBouncer's pointer column.
fn ptr(kind: char, id: u64) -> String {
    let tag: u64 = if kind == 'C' { 0xc1 } else { 0x5e };
    format!("0x{:x}", (tag << 40) | id)
}

/// One SHOW CLIENTS or SHOW SERVERS row. A Unix socket's local end shows the
/// pooler's listen_port, as PgBouncer shows it (for servers too).
fn conn_row(kind: char, info: &ConnInfo, now: u64, listen_port: u16) -> ConnRow {
    let (addr, port) = match &info.peer {
        PeerAddr::Tcp(a) => (a.ip().to_string(), a.port()),
        PeerAddr::Unix { port, .. } => ("unix".to_owned(), *port),
    };
    let (local_addr, local_port) = match info.local {
        Some(a) => (a.ip().to_string(), a.port()),
        None => ("unix".to_owned(), listen_port),
    };
    let (port, local_port) = (i64::from(port), i64::from(local_port));
    let state = match (kind, info.state()) {
        ('C', ConnState::Waiting) => "waiting",
        ('C', ConnState::ActiveCancelReq) => "active_cancel_req",
        ('C', _) => "active",
        (_, ConnState::Active) => "active",
        (_, ConnState::Idle) => "idle",
        (_, ConnState::New) => "new",
        (_, ConnState::BeingCanceled) => "being_canceled",
        (_, ConnState::ActiveCancel) => "active_cancel",
        (_, ConnState::Waiting | ConnState::ActiveCancelReq) => "active",
    };
    let waited = info
        .wait_since_us()
        .map_or(0, |since| now.saturating_sub(since));
    let partner = info.link();
    let partner_kind = if kind == 'C' { 'S' } else { 'C' };
    ConnRow {
        kind,
        user: info.user.to_string(),
        database: info.pool.database.to_string(),
        replication: "none".to_owned(),
        state: state.to_owned(),
        addr,
        port,
        local_addr,
        local_port,
        connect_time: timestamp(info.connect_time_us),
        request_time: timestamp(info.request_time_us()),
        wait: (waited / 1_000_000) as i64,
        wait_us: (waited % 1_000_000) as i64,
        close_needed: i64::from(info.close_needed()),
        ptr: ptr(kind, info.id),
        link: if partner == 0 {
            String::new()
        } else {
            ptr(partner_kind, partner)
        },
        remote_pid: i64::from(info.remote_pid),
        tls: info.tls.as_deref().unwrap_or_default().to_string(),
        application_name: info
            .application_name
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        prepared_statements: i64::from(info.prepared_statements()),
        id: info.id as i64,
    }
}

/// SHOW CLIENTS.
pub fn clients(shared: &Arc<Shared>) -> Vec<ConnRow> {
    let now = now_us();
    let listen_port = shared.config.load().general.listen_port;
    shared
        .clients
        .all()
        .iter()
        .map(|c| conn_row('C', c, now, listen_port))
        .collect()
}

/// SHOW SERVERS.
pub fn servers(shared: &Arc<Shared>) -> Vec<ConnRow> {
    let now = now_us();
    let listen_port = shared.config.load().general.listen_port;
    shared
        .servers
        .all()
        .iter()
        .map(|s| conn_row('S', s, now, listen_port))
        .collect()
}

/// Totals per database, summed over its pools, and the admin console's
/// `pgbouncer` pseudo-database.
pub fn database_totals(shared: &Shared) -> BTreeMap<String, StatsTotals> {
    let mut totals: BTreeMap<String, StatsTotals> = BTreeMap::new();
    totals.insert(
        PoolKey::console().database.to_string(),
        shared.console_stats.totals(),
    );
    for pool in shared.pools.all() {
        crate::stats::accumulate(
            totals.entry(pool.key.database.to_string()).or_default(),
            &pool.stats.totals(),
        );
    }
    totals
}

/// SHOW STATS (and STATS_TOTALS, STATS_AVERAGES, TOTALS).
pub fn stats(shared: &Arc<Shared>) -> Vec<StatsRow> {
    database_totals(shared)
        .into_iter()
        .map(|(database, totals)| StatsRow {
            averages: shared.stats_averages.get(&database),
            database,
            totals,
        })
        .collect()
}

/// SHOW DATABASES: the configured entries (plus pools made from `*`).
pub fn databases(shared: &Arc<Shared>) -> Vec<DatabaseRow> {
    let config = shared.config.load();
    let g = &config.general;
    let switches = shared.switches();
    let mut names: Vec<String> = config
        .databases
        .keys()
        .filter(|n| *n != "*")
        .cloned()
        .collect();
    for pool in shared.pools.all() {
        if !names.iter().any(|n| **n == *pool.key.database) {
            names.push(pool.key.database.to_string());
        }
    }
    let clients = shared.clients.all();
    let mut rows: Vec<DatabaseRow> = names
        .into_iter()
        .filter_map(|name| {
            let def = config.database(&name)?;
            Some(DatabaseRow {
                host: def.host.clone(),
                port: i64::from(def.port),
                database: def.dbname.clone().unwrap_or_else(|| name.clone()),
                force_user: def.user.clone(),
                pool_size: i64::from(def.pool_size.unwrap_or(g.default_pool_size)),
                min_pool_size: i64::from(def.min_pool_size.unwrap_or(g.min_pool_size)),
                reserve_pool_size: i64::from(def.reserve_pool_size.unwrap_or(g.reserve_pool_size)),
                server_lifetime: def.server_lifetime.unwrap_or(g.server_lifetime).as_secs() as i64,
                pool_mode: def.pool_mode.map(|m| mode_name(m).to_owned()),
                load_balance_hosts: def.load_balance_hosts.clone(),
                max_connections: i64::from(def.max_db_connections.unwrap_or(g.max_db_connections)),
                current_connections: shared.pools.db_connections(&name) as i64,
                max_client_connections: i64::from(def.max_db_client_connections.unwrap_or(0)),
                current_client_connections: clients
                    .iter()
                    .filter(|c| *c.pool.database == *name)
                    .count() as i64,
                paused: switches.is_paused(&name),
                disabled: switches.disabled.contains(&name),
                name,
            })
        })
        .collect();
    rows.push(console_database(g, &clients));
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    rows
}

/// The admin console's row in SHOW DATABASES, with the values PgBouncer gives
/// its built-in `pgbouncer` database (a forced user, a pool of 2, statement
/// mode, reached on the pooler's own port).
fn console_database(g: &crate::config::General, clients: &[Arc<ConnInfo>]) -> DatabaseRow {
    let key = PoolKey::console();
    DatabaseRow {
        name: key.database.to_string(),
        host: None,
        port: i64::from(g.listen_port),
        database: key.database.to_string(),
        force_user: Some(key.user.to_string()),
        pool_size: 2,
        server_lifetime: g.server_lifetime.as_secs() as i64,
        pool_mode: Some(mode_name(PoolMode::Statement).to_owned()),
        current_client_connections: console_clients(clients) as i64,
        ..Default::default()
    }
}

/// The users PgBouncer knows, by name: the `[users]` entries, every user of
/// the auth file, every user with a pool, and the console's `pgbouncer`.
fn user_names(shared: &Shared, config: &Config) -> Vec<String> {
    let mut names: BTreeSet<String> = config.users.keys().cloned().collect();
    names.extend(shared.secrets.load().keys().cloned());
    names.extend(shared.pools.all().iter().map(|p| p.key.user.to_string()));
    names.insert(PoolKey::console().user.to_string());
    names.into_iter().collect()
}

/// SHOW USERS: one row per known user (see `user_names`), sorted by name.
pub fn users(shared: &Arc<Shared>) -> Vec<UserRow> {
    let config = shared.config.load();
    let names = user_names(shared, &config);
    let clients = shared.clients.all();
    names
        .into_iter()
        .map(|name| {
            let def = config.users.get(&name);
            UserRow {
                pool_size: def.and_then(|d| d.pool_size).map(i64::from),
                reserve_pool_size: def.and_then(|d| d.reserve_pool_size).map(i64::from),
                pool_mode: def
                    .and_then(|d| d.pool_mode)
                    .map(|m| mode_name(m).to_owned()),
                max_user_connections: i64::from(
                    def.and_then(|d| d.max_user_connections)
                        .unwrap_or(config.general.max_user_connections),
                ),
                current_connections: shared.pools.user_connections(&name) as i64,
                max_user_client_connections: i64::from(
                    def.and_then(|d| d.max_user_client_connections).unwrap_or(0),
                ),
                current_client_connections: clients.iter().filter(|c| *c.user == *name).count()
                    as i64,
                name,
            }
        })
        .collect()
}

/// SHOW STATE.
pub fn state(shared: &Arc<Shared>) -> StateRow {
    let paused = shared.switches().all_paused;
    StateRow {
        active: !paused,
        paused,
        suspended: false,
    }
}

/// SHOW LISTS.
pub fn lists(shared: &Arc<Shared>) -> Lists {
    let config = shared.config.load();
    let pools = shared.pools.all();
    let idle: usize = pools.iter().map(|p| p.counts().idle).sum();
    let servers = shared.servers.len();
    let clients = shared.clients.all();
    let logged_in = clients.len();
    // The console's pseudo-pool counts while SHOW POOLS lists it.
    let console_pool = console_clients(&clients) > 0;
    let connected = shared
        .client_count
        .load(std::sync::atomic::Ordering::Relaxed);
    Lists {
        // The configured databases and the console's `pgbouncer`.
        databases: config.databases.keys().filter(|n| *n != "*").count() as u64 + 1,
        users: user_names(shared, &config).len() as u64,
        peers: config.peers.len() as u64,
        pools: (pools.len() + usize::from(console_pool)) as u64,
        used_clients: logged_in as u64,
        login_clients: connected.saturating_sub(logged_in) as u64,
        free_servers: idle as u64,
        used_servers: servers.saturating_sub(idle) as u64,
        dns_names: shared.dns.names() as u64,
        dns_zones: shared.dns.zone_rows().len() as u64,
        dns_queries: shared.dns.queries() as u64,
        ..Default::default()
    }
}
