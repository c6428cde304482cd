//! Statistics: counters per pool, added to once per transaction with relaxed
//! atomics (no lock on the query path), summed per database for SHOW STATS, and
//! averaged over each stats_period by a periodic task that also writes the
//! `log_stats` lines.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::control::snapshot::StatsTotals;

/// One pool's running totals.
#[derive(Debug, Default)]
pub struct PoolStats {
    pub server_assignment_count: AtomicU64,
    pub xact_count: AtomicU64,
    pub query_count: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub xact_time_us: AtomicU64,
    pub query_time_us: AtomicU64,
    pub wait_time_us: AtomicU64,
    pub client_parse_count: AtomicU64,
    pub server_parse_count: AtomicU64,
    pub bind_count: AtomicU64,
    pub client_login_count: AtomicU64,
}

/// What one stretch of relaying adds to the totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    pub xacts: u64,
    pub queries: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub xact_time_us: u64,
    pub query_time_us: u64,
    pub parses: u64,
    pub server_parses: u64,
    pub binds: u64,
}

impl PoolStats {
    pub fn add(&self, d: &Delta) {
        let add = |counter: &AtomicU64, n: u64| {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.xact_count, d.xacts);
        add(&self.query_count, d.queries);
        add(&self.bytes_received, d.bytes_received);
        add(&self.bytes_sent, d.bytes_sent);
        add(&self.xact_time_us, d.xact_time_us);
        add(&self.query_time_us, d.query_time_us);
        add(&self.client_parse_count, d.parses);
        add(&self.server_parse_count, d.server_parses);
        add(&self.bind_count, d.binds);
    }

    pub fn add_wait(&self, waited: Duration) {
        self.server_assignment_count.fetch_add(1, Ordering::Relaxed);
        self.wait_time_us
            .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn add_login(&self) {
        self.client_login_count.fetch_add(1, Ordering::Relaxed);
    }

    /// A login to the admin console: PgBouncer counts it as a transaction
    /// with one query, as well as a login.
    pub fn add_console_login(&self) {
        self.add(&Delta {
            xacts: 1,
            queries: 1,
            ..Delta::default()
        });
        self.add_login();
    }

    pub fn totals(&self) -> StatsTotals {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsTotals {
            server_assignment_count: get(&self.server_assignment_count),
            xact_count: get(&self.xact_count),
            query_count: get(&self.query_count),
            bytes_received: get(&self.bytes_received),
            bytes_sent: get(&self.bytes_sent),
            xact_time: get(&self.xact_time_us),
            query_time: get(&self.query_time_us),
            wait_time: get(&self.wait_time_us),
            // As PgBouncer's: named statements under max_prepared_statements,
            // the clients' Parses, and those that reached a server (fewer when
            // servers already had the statement, more when they re-prepare).
            client_parse_count: get(&self.client_parse_count),
            server_parse_count: get(&self.server_parse_count),
            bind_count: get(&self.bind_count),
            client_login_count: get(&self.client_login_count),
        }
    }
}

/// Add `b` into `a`, field by field.
pub fn accumulate(a: &mut StatsTotals, b: &StatsTotals) {
    a.server_assignment_count += b.server_assignment_count;
    a.xact_count += b.xact_count;
    a.query_count += b.query_count;
    a.bytes_received += b.bytes_received;
    a.bytes_sent += b.bytes_sent;
    a.xact_time += b.xact_time;
    a.query_time += b.query_time;
    a.wait_time += b.wait_time;
    a.client_parse_count += b.client_parse_count;
    a.server_parse_count += b.server_parse_count;
    a.bind_count += b.bind_count;
    a.client_login_count += b.client_login_count;
}

/// Averages over one period, as PgBouncer reports them: counts and bytes per
/// second; xact_time per transaction, query_time per query and wait_time per
/// assignment (microseconds).
pub fn averages(now: &StatsTotals, before: &StatsTotals, period: Duration) -> StatsTotals {
    let secs = period.as_secs_f64().max(0.001);
    let rate = |a: u64, b: u64| ((a.saturating_sub(b)) as f64 / secs).round() as u64;
    let per = |t_a: u64, t_b: u64, n_a: u64, n_b: u64| {
        t_a.saturating_sub(t_b)
            .checked_div(n_a.saturating_sub(n_b))
            .unwrap_or(0)
    };
    StatsTotals {
        server_assignment_count: rate(now.server_assignment_count, before.server_assignment_count),
        xact_count: rate(now.xact_count, before.xact_count),
        query_count: rate(now.query_count, before.query_count),
        bytes_received: rate(now.bytes_received, before.bytes_received),
        bytes_sent: rate(now.bytes_sent, before.bytes_sent),
        xact_time: per(
            now.xact_time,
            before.xact_time,
            now.xact_count,
            before.xact_count,
        ),
        query_time: per(
            now.query_time,
            before.query_time,
            now.query_count,
            before.query_count,
        ),
        wait_time: per(
            now.wait_time,
            before.wait_time,
            now.server_assignment_count,
            before.server_assignment_count,
        ),
        client_parse_count: rate(now.client_parse_count, before.client_parse_count),
        server_parse_count: rate(now.server_parse_count, before.server_parse_count),
        bind_count: rate(now.bind_count, before.bind_count),
        client_login_count: rate(now.client_login_count, before.client_login_count),
    }
}

/// The averages of the last finished period, per database.
#[derive(Default)]
pub struct Averages {
    inner: Mutex<AveragesState>,
}

#[derive(Default)]
struct AveragesState {
    last_totals: BTreeMap<String, StatsTotals>,
    averages: BTreeMap<String, StatsTotals>,
    last_at: Option<Instant>,
}

impl Averages {
    pub fn get(&self, database: &str) -> StatsTotals {
        let st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.averages.get(database).copied().unwrap_or_default()
    }

