//! Servers' host names looked up through the name servers of `resolv_conf`, and
//! `dns_zone_check_period`: a newer SOA serial has the zone's names looked up
//! again and the servers of a name that moved replaced. Most run side by side
//! with Debian's PgBouncer (its c-ares build does both), each pooler with a DNS
//! server of its own (tests/support/dns.rs) serving the same zone.

mod support;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use hickory_proto::rr::RecordType;
use support::dns::DnsServer;
use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::{wait_until, Pooler, PoolerConfig, Postgres};

const PGBOUNCER: &str = "/usr/sbin/pgbouncer";
const ZONE: &str = "pgsluice.test";
const HOST: &str = "db.pgsluice.test";
const FIRST: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const SECOND: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const STEP: Duration = Duration::from_secs(20);

/// One pooler and the DNS server only it asks.
struct Side {
    name: &'static str,
    dns: DnsServer,
    pooler: Pooler,
}

impl Side {
    /// Start `binary` (pgsluice when `None`) in front of `pg`, its config
    /// changed by `configure` after the test's settings.
    fn start(
        name: &'static str,
        binary: Option<&str>,
        pg: &Postgres,
        configure: impl FnOnce(&mut PoolerConfig),
    ) -> Side {
        let dns = DnsServer::start(ZONE, 7).expect("root was checked");
        dns.set_host(HOST, FIRST);
        let mut cfg = PoolerConfig::new(pg);
        let resolv_conf = dns.write_resolv_conf(cfg.dir());
        cfg.database(
            "dnsdb",
            &format!("host={HOST} port={} dbname={TEST_DB}", pg.port),
        )
        .set("resolv_conf", resolv_conf.to_str().unwrap())
        .set("dns_zone_check_period", "1")
        // Only a zone check can make the name be looked up again.
        .set("dns_max_ttl", "3600")
        .set("admin_users", TRUST_USER);
        configure(&mut cfg);
        let pooler = match binary {
            Some(binary) => Pooler::start_with(&cfg, std::path::Path::new(binary)),
            None => Pooler::start(&cfg),
        };
        Side { name, dns, pooler }
    }

    /// A tokio-postgres client of `dnsdb`.
    async fn connect(&self) -> tokio_postgres::Client {
        self.pooler
            .connect(TRUST_USER, "dnsdb", Some(TRUST_PASSWORD))
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", self.name))
    }

    /// The address PostgreSQL saw the pooler's server connection arrive at.
    fn server_addr(&self) -> String {
        self.pooler
            .psql(
                TRUST_USER,
                "dnsdb",
                Some(TRUST_PASSWORD),
                "select host(inet_server_addr())",
            )
            .unwrap_or_else(|e| panic!("{}: query through dnsdb: {e}", self.name))
    }

