//! The effective settings of one pool: the generic ones, overridden by the
//! `[databases]` entry, then by the `[users]` entry, as PgBouncer resolves them.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::Secret;
use crate::config::{Config, DatabaseDef, PoolMode, ServerCheck};
use crate::net::tls::ServerTls;
use crate::net::tuning::TcpTuning;
use crate::server::dns::DnsTtl;
use crate::server::{Credentials, LoginTarget, ServerAddress};

#[derive(Clone, Debug, PartialEq)]
pub struct PoolSettings {
    pub mode: PoolMode,
    pub pool_size: usize,
    pub min_pool_size: usize,
    pub reserve_pool_size: usize,
    pub reserve_pool_timeout: Duration,
    /// After this long in the queue a client is told it is queued (0: never).
    pub query_wait_notify: Duration,
    /// server_round_robin: hand out the idle server idle the longest (FIFO)
    /// rather than the one used last (LIFO), spreading load over all servers.
    pub round_robin: bool,
    pub max_db_connections: usize,
    pub max_user_connections: usize,
    pub server_lifetime: Duration,
    pub server_idle_timeout: Duration,
    pub server_connect_timeout: Duration,
    pub server_login_retry: Duration,
    pub server_check_delay: Duration,
    /// The health check run on a server idle longer than server_check_delay:
    /// `None` when disabled (the setting is empty), `Some("")` for PgBouncer's
    /// default `<empty>` (an empty query), else the query.
    pub server_check_query: Option<String>,
    pub server_reset_query: String,
    pub server_reset_query_always: bool,
    /// Session pooling: close a server the pool has retired (RECONNECT, a new
    /// target) at the end of its client's transaction, and the client with it.
    pub server_fast_close: bool,
    /// log_connections and log_disconnections: a line per server opened and
    /// per server closed, with why.
    pub log_connections: bool,
    pub log_disconnections: bool,
    pub max_packet_size: usize,
    pub target: LoginTarget,
    /// Socket options for new server connections (not part of the target:
    /// changing them does not make open servers stale).
    pub tcp: TcpTuning,
    /// How long host name lookups are kept (dns_max_ttl, dns_nxdomain_ttl).
    pub dns: DnsTtl,
    /// TLS to the server (server_tls_*), likewise not part of the target.
    pub server_tls: Arc<ServerTls>,
    /// Bumped when `target` changes, so servers of the old target are retired.
    pub generation: u64,
}

impl PoolSettings {
    /// Settings for the pool serving `database` (the name clients use) as
    /// `user` (the name used on the server), whose secret (from auth_file or
    /// auth_query) is `secret`.
    pub fn build(
        config: &Config,
        def: &DatabaseDef,
        database: &str,
        user: &str,
        secret: Option<&Secret>,
    ) -> PoolSettings {
        let g = &config.general;
        let user_def = config.users.get(user);
        let credentials = match (&def.user, &def.password) {
            (Some(forced), Some(password)) if forced == user => {
                Credentials::Password(password.clone())
            }
            (None, Some(password)) => Credentials::Password(password.clone()),
            _ => match secret {
                Some(Secret::Plain(p)) => Credentials::Password(p.clone()),
                Some(Secret::Md5(s)) => Credentials::Md5Secret(s.clone()),
                // SCRAM verifiers log in with keys learned from the client.
                Some(Secret::Scram(_)) | None => Credentials::None,
            },
        };
        let mut startup_params = Vec::new();
        for (name, value) in [
            ("client_encoding", &def.client_encoding),
            ("DateStyle", &def.datestyle),
            ("TimeZone", &def.timezone),
            ("application_name", &def.application_name),
        ] {
            if let Some(v) = value {
                startup_params.push((name.to_owned(), v.clone()));
            }
        }
        let pool_size = user_def
            .and_then(|u| u.pool_size)
            .or(def.pool_size)
            .unwrap_or(g.default_pool_size);
        PoolSettings {
            mode: user_def
                .and_then(|u| u.pool_mode)
                .or(def.pool_mode)
                .unwrap_or(g.pool_mode),
            pool_size: pool_size as usize,
            min_pool_size: def.min_pool_size.unwrap_or(g.min_pool_size) as usize,
            reserve_pool_size: user_def
                .and_then(|u| u.reserve_pool_size)
                .or(def.reserve_pool_size)
                .unwrap_or(g.reserve_pool_size) as usize,
            reserve_pool_timeout: g.reserve_pool_timeout,
            query_wait_notify: g.query_wait_notify,
            round_robin: g.server_round_robin,
            max_db_connections: def.max_db_connections.unwrap_or(g.max_db_connections) as usize,
            max_user_connections: user_def
                .and_then(|u| u.max_user_connections)
                .unwrap_or(g.max_user_connections) as usize,
            server_lifetime: def.server_lifetime.unwrap_or(g.server_lifetime),
            server_idle_timeout: g.server_idle_timeout,
            server_connect_timeout: g.server_connect_timeout,
            server_login_retry: g.server_login_retry,
            server_check_delay: g.server_check_delay,
            server_check_query: match g.server_check() {
                ServerCheck::Disabled => None,
                ServerCheck::EmptyQuery => Some(String::new()),
                ServerCheck::Query(q) => Some(q.to_owned()),
            },
            server_reset_query: g.server_reset_query.clone(),
            server_reset_query_always: g.server_reset_query_always,
            server_fast_close: g.server_fast_close,
            log_connections: g.log_connections,
            log_disconnections: g.log_disconnections,
            max_packet_size: g.max_packet_size as usize,
            target: LoginTarget {
                addresses: ServerAddress::from_host(def.host.as_deref(), def.port),
                database: def.dbname.clone().unwrap_or_else(|| database.to_owned()),
                user: user.to_owned(),
                credentials,
                startup_params,
            },
            tcp: TcpTuning::from_general(g),
            dns: DnsTtl::of(g),
            server_tls: config.tls.server.clone(),
            generation: 0,
        }
    }
}
