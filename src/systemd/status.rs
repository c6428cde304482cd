//! The one-line `STATUS=` summary `systemctl status` shows: connected clients,
//! server connections, and the transaction and query rates of the last
//! `stats_period`, taken from the control core like SHOW LISTS and SHOW STATS.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::control;
use crate::shared::Shared;

/// `12 clients, 3 servers, 40 xact/s, 120 query/s`.
pub fn summary(shared: &Arc<Shared>) -> String {
    let clients = shared.client_count.load(Ordering::Relaxed);
    let lists = control::lists(shared);
    let servers = lists.used_servers + lists.free_servers;
    let (xacts, queries) = control::stats(shared).iter().fold((0, 0), |(x, q), row| {
        (x + row.averages.xact_count, q + row.averages.query_count)
    });
    format!("{clients} clients, {servers} servers, {xacts} xact/s, {queries} query/s")
}

/// Send the summary every `stats_period` (read again each time: a reload may
/// change it). Runs for the life of the process; does nothing without systemd.
pub async fn run(shared: Arc<Shared>) {
    if !super::notify::enabled() {
        return;
    }
    loop {
        tokio::time::sleep(crate::stats::period(&shared)).await;
        super::notify::status(&summary(&shared));
    }
}
