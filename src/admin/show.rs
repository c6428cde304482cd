//! The SHOW commands: snapshots from the control core turned into rows.
//!
//! Each `*_rows` function is pure (snapshot in, [`ResultSet`] out) so that the
//! shapes can be tested without a running pooler; [`show`] fetches the
//! snapshots and picks the function.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{PeerDef, ShowConfigRow};
use crate::control::snapshot::{
    ConnRow, DatabaseRow, Lists, PoolRow, StateRow, StatsRow, StatsTotals, UserRow,
};
use crate::server::dns::{DnsTtl, HostRow, ZoneRow};
use crate::shared::Shared;

use super::columns;
use super::command::Show;
use super::mem;
use super::params::FakeParam;
use super::result::{ResultSet, Value};
use super::wire::text;

/// The rows of `what`; `None` for the SHOWs that answer otherwise (HELP with a
/// notice, FDS with an error).
pub fn show(shared: &Arc<Shared>, what: Show) -> Option<ResultSet> {
    use crate::control as c;
    Some(match what {
        Show::Help | Show::Fds => return None,
        Show::Pools => pools_rows(&c::pools(shared)),
        Show::Clients => conn_rows(&c::clients(shared)),
        Show::Servers => conn_rows(&c::servers(shared)),
        Show::Sockets => socket_rows(&c::clients(shared), &c::servers(shared), false),
        Show::ActiveSockets => socket_rows(&c::clients(shared), &c::servers(shared), true),
        Show::Stats => stats_rows(&c::stats(shared)),
        Show::StatsTotals => stats_totals_rows(&c::stats(shared)),
        Show::StatsAverages => stats_averages_rows(&c::stats(shared)),
        Show::Totals => totals_rows(&c::stats(shared)),
        Show::Databases => database_rows(&c::databases(shared)),
        Show::Users => user_rows(&c::users(shared)),
        Show::Lists => list_rows(&c::lists(shared)),
        Show::Config => config_rows(&shared.config.load().show_config()),
        Show::Peers => {
            let config = shared.config.load();
            peer_rows(&config.peers, config.general.default_pool_size)
        }
        Show::PeerPools => peer_pool_rows(&shared.config.load().peers, |id| {
            shared.cancels.passing_on_to(id)
        }),
        Show::State => state_rows(c::state(shared)),
        Show::Mem => {
            let pkt_buf = shared.config.load().general.pkt_buf;
            mem::mem_rows(&c::lists(shared), &c::pools(shared), pkt_buf)
        }
        Show::DnsHosts => {
            let ttl = DnsTtl::of(&shared.config.load().general);
            dns_host_rows(&shared.dns.rows(ttl))
        }
        Show::DnsZones => dns_zone_rows(&shared.dns.zone_rows()),
        Show::Version => version_rows(&c::version()),
    })
}

/// SHOW of a faked server setting: one text column named after it.
pub fn param_rows(param: &FakeParam) -> ResultSet {
    let mut rs = ResultSet::new(&[text(param.name)]);
    rs.push(vec![Value::text(param.value)]);
    rs
}

pub fn pools_rows(pools: &[PoolRow]) -> ResultSet {
    let mut rs = ResultSet::new(columns::POOLS);
    for p in pools {
        rs.push(vec![
            Value::text(&p.database),
            Value::text(&p.user),
            Value::Count(p.cl_active),
            Value::Count(p.cl_waiting),
            Value::Count(p.cl_active_cancel_req),
            Value::Count(p.cl_waiting_cancel_req),
            Value::Count(p.sv_active),
            Value::Count(p.sv_active_cancel),
            Value::Count(p.sv_being_canceled),
            Value::Count(p.sv_idle),
            Value::Count(p.sv_used),
            Value::Count(p.sv_tested),
            Value::Count(p.sv_login),
            Value::Count(p.maxwait),
            Value::Count(p.maxwait_us),
            Value::text(&p.pool_mode),
            Value::opt_text(p.load_balance_hosts.as_deref()),
        ]);
    }
    rs
}

/// The 21 CLIENTS/SERVERS values of one connection, with `state` as given.
fn conn_values(c: &ConnRow, state: &str) -> Vec<Value> {
    vec![
        Value::text(c.kind.to_string()),
        Value::text(&c.user),
        Value::text(&c.database),
        Value::text(&c.replication),
        Value::text(state),
        Value::text(&c.addr),
        Value::Int(c.port),
        Value::text(&c.local_addr),
        Value::Int(c.local_port),
        Value::text(&c.connect_time),
        Value::text(&c.request_time),
        Value::Int(c.wait),
        Value::Int(c.wait_us),
        Value::Int(c.close_needed),
        Value::text(&c.ptr),
        Value::text(&c.link),
        Value::Int(c.remote_pid),
        Value::text(&c.tls),
        Value::text(&c.application_name),
        Value::Int(c.prepared_statements),
        Value::Int(c.id),
    ]
}

