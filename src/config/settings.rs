//! The table of every generic (`[pgbouncer]`) setting PgBouncer 1.26 knows.
//!
//! The admin console's `SHOW CONFIG` is a public interface that monitoring tools read,
//! so the table mirrors PgBouncer's: the same names in the same (alphabetical) order,
//! the default as PgBouncer prints it in the `default` column, and the same
//! `changeable` flag. pgsluice accepts every known setting, even one it does not act
//! on yet, so that an existing `pgbouncer.ini` starts unchanged; `implemented` says
//! which ones it acts on.
//!
//! Two settings are pgsluice's own, sorted in with the rest: `dbus` (the bus the
//! D-Bus interface goes on, or `off`) and `dbus_name` (the well-known name it takes
//! there). PgBouncer warns about them as unknown keys and carries on, so a config
//! that sets them still starts PgBouncer.
//!
//! The syntax of each kind of value is in [`value`](super::value).

use super::value::{parse_bool, parse_c_int, parse_seconds, Value};

/// The syntax of a setting's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Free text, taken verbatim.
    Str,
    /// An integer in `min..=max`, C syntax (decimal, `0` octal, `0x` hex).
    Int { min: i64, max: i64 },
    /// 0/1/yes/no/on/off/true/false, or any integer (non-zero is true).
    Bool,
    /// Seconds, possibly fractional (`0.5`); stored with microsecond precision.
    Time,
    /// One of the listed words, case-insensitive; printed as listed.
    Enum(&'static [&'static str]),
}

/// One generic setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SettingDef {
    pub name: &'static str,
    pub kind: Kind,
    /// The `default` column of SHOW CONFIG; `None` prints as NULL (PgBouncer has no
    /// default text for these, the setting is simply unset).
    pub default: Option<&'static str>,
    /// SHOW CONFIG's `changeable` column: can it change without a restart
    /// (by RELOAD or SET)?
    pub changeable: bool,
    /// Does pgsluice act on it? Others are accepted, shown, and warned about when set.
    pub implemented: bool,
}

const STR: Kind = Kind::Str;
const BOOL: Kind = Kind::Bool;
const TIME: Kind = Kind::Time;
/// PgBouncer keeps these in a C `int`; negative values make no sense for any of them.
const INT: Kind = Kind::Int {
    min: 0,
    max: i32::MAX as i64,
};
/// max_packet_size is PgBouncer's one `unsigned int` setting.
const UINT: Kind = Kind::Int {
    min: 0,
    max: u32::MAX as i64,
};
const PORT: Kind = Kind::Int { min: 0, max: 65535 };
/// PgBouncer documents 16383 as the largest peer_id (it is encoded in cancel keys).
const PEER_ID: Kind = Kind::Int { min: 0, max: 16383 };

/// Values of `pool_mode`.
pub const POOL_MODES: &[&str] = &["session", "transaction", "statement"];
/// Values of `auth_type`.
pub const AUTH_TYPES: &[&str] = &[
    "any",
    "trust",
    "plain",
    "md5",
    "cert",
    "hba",
    "ldap",
    "pam",
    "scram-sha-256",
];
/// Values of `client_tls_sslmode` and `server_tls_sslmode`.
pub const SSL_MODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];

/// Values of `dbus`: the bus the D-Bus interface is offered on, or none.
pub const DBUS_BUSES: &[&str] = &["system", "session", "off"];

/// The default of `dbus_name` (the name the shipped D-Bus policy file allows).
pub const DEFAULT_DBUS_NAME: &str = "org.pgsluice.Pooler1";

const DEFAULT_AUTH_QUERY: &str = "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin";

const fn def(name: &'static str, kind: Kind, default: Option<&'static str>) -> SettingDef {
    SettingDef {
        name,
        kind,
        default,
        changeable: true,
        implemented: false,
    }
}

impl SettingDef {
    /// Marks a setting that only takes effect at start (`changeable = no`).
    const fn restart(mut self) -> SettingDef {
        self.changeable = false;
        self
    }

    /// Marks a setting pgsluice acts on.
    const fn ours(mut self) -> SettingDef {
        self.implemented = true;
        self
    }
}