    /// A SHOW command's rows, by column name (PgBouncer 1.18 has fewer columns
    /// in some of them).
    fn show(&self, what: &str) -> Vec<HashMap<String, String>> {
        let mut psql = self
            .pooler
            .psql_command(TRUST_USER, "pgbouncer", Some(TRUST_PASSWORD));
        psql.args(["-P", "tuples_only=off", "-P", "footer=off", "-c", what]);
        let out = support::run_bounded(&mut psql, STEP, what);
        assert!(
            out.status.success(),
            "{}: {what}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines();
        let names: Vec<&str> = lines.next().unwrap_or_default().split('|').collect();
        lines
            .map(|line| {
                names
                    .iter()
                    .zip(line.split('|'))
                    .map(|(name, value)| (name.to_string(), value.to_owned()))
                    .collect()
            })
            .collect()
    }

    /// Rows of `what`, each the values of `columns`.
    fn show_columns(&self, what: &str, columns: &[&str]) -> Vec<Vec<String>> {
        self.show(what)
            .iter()
            .map(|row| columns.iter().map(|c| row[*c].clone()).collect())
            .collect()
    }

    fn zones(&self) -> Vec<Vec<String>> {
        self.show_columns("SHOW DNS_ZONES", &["zonename", "serial", "count"])
    }

    fn hosts(&self) -> Vec<Vec<String>> {
        self.show_columns("SHOW DNS_HOSTS", &["hostname", "addrs"])
    }

    /// (state, addr, close_needed) of each server of `dnsdb`.
    fn servers(&self) -> Vec<(String, String, String)> {
        self.show("SHOW SERVERS")
            .into_iter()
            .filter(|row| row["database"] == "dnsdb")
            .map(|row| {
                (
                    row["state"].clone(),
                    row["addr"].clone(),
                    row["close_needed"].clone(),
                )
            })
            .collect()
    }

    /// Wait (bounded) until SHOW DNS_ZONES shows the test's zone with `serial`.
    fn wait_for_zone_serial(&self, serial: &str) {
        assert!(
            wait_until(STEP, || self.zones() == zone_row(serial)),
            "{}: {:?}",
            self.name,
            self.zones()
        );
    }

    fn soa_queries(&self) -> usize {
        self.dns.asked(ZONE, RecordType::SOA)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_zone_serial_moves_servers_to_the_new_address_as_pgbouncer_does() {
    let Some((pg, sides)) = start_both(&[]) else {
        return;
    };

    for side in &sides {
        // The name is known only to this side's DNS server, so the answer came
        // from the name server resolv_conf names.
        assert_eq!(side.server_addr(), "127.0.0.1", "{}", side.name);
        assert!(side.dns.asked(HOST, RecordType::A) >= 1, "{}", side.name);
        assert_eq!(side.hosts(), host_row("127.0.0.1:0"), "{}", side.name);
        // Listed from the lookup on; the first check finds serial 7.
        side.wait_for_zone_serial("7");
        let lists = side.show_columns("SHOW LISTS", &["list", "items"]);
        assert!(
            lists.contains(&vec!["dns_zones".to_owned(), "1".to_owned()]),
            "{}: {lists:?}",
            side.name
        );
    }

    // The name moves, but the serial stays: two checks later nothing changed.
    let checked: Vec<usize> = sides
        .iter()
        .map(|side| {
            side.dns.set_host(HOST, SECOND);
            side.soa_queries()
        })
        .collect();
    for (side, before) in sides.iter().zip(checked) {
        assert!(
            wait_until(STEP, || side.soa_queries() >= before + 2),
            "{}: the zone is not checked every second",
            side.name
        );
        assert_eq!(side.server_addr(), "127.0.0.1", "{}", side.name);
        assert_eq!(side.zones(), zone_row("7"), "{}", side.name);
    }

    // A new serial while each pooler's server is in a transaction: the name is
    // looked up again, the server marked, and closed when the transaction ends.
    let mut open = Vec::new();
    for side in &sides {
        let client = side.connect().await;
        client.batch_execute("begin; select 1").await.unwrap();
        assert_eq!(
            side.servers(),
            [("active".into(), "127.0.0.1".into(), "0".into())],
            "{}",
            side.name
        );
        side.dns.set_serial(8);
        open.push(client);
    }
    for side in &sides {
        side.wait_for_zone_serial("8");
        assert!(
            side.pooler
                .wait_for_log("zone 'pgsluice.test' serial changed: old=7 new=8", STEP),
            "{}: {}",
            side.name,
            side.pooler.log()
        );
        assert!(
            wait_until(STEP, || side.servers()
                == [("active".into(), "127.0.0.1".into(), "1".into())]),
            "{}: {:?}",
            side.name,
            side.servers()
        );
        assert_eq!(side.hosts(), host_row("127.0.0.2:0"), "{}", side.name);
    }
    for (side, client) in sides.iter().zip(open) {
        client.batch_execute("commit").await.unwrap();
        drop(client);
        assert!(
            wait_until(STEP, || side.servers().is_empty()),
            "{}: the marked server went back to the pool: {:?}",
            side.name,
            side.servers()
        );
        assert_eq!(side.server_addr(), "127.0.0.2", "{}", side.name);
    }
    let sluice = &sides[0].pooler;
    assert!(
        sluice.log().contains(&format!(
            "server host names are looked up through the name servers of {}/resolv.conf",
            sluice.dir.display()
        )),
        "{}",
        sluice.log()
    );
    assert!(
        sluice.log().contains(
            "host 'db.pgsluice.test' no longer has 127.0.0.1 (now 127.0.0.2): \
             replacing its 1 server(s) there"
        ),
        "{}",
        sluice.log()
    );
    // The servers at the old address are gone from PostgreSQL, not left idle:
    // each pooler keeps the one server its queries one after another need.
    assert!(
        wait_until(STEP, || pg.backends(TRUST_USER) == 2),
        "{} backends of {TRUST_USER}",
        pg.backends(TRUST_USER)
    );
}

/// In session pooling with server_fast_close, a session whose server is at an
/// address its host name lost loses it at once, and the client with it, as
/// after RECONNECT; the next session gets a server at the new address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_server_fast_close_a_session_at_a_lost_address_ends_at_once() {
    let session = [("pool_mode", "session"), ("server_fast_close", "1")];
    let Some((_pg, sides)) = start_both(&session) else {
        return;
    };
    for side in &sides {
        let client = side.connect().await;
        client.simple_query("select 1").await.unwrap();
        side.wait_for_zone_serial("7");
        side.dns.set_host(HOST, SECOND);
        side.dns.set_serial(8);
        assert!(
            wait_until(STEP, || client.is_closed()),
            "{}: the session kept its server at the lost address: {:?}",
            side.name,
            side.servers()
        );
        assert!(
            wait_until(STEP, || side.servers().is_empty()),
            "{}: {:?}",
            side.name,
            side.servers()
        );
        assert_eq!(side.server_addr(), "127.0.0.2", "{}", side.name);
    }
}

/// A zone whose serial cannot be had (the test's DNS server refuses names
/// outside its zone) is warned about once, not at every check, and the other
/// zone is still checked.
#[test]
fn a_zone_without_a_serial_is_warned_about_once() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the test DNS servers need port 53, so root");
        return;
    }
    let pg = Postgres::start();
    let side = Side::start("pgsluice", None, &pg, |cfg| {
        cfg.database(
            "refused",
            &format!("host=db.refused.test port={} dbname={TEST_DB}", pg.port),
        );
    });
    assert_eq!(side.server_addr(), "127.0.0.1");
    // Its name cannot be looked up, but it is kept (as a failure), in its zone.
    let refused = side
        .pooler
        .psql(TRUST_USER, "refused", Some(TRUST_PASSWORD), "SELECT 1");
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        wait_until(STEP, || side.zones().len() == 2),
        "{:?}",
        side.zones()
    );
    let checked = side.soa_queries();
    assert!(
        wait_until(STEP, || side.soa_queries() >= checked + 3),
        "the zones are not checked every second"
    );
    let log = side.pooler.log();
    assert_eq!(
        log.matches("zone 'refused.test' not checked").count(),
        1,
        "{log}"
    );
    assert_eq!(
        side.zones()[0],
        zone_row("7")[0],
        "the other zone is checked"
    );
}

