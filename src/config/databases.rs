//! One `[databases]` entry: the client-facing name and where it leads.

use std::time::Duration;

use super::connstr;
use super::general::PoolMode;

/// Names a client cannot use for a `[databases]` entry: they reach the admin console.
pub const RESERVED_NAMES: &[&str] = &["pgbouncer", "pgsluice"];

/// The fallback entry's name: it serves any database without an entry of its own.
pub const FALLBACK: &str = "*";

/// A `[databases]` entry. `None` fields fall back to the generic settings.
#[derive(Clone, Debug, PartialEq)]
pub struct DatabaseDef {
    /// The name clients connect to (the key of the entry).
    pub name: String,
    /// The database on the server; `None` means the name the client asked for.
    pub dbname: Option<String>,
    /// A name, an address, a comma list, or a path starting with `/` (Unix socket
    /// directory); `None` means PostgreSQL's default Unix socket directory.
    pub host: Option<String>,
    pub port: u16,
    pub user: Option<String>,
    pub password: Option<String>,
    pub auth_user: Option<String>,
    pub auth_query: Option<String>,
    pub auth_dbname: Option<String>,
    pub pool_size: Option<u32>,
    pub min_pool_size: Option<u32>,
    pub reserve_pool_size: Option<u32>,
    pub connect_query: Option<String>,
    pub pool_mode: Option<PoolMode>,
    /// `round-robin` or `disable`, lowercased.
    pub load_balance_hosts: Option<String>,
    pub max_db_connections: Option<u32>,
    pub max_db_client_connections: Option<u32>,
    pub server_lifetime: Option<Duration>,
    pub client_encoding: Option<String>,
    pub datestyle: Option<String>,
    pub timezone: Option<String>,
    pub application_name: Option<String>,
}

impl DatabaseDef {
    /// An entry with nothing set: the server's database of the same name over the
    /// default Unix socket.
    pub fn new(name: &str) -> DatabaseDef {
        DatabaseDef {
            name: name.to_string(),
            dbname: None,
            host: None,
            port: 5432,
            user: None,
            password: None,
            auth_user: None,
            auth_query: None,
            auth_dbname: None,
            pool_size: None,
            min_pool_size: None,
            reserve_pool_size: None,
            connect_query: None,
            pool_mode: None,
            load_balance_hosts: None,
            max_db_connections: None,
            max_db_client_connections: None,
            server_lifetime: None,
            client_encoding: None,
            datestyle: None,
            timezone: None,
            application_name: None,
        }
    }

    /// Parses the entry `name = connstr`. The error is a reason naming the offending
    /// parameter; the caller adds file, line and the entry name.
    pub fn parse(name: &str, connstr: &str) -> Result<DatabaseDef, String> {
        if RESERVED_NAMES.contains(&name) {
            return Err(format!(
                "database name '{name}' is reserved for the admin console"
            ));
        }
        let mut db = DatabaseDef::new(name);
        for (key, value) in connstr::parse(connstr)? {
            let text = Some(value.clone());
            match key.as_str() {
                "dbname" => db.dbname = text,
                "host" => db.host = text,
                "port" => db.port = port_value(&value)?,
                "user" => db.user = text,
                "password" => db.password = text,
                "auth_user" => db.auth_user = text,
                "auth_query" => db.auth_query = text,
                "auth_dbname" => db.auth_dbname = text,
                "pool_size" => db.pool_size = Some(connstr::u32_value(&key, &value)?),
                "min_pool_size" => db.min_pool_size = Some(connstr::u32_value(&key, &value)?),
                // `reserve_pool` is the older spelling PgBouncer still accepts.
                "reserve_pool_size" | "reserve_pool" => {
                    db.reserve_pool_size = Some(connstr::u32_value(&key, &value)?)
                }
                "connect_query" => db.connect_query = text,
                "pool_mode" => db.pool_mode = Some(value.parse()?),
                "load_balance_hosts" => {
                    let mode = value.to_ascii_lowercase();
                    if mode != "round-robin" && mode != "disable" {
                        return Err(format!(
                            "invalid load_balance_hosts '{value}' (expected round-robin or disable)"
                        ));
                    }
                    db.load_balance_hosts = Some(mode);
                }
                "max_db_connections" => {
                    db.max_db_connections = Some(connstr::u32_value(&key, &value)?)
                }
                "max_db_client_connections" => {
                    db.max_db_client_connections = Some(connstr::u32_value(&key, &value)?)
                }
                "server_lifetime" => {
                    db.server_lifetime = Some(connstr::seconds_value(&key, &value)?)
                }
                "client_encoding" => db.client_encoding = text,
                "datestyle" => db.datestyle = text,
                "timezone" => db.timezone = text,
                "application_name" => db.application_name = text,
                _ => return Err(format!("unknown connection parameter '{key}'")),
            }
        }
        Ok(db)
    }

