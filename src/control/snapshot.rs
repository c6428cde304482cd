//! Point-in-time views of the pooler's state, in the shape the admin console's
//! SHOW commands (and later D-Bus) report them. Plain data: no locks are held
//! once a snapshot is taken.

/// One row of SHOW POOLS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PoolRow {
    pub database: String,
    pub user: String,
    pub cl_active: u64,
    pub cl_waiting: u64,
    pub cl_active_cancel_req: u64,
    pub cl_waiting_cancel_req: u64,
    pub sv_active: u64,
    pub sv_active_cancel: u64,
    pub sv_being_canceled: u64,
    pub sv_idle: u64,
    pub sv_used: u64,
    pub sv_tested: u64,
    pub sv_login: u64,
    /// Seconds the oldest waiting client has waited, and the microsecond rest.
    pub maxwait: u64,
    pub maxwait_us: u64,
    pub pool_mode: String,
    pub load_balance_hosts: Option<String>,
}

/// One row of SHOW CLIENTS or SHOW SERVERS (`kind` 'C' or 'S').
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnRow {
    pub kind: char,
    pub user: String,
    pub database: String,
    /// "none" (replication connections are not pooled).
    pub replication: String,
    pub state: String,
    pub addr: String,
    pub port: i64,
    pub local_addr: String,
    pub local_port: i64,
    /// "YYYY-MM-DD HH:MM:SS UTC", as PgBouncer prints times.
    pub connect_time: String,
    pub request_time: String,
    /// Seconds (and microsecond rest) the client has waited for a server.
    pub wait: i64,
    pub wait_us: i64,
    pub close_needed: i64,
    /// An opaque identity of this connection (hex), and of its partner (or empty).
    pub ptr: String,
    pub link: String,
    /// The server's backend pid (servers), or 0.
    pub remote_pid: i64,
    pub tls: String,
    pub application_name: String,
    pub prepared_statements: i64,
    pub id: i64,
}

/// Counters of one database since start (SHOW STATS_TOTALS).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsTotals {
    pub server_assignment_count: u64,
    pub xact_count: u64,
    pub query_count: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    /// Microseconds.
    pub xact_time: u64,
    pub query_time: u64,
    pub wait_time: u64,
    pub client_parse_count: u64,
    pub server_parse_count: u64,
    pub bind_count: u64,
    pub client_login_count: u64,
}

impl StatsTotals {
    /// The twelve counters in the column order of every statistics SHOW (and
    /// of D-Bus's GetStats).
    pub fn in_show_order(&self) -> [u64; 12] {
        [
            self.server_assignment_count,
            self.xact_count,
            self.query_count,
            self.bytes_received,
            self.bytes_sent,
            self.xact_time,
            self.query_time,
            self.wait_time,
            self.client_parse_count,
            self.server_parse_count,
            self.bind_count,
            self.client_login_count,
        ]
    }
}

/// One database's statistics: totals and per-second averages over the last
/// stats_period (times averaged per transaction or query, as PgBouncer does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatsRow {
    pub database: String,
    pub totals: StatsTotals,
    pub averages: StatsTotals,
}

/// One row of SHOW DATABASES.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatabaseRow {
    pub name: String,
    pub host: Option<String>,
    pub port: i64,
    pub database: String,
    pub force_user: Option<String>,
    pub pool_size: i64,
    pub min_pool_size: i64,
    pub reserve_pool_size: i64,
    pub server_lifetime: i64,
    pub pool_mode: Option<String>,
    pub load_balance_hosts: Option<String>,
    pub max_connections: i64,
    pub current_connections: i64,
    pub max_client_connections: i64,
    pub current_client_connections: i64,
    pub paused: bool,
    pub disabled: bool,
}

/// One row of SHOW USERS.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserRow {
    pub name: String,
    pub pool_size: Option<i64>,
    pub reserve_pool_size: Option<i64>,
    pub pool_mode: Option<String>,
    pub max_user_connections: i64,
    pub current_connections: i64,
    pub max_user_client_connections: i64,
    pub current_client_connections: i64,
}

/// SHOW STATE: is the pooler paused (all databases) or suspended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateRow {
    pub active: bool,
    pub paused: bool,
    pub suspended: bool,
}

/// SHOW LISTS counts, in PgBouncer's row order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lists {
    pub databases: u64,
    pub users: u64,
    pub peers: u64,
    pub pools: u64,
    pub peer_pools: u64,
    pub free_clients: u64,
    pub used_clients: u64,
    pub login_clients: u64,
    pub free_servers: u64,
    pub used_servers: u64,
    pub dns_names: u64,
    pub dns_zones: u64,
    pub dns_queries: u64,
    pub dns_pending: u64,
}
