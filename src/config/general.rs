//! The typed view of the `[pgbouncer]` section that the rest of pgsluice reads.
//!
//! `General` is always built from a complete [`SettingValues`] by
//! [`General::from_values`], whether at load, at `SET`, or for the defaults, so the
//! typed fields and the SHOW CONFIG text can never disagree.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::value::SettingValues;

/// When a server connection goes back to the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolMode {
    Session,
    Transaction,
    Statement,
}

impl PoolMode {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PoolMode {
    type Err = String;

    /// Case-insensitive, as PgBouncer's lookup tables are.
    fn from_str(s: &str) -> Result<PoolMode, String> {
        match s.to_ascii_lowercase().as_str() {
            "session" => Ok(PoolMode::Session),
            "transaction" => Ok(PoolMode::Transaction),
            "statement" => Ok(PoolMode::Statement),
            _ => Err(format!(
                "invalid pool mode '{s}' (expected session, transaction or statement)"
            )),
        }
    }
}

/// How clients authenticate (`auth_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthType {
    Any,
    Trust,
    Plain,
    Md5,
    ScramSha256,
    Cert,
    Hba,
    Pam,
    Ldap,
}

impl AuthType {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthType::Any => "any",
            AuthType::Trust => "trust",
            AuthType::Plain => "plain",
            AuthType::Md5 => "md5",
            AuthType::ScramSha256 => "scram-sha-256",
            AuthType::Cert => "cert",
            AuthType::Hba => "hba",
            AuthType::Pam => "pam",
            AuthType::Ldap => "ldap",
        }
    }
}

impl fmt::Display for AuthType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthType {
    type Err = String;

    fn from_str(s: &str) -> Result<AuthType, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "any" => AuthType::Any,
            "trust" => AuthType::Trust,
            "plain" => AuthType::Plain,
            "md5" => AuthType::Md5,
            "scram-sha-256" => AuthType::ScramSha256,
            "cert" => AuthType::Cert,
            "hba" => AuthType::Hba,
            "pam" => AuthType::Pam,
            "ldap" => AuthType::Ldap,
            _ => return Err(format!("invalid auth type '{s}'")),
        })
    }
}

/// `client_tls_sslmode` (and `server_tls_sslmode`): how much TLS is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(s: &str) -> Result<SslMode, String> {
        [
            SslMode::Disable,
            SslMode::Allow,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ]
        .into_iter()
        .find(|mode| mode.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| format!("invalid sslmode '{s}'"))
    }
}

/// Which bus the D-Bus interface is offered on (`dbus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbusBus {
    System,
    Session,
    /// No D-Bus interface.
    Off,
}

impl DbusBus {
    pub fn as_str(self) -> &'static str {
        match self {
            DbusBus::System => "system",
            DbusBus::Session => "session",
            DbusBus::Off => "off",
        }
    }
}

impl fmt::Display for DbusBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DbusBus {
    type Err = String;

    fn from_str(s: &str) -> Result<DbusBus, String> {
        match s.to_ascii_lowercase().as_str() {
            "system" => Ok(DbusBus::System),
            "session" => Ok(DbusBus::Session),
            "off" => Ok(DbusBus::Off),
            _ => Err(format!(
                "invalid bus '{s}' (expected system, session or off)"
            )),
        }
    }
}

/// What `server_check_query` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerCheck<'a> {
    /// Set to the empty string: no health check.
    Disabled,
    /// `<empty>` (the default): send an empty query.
    EmptyQuery,
    /// Send this query.
    Query(&'a str),
}

