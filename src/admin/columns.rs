//! The column list of every SHOW: names, order and types, which tools depend on.
//!
//! Names and order follow the compat notes (`shared/compat/admin-console.md`,
//! PgBouncer 1.26). The types are PgBouncer's: each SHOW in its src/admin.c and
//! src/stats.c writes its RowDescription from a format string where `s` is text
//! (25), `i` int4 (23), `q` int8 (20), `N` numeric (1700) and `T` a time sent as
//! text (25).

use super::command::Show;
use super::wire::{int4, int8, numeric, text, Column};

/// SHOW POOLS (`ssiiiiiiiiiiiiiss`).
pub const POOLS: &[Column] = &[
    text("database"),
    text("user"),
    int4("cl_active"),
    int4("cl_waiting"),
    int4("cl_active_cancel_req"),
    int4("cl_waiting_cancel_req"),
    int4("sv_active"),
    int4("sv_active_cancel"),
    int4("sv_being_canceled"),
    int4("sv_idle"),
    int4("sv_used"),
    int4("sv_tested"),
    int4("sv_login"),
    int4("maxwait"),
    int4("maxwait_us"),
    text("pool_mode"),
    text("load_balance_hosts"),
];

/// The columns of SHOW CLIENTS and SHOW SERVERS, then `$extra`. A macro because
/// constant slices cannot be joined, and SHOW SOCKETS repeats them all.
macro_rules! connection_columns {
    ($($extra:expr),* $(,)?) => {
        &[
            text("type"),
            text("user"),
            text("database"),
            text("replication"),
            text("state"),
            text("addr"),
            int4("port"),
            text("local_addr"),
            int4("local_port"),
            text("connect_time"),
            text("request_time"),
            int4("wait"),
            int4("wait_us"),
            int4("close_needed"),
            text("ptr"),
            text("link"),
            int4("remote_pid"),
            text("tls"),
            text("application_name"),
            int4("prepared_statements"),
            int4("id"),
            $($extra,)*
        ]
    };
}

/// SHOW CLIENTS and SHOW SERVERS (`ssssssisiTTiiississii`).
pub const CLIENTS: &[Column] = connection_columns!();

/// SHOW SOCKETS and SHOW ACTIVE_SOCKETS: the CLIENTS columns, then the buffer
/// positions (`iiiiiii`).
pub const SOCKETS: &[Column] = connection_columns!(
    int4("recv_pos"),
    int4("pkt_pos"),
    int4("pkt_remain"),
    int4("send_pos"),
    int4("send_remain"),
    int4("pkt_avail"),
    int4("send_avail"),
);

/// SHOW STATS: totals then averages, all numeric.
pub const STATS: &[Column] = &[
    text("database"),
    numeric("total_server_assignment_count"),
    numeric("total_xact_count"),
    numeric("total_query_count"),
    numeric("total_received"),
    numeric("total_sent"),
    numeric("total_xact_time"),
    numeric("total_query_time"),
    numeric("total_wait_time"),
    numeric("total_client_parse_count"),
    numeric("total_server_parse_count"),
    numeric("total_bind_count"),
    numeric("total_client_login_count"),
    numeric("avg_server_assignment_count"),
    numeric("avg_xact_count"),
    numeric("avg_query_count"),
    numeric("avg_recv"),
    numeric("avg_sent"),
    numeric("avg_xact_time"),
    numeric("avg_query_time"),
    numeric("avg_wait_time"),
    numeric("avg_client_parse_count"),
    numeric("avg_server_parse_count"),
    numeric("avg_bind_count"),
    numeric("avg_client_login_count"),
];

/// SHOW STATS_TOTALS.
pub const STATS_TOTALS: &[Column] = &[
    text("database"),
    numeric("server_assignment_count"),
    numeric("xact_count"),
    numeric("query_count"),
    numeric("bytes_received"),
    numeric("bytes_sent"),
    numeric("xact_time"),
    numeric("query_time"),
    numeric("wait_time"),
    numeric("client_parse_count"),
    numeric("server_parse_count"),
    numeric("bind_count"),
    numeric("client_login_count"),
];

/// SHOW STATS_AVERAGES: PgBouncer names the last four with an `avg_` prefix
/// and the others without.
pub const STATS_AVERAGES: &[Column] = &[
    text("database"),
    numeric("server_assignment_count"),
    numeric("xact_count"),
    numeric("query_count"),
    numeric("bytes_received"),
    numeric("bytes_sent"),
    numeric("xact_time"),
    numeric("query_time"),
    numeric("wait_time"),
    numeric("avg_client_parse_count"),
    numeric("avg_server_parse_count"),
    numeric("avg_bind_count"),
    numeric("avg_client_login_count"),
];

