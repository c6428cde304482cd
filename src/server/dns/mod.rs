//! Servers' host names, looked up once and kept, as PgBouncer keeps them: an
//! answer for `dns_max_ttl` seconds, a failure (no such name, or the lookup
//! failing) for `dns_nxdomain_ttl`, whatever TTL DNS itself gave. A name with
//! several addresses has them tried in turn: each new connection starts at the
//! next one (PgBouncer's round robin), and goes on to the others when that one
//! does not answer. SHOW DNS_HOSTS lists the names kept, SHOW LISTS counts them.
//!
//! Lookups go through the system's resolver, or the name servers of
//! `resolv_conf` (`resolver`). Addresses written as such are never looked up or
//! kept. The zones of the names kept (everything after the first dot) are
//! listed with their SOA serials, which `zones` checks every
//! `dns_zone_check_period` to look a zone's names up again when it grew.
//!
//! A new answer without an address the old one had is noted (`take_moved`):
//! the janitor then marks the servers at that address to be closed after their
//! current use, as PgBouncer does for a DNS failover.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod resolver;
pub mod zones;

pub use resolver::Resolver;

/// How long lookups are good for: `dns_max_ttl` and `dns_nxdomain_ttl`. An
/// outcome whose time is zero is stale at once: listed, but looked up again
/// for the next connection.
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

/// The addresses, in the resolver's order, or what the lookup said.
type Outcome = Result<Arc<[IpAddr]>, (io::ErrorKind, Arc<str>)>;

/// One name's last lookup.
struct Entry {
    looked_up: Instant,
    outcome: Outcome,
    /// Where the next connection starts in the addresses.
    next: usize,
}

impl Entry {
    /// How long it is still good for (zero once stale).
    fn remaining(&self, ttl: DnsTtl, now: Instant) -> Duration {
        ttl.of_outcome(&self.outcome)
            .saturating_sub(now.saturating_duration_since(self.looked_up))
    }

    /// The addresses found (none for a failure).
    fn addresses(&self) -> Vec<IpAddr> {
        self.outcome
            .as_deref()
            .map(<[IpAddr]>::to_vec)
            .unwrap_or_default()
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
    /// The addresses, separated by commas, each with port 0 as PgBouncer
    /// shows them (`10.0.0.1:0,[::1]:0`); empty for a failed lookup.
    pub addrs: String,
}

/// A zone as SHOW DNS_ZONES shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneRow {
    pub zonename: String,
    /// The SOA serial last seen; 0 until the zone is first checked.
    pub serial: u32,
    /// How many of the names kept are in it.
    pub count: usize,
}

/// A name a new lookup found without some of the addresses it had: servers
/// connected to those are to be replaced, as PgBouncer replaces them (a DNS
/// failover).
#[derive(Debug, PartialEq, Eq)]
pub struct Moved {
    pub host: String,
    /// The addresses it no longer has.
    pub gone: Vec<IpAddr>,
    /// The addresses it has now.
    pub now: Vec<IpAddr>,
}

/// The names kept, and how many lookups are under way. One per process
/// (in `Shared`), which every pool uses, as PgBouncer's.
#[derive(Default)]
pub struct DnsCache {
    resolver: Resolver,
    hosts: Mutex<HashMap<String, Entry>>,
    /// The SOA serial last seen of each zone checked.
    serials: Mutex<HashMap<String, u32>>,
    /// Names found without addresses they had, not yet acted on.
    moved: Mutex<Vec<Moved>>,
    in_flight: AtomicUsize,
}