pub fn conn_rows(conns: &[ConnRow]) -> ResultSet {
    let mut rs = ResultSet::new(columns::CLIENTS);
    for c in conns {
        rs.push(conn_values(c, &c.state));
    }
    rs
}

/// SHOW SOCKETS names states after PgBouncer's lists (`cl_active`,
/// `sv_login`, …) rather than the CLIENTS/SERVERS state words; a client with
/// no server is in the active list there, so both `active` and `idle` are
/// `cl_active`.
fn socket_state(c: &ConnRow) -> String {
    match (c.kind, c.state.as_str()) {
        ('C', "active" | "idle") => "cl_active".to_string(),
        ('S', "new") => "sv_login".to_string(),
        ('C', other) => format!("cl_{other}"),
        (_, other) => format!("sv_{other}"),
    }
}

/// SHOW SOCKETS / ACTIVE_SOCKETS. The buffer columns are 0: a pgsluice
/// connection has no buffer of its own (buffers are lent to a client only while
/// it has a server). PgBouncer's ACTIVE_SOCKETS lists the sockets with unsent or
/// unparsed bytes; the nearest pgsluice knows is a connection linked to its
/// partner, which is when bytes flow, so that is what `active_only` keeps.
pub fn socket_rows(clients: &[ConnRow], servers: &[ConnRow], active_only: bool) -> ResultSet {
    let mut rs = ResultSet::new(columns::SOCKETS);
    for c in clients.iter().chain(servers) {
        if active_only && c.link.is_empty() {
            continue;
        }
        let mut row = conn_values(c, &socket_state(c));
        row.extend(std::iter::repeat_n(Value::Int(0), 7));
        rs.push(row);
    }
    rs
}

pub fn stats_rows(stats: &[StatsRow]) -> ResultSet {
    let mut rs = ResultSet::new(columns::STATS);
    for s in stats {
        let mut row = vec![Value::text(&s.database)];
        row.extend(s.totals.in_show_order().map(Value::Count));
        row.extend(s.averages.in_show_order().map(Value::Count));
        rs.push(row);
    }
    rs
}

pub fn stats_totals_rows(stats: &[StatsRow]) -> ResultSet {
    let mut rs = ResultSet::new(columns::STATS_TOTALS);
    for s in stats {
        let mut row = vec![Value::text(&s.database)];
        row.extend(s.totals.in_show_order().map(Value::Count));
        rs.push(row);
    }
    rs
}

pub fn stats_averages_rows(stats: &[StatsRow]) -> ResultSet {
    let mut rs = ResultSet::new(columns::STATS_AVERAGES);
    for s in stats {
        let mut row = vec![Value::text(&s.database)];
        row.extend(s.averages.in_show_order().map(Value::Count));
        rs.push(row);
    }
    rs
}

/// PgBouncer's SHOW TOTALS row names: `total_`/`avg_` and the name of its
/// counter field (so `client_bytes`, not `received`; `ps_bind_count`, not
/// `bind_count`).
const TOTALS_NAMES: [&str; 12] = [
    "server_assignment_count",
    "xact_count",
    "query_count",
    "client_bytes",
    "server_bytes",
    "xact_time",
    "query_time",
    "wait_time",
    "ps_client_parse_count",
    "ps_server_parse_count",
    "ps_bind_count",
    "client_login_count",
];

/// Sum one average over all databases. Rates add up; a time averaged per
/// transaction (or query, or assignment) is weighted by that rate, which gives
/// exactly the average PgBouncer computes over the summed counters, because
/// every database's rate is taken over the same period.
fn combined_average(
    stats: &[StatsRow],
    time: fn(&StatsTotals) -> u64,
    per: fn(&StatsTotals) -> u64,
) -> u64 {
    let weight: u128 = stats.iter().map(|s| u128::from(per(&s.averages))).sum();
    if weight == 0 {
        return 0;
    }
    let weighted: u128 = stats
        .iter()
        .map(|s| u128::from(time(&s.averages)) * u128::from(per(&s.averages)))
        .sum();
    u64::try_from(weighted / weight).unwrap_or(u64::MAX)
}