/// SHOW TOTALS (`sN`).
pub const TOTALS: &[Column] = &[text("name"), numeric("value")];

/// SHOW DATABASES (`ssissiiiissiiiiii`): paused and disabled are int4 0/1.
pub const DATABASES: &[Column] = &[
    text("name"),
    text("host"),
    int4("port"),
    text("database"),
    text("force_user"),
    int4("pool_size"),
    int4("min_pool_size"),
    int4("reserve_pool_size"),
    int4("server_lifetime"),
    text("pool_mode"),
    text("load_balance_hosts"),
    int4("max_connections"),
    int4("current_connections"),
    int4("max_client_connections"),
    int4("current_client_connections"),
    int4("paused"),
    int4("disabled"),
];

/// SHOW USERS (`ssssiiii`): PgBouncer sends the two pool sizes as text.
pub const USERS: &[Column] = &[
    text("name"),
    text("pool_size"),
    text("reserve_pool_size"),
    text("pool_mode"),
    int4("max_user_connections"),
    int4("current_connections"),
    int4("max_user_client_connections"),
    int4("current_client_connections"),
];

/// SHOW LISTS (`si`).
pub const LISTS: &[Column] = &[text("list"), int4("items")];

/// SHOW CONFIG (`ssss`).
pub const CONFIG: &[Column] = &[
    text("key"),
    text("value"),
    text("default"),
    text("changeable"),
];

/// SHOW PEERS (`isii`).
pub const PEERS: &[Column] = &[
    int4("peer_id"),
    text("host"),
    int4("port"),
    int4("pool_size"),
];

/// SHOW PEER_POOLS (`iiiii`).
pub const PEER_POOLS: &[Column] = &[
    int4("peer_id"),
    int4("cl_active_cancel_req"),
    int4("cl_waiting_cancel_req"),
    int4("sv_active_cancel"),
    int4("sv_login"),
];

/// SHOW STATE (`ss`).
pub const STATE: &[Column] = &[text("key"), text("value")];

/// SHOW MEM (`siiii`).
pub const MEM: &[Column] = &[
    text("name"),
    int4("size"),
    int4("used"),
    int4("free"),
    int4("memtotal"),
];

/// SHOW DNS_HOSTS (`sqs`).
pub const DNS_HOSTS: &[Column] = &[text("hostname"), int8("ttl"), text("addrs")];

/// SHOW DNS_ZONES (`sqi`).
pub const DNS_ZONES: &[Column] = &[text("zonename"), int8("serial"), int4("count")];

/// SHOW VERSION (`s`).
pub const VERSION: &[Column] = &[text("version")];

/// The columns of a SHOW that answers with rows (HELP answers with a notice,
/// FDS is refused).
pub fn of(show: Show) -> Option<&'static [Column]> {
    Some(match show {
        Show::Help | Show::Fds => return None,
        Show::Config => CONFIG,
        Show::Databases => DATABASES,
        Show::Pools => POOLS,
        Show::Clients | Show::Servers => CLIENTS,
        Show::Users => USERS,
        Show::Version => VERSION,
        Show::Peers => PEERS,
        Show::PeerPools => PEER_POOLS,
        Show::Sockets | Show::ActiveSockets => SOCKETS,
        Show::Lists => LISTS,
        Show::Mem => MEM,
        Show::State => STATE,
        Show::DnsHosts => DNS_HOSTS,
        Show::DnsZones => DNS_ZONES,
        Show::Stats => STATS,
        Show::StatsTotals => STATS_TOTALS,
        Show::StatsAverages => STATS_AVERAGES,
        Show::Totals => TOTALS,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(columns: &[Column]) -> Vec<&str> {
        columns.iter().map(|c| c.name).collect()
    }

    #[test]
    fn sockets_extend_clients() {
        assert_eq!(&SOCKETS[..CLIENTS.len()], CLIENTS);
        assert_eq!(SOCKETS.len(), CLIENTS.len() + 7);
    }

    #[test]
    fn stats_is_totals_then_averages() {
        // SHOW STATS repeats the STATS_TOTALS counters with total_/avg_ prefixes.
        assert_eq!(STATS.len(), 1 + 2 * (STATS_TOTALS.len() - 1));
        assert_eq!(STATS_AVERAGES.len(), STATS_TOTALS.len());
        assert!(STATS[1..13].iter().all(|c| c.name.starts_with("total_")));
        assert!(STATS[13..].iter().all(|c| c.name.starts_with("avg_")));
    }

    #[test]
    fn no_duplicate_names() {
        for &show in Show::ALL {
            if let Some(columns) = of(show) {
                let mut seen = names(columns);
                seen.sort_unstable();
                seen.dedup();
                assert_eq!(seen.len(), columns.len(), "{show:?}");
            }
        }
    }
}
