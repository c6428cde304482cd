//! One `[peers]` entry: another pgsluice/PgBouncer process that cancel requests
//! carrying its peer id are forwarded to.

use super::connstr;

/// A `[peers]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct PeerDef {
    pub peer_id: u32,
    /// A name, an address, or a path starting with `/` (Unix socket directory).
    pub host: String,
    /// Defaults to 6432, the pooler's port, not PostgreSQL's.
    pub port: u16,
    /// How many cancel requests may be in flight to this peer; `None` means
    /// `default_pool_size`.
    pub pool_size: Option<u32>,
}

/// PgBouncer accepts peer ids up to 65535 in `[peers]`.
pub const MAX_PEER_ID: u32 = 65535;

impl PeerDef {
    /// Parses the entry `id = connstr`. The error is a reason naming the offending
    /// parameter; the caller adds file, line and the entry key.
    pub fn parse(id: &str, connstr: &str) -> Result<PeerDef, String> {
        let peer_id = match id.parse::<u32>() {
            Ok(n) if (1..=MAX_PEER_ID).contains(&n) => n,
            _ => {
                return Err(format!(
                    "peer id '{id}' must be a number from 1 to {MAX_PEER_ID}"
                ))
            }
        };
        let mut host = None;
        let mut port = 6432;
        let mut pool_size = None;
        for (key, value) in connstr::parse(connstr)? {
            match key.as_str() {
                "host" => host = Some(value),
                "port" => {
                    port = match value.parse::<u16>() {
                        Ok(p) if p != 0 => p,
                        _ => return Err(format!("invalid port '{value}'")),
                    }
                }
                "pool_size" => pool_size = Some(connstr::u32_value(&key, &value)?),
                _ => return Err(format!("unknown connection parameter '{key}'")),
            }
        }
        let host = host.ok_or_else(|| format!("host was not provided for peer {peer_id}"))?;
        Ok(PeerDef {
            peer_id,
            host,
            port,
            pool_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_entries() {
        assert_eq!(
            PeerDef::parse("1", "host=host1.example.com").unwrap(),
            PeerDef {
                peer_id: 1,
                host: "host1.example.com".into(),
                port: 6432,
                pool_size: None
            }
        );
        let p = PeerDef::parse("2", "host=/tmp/pgbouncer-2  port=5555 pool_size=4").unwrap();
        assert_eq!(
            (p.peer_id, p.host.as_str(), p.port, p.pool_size),
            (2, "/tmp/pgbouncer-2", 5555, Some(4))
        );
    }

    #[test]
    fn errors() {
        for (id, connstr, needle) in [
            ("0", "host=a", "must be a number from 1 to 65535"),
            ("65536", "host=a", "must be a number"),
            ("abc", "host=a", "must be a number"),
            ("1", "port=5", "host was not provided for peer 1"),
            (
                "1",
                "host=a dbname=x",
                "unknown connection parameter 'dbname'",
            ),
            ("1", "host=a port=x", "invalid port 'x'"),
        ] {
            let err = PeerDef::parse(id, connstr).unwrap_err();
            assert!(err.contains(needle), "{id} = {connstr}: {err}");
        }
    }
}