pub fn totals_rows(stats: &[StatsRow]) -> ResultSet {
    let mut totals = [0u64; 12];
    let mut averages = [0u64; 12];
    for s in stats {
        for (sum, n) in totals.iter_mut().zip(s.totals.in_show_order()) {
            *sum = sum.saturating_add(n);
        }
        for (sum, n) in averages.iter_mut().zip(s.averages.in_show_order()) {
            *sum = sum.saturating_add(n);
        }
    }
    averages[5] = combined_average(stats, |a| a.xact_time, |a| a.xact_count);
    averages[6] = combined_average(stats, |a| a.query_time, |a| a.query_count);
    averages[7] = combined_average(stats, |a| a.wait_time, |a| a.server_assignment_count);

    let mut rs = ResultSet::new(columns::TOTALS);
    for (prefix, values) in [("total_", totals), ("avg_", averages)] {
        for (name, value) in TOTALS_NAMES.iter().zip(values) {
            rs.push(vec![
                Value::text(format!("{prefix}{name}")),
                Value::Count(value),
            ]);
        }
    }
    rs
}

pub fn database_rows(dbs: &[DatabaseRow]) -> ResultSet {
    let mut rs = ResultSet::new(columns::DATABASES);
    for d in dbs {
        rs.push(vec![
            Value::text(&d.name),
            Value::opt_text(d.host.as_deref()),
            Value::Int(d.port),
            Value::text(&d.database),
            Value::opt_text(d.force_user.as_deref()),
            Value::Int(d.pool_size),
            Value::Int(d.min_pool_size),
            Value::Int(d.reserve_pool_size),
            Value::Int(d.server_lifetime),
            Value::opt_text(d.pool_mode.as_deref()),
            Value::opt_text(d.load_balance_hosts.as_deref()),
            Value::Int(d.max_connections),
            Value::Int(d.current_connections),
            Value::Int(d.max_client_connections),
            Value::Int(d.current_client_connections),
            Value::flag(d.paused),
            Value::flag(d.disabled),
        ]);
    }
    rs
}

/// PgBouncer prints a user's pool sizes with `%9d` into text columns, and an
/// empty string (not NULL) when the user has none of its own.
fn padded(size: Option<i64>) -> Value {
    Value::Text(size.map_or_else(String::new, |n| format!("{n:>9}")))
}

pub fn user_rows(users: &[UserRow]) -> ResultSet {
    let mut rs = ResultSet::new(columns::USERS);
    for u in users {
        rs.push(vec![
            Value::text(&u.name),
            padded(u.pool_size),
            padded(u.reserve_pool_size),
            Value::opt_text(u.pool_mode.as_deref()),
            Value::Int(u.max_user_connections),
            Value::Int(u.current_connections),
            Value::Int(u.max_user_client_connections),
            Value::Int(u.current_client_connections),
        ]);
    }
    rs
}

/// SHOW DNS_HOSTS: the host names of servers looked up and kept.
pub fn dns_host_rows(hosts: &[HostRow]) -> ResultSet {
    let mut rs = ResultSet::new(columns::DNS_HOSTS);
    for host in hosts {
        rs.push(vec![
            Value::text(host.hostname.as_str()),
            Value::Count(host.ttl),
            Value::text(host.addrs.as_str()),
        ]);
    }
    rs
}

pub fn dns_zone_rows(zones: &[ZoneRow]) -> ResultSet {
    let mut rs = ResultSet::new(columns::DNS_ZONES);
    for zone in zones {
        rs.push(vec![
            Value::text(zone.zonename.as_str()),
            Value::Count(zone.serial.into()),
            Value::Count(zone.count as u64),
        ]);
    }
    rs
}

pub fn list_rows(l: &Lists) -> ResultSet {
    let mut rs = ResultSet::new(columns::LISTS);
    for (name, n) in [
        ("databases", l.databases),
        ("users", l.users),
        ("peers", l.peers),
        ("pools", l.pools),
        ("peer_pools", l.peer_pools),
        ("free_clients", l.free_clients),
        ("used_clients", l.used_clients),
        ("login_clients", l.login_clients),
        ("free_servers", l.free_servers),
        ("used_servers", l.used_servers),
        ("dns_names", l.dns_names),
        ("dns_zones", l.dns_zones),
        ("dns_queries", l.dns_queries),
        ("dns_pending", l.dns_pending),
    ] {
        rs.push(vec![Value::text(name), Value::Count(n)]);
    }
    rs
}

pub fn config_rows(config: &[ShowConfigRow]) -> ResultSet {
    let mut rs = ResultSet::new(columns::CONFIG);
    for c in config {
        rs.push(vec![
            Value::text(c.key),
            Value::opt_text(c.value.as_deref()),
            Value::opt_text(c.default),
            Value::text(if c.changeable { "yes" } else { "no" }),
        ]);
    }
    rs
}

