//! Where a server is: TCP host and port, or a Unix socket directory.

use std::path::PathBuf;

use tokio::net::{TcpStream, UnixStream};

use super::dns::{self, DnsCache, DnsTtl};
use crate::net::tuning::TcpTuning;
use crate::net::Stream;

/// PostgreSQL's socket directory on Debian, used when a database entry names no host.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAddress {
    Tcp { host: String, port: u16 },
    Unix { path: PathBuf },
}

impl ServerAddress {
    /// The candidates for a `[databases]` entry's host (a comma list is tried in order).
    pub fn from_host(host: Option<&str>, port: u16) -> Vec<ServerAddress> {
        let hosts: Vec<&str> = match host {
            Some(h) if !h.trim().is_empty() => h.split(',').map(str::trim).collect(),
            _ => vec![DEFAULT_SOCKET_DIR],
        };
        hosts
            .into_iter()
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.starts_with('/') {
                    ServerAddress::Unix {
                        path: PathBuf::from(h).join(format!(".s.PGSQL.{port}")),
                    }
                } else {
                    ServerAddress::Tcp {
                        host: h.to_owned(),
                        port,
                    }
                }
            })
            .collect()
    }

    /// Connect; a host name's addresses come from the DNS cache when one is
    /// given (kept as long as the TTLs say), tried from the next one in turn
    /// until one answers.
    pub async fn connect(
        &self,
        tcp: &TcpTuning,
        dns: Option<(&DnsCache, DnsTtl)>,
    ) -> std::io::Result<Stream> {
        match self {
            ServerAddress::Tcp { host, port } => {
                let mut failure = None;
                let addresses = match dns {
                    Some((cache, ttl)) => cache.addresses(host, ttl).await?,
                    None => dns::addresses_uncached(host).await?,
                };
                for ip in addresses {
                    match TcpStream::connect((ip, *port)).await {
                        Ok(stream) => {
                            tcp.apply(&stream);
                            return Ok(Stream::Tcp(stream));
                        }
                        Err(e) => failure = Some(e),
                    }
                }
                Err(failure.unwrap_or_else(|| std::io::ErrorKind::NotFound.into()))
            }
            ServerAddress::Unix { path } => Ok(Stream::Unix(UnixStream::connect(path).await?)),
        }
    }
}

impl std::fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
            ServerAddress::Unix { path } => write!(f, "unix:{}", path.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        assert_eq!(
            ServerAddress::from_host(Some("db1, db2"), 5433),
            vec![
                ServerAddress::Tcp {
                    host: "db1".into(),
                    port: 5433
                },
                ServerAddress::Tcp {
                    host: "db2".into(),
                    port: 5433
                }
            ]
        );
        assert_eq!(
            ServerAddress::from_host(Some("/run/pg"), 5432),
            vec![ServerAddress::Unix {
                path: "/run/pg/.s.PGSQL.5432".into()
            }]
        );
        assert_eq!(
            ServerAddress::from_host(None, 5432),
            vec![ServerAddress::Unix {
                path: "/var/run/postgresql/.s.PGSQL.5432".into()
            }]
        );
    }
}