/// Every generic setting, in PgBouncer's SHOW CONFIG order (alphabetical).
///
/// Defaults and the `changeable` flags follow PgBouncer's own parameter table; the
/// ones that need a restart are those PgBouncer marks "no reload".
pub static SETTINGS: &[SettingDef] = &[
    def("admin_users", STR, Some("")).ours(),
    def("application_name_add_host", BOOL, Some("0")).ours(),
    def("auth_dbname", STR, None).ours(),
    def("auth_file", STR, None).ours(),
    def("auth_hba_file", STR, Some("")).ours(),
    def("auth_ident_file", STR, None).ours(),
    def("auth_ldap_options", STR, None),
    def("auth_query", STR, Some(DEFAULT_AUTH_QUERY)).ours(),
    def("auth_type", Kind::Enum(AUTH_TYPES), Some("md5")).ours(),
    def("auth_user", STR, None).ours(),
    def("autodb_idle_timeout", TIME, Some("3600")).ours(),
    def("cancel_wait_timeout", TIME, Some("10")).ours(),
    def("client_idle_timeout", TIME, Some("0")).ours(),
    def("client_login_timeout", TIME, Some("60")).ours(),
    def("client_tls13_ciphers", STR, None).ours(),
    def("client_tls_ca_file", STR, Some("")).ours(),
    def("client_tls_cert_file", STR, Some("")).ours(),
    def("client_tls_ciphers", STR, Some("default")).ours(),
    def("client_tls_dheparams", STR, Some("auto")),
    def("client_tls_ecdhcurve", STR, Some("auto")).ours(),
    def("client_tls_key_file", STR, Some("")).ours(),
    def("client_tls_protocols", STR, Some("secure")).ours(),
    def("client_tls_sslmode", Kind::Enum(SSL_MODES), Some("disable")).ours(),
    def("conffile", STR, None).ours(),
    // pgsluice's own: the D-Bus interface, set up once at start.
    def("dbus", Kind::Enum(DBUS_BUSES), Some("system"))
        .restart()
        .ours(),
    def("dbus_name", STR, Some(DEFAULT_DBUS_NAME))
        .restart()
        .ours(),
    def("default_pool_size", INT, Some("20")).ours(),
    def("disable_pqexec", BOOL, Some("0")).restart().ours(),
    def("dns_max_ttl", TIME, Some("15")).ours(),
    def("dns_nxdomain_ttl", TIME, Some("15")).ours(),
    def("dns_zone_check_period", TIME, Some("0")).ours(),
    def("idle_transaction_timeout", TIME, Some("0")).ours(),
    def("ignore_startup_parameters", STR, Some("")).ours(),
    def("job_name", STR, Some("pgbouncer")).restart().ours(),
    def("listen_addr", STR, Some("")).restart().ours(),
    def("listen_backlog", INT, Some("128")).restart().ours(),
    def("listen_port", PORT, Some("6432")).restart().ours(),
    def("log_connections", BOOL, Some("1")).ours(),
    def("log_disconnections", BOOL, Some("1")).ours(),
    def("log_pooler_errors", BOOL, Some("1")).ours(),
    def("log_stats", BOOL, Some("1")).ours(),
    def("logfile", STR, Some("")).ours(),
    def("max_client_conn", INT, Some("100")).ours(),
    def("max_db_client_connections", INT, Some("0")).ours(),
    def("max_db_connections", INT, Some("0")).ours(),
    def("max_packet_size", UINT, Some("2147483647")).ours(),
    def("max_prepared_statements", INT, Some("200")).ours(),
    def("max_user_client_connections", INT, Some("0")).ours(),
    def("max_user_connections", INT, Some("0")).ours(),
    def("min_pool_size", INT, Some("0")).ours(),
    def("peer_id", PEER_ID, Some("0")).restart().ours(),
    def("pidfile", STR, Some("")).restart().ours(),
    def("pkt_buf", INT, Some("4096")).restart().ours(),
    def("pool_mode", Kind::Enum(POOL_MODES), Some("session")).ours(),
    def("query_timeout", TIME, Some("0")).ours(),
    def("query_wait_notify", INT, Some("5")).ours(),
    def("query_wait_timeout", TIME, Some("120")).ours(),
    def("reserve_pool_size", INT, Some("0")).ours(),
    def("reserve_pool_timeout", TIME, Some("5")).ours(),
    def("resolv_conf", STR, Some("")).restart().ours(),
    def("sbuf_loopcnt", INT, Some("5")),
    def("scram_iterations", INT, Some("4096")).ours(),
    def("server_check_delay", TIME, Some("30")).ours(),
    def("server_check_query", STR, Some("<empty>")).ours(),
    def("server_connect_timeout", TIME, Some("15")).ours(),
    def("server_fast_close", BOOL, Some("0")).ours(),
    def("server_idle_timeout", TIME, Some("600")).ours(),
    def("server_lifetime", TIME, Some("3600")).ours(),
    def("server_login_retry", TIME, Some("15")).ours(),
    def("server_reset_query", STR, Some("DISCARD ALL")).ours(),
    def("server_reset_query_always", BOOL, Some("0")).ours(),
    def("server_round_robin", BOOL, Some("0")).ours(),
    def("server_tls13_ciphers", STR, None).ours(),
    def("server_tls_ca_file", STR, Some("")).ours(),
    def("server_tls_cert_file", STR, Some("")).ours(),
    def("server_tls_ciphers", STR, Some("default")).ours(),
    def("server_tls_key_file", STR, Some("")).ours(),
    def("server_tls_protocols", STR, Some("secure")).ours(),
    def("server_tls_sslmode", Kind::Enum(SSL_MODES), Some("prefer")).ours(),
    def("so_reuseport", BOOL, Some("0")).restart().ours(),
    def("stats_period", INT, Some("60")).ours(),
    def("stats_users", STR, Some("")).ours(),
    def("suspend_timeout", TIME, Some("10")),
    def("syslog", BOOL, Some("0")).ours(),
    def("syslog_facility", STR, Some("daemon")).ours(),
    def("syslog_ident", STR, Some("pgbouncer")).ours(),
    // PgBouncer's default is 1 where TCP_DEFER_ACCEPT exists (Linux), else 0.
    def("tcp_defer_accept", BOOL, Some("1")).ours(),
    def("tcp_keepalive", BOOL, Some("1")).ours(),
    def("tcp_keepcnt", INT, Some("0")).ours(),
    def("tcp_keepidle", INT, Some("0")).ours(),
    def("tcp_keepintvl", INT, Some("0")).ours(),
    def("tcp_socket_buffer", INT, Some("0")).ours(),
    def("tcp_user_timeout", INT, Some("0")).ours(),
    def("track_extra_parameters", STR, Some("IntervalStyle"))
        .restart()
        .ours(),
    def("transaction_timeout", TIME, Some("0")).ours(),
    def("unix_socket_dir", STR, Some("/tmp")).restart().ours(),
    def("unix_socket_group", STR, Some("")).restart().ours(),
    def("unix_socket_mode", INT, Some("0777")).restart().ours(),
    def("user", STR, None).restart().ours(),
    def("verbose", INT, None).ours(),
];