/// The `[pgbouncer]` section, typed. Timeouts of `Duration::ZERO` mean "off".
#[derive(Clone, Debug)]
pub struct General {
    /// Comma list split and trimmed; empty = no TCP listener; `*` is kept as `*`.
    pub listen_addr: Vec<String>,
    pub listen_port: u16,
    /// `None` when set to the empty string (no Unix socket).
    pub unix_socket_dir: Option<PathBuf>,
    /// Parsed with C integer syntax, so `0777` is octal.
    pub unix_socket_mode: u32,
    pub unix_socket_group: Option<String>,
    pub user: Option<String>,
    pub pidfile: Option<PathBuf>,
    pub logfile: Option<PathBuf>,
    pub pool_mode: PoolMode,
    pub admin_users: Vec<String>,
    pub stats_users: Vec<String>,
    pub auth_type: AuthType,
    pub auth_file: Option<PathBuf>,
    /// The pg_hba.conf-style file `auth_type = hba` reads.
    pub auth_hba_file: Option<PathBuf>,
    /// The pg_ident.conf-style user name maps its `map=` options name.
    pub auth_ident_file: Option<PathBuf>,
    /// Who looks up users missing from auth_file, with `auth_query`, in
    /// `auth_dbname` (the client's database when unset).
    pub auth_user: Option<String>,
    pub auth_query: String,
    pub auth_dbname: Option<String>,
    pub client_tls_sslmode: SslMode,
    pub client_tls_key_file: Option<PathBuf>,
    pub client_tls_cert_file: Option<PathBuf>,
    pub client_tls_ca_file: Option<PathBuf>,
    /// Raw text, in libtls's syntax (`secure`, `tlsv1.2,tlsv1.3`, …); see
    /// `net::tls`.
    pub client_tls_protocols: String,
    /// Raw text, in OpenSSL's cipher-list syntax or a PgBouncer shortcut
    /// (`default`, `secure`, …); see `net::tls::suites`.
    pub client_tls_ciphers: String,
    /// Raw text: TLS 1.3 suite names; empty for all.
    pub client_tls13_ciphers: String,
    /// Raw text: `auto`, or curve names.
    pub client_tls_ecdhcurve: String,
    pub server_tls_sslmode: SslMode,
    pub server_tls_ca_file: Option<PathBuf>,
    pub server_tls_cert_file: Option<PathBuf>,
    pub server_tls_key_file: Option<PathBuf>,
    /// Raw text, as `client_tls_protocols`.
    pub server_tls_protocols: String,
    /// Raw text, as `client_tls_ciphers`.
    pub server_tls_ciphers: String,
    /// Raw text, as `client_tls13_ciphers`.
    pub server_tls13_ciphers: String,
    /// How long a server's host name lookup is kept (dns_max_ttl), and a
    /// failed one (dns_nxdomain_ttl).
    pub dns_max_ttl: Duration,
    pub dns_nxdomain_ttl: Duration,
    /// How often the SOA serials of the host names' zones are checked (0: never).
    pub dns_zone_check_period: Duration,
    /// A resolv.conf of pgsluice's own; empty: the system's resolver.
    pub resolv_conf: String,
    /// The file the next reload reads: the one pgsluice started with, unless
    /// SET conffile named another (empty only in configs not read from a file).
    pub conffile: PathBuf,
    pub max_client_conn: u32,
    pub default_pool_size: u32,
    pub min_pool_size: u32,
    pub reserve_pool_size: u32,
    pub reserve_pool_timeout: Duration,
    pub max_db_connections: u32,
    pub max_user_connections: u32,
    pub server_round_robin: bool,
    pub server_reset_query: String,
    pub server_reset_query_always: bool,
    pub server_lifetime: Duration,
    pub server_idle_timeout: Duration,
    pub server_connect_timeout: Duration,
    pub server_login_retry: Duration,
    pub server_check_delay: Duration,
    /// Raw text: `""` disables the check, `<empty>` sends an empty query; see
    /// [`General::server_check`].
    pub server_check_query: String,
    pub server_fast_close: bool,
    pub client_login_timeout: Duration,
    pub query_timeout: Duration,
    pub query_wait_timeout: Duration,
    /// After this long in the queue a client is told it is queued (0: never).
    pub query_wait_notify: Duration,
    pub cancel_wait_timeout: Duration,
    pub client_idle_timeout: Duration,
    pub idle_transaction_timeout: Duration,
    pub transaction_timeout: Duration,
    pub autodb_idle_timeout: Duration,
    pub suspend_timeout: Duration,
    /// Lowercased, since startup parameter names are compared case-insensitively.
    pub ignore_startup_parameters: Vec<String>,
    pub track_extra_parameters: Vec<String>,
    pub application_name_add_host: bool,
    pub log_connections: bool,
    pub log_disconnections: bool,
    pub log_pooler_errors: bool,
    pub log_stats: bool,
    pub verbose: u32,
    pub syslog: bool,
    pub syslog_ident: String,
    pub syslog_facility: String,
    pub stats_period: Duration,
    pub pkt_buf: usize,
    pub max_packet_size: u32,
    pub listen_backlog: u32,
    /// Refuse the simple query protocol (PQexec), which can carry several
    /// statements in one message.
    pub disable_pqexec: bool,
    pub so_reuseport: bool,
    pub tcp_keepalive: bool,
    pub tcp_keepcnt: u32,
    pub tcp_keepidle: u32,
    pub tcp_keepintvl: u32,
    /// Bytes; 0 leaves socket buffers to the kernel.
    pub tcp_socket_buffer: u32,
    /// Milliseconds, as the socket option takes it.
    pub tcp_user_timeout: u32,
    /// TCP_DEFER_ACCEPT on the TCP listeners.
    pub tcp_defer_accept: bool,
    /// Clients allowed per database and per login user (0: no limit).
    pub max_db_client_connections: u32,
    pub max_user_client_connections: u32,
    pub max_prepared_statements: u32,
    pub scram_iterations: u32,
    pub peer_id: u32,
    pub job_name: String,
    pub dbus: DbusBus,
    /// The well-known name taken on the bus.
    pub dbus_name: String,
}

