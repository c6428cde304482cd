//! One `[users]` entry: per-user overrides of pool settings and timeouts.

use std::time::Duration;

use super::connstr;
use super::general::PoolMode;

/// A `[users]` entry. `None` fields fall back to the database or generic settings.
#[derive(Clone, Debug, PartialEq)]
pub struct UserDef {
    pub name: String,
    pub pool_mode: Option<PoolMode>,
    pub pool_size: Option<u32>,
    pub reserve_pool_size: Option<u32>,
    pub max_user_connections: Option<u32>,
    pub max_user_client_connections: Option<u32>,
    pub query_timeout: Option<Duration>,
    pub idle_transaction_timeout: Option<Duration>,
    pub transaction_timeout: Option<Duration>,
    pub client_idle_timeout: Option<Duration>,
}

impl UserDef {
    /// Parses the entry `name = settings`. The error is a reason naming the offending
    /// parameter; the caller adds file, line and the user name.
    pub fn parse(name: &str, settings: &str) -> Result<UserDef, String> {
        let mut user = UserDef {
            name: name.to_string(),
            pool_mode: None,
            pool_size: None,
            reserve_pool_size: None,
            max_user_connections: None,
            max_user_client_connections: None,
            query_timeout: None,
            idle_transaction_timeout: None,
            transaction_timeout: None,
            client_idle_timeout: None,
        };
        for (key, value) in connstr::parse(settings)? {
            let count = || connstr::u32_value(&key, &value).map(Some);
            let time = || connstr::seconds_value(&key, &value).map(Some);
            match key.as_str() {
                "pool_mode" => user.pool_mode = Some(value.parse()?),
                "pool_size" => user.pool_size = count()?,
                "reserve_pool_size" | "reserve_pool" => user.reserve_pool_size = count()?,
                "max_user_connections" => user.max_user_connections = count()?,
                "max_user_client_connections" => user.max_user_client_connections = count()?,
                "query_timeout" => user.query_timeout = time()?,
                "idle_transaction_timeout" => user.idle_transaction_timeout = time()?,
                "transaction_timeout" => user.transaction_timeout = time()?,
                "client_idle_timeout" => user.client_idle_timeout = time()?,
                _ => return Err(format!("unknown user parameter '{key}'")),
            }
        }
        Ok(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key() {
        let u = UserDef::parse(
            "alice",
            "pool_mode=statement pool_size=5 reserve_pool_size=1 max_user_connections=7 \
             max_user_client_connections=70 query_timeout=2.5 idle_transaction_timeout=30 \
             transaction_timeout=60 client_idle_timeout=600",
        )
        .unwrap();
        assert_eq!(u.name, "alice");
        assert_eq!(u.pool_mode, Some(PoolMode::Statement));
        assert_eq!(u.pool_size, Some(5));
        assert_eq!(u.reserve_pool_size, Some(1));
        assert_eq!(u.max_user_connections, Some(7));
        assert_eq!(u.max_user_client_connections, Some(70));
        assert_eq!(u.query_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(u.idle_transaction_timeout, Some(Duration::from_secs(30)));
        assert_eq!(u.transaction_timeout, Some(Duration::from_secs(60)));
        assert_eq!(u.client_idle_timeout, Some(Duration::from_secs(600)));
    }

    #[test]
    fn empty_settings() {
        let u = UserDef::parse("bob", "").unwrap();
        assert_eq!(u.pool_mode, None);
        assert_eq!(u.pool_size, None);
    }

    #[test]
    fn errors() {
        for (settings, needle) in [
            ("host=x", "unknown user parameter 'host'"),
            ("pool_size=-1", "pool_size: invalid integer '-1'"),
            ("query_timeout=soon", "query_timeout: invalid time"),
            ("pool_mode=x", "invalid pool mode 'x'"),
        ] {
            let err = UserDef::parse("u", settings).unwrap_err();
            assert!(err.contains(needle), "{settings}: {err}");
        }
    }
}