pub fn peer_rows(peers: &BTreeMap<u32, PeerDef>, default_pool_size: u32) -> ResultSet {
    let mut rs = ResultSet::new(columns::PEERS);
    for p in peers.values() {
        rs.push(vec![
            Value::Count(p.peer_id.into()),
            Value::text(&p.host),
            Value::Count(p.port.into()),
            Value::Count(p.pool_size.unwrap_or(default_pool_size).into()),
        ]);
    }
    rs
}

/// SHOW PEER_POOLS: a row per configured peer. pgsluice passes a cancel
/// request on to its peer as it arrives, on a connection of its own, so each
/// one `passing_on` counts is a client's request and a connection to the peer
/// at once; none waits, and none is logging in.
pub fn peer_pool_rows(
    peers: &BTreeMap<u32, PeerDef>,
    passing_on: impl Fn(u32) -> usize,
) -> ResultSet {
    let mut rs = ResultSet::new(columns::PEER_POOLS);
    for p in peers.values() {
        let in_flight = Value::Count(passing_on(p.peer_id) as u64);
        rs.push(vec![
            Value::Count(p.peer_id.into()),
            in_flight.clone(),
            Value::Count(0),
            in_flight,
            Value::Count(0),
        ]);
    }
    rs
}

pub fn state_rows(s: StateRow) -> ResultSet {
    let yes_no = |b: bool| Value::text(if b { "yes" } else { "no" });
    let mut rs = ResultSet::new(columns::STATE);
    rs.push(vec![Value::text("active"), yes_no(s.active)]);
    rs.push(vec![Value::text("paused"), yes_no(s.paused)]);
    rs.push(vec![Value::text("suspended"), yes_no(s.suspended)]);
    rs
}