/// The definition of setting `name` (lowercase), if PgBouncer has one.
pub fn find(name: &str) -> Option<&'static SettingDef> {
    SETTINGS
        .binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &SETTINGS[i])
}

impl SettingDef {
    /// Parses `text` (already trimmed) as a value of this setting. The error is a
    /// reason fit for [`ConfigError`](super::ConfigError), e.g. `invalid integer 'abc'`.
    pub fn parse(&self, text: &str) -> Result<Value, String> {
        match self.kind {
            Kind::Str => Ok(Value::Str(text.to_string())),
            Kind::Int { min, max } => {
                let n = parse_c_int(text).ok_or_else(|| format!("invalid integer '{text}'"))?;
                if n < min || n > max {
                    return Err(format!("value {n} is out of range ({min}..{max})"));
                }
                Ok(Value::Int(n))
            }
            Kind::Bool => parse_bool(text).map(Value::Bool).ok_or_else(|| {
                format!("invalid boolean '{text}' (expected 0, 1, yes, no, on, off, true or false)")
            }),
            Kind::Time => parse_seconds(text).map(Value::Time),
            Kind::Enum(words) => words
                .iter()
                .find(|w| w.eq_ignore_ascii_case(text))
                .map(|w| Value::Enum(w))
                .ok_or_else(|| {
                    format!(
                        "invalid value '{text}' (expected one of: {})",
                        words.join(", ")
                    )
                }),
        }
    }