impl Default for General {
    /// PgBouncer's defaults.
    fn default() -> General {
        General::from_values(&SettingValues::default())
    }
}

impl General {
    /// Builds the typed view. Values were range-checked when parsed, so the integer
    /// conversions below cannot fail for values that came through `SettingDef::parse`.
    pub fn from_values(v: &SettingValues) -> General {
        let u32_of = |name: &str| u32::try_from(v.int(name)).unwrap_or(u32::MAX);
        let opt_str = |name: &str| {
            Some(v.str(name))
                .filter(|s| !s.is_empty())
                .map(String::from)
        };
        let opt_path = |name: &str| opt_str(name).map(PathBuf::from);
        General {
            listen_addr: split_list(v.str("listen_addr")),
            listen_port: u16::try_from(v.int("listen_port")).unwrap_or(u16::MAX),
            unix_socket_dir: opt_path("unix_socket_dir"),
            unix_socket_mode: u32_of("unix_socket_mode"),
            unix_socket_group: opt_str("unix_socket_group"),
            user: opt_str("user"),
            pidfile: opt_path("pidfile"),
            logfile: opt_path("logfile"),
            pool_mode: v.word("pool_mode").parse().unwrap_or(PoolMode::Session),
            admin_users: split_list(v.str("admin_users")),
            stats_users: split_list(v.str("stats_users")),
            auth_type: v.word("auth_type").parse().unwrap_or(AuthType::Md5),
            auth_file: opt_path("auth_file"),
            auth_hba_file: opt_path("auth_hba_file"),
            auth_ident_file: opt_path("auth_ident_file"),
            auth_user: opt_str("auth_user"),
            auth_query: v.str("auth_query").to_owned(),
            auth_dbname: opt_str("auth_dbname"),
            client_tls_sslmode: v
                .word("client_tls_sslmode")
                .parse()
                .unwrap_or(SslMode::Disable),
            client_tls_key_file: opt_path("client_tls_key_file"),
            client_tls_cert_file: opt_path("client_tls_cert_file"),
            client_tls_ca_file: opt_path("client_tls_ca_file"),
            client_tls_protocols: v.str("client_tls_protocols").to_string(),
            client_tls_ciphers: v.str("client_tls_ciphers").to_string(),
            client_tls13_ciphers: v.str("client_tls13_ciphers").to_string(),
            client_tls_ecdhcurve: v.str("client_tls_ecdhcurve").to_string(),
            server_tls_sslmode: v
                .word("server_tls_sslmode")
                .parse()
                .unwrap_or(SslMode::Prefer),
            server_tls_ca_file: opt_path("server_tls_ca_file"),
            server_tls_cert_file: opt_path("server_tls_cert_file"),
            server_tls_key_file: opt_path("server_tls_key_file"),
            server_tls_protocols: v.str("server_tls_protocols").to_string(),
            server_tls_ciphers: v.str("server_tls_ciphers").to_string(),
            server_tls13_ciphers: v.str("server_tls13_ciphers").to_string(),
            dns_max_ttl: v.time("dns_max_ttl"),
            dns_nxdomain_ttl: v.time("dns_nxdomain_ttl"),
            dns_zone_check_period: v.time("dns_zone_check_period"),
            resolv_conf: v.str("resolv_conf").to_string(),
            conffile: PathBuf::from(v.str("conffile")),
            max_client_conn: u32_of("max_client_conn"),
            default_pool_size: u32_of("default_pool_size"),
            min_pool_size: u32_of("min_pool_size"),
            reserve_pool_size: u32_of("reserve_pool_size"),
            reserve_pool_timeout: v.time("reserve_pool_timeout"),
            max_db_connections: u32_of("max_db_connections"),
            max_user_connections: u32_of("max_user_connections"),
            server_round_robin: v.bool("server_round_robin"),
            server_reset_query: v.str("server_reset_query").to_string(),
            server_reset_query_always: v.bool("server_reset_query_always"),
            server_lifetime: v.time("server_lifetime"),
            server_idle_timeout: v.time("server_idle_timeout"),
            server_connect_timeout: v.time("server_connect_timeout"),
            server_login_retry: v.time("server_login_retry"),
            server_check_delay: v.time("server_check_delay"),
            server_check_query: v.str("server_check_query").to_string(),
            server_fast_close: v.bool("server_fast_close"),
            client_login_timeout: v.time("client_login_timeout"),
            query_timeout: v.time("query_timeout"),
            query_wait_timeout: v.time("query_wait_timeout"),
            query_wait_notify: Duration::from_secs(v.int("query_wait_notify").max(0) as u64),
            cancel_wait_timeout: v.time("cancel_wait_timeout"),
            client_idle_timeout: v.time("client_idle_timeout"),
            idle_transaction_timeout: v.time("idle_transaction_timeout"),
            transaction_timeout: v.time("transaction_timeout"),
            autodb_idle_timeout: v.time("autodb_idle_timeout"),
            suspend_timeout: v.time("suspend_timeout"),
            ignore_startup_parameters: split_list(v.str("ignore_startup_parameters"))
                .into_iter()
                .map(|p| p.to_ascii_lowercase())
                .collect(),
            track_extra_parameters: split_list(v.str("track_extra_parameters")),
            application_name_add_host: v.bool("application_name_add_host"),
            log_connections: v.bool("log_connections"),
            log_disconnections: v.bool("log_disconnections"),
            log_pooler_errors: v.bool("log_pooler_errors"),
            log_stats: v.bool("log_stats"),
            verbose: u32_of("verbose"),
            syslog: v.bool("syslog"),
            syslog_ident: v.str("syslog_ident").to_string(),
            syslog_facility: v.str("syslog_facility").to_string(),
            stats_period: Duration::from_secs(v.int("stats_period").max(0) as u64),
            pkt_buf: usize::try_from(v.int("pkt_buf")).unwrap_or(usize::MAX),
            max_packet_size: u32_of("max_packet_size"),
            listen_backlog: u32_of("listen_backlog"),
            disable_pqexec: v.bool("disable_pqexec"),
            so_reuseport: v.bool("so_reuseport"),
            tcp_keepalive: v.bool("tcp_keepalive"),
            tcp_keepcnt: u32_of("tcp_keepcnt"),
            tcp_keepidle: u32_of("tcp_keepidle"),
            tcp_keepintvl: u32_of("tcp_keepintvl"),
            tcp_socket_buffer: u32_of("tcp_socket_buffer"),
            tcp_user_timeout: u32_of("tcp_user_timeout"),
            tcp_defer_accept: v.bool("tcp_defer_accept"),
            max_db_client_connections: u32_of("max_db_client_connections"),
            max_user_client_connections: u32_of("max_user_client_connections"),
            max_prepared_statements: u32_of("max_prepared_statements"),
            scram_iterations: u32_of("scram_iterations"),
            peer_id: u32_of("peer_id"),
            job_name: v.str("job_name").to_string(),
            dbus: v.word("dbus").parse().unwrap_or(DbusBus::System),
            dbus_name: v.str("dbus_name").to_string(),
        }
    }

