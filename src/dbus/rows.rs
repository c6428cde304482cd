//! The rows of the read methods (`GetPools`, `GetStats`, …): each snapshot row of
//! the control core as an `a{sv}` dictionary keyed by the SHOW command's column
//! names, in the SHOW command's column order, so that `busctl --json=pretty`
//! prints readable, typed rows. Counters are `t` (u64), the signed columns of
//! CLIENTS/SERVERS/DATABASES are `x` (i64), flags are `b`, text is `s`; a column
//! that SHOW prints as NULL is left out of the dictionary.

use serde::ser::{Serialize, SerializeMap, Serializer};
use zbus::zvariant::{Signature, Type, Value};

use crate::control::snapshot::{ConnRow, DatabaseRow, PoolRow, StatsRow};

/// One row: column name → typed value, in column order.
#[derive(Debug, Default, PartialEq)]
pub struct Row(Vec<(&'static str, Value<'static>)>);

impl Row {
    fn with(mut self, name: &'static str, value: impl Into<Value<'static>>) -> Row {
        self.0.push((name, value.into()));
        self
    }

    /// Text that SHOW prints as NULL when absent.
    fn with_opt(self, name: &'static str, value: Option<&str>) -> Row {
        match value {
            Some(v) => self.with(name, v.to_owned()),
            None => self,
        }
    }

    /// The column names, in order.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|(k, _)| *k)
    }

    pub fn get(&self, name: &str) -> Option<&Value<'static>> {
        self.0.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }
}

impl Type for Row {
    const SIGNATURE: &'static Signature =
        <std::collections::HashMap<&'static str, Value<'static>> as Type>::SIGNATURE;
}