    /// The value the setting has when the configuration does not set it.
    pub fn default_value(&self) -> Value {
        // An unset integer (only `verbose`) reads as 0, an unset string as empty.
        let text = self.default.unwrap_or(match self.kind {
            Kind::Int { .. } | Kind::Bool | Kind::Time => "0",
            Kind::Str | Kind::Enum(_) => "",
        });
        match self.parse(text) {
            Ok(v) => v,
            // The table is static and every default is checked by a unit test.
            Err(e) => panic!("bad default for {}: {e}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in SETTINGS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} / {}",
                pair[0].name,
                pair[1].name
            );
        }
        for d in SETTINGS {
            assert_eq!(find(d.name), Some(d));
            assert_eq!(d.name, d.name.to_ascii_lowercase());
        }
        assert_eq!(find("no_such_setting"), None);
    }

    #[test]
    fn every_default_parses() {
        for d in SETTINGS {
            d.default_value();
        }
    }

    /// The defaults as listed in the project's compat/settings.md (PgBouncer 1.26),
    /// compared with the SHOW CONFIG `default` column.
    #[test]
    fn defaults_match_settings_md() {
        let expected: &[(&str, Option<&str>)] = &[
            ("listen_addr", Some("")),
            ("listen_port", Some("6432")),
            ("unix_socket_dir", Some("/tmp")),
            ("unix_socket_mode", Some("0777")),
            ("unix_socket_group", Some("")),
            ("user", None),
            ("pidfile", Some("")),
            ("logfile", Some("")),
            ("pool_mode", Some("session")),
            ("admin_users", Some("")),
            ("stats_users", Some("")),
            ("application_name_add_host", Some("0")),
            ("ignore_startup_parameters", Some("")),
            ("track_extra_parameters", Some("IntervalStyle")),
            ("stats_period", Some("60")),
            ("pkt_buf", Some("4096")),
            ("max_packet_size", Some("2147483647")),
            ("listen_backlog", Some("128")),
            ("so_reuseport", Some("0")),
            ("tcp_keepalive", Some("1")),
            ("tcp_keepcnt", Some("0")),
            ("tcp_keepidle", Some("0")),
            ("tcp_keepintvl", Some("0")),
            ("tcp_user_timeout", Some("0")),
            ("tcp_defer_accept", Some("1")),
            ("dns_max_ttl", Some("15")),
            ("job_name", Some("pgbouncer")),
            ("peer_id", Some("0")),
            ("max_prepared_statements", Some("200")),
            ("scram_iterations", Some("4096")),
            ("max_client_conn", Some("100")),
            ("default_pool_size", Some("20")),
            ("min_pool_size", Some("0")),
            ("reserve_pool_size", Some("0")),
            ("reserve_pool_timeout", Some("5")),
            ("max_db_connections", Some("0")),
            ("max_user_connections", Some("0")),
            ("max_db_client_connections", Some("0")),
            ("max_user_client_connections", Some("0")),
            ("server_round_robin", Some("0")),
            ("server_reset_query", Some("DISCARD ALL")),
            ("server_reset_query_always", Some("0")),
            ("server_fast_close", Some("0")),
            ("server_lifetime", Some("3600")),
            ("server_idle_timeout", Some("600")),
            ("server_connect_timeout", Some("15")),
            ("server_login_retry", Some("15")),
            ("server_check_delay", Some("30")),
            ("server_check_query", Some("<empty>")),
            ("client_login_timeout", Some("60")),
            ("autodb_idle_timeout", Some("3600")),
            ("query_timeout", Some("0")),
            ("query_wait_timeout", Some("120")),
            ("cancel_wait_timeout", Some("10")),
            ("client_idle_timeout", Some("0")),
            ("idle_transaction_timeout", Some("0")),
            ("transaction_timeout", Some("0")),
            ("suspend_timeout", Some("10")),
            ("auth_type", Some("md5")),
            ("auth_file", None),
            ("auth_hba_file", Some("")),
            ("auth_ident_file", None),
            ("auth_user", None),
            ("auth_dbname", None),
            ("auth_query", Some("SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM pg_authid WHERE rolname=$1 AND rolcanlogin")),
            ("client_tls_sslmode", Some("disable")),
            ("client_tls_key_file", Some("")),
            ("client_tls_cert_file", Some("")),
            ("client_tls_ca_file", Some("")),
            ("client_tls_protocols", Some("secure")),
            ("client_tls_ciphers", Some("default")),
            ("server_tls_sslmode", Some("prefer")),
            ("server_tls_ca_file", Some("")),
            ("server_tls_key_file", Some("")),
            ("server_tls_cert_file", Some("")),
            ("server_tls_protocols", Some("secure")),
            ("syslog", Some("0")),
            ("syslog_ident", Some("pgbouncer")),
            ("syslog_facility", Some("daemon")),
            ("log_connections", Some("1")),
            ("log_disconnections", Some("1")),
            ("log_pooler_errors", Some("1")),
            ("log_stats", Some("1")),
            ("verbose", None),
        ];
        for (name, default) in expected {
            let d = find(name).unwrap_or_else(|| panic!("{name} missing from the table"));
            assert_eq!(d.default, *default, "{name}");
        }
        // And the value column when unset.
        assert_eq!(find("verbose").unwrap().default_value().to_string(), "0");
        assert_eq!(
            find("reserve_pool_timeout")
                .unwrap()
                .default_value()
                .to_string(),
            "5"
        );
        // PgBouncer prints unix_socket_mode with %d: 0777 octal is 511.
        assert_eq!(
            find("unix_socket_mode")
                .unwrap()
                .default_value()
                .to_string(),
            "511"
        );
    }