    /// Is this the `*` entry?
    pub fn is_fallback(&self) -> bool {
        self.name == FALLBACK
    }

    /// The server-side database for a client that asked for `client_db`.
    pub fn target_dbname<'a>(&'a self, client_db: &'a str) -> &'a str {
        self.dbname.as_deref().unwrap_or(client_db)
    }
}

fn port_value(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(format!("invalid port '{value}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_entry_uses_defaults() {
        let db = DatabaseDef::parse("foodb", "").unwrap();
        assert_eq!(db, DatabaseDef::new("foodb"));
        assert_eq!(db.port, 5432);
        assert_eq!(db.target_dbname("foodb"), "foodb");
    }

    #[test]
    fn every_key() {
        let db = DatabaseDef::parse(
            "app",
            "dbname=real host=/var/run/postgresql port=5433 user=u password='p w' \
             auth_user=au auth_query='SELECT usename, passwd FROM pg_shadow WHERE usename=$1' \
             auth_dbname=authdb pool_size=10 min_pool_size=2 reserve_pool_size=3 \
             connect_query='SET x = 1' pool_mode=transaction load_balance_hosts=Disable \
             max_db_connections=50 max_db_client_connections=500 server_lifetime=120 \
             client_encoding=UTF8 datestyle=ISO timezone=UTC application_name=app1",
        )
        .unwrap();
        assert_eq!(db.dbname.as_deref(), Some("real"));
        assert_eq!(db.target_dbname("app"), "real");
        assert_eq!(db.host.as_deref(), Some("/var/run/postgresql"));
        assert_eq!(db.port, 5433);
        assert_eq!(db.user.as_deref(), Some("u"));
        assert_eq!(db.password.as_deref(), Some("p w"));
        assert_eq!(db.auth_user.as_deref(), Some("au"));
        assert_eq!(
            db.auth_query.as_deref(),
            Some("SELECT usename, passwd FROM pg_shadow WHERE usename=$1")
        );
        assert_eq!(db.auth_dbname.as_deref(), Some("authdb"));
        assert_eq!(db.pool_size, Some(10));
        assert_eq!(db.min_pool_size, Some(2));
        assert_eq!(db.reserve_pool_size, Some(3));
        assert_eq!(db.connect_query.as_deref(), Some("SET x = 1"));
        assert_eq!(db.pool_mode, Some(PoolMode::Transaction));
        assert_eq!(db.load_balance_hosts.as_deref(), Some("disable"));
        assert_eq!(db.max_db_connections, Some(50));
        assert_eq!(db.max_db_client_connections, Some(500));
        assert_eq!(db.server_lifetime, Some(Duration::from_secs(120)));
        assert_eq!(db.client_encoding.as_deref(), Some("UTF8"));
        assert_eq!(db.datestyle.as_deref(), Some("ISO"));
        assert_eq!(db.timezone.as_deref(), Some("UTC"));
        assert_eq!(db.application_name.as_deref(), Some("app1"));
    }

    #[test]
    fn host_list_and_old_reserve_pool_spelling() {
        let db = DatabaseDef::parse("x", "host=10.0.0.1,10.0.0.2 reserve_pool=4").unwrap();
        assert_eq!(db.host.as_deref(), Some("10.0.0.1,10.0.0.2"));
        assert_eq!(db.reserve_pool_size, Some(4));
    }

    #[test]
    fn fallback_entry() {
        let db = DatabaseDef::parse(FALLBACK, "host=foo").unwrap();
        assert!(db.is_fallback());
        assert_eq!(db.dbname, None);
        assert_eq!(db.target_dbname("bar"), "bar");
    }

    #[test]
    fn errors() {
        for (name, connstr, needle) in [
            ("pgbouncer", "host=x", "reserved for the admin console"),
            ("pgsluice", "", "reserved"),
            ("x", "hostt=a", "unknown connection parameter 'hostt'"),
            ("x", "port=0", "invalid port '0'"),
            ("x", "port=70000", "invalid port"),
            ("x", "pool_size=big", "pool_size: invalid integer 'big'"),
            ("x", "pool_mode=fast", "invalid pool mode 'fast'"),
            (
                "x",
                "load_balance_hosts=random",
                "invalid load_balance_hosts",
            ),
            ("x", "server_lifetime=-5", "server_lifetime: invalid time"),
            ("x", "host", "missing '='"),
        ] {
            let err = DatabaseDef::parse(name, connstr).unwrap_err();
            assert!(err.contains(needle), "{name} = {connstr}: {err}");
        }
    }
}