    /// What the health check before reusing a server should do.
    pub fn server_check(&self) -> ServerCheck<'_> {
        match self.server_check_query.as_str() {
            "" => ServerCheck::Disabled,
            "<empty>" => ServerCheck::EmptyQuery,
            q => ServerCheck::Query(q),
        }
    }
}

/// Splits a comma list, trimming blanks and dropping empty items.
pub fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::settings::find;
    use super::*;

    #[test]
    fn defaults_are_pgbouncers() {
        let g = General::default();
        assert!(g.listen_addr.is_empty());
        assert_eq!(g.listen_port, 6432);
        assert_eq!(g.unix_socket_dir, Some(PathBuf::from("/tmp")));
        assert_eq!(g.unix_socket_mode, 0o777);
        assert_eq!(g.unix_socket_group, None);
        assert_eq!(g.user, None);
        assert_eq!(g.pidfile, None);
        assert_eq!(g.logfile, None);
        assert_eq!(g.pool_mode, PoolMode::Session);
        assert!(g.admin_users.is_empty() && g.stats_users.is_empty());
        assert_eq!(g.auth_type, AuthType::Md5);
        assert_eq!(g.auth_file, None);
        assert_eq!(g.auth_user, None);
        assert_eq!(g.max_client_conn, 100);
        assert_eq!(g.default_pool_size, 20);
        assert_eq!(g.min_pool_size, 0);
        assert_eq!(g.reserve_pool_size, 0);
        assert_eq!(g.reserve_pool_timeout, Duration::from_secs(5));
        assert_eq!(g.max_db_connections, 0);
        assert_eq!(g.max_user_connections, 0);
        assert!(!g.server_round_robin);
        assert_eq!(g.server_reset_query, "DISCARD ALL");
        assert!(!g.server_reset_query_always);
        assert_eq!(g.server_lifetime, Duration::from_secs(3600));
        assert_eq!(g.server_idle_timeout, Duration::from_secs(600));
        assert_eq!(g.server_connect_timeout, Duration::from_secs(15));
        assert_eq!(g.server_login_retry, Duration::from_secs(15));
        assert_eq!(g.server_check_delay, Duration::from_secs(30));
        assert_eq!(g.server_check(), ServerCheck::EmptyQuery);
        assert!(!g.server_fast_close);
        assert_eq!(g.client_login_timeout, Duration::from_secs(60));
        assert_eq!(g.query_timeout, Duration::ZERO);
        assert_eq!(g.query_wait_timeout, Duration::from_secs(120));
        assert_eq!(g.query_wait_notify, Duration::from_secs(5));
        assert_eq!(g.cancel_wait_timeout, Duration::from_secs(10));
        assert_eq!(g.client_idle_timeout, Duration::ZERO);
        assert_eq!(g.idle_transaction_timeout, Duration::ZERO);
        assert_eq!(g.transaction_timeout, Duration::ZERO);
        assert_eq!(g.autodb_idle_timeout, Duration::from_secs(3600));
        assert_eq!(g.suspend_timeout, Duration::from_secs(10));
        assert!(g.ignore_startup_parameters.is_empty());
        assert_eq!(g.track_extra_parameters, vec!["IntervalStyle".to_string()]);
        assert!(!g.application_name_add_host);
        assert!(g.log_connections && g.log_disconnections && g.log_pooler_errors && g.log_stats);
        assert_eq!(g.verbose, 0);
        assert!(!g.syslog);
        assert_eq!(g.syslog_ident, "pgbouncer");
        assert_eq!(g.syslog_facility, "daemon");
        assert_eq!(g.stats_period, Duration::from_secs(60));
        assert_eq!(g.pkt_buf, 4096);
        assert_eq!(g.max_packet_size, 2147483647);
        assert_eq!(g.listen_backlog, 128);
        assert!(!g.so_reuseport);
        assert!(g.tcp_keepalive);
        assert_eq!((g.tcp_keepcnt, g.tcp_keepidle, g.tcp_keepintvl), (0, 0, 0));
        assert_eq!(g.tcp_user_timeout, 0);
        assert!(g.tcp_defer_accept);
        assert_eq!(g.max_prepared_statements, 200);
        assert_eq!(g.scram_iterations, 4096);
        assert_eq!(g.peer_id, 0);
        assert_eq!(g.job_name, "pgbouncer");
        assert_eq!(g.dbus, DbusBus::System);
        assert_eq!(g.dbus_name, "org.pgsluice.Pooler1");
    }

    fn with(pairs: &[(&str, &str)]) -> General {
        let mut v = SettingValues::default();
        for (k, text) in pairs {
            let d = find(k).unwrap();
            v.set(d, d.parse(text).unwrap());
        }
        General::from_values(&v)
    }

    #[test]
    fn lists_and_optional_strings() {
        let g = with(&[
            ("listen_addr", " 127.0.0.1 , ::1,"),
            ("admin_users", "alice, bob"),
            ("ignore_startup_parameters", "extra_float_digits, Options"),
            ("unix_socket_dir", ""),
            ("user", "postgres"),
            ("server_check_query", ""),
        ]);
        assert_eq!(g.listen_addr, vec!["127.0.0.1", "::1"]);
        assert_eq!(g.admin_users, vec!["alice", "bob"]);
        assert_eq!(
            g.ignore_startup_parameters,
            vec!["extra_float_digits", "options"]
        );
        assert_eq!(g.unix_socket_dir, None);
        assert_eq!(g.user.as_deref(), Some("postgres"));
        assert_eq!(g.server_check(), ServerCheck::Disabled);
        assert_eq!(with(&[("listen_addr", "*")]).listen_addr, vec!["*"]);
        assert_eq!(
            with(&[("server_check_query", "select 1")]).server_check(),
            ServerCheck::Query("select 1")
        );
    }

    #[test]
    fn typed_values() {
        let g = with(&[
            ("unix_socket_mode", "0660"),
            ("pool_mode", "TRANSACTION"),
            ("auth_type", "scram-sha-256"),
            ("query_timeout", "0.25"),
            ("stats_period", "15"),
            ("log_stats", "off"),
            ("dbus", "Session"),
            ("dbus_name", "org.example.Pooler7"),
        ]);
        assert_eq!(g.unix_socket_mode, 0o660);
        assert_eq!(g.pool_mode, PoolMode::Transaction);
        assert_eq!(g.auth_type, AuthType::ScramSha256);
        assert_eq!(g.query_timeout, Duration::from_millis(250));
        assert_eq!(g.stats_period, Duration::from_secs(15));
        assert!(!g.log_stats);
        assert_eq!(g.dbus, DbusBus::Session);
        assert_eq!(g.dbus_name, "org.example.Pooler7");
        assert_eq!(with(&[("dbus", "off")]).dbus, DbusBus::Off);
    }

    #[test]
    fn enum_round_trips() {
        for m in [
            PoolMode::Session,
            PoolMode::Transaction,
            PoolMode::Statement,
        ] {
            assert_eq!(m.to_string().parse::<PoolMode>(), Ok(m));
        }
        assert!("bogus".parse::<PoolMode>().is_err());
        for a in [
            AuthType::Any,
            AuthType::Trust,
            AuthType::Plain,
            AuthType::Md5,
            AuthType::ScramSha256,
            AuthType::Cert,
            AuthType::Hba,
            AuthType::Pam,
            AuthType::Ldap,
        ] {
            assert_eq!(a.to_string().parse::<AuthType>(), Ok(a));
            // Every auth type the settings table accepts maps to a variant.
            assert!(super::super::settings::AUTH_TYPES.contains(&a.as_str()));
        }
        assert_eq!("MD5".parse::<AuthType>(), Ok(AuthType::Md5));
        for b in [DbusBus::System, DbusBus::Session, DbusBus::Off] {
            assert_eq!(b.to_string().parse::<DbusBus>(), Ok(b));
            // Every bus the settings table accepts maps to a variant.
            assert!(super::super::settings::DBUS_BUSES.contains(&b.as_str()));
        }
        assert!("user".parse::<DbusBus>().is_err());
    }
}