    /// Close a period with the current per-database totals; returns the
    /// averages computed (for the log lines).
    pub fn roll(
        &self,
        totals: &BTreeMap<String, StatsTotals>,
        now: Instant,
    ) -> BTreeMap<String, StatsTotals> {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let period = st.last_at.map(|t| now.duration_since(t));
        let mut computed = BTreeMap::new();
        if let Some(period) = period {
            for (db, total) in totals {
                let before = st.last_totals.get(db).copied().unwrap_or_default();
                computed.insert(db.clone(), averages(total, &before, period));
            }
        }
        st.averages = computed.clone();
        st.last_totals = totals.clone();
        st.last_at = Some(now);
        computed
    }
}

/// stats_period as in force now (a reload may change it), at least a second.
pub fn period(shared: &crate::shared::Shared) -> Duration {
    shared
        .config
        .load()
        .general
        .stats_period
        .max(Duration::from_secs(1))
}

/// Every stats_period: roll the averages and, with log_stats, log a line per
/// database like PgBouncer's.
pub async fn run(shared: Arc<crate::shared::Shared>) {
    shared
        .stats_averages
        .roll(&crate::control::database_totals(&shared), Instant::now());
    loop {
        tokio::time::sleep(period(&shared)).await;
        let computed = shared
            .stats_averages
            .roll(&crate::control::database_totals(&shared), Instant::now());
        if shared.config.load().general.log_stats {
            for (db, a) in &computed {
                log::info!(
                    "stats: {db}: {} xacts/s, {} queries/s, {} client parses/s, {} server parses/s, {} binds/s, in {} B/s, out {} B/s, xact {} us, query {} us, wait {} us",
                    a.xact_count,
                    a.query_count,
                    a.client_parse_count,
                    a.server_parse_count,
                    a.bind_count,
                    a.bytes_received,
                    a.bytes_sent,
                    a.xact_time,
                    a.query_time,
                    a.wait_time
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_are_rates_and_per_item_times() {
        let before = StatsTotals {
            xact_count: 100,
            query_count: 200,
            xact_time: 1000,
            query_time: 2000,
            bytes_received: 0,
            ..Default::default()
        };
        let now = StatsTotals {
            xact_count: 300,
            query_count: 600,
            xact_time: 3000,
            query_time: 6000,
            bytes_received: 4000,
            ..Default::default()
        };
        let a = averages(&now, &before, Duration::from_secs(2));
        assert_eq!(a.xact_count, 100);
        assert_eq!(a.query_count, 200);
        assert_eq!(a.bytes_received, 2000);
        assert_eq!(a.xact_time, 10, "2000 us over 200 transactions");
        assert_eq!(a.query_time, 10);
        assert_eq!(a.wait_time, 0, "no assignments: no division by zero");
    }

    #[test]
    fn pool_stats_add_up() {
        let s = PoolStats::default();
        s.add(&Delta {
            xacts: 2,
            queries: 3,
            parses: 3,
            server_parses: 1,
            ..Default::default()
        });
        s.add_wait(Duration::from_micros(50));
        s.add_login();
        let t = s.totals();
        assert_eq!((t.xact_count, t.query_count, t.wait_time), (2, 3, 50));
        assert_eq!((t.server_assignment_count, t.client_login_count), (1, 1));
        assert_eq!((t.client_parse_count, t.server_parse_count), (3, 1));
    }
}
