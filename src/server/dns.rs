//! Servers' host names, looked up once and kept, as PgBouncer keeps them: an
//! answer for `dns_max_ttl` seconds, a failure (no such name, or the lookup
//! failing) for `dns_nxdomain_ttl`, whatever TTL DNS itself gave. A name with
//! several addresses has them tried in turn: each new connection starts at the
//! next one (PgBouncer's round robin), and goes on to the others when that one
//! does not answer. SHOW DNS_HOSTS lists the names kept, SHOW LISTS counts them.
//!
//! Lookups go through the system's resolver (getaddrinfo, on tokio's blocking
//! threads), so /etc/hosts and nsswitch.conf apply as they do for libpq.
//! Addresses written as such are never looked up or kept.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long lookups are kept: `dns_max_ttl` and `dns_nxdomain_ttl`. An
/// outcome whose time is zero is not kept at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DnsTtl {
    pub found: Duration,
    pub failed: Duration,
}

impl DnsTtl {
    pub fn of(general: &crate::config::General) -> DnsTtl {
        DnsTtl {
            found: general.dns_max_ttl,
            failed: general.dns_nxdomain_ttl,
        }
    }

    fn of_outcome<T, E>(&self, outcome: &Result<T, E>) -> Duration {
        if outcome.is_ok() {
            self.found
        } else {
            self.failed
        }
    }
}

/// One name's last lookup.
struct Entry {
    looked_up: Instant,
    /// The addresses, in the resolver's order, or what the lookup said.
    outcome: Result<Arc<[IpAddr]>, (io::ErrorKind, Arc<str>)>,
    /// Where the next connection starts in the addresses.
    next: usize,
}

impl Entry {
    /// How long it is still good for (zero once stale).
    fn remaining(&self, ttl: DnsTtl, now: Instant) -> Duration {
        ttl.of_outcome(&self.outcome)
            .saturating_sub(now.saturating_duration_since(self.looked_up))
    }

    /// The addresses, starting at the next one in turn; or the failure again.
    fn take_turn(&mut self) -> io::Result<Vec<IpAddr>> {
        match &self.outcome {
            Ok(addrs) => {
                let start = self.next % addrs.len().max(1);
                self.next = start + 1;
                Ok(addrs[start..]
                    .iter()
                    .chain(&addrs[..start])
                    .copied()
                    .collect())
            }
            Err((kind, message)) => Err(io::Error::new(*kind, message.to_string())),
        }
    }
}

/// A name as SHOW DNS_HOSTS shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostRow {
    pub hostname: String,
    /// Whole seconds until it is looked up again (0: at the next connection).
    pub ttl: u64,
    /// The addresses, separated by commas; empty for a failed lookup.
    pub addrs: String,
}

/// The names kept, and how many lookups are under way. One per process
/// (in `Shared`), which every pool uses, as PgBouncer's.
#[derive(Default)]
pub struct DnsCache {
    hosts: Mutex<HashMap<String, Entry>>,
    in_flight: AtomicUsize,
}