    #[test]
    fn the_implemented_list() {
        let ours: Vec<&str> = SETTINGS
            .iter()
            .filter(|d| d.implemented)
            .map(|d| d.name)
            .collect();
        let mut expected = vec![
            "listen_addr",
            "listen_port",
            "unix_socket_dir",
            "unix_socket_mode",
            "unix_socket_group",
            "user",
            "pidfile",
            "logfile",
            "pool_mode",
            "admin_users",
            "stats_users",
            "auth_type",
            "auth_file",
            "auth_hba_file",
            "auth_ident_file",
            "auth_user",
            "auth_query",
            "auth_dbname",
            "scram_iterations",
            "max_client_conn",
            "max_prepared_statements",
            "max_db_client_connections",
            "max_user_client_connections",
            "default_pool_size",
            "min_pool_size",
            "reserve_pool_size",
            "reserve_pool_timeout",
            "server_round_robin",
            "autodb_idle_timeout",
            "max_db_connections",
            "max_user_connections",
            "server_reset_query",
            "server_reset_query_always",
            "server_fast_close",
            "server_lifetime",
            "server_idle_timeout",
            "server_connect_timeout",
            "server_login_retry",
            "cancel_wait_timeout",
            "server_check_delay",
            "server_check_query",
            "client_login_timeout",
            "query_timeout",
            "query_wait_timeout",
            "query_wait_notify",
            "client_idle_timeout",
            "idle_transaction_timeout",
            "transaction_timeout",
            "disable_pqexec",
            "ignore_startup_parameters",
            "track_extra_parameters",
            "log_connections",
            "log_disconnections",
            "log_pooler_errors",
            "verbose",
            "tcp_keepalive",
            "tcp_keepcnt",
            "tcp_keepidle",
            "tcp_keepintvl",
            "tcp_socket_buffer",
            "tcp_user_timeout",
            "tcp_defer_accept",
            "client_tls_sslmode",
            "client_tls_key_file",
            "client_tls_cert_file",
            "client_tls_ca_file",
            "client_tls_protocols",
            "client_tls_ciphers",
            "client_tls13_ciphers",
            "client_tls_ecdhcurve",
            "server_tls_sslmode",
            "server_tls_ca_file",
            "server_tls_cert_file",
            "server_tls_key_file",
            "server_tls_protocols",
            "server_tls_ciphers",
            "server_tls13_ciphers",
            "dns_max_ttl",
            "dns_nxdomain_ttl",
            "dns_zone_check_period",
            "resolv_conf",
            "conffile",
            "listen_backlog",
            "so_reuseport",
            "peer_id",
            "pkt_buf",
            "max_packet_size",
            "stats_period",
            "application_name_add_host",
            "syslog",
            "syslog_ident",
            "syslog_facility",
            "log_stats",
            "job_name",
            "dbus",
            "dbus_name",
        ];
        expected.sort_unstable();
        assert_eq!(ours, expected);
    }