pub fn version_rows(version: &str) -> ResultSet {
    let mut rs = ResultSet::new(columns::VERSION);
    rs.push(vec![Value::text(version)]);
    rs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::wire::{ColType, Column};

    /// Every value must suit its column: numbers only in numeric columns and
    /// text only in text ones, so a driver parsing by OID never fails.
    fn assert_typed(rs: &ResultSet) {
        for row in &rs.rows {
            assert_eq!(row.len(), rs.columns.len());
            for (value, Column { name, ty }) in row.iter().zip(&rs.columns) {
                match (value, ty) {
                    (Value::Null, _) => {}
                    (Value::Text(_), ColType::Text) => {}
                    (
                        Value::Int(_) | Value::Count(_),
                        ColType::Int4 | ColType::Int8 | ColType::Numeric,
                    ) => {}
                    other => panic!("column {name}: {other:?}"),
                }
            }
        }
    }

    fn conn(kind: char, state: &str, link: &str) -> ConnRow {
        ConnRow {
            kind,
            user: "u".into(),
            database: "d".into(),
            replication: "none".into(),
            state: state.into(),
            link: link.into(),
            id: 7,
            ..Default::default()
        }
    }

    fn column_of<'a>(rs: &'a ResultSet, row: usize, name: &str) -> &'a Value {
        let i = rs.columns.iter().position(|c| c.name == name).unwrap();
        &rs.rows[row][i]
    }

    #[test]
    fn every_shape_is_typed() {
        let stats = vec![StatsRow {
            database: "d".into(),
            ..Default::default()
        }];
        let mut peers = BTreeMap::new();
        peers.insert(
            3,
            PeerDef {
                peer_id: 3,
                host: "h".into(),
                port: 6432,
                pool_size: None,
            },
        );
        for rs in [
            pools_rows(&[PoolRow::default()]),
            conn_rows(&[conn('C', "active", "")]),
            socket_rows(&[conn('C', "idle", "")], &[conn('S', "new", "")], false),
            stats_rows(&stats),
            stats_totals_rows(&stats),
            stats_averages_rows(&stats),
            totals_rows(&stats),
            database_rows(&[DatabaseRow::default()]),
            user_rows(&[UserRow::default()]),
            list_rows(&Lists::default()),
            peer_rows(&peers, 20),
            peer_pool_rows(&peers, |_| 1),
            state_rows(StateRow::default()),
            version_rows("pgsluice 0.1.0"),
            param_rows(crate::admin::params::find("timezone").unwrap()),
        ] {
            assert_typed(&rs);
            assert!(!rs.rows.is_empty());
        }
    }

    #[test]
    fn database_flags_are_int4_zero_or_one() {
        let rs = database_rows(&[DatabaseRow {
            paused: true,
            ..Default::default()
        }]);
        assert_eq!(column_of(&rs, 0, "paused"), &Value::Int(1));
        assert_eq!(column_of(&rs, 0, "disabled"), &Value::Int(0));
        assert_eq!(column_of(&rs, 0, "host"), &Value::Null);
    }

    #[test]
    fn user_pool_sizes_are_padded_text() {
        let rs = user_rows(&[UserRow {
            name: "u".into(),
            pool_size: Some(10),
            ..Default::default()
        }]);
        assert_eq!(column_of(&rs, 0, "pool_size"), &Value::text("       10"));
        assert_eq!(column_of(&rs, 0, "reserve_pool_size"), &Value::text(""));
        assert_eq!(column_of(&rs, 0, "pool_mode"), &Value::Null);
    }

    #[test]
    fn sockets_use_list_names_and_active_keeps_linked() {
        let clients = [
            conn('C', "idle", ""),
            conn('C', "active", "0x2"),
            conn('C', "waiting", ""),
        ];
        let servers = [
            conn('S', "active", "0x1"),
            conn('S', "new", ""),
            conn('S', "idle", ""),
        ];
        let rs = socket_rows(&clients, &servers, false);
        let states: Vec<_> = (0..6).map(|i| column_of(&rs, i, "state").clone()).collect();
        assert_eq!(
            states,
            [
                "cl_active",
                "cl_active",
                "cl_waiting",
                "sv_active",
                "sv_login",
                "sv_idle"
            ]
            .map(Value::text)
        );
        assert_eq!(column_of(&rs, 0, "send_avail"), &Value::Int(0));
        let active = socket_rows(&clients, &servers, true);
        assert_eq!(active.rows.len(), 2);
    }

    #[test]
    fn totals_sum_counters_and_weight_times() {
        let row = |db: &str, xacts: u64, avg_xacts: u64, avg_xact_time: u64| StatsRow {
            database: db.into(),
            totals: StatsTotals {
                xact_count: xacts,
                bytes_received: 10,
                ..Default::default()
            },
            averages: StatsTotals {
                xact_count: avg_xacts,
                xact_time: avg_xact_time,
                ..Default::default()
            },
        };
        // 1 xact/s at 100 us and 3 xacts/s at 200 us: 175 us per transaction.
        let rs = totals_rows(&[row("a", 5, 1, 100), row("b", 7, 3, 200)]);
        let get = |name: &str| {
            rs.rows
                .iter()
                .find(|r| r[0] == Value::text(name))
                .unwrap_or_else(|| panic!("{name}"))[1]
                .clone()
        };
        assert_eq!(rs.rows.len(), 24);
        assert_eq!(get("total_xact_count"), Value::Count(12));
        assert_eq!(get("total_client_bytes"), Value::Count(20));
        assert_eq!(get("avg_xact_count"), Value::Count(4));
        assert_eq!(get("avg_xact_time"), Value::Count(175));
        assert_eq!(get("avg_query_time"), Value::Count(0));
        assert_eq!(get("total_client_login_count"), Value::Count(0));
    }

    #[test]
    fn lists_rows_in_pgbouncer_order() {
        let rs = list_rows(&Lists {
            pools: 4,
            ..Default::default()
        });
        let names: Vec<_> = rs.rows.iter().map(|r| r[0].clone()).collect();
        assert_eq!(names.len(), 14);
        assert_eq!(names[0], Value::text("databases"));
        assert_eq!(rs.rows[3], vec![Value::text("pools"), Value::Count(4)]);
        assert_eq!(names[13], Value::text("dns_pending"));
    }

    #[test]
    fn config_prints_nulls_and_yes_no() {
        let rs = config_rows(&[ShowConfigRow {
            key: "auth_user",
            value: None,
            default: None,
            changeable: true,
        }]);
        assert_eq!(
            rs.rows[0],
            vec![
                Value::text("auth_user"),
                Value::Null,
                Value::Null,
                Value::text("yes")
            ]
        );
    }

    #[test]
    fn peer_rows_show_pool_size_and_cancels_in_flight() {
        let mut peers = BTreeMap::new();
        peers.insert(
            1,
            PeerDef {
                peer_id: 1,
                host: "/tmp".into(),
                port: 6432,
                pool_size: None,
            },
        );
        let rs = peer_rows(&peers, 20);
        assert_eq!(rs.rows[0][3], Value::Count(20));
        let rs = peer_pool_rows(&peers, |id| id as usize + 1);
        assert_eq!(
            rs.rows[0][1..],
            [
                Value::Count(2),
                Value::Count(0),
                Value::Count(2),
                Value::Count(0)
            ]
        );
        assert!(peer_pool_rows(&BTreeMap::new(), |_| 0).rows.is_empty());
    }
}