impl Serialize for Row {
    /// A D-Bus dictionary is a sequence of entries: written in column order.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// GetPools: the SHOW POOLS columns.
pub fn pool(p: &PoolRow) -> Row {
    Row::default()
        .with("database", p.database.clone())
        .with("user", p.user.clone())
        .with("cl_active", p.cl_active)
        .with("cl_waiting", p.cl_waiting)
        .with("cl_active_cancel_req", p.cl_active_cancel_req)
        .with("cl_waiting_cancel_req", p.cl_waiting_cancel_req)
        .with("sv_active", p.sv_active)
        .with("sv_active_cancel", p.sv_active_cancel)
        .with("sv_being_canceled", p.sv_being_canceled)
        .with("sv_idle", p.sv_idle)
        .with("sv_used", p.sv_used)
        .with("sv_tested", p.sv_tested)
        .with("sv_login", p.sv_login)
        .with("maxwait", p.maxwait)
        .with("maxwait_us", p.maxwait_us)
        .with("pool_mode", p.pool_mode.clone())
        .with_opt("load_balance_hosts", p.load_balance_hosts.as_deref())
}

/// GetClients / GetServers: the SHOW CLIENTS (= SHOW SERVERS) columns.
pub fn conn(c: &ConnRow) -> Row {
    Row::default()
        .with("type", c.kind.to_string())
        .with("user", c.user.clone())
        .with("database", c.database.clone())
        .with("replication", c.replication.clone())
        .with("state", c.state.clone())
        .with("addr", c.addr.clone())
        .with("port", c.port)
        .with("local_addr", c.local_addr.clone())
        .with("local_port", c.local_port)
        .with("connect_time", c.connect_time.clone())
        .with("request_time", c.request_time.clone())
        .with("wait", c.wait)
        .with("wait_us", c.wait_us)
        .with("close_needed", c.close_needed)
        .with("ptr", c.ptr.clone())
        .with("link", c.link.clone())
        .with("remote_pid", c.remote_pid)
        .with("tls", c.tls.clone())
        .with("application_name", c.application_name.clone())
        .with("prepared_statements", c.prepared_statements)
        .with("id", c.id)
}

/// The SHOW STATS names of the twelve counters, totals then averages (PgBouncer
/// names a few averages differently from their totals: `avg_recv`, `avg_sent`).
const TOTAL_NAMES: [&str; 12] = [
    "total_server_assignment_count",
    "total_xact_count",
    "total_query_count",
    "total_received",
    "total_sent",
    "total_xact_time",
    "total_query_time",
    "total_wait_time",
    "total_client_parse_count",
    "total_server_parse_count",
    "total_bind_count",
    "total_client_login_count",
];
const AVERAGE_NAMES: [&str; 12] = [
    "avg_server_assignment_count",
    "avg_xact_count",
    "avg_query_count",
    "avg_recv",
    "avg_sent",
    "avg_xact_time",
    "avg_query_time",
    "avg_wait_time",
    "avg_client_parse_count",
    "avg_server_parse_count",
    "avg_bind_count",
    "avg_client_login_count",
];

/// GetStats: the SHOW STATS columns.
pub fn stats(s: &StatsRow) -> Row {
    let mut row = Row::default().with("database", s.database.clone());
    for (name, n) in TOTAL_NAMES.into_iter().zip(s.totals.in_show_order()) {
        row = row.with(name, n);
    }
    for (name, n) in AVERAGE_NAMES.into_iter().zip(s.averages.in_show_order()) {
        row = row.with(name, n);
    }
    row
}

/// GetDatabases: the SHOW DATABASES columns (`paused` and `disabled` as booleans).
pub fn database(d: &DatabaseRow) -> Row {
    Row::default()
        .with("name", d.name.clone())
        .with_opt("host", d.host.as_deref())
        .with("port", d.port)
        .with("database", d.database.clone())
        .with_opt("force_user", d.force_user.as_deref())
        .with("pool_size", d.pool_size)
        .with("min_pool_size", d.min_pool_size)
        .with("reserve_pool_size", d.reserve_pool_size)
        .with("server_lifetime", d.server_lifetime)
        .with_opt("pool_mode", d.pool_mode.as_deref())
        .with_opt("load_balance_hosts", d.load_balance_hosts.as_deref())
        .with("max_connections", d.max_connections)
        .with("current_connections", d.current_connections)
        .with("max_client_connections", d.max_client_connections)
        .with("current_client_connections", d.current_client_connections)
        .with("paused", d.paused)
        .with("disabled", d.disabled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::columns;
    use crate::admin::wire::Column;
    use crate::control::snapshot::StatsTotals;
    use zbus::zvariant::{serialized::Context, to_bytes, OwnedValue, LE};

    fn names(columns: &[Column]) -> Vec<&'static str> {
        columns.iter().map(|c| c.name).collect()
    }

    /// Every column the console has, under the console's name, in its order,
    /// when nothing is NULL.
    #[test]
    fn names_are_the_show_columns() {
        let pool_row = PoolRow {
            load_balance_hosts: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            pool(&pool_row).names().collect::<Vec<_>>(),
            names(columns::POOLS)
        );
        assert_eq!(
            conn(&ConnRow::default()).names().collect::<Vec<_>>(),
            names(columns::CLIENTS)
        );
        assert_eq!(
            stats(&StatsRow::default()).names().collect::<Vec<_>>(),
            names(columns::STATS)
        );
        let db = DatabaseRow {
            host: Some("h".into()),
            force_user: Some("u".into()),
            pool_mode: Some("session".into()),
            load_balance_hosts: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(
            database(&db).names().collect::<Vec<_>>(),
            names(columns::DATABASES)
        );
    }

    #[test]
    fn nulls_are_left_out_and_values_are_typed() {
        let row = pool(&PoolRow {
            database: "sluice".into(),
            sv_active: 2,
            ..Default::default()
        });
        assert_eq!(row.get("load_balance_hosts"), None);
        assert_eq!(row.get("sv_active"), Some(&Value::U64(2)));
        assert_eq!(
            row.get("database"),
            Some(&Value::from("sluice".to_string()))
        );
        let db = database(&DatabaseRow {
            port: 5432,
            paused: true,
            ..Default::default()
        });
        assert_eq!(db.get("host"), None);
        assert_eq!(db.get("port"), Some(&Value::I64(5432)));
        assert_eq!(db.get("paused"), Some(&Value::Bool(true)));
        let c = conn(&ConnRow {
            kind: 'C',
            id: 7,
            ..Default::default()
        });
        assert_eq!(c.get("type"), Some(&Value::from("C".to_string())));
        assert_eq!(c.get("id"), Some(&Value::I64(7)));
    }

    /// On the wire a row is an ordinary `a{sv}`: it reads back as a map.
    #[test]
    fn rows_are_string_variant_dictionaries() {
        assert_eq!(Row::SIGNATURE.to_string(), "a{sv}");
        assert_eq!(<Vec<Row>>::SIGNATURE.to_string(), "aa{sv}");
        let row = stats(&StatsRow {
            database: "sluice".into(),
            totals: StatsTotals {
                xact_count: 12,
                ..Default::default()
            },
            ..Default::default()
        });
        let bytes = to_bytes(Context::new_dbus(LE, 0), &vec![row]).unwrap();
        let (back, _): (Vec<std::collections::HashMap<String, OwnedValue>>, _) =
            bytes.deserialize().unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].len(), 25);
        assert_eq!(u64::try_from(&back[0]["total_xact_count"]).unwrap(), 12);
        assert_eq!(
            String::try_from(back[0]["database"].try_clone().unwrap()).unwrap(),
            "sluice"
        );
    }
}
