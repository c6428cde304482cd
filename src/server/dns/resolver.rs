//! Who answers a lookup: the system's resolver (getaddrinfo, so /etc/hosts and
//! nsswitch.conf apply as they do for libpq), or, with `resolv_conf` set, a DNS
//! client of pgsluice's own (the hickory-resolver crate) that asks the name
//! servers that file names, after /etc/hosts, as PgBouncer's c-ares build does.
//!
//! Zone serials (`dns_zone_check_period`) need a DNS client whichever answers
//! host names: without `resolv_conf` the SOA queries go to the name servers of
//! /etc/resolv.conf, read again at each check.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use hickory_resolver::config::{LookupIpStrategy, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

/// The resolver pgsluice uses when `resolv_conf` is empty, for zone serials.
const SYSTEM_RESOLV_CONF: &str = "/etc/resolv.conf";

/// The resolver of the process, chosen once at start (`resolv_conf` needs a
/// restart, as in PgBouncer).
#[derive(Clone, Default)]
pub enum Resolver {
    /// getaddrinfo, on tokio's blocking threads.
    #[default]
    System,
    /// The name servers of `resolv_conf` (boxed: a large value, rarely used).
    Own {
        path: PathBuf,
        client: Box<TokioResolver>,
    },
}

/// `resolv_conf` could not be used.
#[derive(Debug, thiserror::Error)]
#[error("resolv_conf {path}: {reason}")]
pub struct ResolvConfError {
    path: String,
    reason: String,
}

impl Resolver {
    /// The resolver `resolv_conf` asks for: the system's when it is empty.
    pub fn from_setting(resolv_conf: &str) -> Result<Resolver, ResolvConfError> {
        if resolv_conf.is_empty() {
            return Ok(Resolver::System);
        }
        let path = PathBuf::from(resolv_conf);
        let client = client_from(&path).map_err(|reason| ResolvConfError {
            path: resolv_conf.to_owned(),
            reason,
        })?;
        Ok(Resolver::Own {
            path,
            client: Box::new(client),
        })
    }

    /// The addresses of `host`, each once, in the resolver's order.
    pub async fn addresses(&self, host: String) -> io::Result<Vec<IpAddr>> {
        match self {
            Resolver::System => system_lookup(host).await,
            Resolver::Own { client, .. } => {
                let found = client
                    .lookup_ip(host.as_str())
                    .await
                    .map_err(|e| io::Error::new(io::ErrorKind::NotFound, format!("{host}: {e}")))?;
                let mut addrs: Vec<IpAddr> = Vec::new();
                for ip in found.iter() {
                    if !addrs.contains(&ip) {
                        addrs.push(ip);
                    }
                }
                Ok(addrs)
            }
        }
    }

    /// The DNS client for SOA queries: resolv_conf's, or one made from
    /// /etc/resolv.conf as it is now (once per check of all zones).
    pub fn soa_client(&self) -> io::Result<TokioResolver> {
        match self {
            Resolver::Own { client, .. } => Ok((**client).clone()),
            Resolver::System => client_from(Path::new(SYSTEM_RESOLV_CONF))
                .map_err(|reason| io::Error::other(format!("{SYSTEM_RESOLV_CONF}: {reason}"))),
        }
    }

    /// The `resolv_conf` file in use, if any.
    pub fn resolv_conf(&self) -> Option<&Path> {
        match self {
            Resolver::System => None,
            Resolver::Own { path, .. } => Some(path),
        }
    }
}

/// The serial of `zone`'s SOA record, asked of `client` (`Resolver::soa_client`).
pub async fn zone_serial(client: &TokioResolver, zone: &str) -> io::Result<u32> {
    // Absolute, so resolv.conf's search list is not tried on it.
    let name = format!("{}.", zone.trim_end_matches('.'));
    let answer = client
        .soa_lookup(name.as_str())
        .await
        .map_err(|e| io::Error::other(format!("SOA {zone}: {e}")))?;
    answer
        .answers()
        .iter()
        .find_map(|record| match &record.data {
            RData::SOA(soa) => Some(soa.serial),
            _ => None,
        })
        .ok_or_else(|| io::Error::other(format!("SOA {zone}: no SOA record in the answer")))
}

/// A DNS client for the name servers, search list and options of a
/// resolv.conf file. It keeps no answers (the cache above keeps them for
/// dns_max_ttl), and reads /etc/hosts first.
fn client_from(path: &Path) -> Result<TokioResolver, String> {
    let text = std::fs::read(path).map_err(|e| e.to_string())?;
    let (config, mut options): (ResolverConfig, ResolverOpts) =
        hickory_resolver::system_conf::parse_resolv_conf(text).map_err(|e| e.to_string())?;
    options.cache_size = 0;
    options.use_hosts_file = ResolveHosts::Always;
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
        .with_options(options)
        .build()
        .map_err(|e| e.to_string())
}

/// getaddrinfo's addresses for `host`, each once, in its order.
async fn system_lookup(host: String) -> io::Result<Vec<IpAddr>> {
    let mut addrs: Vec<IpAddr> = Vec::new();
    for found in tokio::net::lookup_host((host.as_str(), 0)).await? {
        if !addrs.contains(&found.ip()) {
            addrs.push(found.ip());
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_setting_is_the_system_resolver() {
        let resolver = Resolver::from_setting("").unwrap();
        assert!(matches!(resolver, Resolver::System));
        assert_eq!(resolver.resolv_conf(), None);
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_used_is_refused_with_its_name() {
        let err = Resolver::from_setting("/nonexistent/resolv.conf")
            .err()
            .expect("a missing file is refused");
        let text = err.to_string();
        assert!(
            text.starts_with("resolv_conf /nonexistent/resolv.conf: ")
                && text.contains("No such file"),
            "{text}"
        );
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("resolv.conf");
        std::fs::write(&empty, "search example.com\n").unwrap();
        let err = Resolver::from_setting(empty.to_str().unwrap())
            .err()
            .expect("a file without a name server is refused");
        assert!(err.to_string().contains("no nameservers"), "{err}");
    }

    #[tokio::test]
    async fn a_file_with_a_name_server_is_used() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("resolv.conf");
        std::fs::write(&file, "nameserver 127.0.0.1\noptions timeout:1\n").unwrap();
        let resolver = Resolver::from_setting(file.to_str().unwrap()).unwrap();
        assert_eq!(resolver.resolv_conf(), Some(file.as_path()));
    }
}