/// Counts a lookup while it runs, also when its connection attempt is given
/// up (server_connect_timeout drops the future).
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    fn start(count: &'a AtomicUsize) -> InFlight<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        InFlight(count)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl DnsCache {
    /// The addresses to try for `host`, the first one in turn first.
    pub async fn addresses(&self, host: &str, ttl: DnsTtl) -> io::Result<Vec<IpAddr>> {
        self.addresses_with(host, ttl, system_lookup).await
    }

    /// `addresses`, looking names up with `lookup`.
    async fn addresses_with<F, Fut>(
        &self,
        host: &str,
        ttl: DnsTtl,
        lookup: F,
    ) -> io::Result<Vec<IpAddr>>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = io::Result<Vec<IpAddr>>>,
    {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        {
            let mut hosts = self.lock();
            if let Some(entry) = hosts.get_mut(host) {
                if !entry.remaining(ttl, Instant::now()).is_zero() {
                    return entry.take_turn();
                }
            }
        }
        let outcome = {
            let _counted = InFlight::start(&self.in_flight);
            lookup(host.to_owned()).await
        };
        let outcome = match outcome {
            Ok(addrs) if addrs.is_empty() => Err((
                io::ErrorKind::NotFound,
                Arc::from(format!("{host}: the name has no addresses")),
            )),
            Ok(addrs) => Ok(Arc::from(addrs)),
            Err(e) => Err((e.kind(), Arc::from(e.to_string()))),
        };
        let now = Instant::now();
        let mut hosts = self.lock();
        // The turn goes on from where the old answer left it.
        let next = hosts.get(host).map_or(0, |old| old.next);
        // Names no longer good for anything go (this one's old answer, a name
        // dropped from the config).
        hosts.retain(|_, e| !e.remaining(ttl, now).is_zero());
        let mut entry = Entry {
            looked_up: now,
            outcome,
            next,
        };
        let addresses = entry.take_turn();
        if !ttl.of_outcome(&entry.outcome).is_zero() {
            hosts.insert(host.to_owned(), entry);
        }
        addresses
    }

    /// SHOW DNS_HOSTS, by name.
    pub fn rows(&self, ttl: DnsTtl) -> Vec<HostRow> {
        let now = Instant::now();
        let mut rows: Vec<HostRow> = self
            .lock()
            .iter()
            .map(|(name, entry)| HostRow {
                hostname: name.clone(),
                ttl: entry.remaining(ttl, now).as_secs_f64().ceil() as u64,
                addrs: match &entry.outcome {
                    Ok(addrs) => addrs
                        .iter()
                        .map(IpAddr::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                    Err(_) => String::new(),
                },
            })
            .collect();
        rows.sort_by(|a, b| a.hostname.cmp(&b.hostname));
        rows
    }

    /// SHOW LISTS `dns_names`.
    pub fn names(&self) -> usize {
        self.lock().len()
    }

    /// SHOW LISTS `dns_queries`: lookups under way.
    pub fn queries(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.hosts.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The addresses for `host` without the cache: an address as written, or the
/// resolver's answer.
pub async fn addresses_uncached(host: &str) -> io::Result<Vec<IpAddr>> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(vec![ip]),
        Err(_) => system_lookup(host.to_owned()).await,
    }
}

/// The resolver's addresses for `host`, each once, in its order.
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
    use std::cell::Cell;

    const KEEP: DnsTtl = DnsTtl {
        found: Duration::from_secs(15),
        failed: Duration::from_secs(15),
    };

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// A lookup that answers `answer` and counts its calls in `calls`.
    fn counted(
        calls: &Cell<u32>,
        answer: io::Result<Vec<IpAddr>>,
    ) -> impl FnOnce(String) -> std::future::Ready<io::Result<Vec<IpAddr>>> + '_ {
        move |_| {
            calls.set(calls.get() + 1);
            std::future::ready(answer)
        }
    }

    #[tokio::test]
    async fn an_answer_is_kept_and_its_addresses_taken_in_turn() {
        let cache = DnsCache::default();
        let calls = Cell::new(0);
        let two = || Ok(vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        let first = cache
            .addresses_with("db", KEEP, counted(&calls, two()))
            .await;
        let second = cache
            .addresses_with("db", KEEP, counted(&calls, two()))
            .await;
        let third = cache
            .addresses_with("db", KEEP, counted(&calls, two()))
            .await;
        assert_eq!(calls.get(), 1, "looked up once");
        assert_eq!(first.unwrap(), [ip("10.0.0.1"), ip("10.0.0.2")]);
        assert_eq!(second.unwrap(), [ip("10.0.0.2"), ip("10.0.0.1")]);
        assert_eq!(third.unwrap(), [ip("10.0.0.1"), ip("10.0.0.2")]);
        let rows = cache.rows(KEEP);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].hostname, "db");
        assert_eq!(rows[0].addrs, "10.0.0.1,10.0.0.2");
        assert!((14..=15).contains(&rows[0].ttl), "{:?}", rows[0]);
    }

    #[tokio::test]
    async fn a_stale_answer_is_looked_up_again() {
        let cache = DnsCache::default();
        let calls = Cell::new(0);
        let none = DnsTtl {
            found: Duration::ZERO,
            failed: Duration::ZERO,
        };
        for _ in 0..2 {
            let got = cache
                .addresses_with("db", none, counted(&calls, Ok(vec![ip("::1")])))
                .await;
            assert_eq!(got.unwrap(), [ip("::1")]);
        }
        assert_eq!(calls.get(), 2);
        assert_eq!(cache.names(), 0, "an answer good for no time is not kept");
        // A stale answer is replaced by the new lookup, good for the whole TTL.
        let short = DnsTtl {
            found: Duration::from_millis(20),
            failed: Duration::ZERO,
        };
        let _ = cache
            .addresses_with("db", short, counted(&calls, Ok(vec![ip("::1")])))
            .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let _ = cache
            .addresses_with("db", short, counted(&calls, Ok(vec![ip("::2")])))
            .await;
        let _ = cache
            .addresses_with("db", short, counted(&calls, Ok(vec![ip("::3")])))
            .await;
        assert_eq!(
            calls.get(),
            4,
            "stale after 20 ms, fresh again after the lookup"
        );
        assert_eq!(cache.rows(KEEP)[0].addrs, "::2");
    }

    #[tokio::test]
    async fn the_turn_goes_on_after_a_new_lookup() {
        let cache = DnsCache::default();
        let calls = Cell::new(0);
        let short = DnsTtl {
            found: Duration::from_millis(20),
            failed: Duration::ZERO,
        };
        let two = || Ok(vec![ip("10.0.0.1"), ip("10.0.0.2")]);
        let first = cache
            .addresses_with("db", short, counted(&calls, two()))
            .await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        let second = cache
            .addresses_with("db", short, counted(&calls, two()))
            .await;
        assert_eq!(calls.get(), 2);
        assert_eq!(first.unwrap()[0], ip("10.0.0.1"));
        assert_eq!(second.unwrap()[0], ip("10.0.0.2"));
    }

    #[tokio::test]
    async fn a_failure_is_kept_for_its_own_ttl() {
        let cache = DnsCache::default();
        let calls = Cell::new(0);
        let failed_only = DnsTtl {
            found: Duration::ZERO,
            failed: Duration::from_secs(15),
        };
        let gone = || Err(io::Error::other("no such host"));
        for _ in 0..2 {
            let err = cache
                .addresses_with("nx", failed_only, counted(&calls, gone()))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("no such host"), "{err}");
        }
        assert_eq!(calls.get(), 1, "the failure was kept");
        assert_eq!(cache.rows(failed_only)[0].addrs, "");
        // An empty answer is a failure too.
        let err = cache
            .addresses_with("empty", KEEP, counted(&calls, Ok(vec![])))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no addresses"), "{err}");
    }

    #[tokio::test]
    async fn addresses_are_not_looked_up() {
        let cache = DnsCache::default();
        let calls = Cell::new(0);
        let got = cache
            .addresses_with("127.0.0.1", KEEP, counted(&calls, Ok(vec![])))
            .await;
        assert_eq!(got.unwrap(), [ip("127.0.0.1")]);
        assert_eq!(calls.get(), 0);
        assert_eq!(cache.names(), 0);
    }
}
