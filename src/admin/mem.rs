//! SHOW MEM: what the pooler's objects take in memory.
//!
//! PgBouncer reports its slab allocators: for each object cache the object
//! size, how many are in use and free, and the memory the cache holds. pgsluice
//! allocates from the global allocator and keeps no free lists, so the rows are
//! an account rather than a measurement: object size is `size_of` of the Rust
//! struct behind each cache (its heap parts — names, buffers — not included),
//! `used` is the live count from the control core, `free` is what the control
//! core counts as free (idle servers; 0 elsewhere), and `memtotal` is
//! `size × (used + free)`. The cache names are PgBouncer's, so tools that graph
//! them keep working.

use crate::control::snapshot::{Lists, PoolRow};

use super::columns;
use super::result::{ResultSet, Value};

/// The smallest relay buffer pgsluice allocates (see `client::relay::Half`).
const MIN_IOBUF: usize = 1024;

struct Cache {
    name: &'static str,
    size: usize,
    used: u64,
    free: u64,
}

pub fn mem_rows(lists: &Lists, pools: &[PoolRow], pkt_buf: usize) -> ResultSet {
    // A client with a server borrows one buffer per direction for the relay;
    // idle clients hold none, so only linked pairs count.
    let linked: u64 = pools.iter().map(|p| p.sv_active).sum();
    let caches = [
        Cache {
            name: "user_cache",
            size: std::mem::size_of::<crate::config::UserDef>(),
            used: lists.users,
            free: 0,
        },
        Cache {
            name: "db_cache",
            size: std::mem::size_of::<crate::config::DatabaseDef>(),
            used: lists.databases,
            free: 0,
        },
        Cache {
            name: "pool_cache",
            size: std::mem::size_of::<crate::pool::Pool>(),
            used: lists.pools,
            free: 0,
        },
        Cache {
            name: "server_cache",
            size: std::mem::size_of::<crate::server::ServerConn>(),
            used: lists.used_servers,
            free: lists.free_servers,
        },
        Cache {
            name: "client_cache",
            size: std::mem::size_of::<crate::client::session::Session>(),
            used: lists.used_clients,
            free: lists.free_clients,
        },
        Cache {
            name: "iobuf_cache",
            size: pkt_buf.max(MIN_IOBUF),
            used: linked.saturating_mul(2),
            free: 0,
        },
    ];
    let mut rs = ResultSet::new(columns::MEM);
    for c in caches {
        let size = c.size as u64;
        rs.push(vec![
            Value::text(c.name),
            Value::Count(size),
            Value::Count(c.used),
            Value::Count(c.free),
            Value::Count(size.saturating_mul(c.used.saturating_add(c.free))),
        ]);
    }
    rs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memtotal_is_size_times_objects() {
        let lists = Lists {
            used_servers: 3,
            free_servers: 2,
            used_clients: 10,
            ..Default::default()
        };
        let pools = [PoolRow {
            sv_active: 3,
            ..Default::default()
        }];
        let rs = mem_rows(&lists, &pools, 4096);
        let names: Vec<_> = rs.rows.iter().map(|r| r[0].clone()).collect();
        assert_eq!(
            names,
            [
                "user_cache",
                "db_cache",
                "pool_cache",
                "server_cache",
                "client_cache",
                "iobuf_cache"
            ]
            .map(Value::text)
        );
        for row in &rs.rows {
            let [_, Value::Count(size), Value::Count(used), Value::Count(free), Value::Count(total)] =
                row.as_slice()
            else {
                panic!("{row:?}")
            };
            assert!(*size > 0);
            assert_eq!(*total, size * (used + free));
        }
        assert_eq!(rs.rows[3][2], Value::Count(3));
        assert_eq!(rs.rows[3][3], Value::Count(2));
        assert_eq!(
            rs.rows[5],
            vec![
                Value::text("iobuf_cache"),
                Value::Count(4096),
                Value::Count(6),
                Value::Count(0),
                Value::Count(6 * 4096),
            ]
        );
    }
}