/// The zone of a host name: everything after its first dot, if anything.
fn zone_of(host: &str) -> Option<&str> {
    host.split_once('.')
        .map(|(_, zone)| zone)
        .filter(|zone| !zone.is_empty())
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
    /// A cache whose lookups go to `resolver`.
    pub fn new(resolver: Resolver) -> DnsCache {
        DnsCache {
            resolver,
            ..DnsCache::default()
        }
    }

    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The addresses to try for `host`, the first one in turn first.
    pub async fn addresses(&self, host: &str, ttl: DnsTtl) -> io::Result<Vec<IpAddr>> {
        self.addresses_with(host, ttl, |host| self.resolver.addresses(host))
            .await
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
        let outcome = self.look_up(host, lookup).await;
        let mut hosts = self.lock();
        let mut entry = self.renew(&mut hosts, host, outcome);
        let addresses = entry.take_turn();
        hosts.insert(host.to_owned(), entry);
        addresses
    }

    /// One lookup of `host`, counted while it runs; no addresses is a failure.
    async fn look_up<F, Fut>(&self, host: &str, lookup: F) -> Outcome
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = io::Result<Vec<IpAddr>>>,
    {
        let outcome = {
            let _counted = InFlight::start(&self.in_flight);
            lookup(host.to_owned()).await
        };
        match outcome {
            Ok(addrs) if addrs.is_empty() => Err((
                io::ErrorKind::NotFound,
                Arc::from(format!("{host}: the name has no addresses")),
            )),
            Ok(addrs) => Ok(Arc::from(addrs)),
            Err(e) => Err((e.kind(), Arc::from(e.to_string()))),
        }
    }

    /// The entry a new `outcome` for `host` makes, taken out of `hosts`; the
    /// caller puts it back. An answer without addresses the old one had is
    /// noted in `moved` (a failed lookup is not: it says nothing of where
    /// the servers are). Names stay once looked up, stale or not, as in
    /// PgBouncer, so the old addresses are there to compare with.
    fn renew(&self, hosts: &mut HashMap<String, Entry>, host: &str, outcome: Outcome) -> Entry {
        let old = hosts.remove(host);
        if let (Some(old), Ok(new)) = (&old, &outcome) {
            let gone: Vec<IpAddr> = old
                .addresses()
                .into_iter()
                .filter(|ip| !new.contains(ip))
                .collect();
            if !gone.is_empty() {
                self.moved_list().push(Moved {
                    host: host.to_owned(),
                    gone,
                    now: new.to_vec(),
                });
            }
        }
        Entry {
            looked_up: Instant::now(),
            outcome,
            // The turn goes on from where the old answer left it.
            next: old.map_or(0, |old| old.next),
        }
    }

    /// The names found without addresses they had since the last call.
    pub fn take_moved(&self) -> Vec<Moved> {
        std::mem::take(&mut *self.moved_list())
    }

    fn moved_list(&self) -> std::sync::MutexGuard<'_, Vec<Moved>> {
        self.moved.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Look up every name kept in `zone` again, now (its serial changed).
    pub async fn look_up_zone_again(&self, zone: &str) {
        self.look_up_zone_again_with(zone, |host| self.resolver.addresses(host))
            .await
    }

    /// `look_up_zone_again`, looking names up with `lookup`.
    async fn look_up_zone_again_with<F, Fut>(&self, zone: &str, lookup: F)
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = io::Result<Vec<IpAddr>>>,
    {
        let names: Vec<String> = self
            .lock()
            .keys()
            .filter(|host| zone_of(host) == Some(zone))
            .cloned()
            .collect();
        for host in names {
            let outcome = self.look_up(&host, &lookup).await;
            let mut hosts = self.lock();
            let entry = self.renew(&mut hosts, &host, outcome);
            hosts.insert(host, entry);
        }
    }

    /// The zones of the names kept, each with how many names are in it.
    fn zone_counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for zone in self.lock().keys().filter_map(|host| zone_of(host)) {
            *counts.entry(zone.to_owned()).or_default() += 1;
        }
        counts
    }

    /// The zones of the names kept, by name.
    pub fn zone_names(&self) -> Vec<String> {
        self.zone_counts().into_keys().collect()
    }

    /// Note `zone`'s serial if it is newer than the one seen before, and
    /// return that one (0 for a zone not checked before). Serials compare as
    /// RFC 1982 says (they wrap around), as PgBouncer compares them: an older
    /// serial (a zone restored from a backup) is not a change. Serials of zones
    /// no name is kept in any more are forgotten.
    pub fn note_serial(&self, zone: &str, serial: u32) -> Option<u32> {
        let zones = self.zone_names();
        let mut serials = self.serials.lock().unwrap_or_else(|e| e.into_inner());
        serials.retain(|z, _| zones.contains(z));
        let old = serials.get(zone).copied();
        let newer = old.is_none_or(|old| (serial.wrapping_sub(old) as i32) > 0);
        if newer {
            serials.insert(zone.to_owned(), serial);
        }
        newer.then_some(old.unwrap_or(0))
    }

    /// SHOW DNS_ZONES, by name.
    pub fn zone_rows(&self) -> Vec<ZoneRow> {
        let counts = self.zone_counts();
        let serials = self.serials.lock().unwrap_or_else(|e| e.into_inner());
        counts
            .into_iter()
            .map(|(zonename, count)| ZoneRow {
                serial: serials.get(&zonename).copied().unwrap_or(0),
                zonename,
                count,
            })
            .collect()
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
                        .map(|ip| SocketAddr::new(*ip, 0).to_string())
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
/// system resolver's answer.
pub async fn addresses_uncached(host: &str) -> io::Result<Vec<IpAddr>> {
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(vec![ip]),
        Err(_) => Resolver::System.addresses(host.to_owned()).await,
    }
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
        assert_eq!(rows[0].addrs, "10.0.0.1:0,10.0.0.2:0");
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
        // Listed still, as PgBouncer lists it, with no time left.
        assert_eq!(cache.rows(none)[0].ttl, 0);
        // A stale answer is replaced by the new lookup, good for the whole TTL.
        let cache = DnsCache::default();
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
        assert_eq!(cache.rows(KEEP)[0].addrs, "[::2]:0");
    }

    #[tokio::test]
    async fn a_new_answer_without_an_old_address_is_noted() {
        let cache = DnsCache::default();
        let calls = Cell::new(0);
        let short = DnsTtl {
            found: Duration::from_millis(20),
            failed: Duration::from_millis(20),
        };
        let answer = |addrs: io::Result<Vec<IpAddr>>| {
            let cache = &cache;
            let lookup = counted(&calls, addrs);
            async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                let _ = cache.addresses_with("db", short, lookup).await;
            }
        };
        answer(Ok(vec![ip("10.0.0.1"), ip("10.0.0.2")])).await;
        // More addresses, or a failed lookup: nothing lost.
        answer(Ok(vec![ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.3")])).await;
        answer(Err(io::Error::other("timed out"))).await;
        assert_eq!(cache.take_moved(), []);
        answer(Ok(vec![ip("10.0.0.1"), ip("10.0.0.2")])).await;
        answer(Ok(vec![ip("10.0.0.2"), ip("10.0.0.4")])).await;
        assert_eq!(calls.get(), 5);
        assert_eq!(
            cache.take_moved(),
            [Moved {
                host: "db".to_owned(),
                gone: vec![ip("10.0.0.1")],
                now: vec![ip("10.0.0.2"), ip("10.0.0.4")],
            }]
        );
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

    /// Keep `answers` as if each name had been looked up.
    async fn cache_of(answers: &[(&str, &str)]) -> DnsCache {
        let cache = DnsCache::default();
        let calls = Cell::new(0);
        for (host, addr) in answers {
            let _ = cache
                .addresses_with(host, KEEP, counted(&calls, Ok(vec![ip(addr)])))
                .await;
        }
        cache
    }

    #[tokio::test]
    async fn zones_are_what_follows_the_first_dot_of_the_names_kept() {
        let cache = cache_of(&[
            ("a.z1.test", "10.0.0.1"),
            ("b.z1.test", "10.0.0.2"),
            ("c.z2.test", "10.0.0.3"),
            ("plain", "10.0.0.4"),
            ("trailing.", "10.0.0.5"),
        ])
        .await;
        assert_eq!(cache.zone_names(), ["z1.test", "z2.test"]);
        let row = |zone: &str, serial, count| ZoneRow {
            zonename: zone.to_owned(),
            serial,
            count,
        };
        assert_eq!(
            cache.zone_rows(),
            [row("z1.test", 0, 2), row("z2.test", 0, 1)],
            "serial 0 until checked"
        );
        assert_eq!(cache.note_serial("z1.test", 5), Some(0), "first seen");
        assert_eq!(cache.note_serial("z1.test", 5), None, "unchanged");
        assert_eq!(cache.note_serial("z1.test", 6), Some(5));
        assert_eq!(cache.note_serial("z1.test", 4), None, "older is no change");
        assert_eq!(cache.zone_rows()[0], row("z1.test", 6, 2));
        // The first serial seen is taken whatever it is; serials wrap around:
        // past u32::MAX comes 0 and on; half the number space on is not newer.
        assert_eq!(cache.note_serial("z2.test", u32::MAX - 1), Some(0));
        assert_eq!(cache.note_serial("z2.test", 3), Some(u32::MAX - 1));
        assert_eq!(cache.note_serial("z2.test", 3 + (1 << 31)), None);
        // A serial is forgotten with the last name of its zone.
        cache.note_serial("gone.test", 3);
        cache.note_serial("z2.test", 9);
        assert!(!cache.serials.lock().unwrap().contains_key("gone.test"));
    }

    #[tokio::test]
    async fn a_zone_looked_up_again_notes_the_names_that_lost_an_address() {
        let cache = cache_of(&[
            ("a.z1.test", "10.0.0.1"),
            ("b.z1.test", "10.0.0.2"),
            ("c.z2.test", "10.0.0.3"),
        ])
        .await;
        let asked = std::cell::RefCell::new(Vec::new());
        cache
            .look_up_zone_again_with("z1.test", |host| {
                asked.borrow_mut().push(host.clone());
                let addr = if host == "a.z1.test" {
                    "10.0.0.9"
                } else {
                    "10.0.0.2"
                };
                std::future::ready(Ok(vec![ip(addr)]))
            })
            .await;
        let mut asked = asked.into_inner();
        asked.sort();
        assert_eq!(asked, ["a.z1.test", "b.z1.test"], "only the zone's names");
        assert_eq!(
            cache.take_moved(),
            [Moved {
                host: "a.z1.test".to_owned(),
                gone: vec![ip("10.0.0.1")],
                now: vec![ip("10.0.0.9")],
            }]
        );
        assert_eq!(cache.take_moved(), [], "taken once");
        let rows = cache.rows(KEEP);
        assert_eq!(rows[0].addrs, "10.0.0.9:0", "the new answer is kept");
        assert!(rows[0].ttl >= 14, "for a whole dns_max_ttl: {:?}", rows[0]);
        assert_eq!(rows[2].addrs, "10.0.0.3:0");
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