/// A PostgreSQL listening on both test addresses, and pgsluice and PgBouncer
/// in front of it with `settings`; None (the test skipped) when not root.
fn start_both(settings: &[(&str, &str)]) -> Option<(Postgres, [Side; 2])> {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: the test DNS servers need port 53, so root");
        return None;
    }
    let pg = Postgres::start_with(&["-c", "listen_addresses=127.0.0.1,127.0.0.2"]);
    let configure = |cfg: &mut PoolerConfig| {
        for (key, value) in settings {
            cfg.set(key, value);
        }
    };
    let sides = [
        Side::start("pgsluice", None, &pg, configure),
        Side::start("PgBouncer", Some(PGBOUNCER), &pg, configure),
    ];
    Some((pg, sides))
}

/// SHOW DNS_HOSTS' row for the test's name with `addrs`.
fn host_row(addrs: &str) -> Vec<Vec<String>> {
    vec![vec![HOST.to_owned(), addrs.to_owned()]]
}

/// SHOW DNS_ZONES' row for the test's zone with `serial`, one name in it.
fn zone_row(serial: &str) -> Vec<Vec<String>> {
    vec![vec![ZONE.to_owned(), serial.to_owned(), "1".to_owned()]]
}

#[test]
fn a_resolv_conf_that_cannot_be_read_stops_the_start() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("resolv_conf", "/nonexistent/resolv.conf");
    let Err(err) = catch_unwind(AssertUnwindSafe(|| Pooler::start(&cfg))) else {
        panic!("pgsluice started with a resolv_conf that does not exist");
    };
    let text = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        text.contains("pgsluice exited during start-up")
            && text.contains("resolv_conf /nonexistent/resolv.conf: No such file or directory"),
        "{text}"
    );
}