    #[test]
    fn restart_only_settings() {
        let fixed: Vec<&str> = SETTINGS
            .iter()
            .filter(|d| !d.changeable)
            .map(|d| d.name)
            .collect();
        assert_eq!(
            fixed,
            [
                "dbus",
                "dbus_name",
                "disable_pqexec",
                "job_name",
                "listen_addr",
                "listen_backlog",
                "listen_port",
                "peer_id",
                "pidfile",
                "pkt_buf",
                "resolv_conf",
                "so_reuseport",
                "track_extra_parameters",
                "unix_socket_dir",
                "unix_socket_group",
                "unix_socket_mode",
                "user",
            ]
        );
    }

    #[test]
    fn int_settings_check_syntax_and_range() {
        let d = find("max_client_conn").unwrap();
        assert_eq!(d.parse("500"), Ok(Value::Int(500)));
        assert_eq!(d.parse("abc"), Err("invalid integer 'abc'".to_string()));
        assert!(d.parse("-1").unwrap_err().contains("out of range"));
        let port = find("listen_port").unwrap();
        assert!(port.parse("65536").unwrap_err().contains("out of range"));
        assert_eq!(port.parse("65535"), Ok(Value::Int(65535)));
        let size = find("max_packet_size").unwrap();
        assert_eq!(size.parse("4294967295"), Ok(Value::Int(4294967295)));
    }

    #[test]
    fn booleans_accept_words_and_print_as_digits() {
        let d = find("log_connections").unwrap();
        for t in ["1", "yes", "YES", "on", "On", "true", "TRUE", "2"] {
            assert_eq!(d.parse(t), Ok(Value::Bool(true)), "{t}");
        }
        for t in ["0", "no", "No", "off", "OFF", "false", "False"] {
            assert_eq!(d.parse(t), Ok(Value::Bool(false)), "{t}");
        }
        assert!(d
            .parse("maybe")
            .unwrap_err()
            .starts_with("invalid boolean 'maybe'"));
        assert_eq!(d.parse("yes").unwrap().to_string(), "1");
        assert_eq!(d.parse("off").unwrap().to_string(), "0");
    }

    #[test]
    fn times_are_fractional_seconds() {
        let d = find("query_timeout").unwrap();
        assert_eq!(d.parse("0.5"), Ok(Value::Time(Duration::from_millis(500))));
        assert_eq!(d.parse("30"), Ok(Value::Time(Duration::from_secs(30))));
        assert_eq!(d.parse("1e3"), Ok(Value::Time(Duration::from_secs(1000))));
        for bad in ["-1", "abc", "inf", "NaN", "1s", ""] {
            assert!(d.parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(d.parse("0.5").unwrap().to_string(), "0.5");
        assert_eq!(d.parse("3600").unwrap().to_string(), "3600");
        assert_eq!(d.parse("3600.0").unwrap().to_string(), "3600");
    }

    #[test]
    fn enums_are_case_insensitive_and_canonical() {
        let d = find("pool_mode").unwrap();
        assert_eq!(d.parse("Transaction"), Ok(Value::Enum("transaction")));
        assert_eq!(
            d.parse("bogus"),
            Err("invalid value 'bogus' (expected one of: session, transaction, statement)".into())
        );
        let a = find("auth_type").unwrap();
        assert_eq!(a.parse("SCRAM-SHA-256"), Ok(Value::Enum("scram-sha-256")));
        for t in AUTH_TYPES {
            assert!(a.parse(t).is_ok());
        }
    }

    #[test]
    fn dbus_settings() {
        let d = find("dbus").unwrap();
        assert_eq!(d.default_value(), Value::Enum("system"));
        assert_eq!(d.parse("Session"), Ok(Value::Enum("session")));
        assert_eq!(d.parse("OFF"), Ok(Value::Enum("off")));
        assert_eq!(
            d.parse("user"),
            Err("invalid value 'user' (expected one of: system, session, off)".into())
        );
        assert!(!d.changeable && d.implemented);
        let n = find("dbus_name").unwrap();
        assert_eq!(n.default, Some("org.pgsluice.Pooler1"));
        assert_eq!(n.default_value(), Value::Str("org.pgsluice.Pooler1".into()));
        assert!(!n.changeable && n.implemented);
    }

    #[test]
    fn strings_are_verbatim() {
        let d = find("server_reset_query").unwrap();
        assert_eq!(
            d.parse("DISCARD ALL; -- x #y"),
            Ok(Value::Str("DISCARD ALL; -- x #y".into()))
        );
    }
}
