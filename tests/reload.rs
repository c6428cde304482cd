//! SIGHUP reloads pgbouncer.ini: new settings and databases apply without
//! disturbing connected clients, and a broken file leaves the running config.
//! SET conffile names the file the next reload reads.

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::pooler::TRUST_PASSWORD;
use support::postgres::{TEST_DB, TRUST_USER};
use support::{wait_until, Pooler, PoolerConfig, Postgres};

const STEP: Duration = Duration::from_secs(30);

/// Whether the log after `mark` says a reload happened, in any of the ways a
/// pooler says it (PgBouncer: "got SIGHUP, re-reading config").
fn reload_logged(pooler: &Pooler, mark: usize) -> bool {
    let log = pooler.log_since(mark).to_lowercase();
    ["sighup", "reload", "re-reading"]
        .iter()
        .any(|needle| log.contains(needle))
}

/// The most server connections of `TRUST_USER` seen while 5 clients each
/// hold a server for a second.
async fn max_servers_under_load(pg: &Postgres, pooler: &Arc<Pooler>) -> i64 {
    let sampler = pg.sample_backends(TRUST_USER);
    let mut tasks = Vec::new();
    for i in 0..5 {
        let pooler = pooler.clone();
        tasks.push(tokio::spawn(async move {
            let c = pooler
                .connect(TRUST_USER, TEST_DB, Some(TRUST_PASSWORD))
                .await
                .unwrap_or_else(|e| panic!("holder {i}: {e:?}"));
            c.simple_query("SELECT pg_sleep(1)")
                .await
                .unwrap_or_else(|e| panic!("holder {i}: {e:?}"));
        }));
    }
    pooler
        .within(STEP, "5 clients sleeping 1 s", async {
            for t in tasks {
                t.await.expect("holder panicked");
            }
        })
        .await;
    let samples = sampler.stop();
    samples.max
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_new_config_and_survives_a_broken_one() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("default_pool_size", "2");
    let pooler = Arc::new(Pooler::start(&cfg));
    pg.sql_db(
        TEST_DB,
        "CREATE TABLE reload_t(v int); GRANT ALL ON reload_t TO PUBLIC",
    );

    // A client in the middle of a transaction while the config is reloaded.
    let client = pooler.connect_trust("login").await;
    client
        .batch_execute("BEGIN; INSERT INTO reload_t VALUES (1)")
        .await
        .expect("open a transaction");

    assert!(
        max_servers_under_load(&pg, &pooler).await <= 2,
        "default_pool_size = 2 before the reload"
    );

    // New pool size and a new database.
    cfg.set("default_pool_size", "4").database(
        "sluice2",
        &format!(
            "host=127.0.0.1 port={} dbname={TEST_DB} user=sluice_md5",
            pg.port
        ),
    );
    let mark = pooler.log_mark();
    pooler.rewrite(&cfg);
    pooler.reload();
    assert!(
        wait_until(Duration::from_secs(10), || reload_logged(&pooler, mark)),
        "no reload in the log after SIGHUP:\n{}",
        pooler.log_since(mark)
    );
    // sluice2 logs in as another user (forced user=), so the sampler, which
    // counts the servers of sluice_trust, sees only the sluice pool.
    let max = max_servers_under_load(&pg, &pooler).await;
    assert!(
        max > 2 && max <= 4,
        "after the reload default_pool_size = 4 must let 3..=4 servers serve 5 clients, saw {max}"
    );

    assert!(
        wait_until(Duration::from_secs(10), || pooler
            .psql(
                TRUST_USER,
                "sluice2",
                Some(TRUST_PASSWORD),
                "SELECT current_database()"
            )
            .as_deref()
            == Ok(TEST_DB)),
        "the new database sluice2 is not reachable after the reload"
    );

    // The connected client carries on and commits.
    client
        .batch_execute("INSERT INTO reload_t VALUES (2); COMMIT")
        .await
        .expect("the connected client survives the reload");
    assert_eq!(pg.sql_db(TEST_DB, "SELECT count(*) FROM reload_t"), "2");

    // A malformed value: an error naming file, line and key; the old config stays.
    let mut broken = cfg.clone();
    broken.set("max_client_conn", "abc");
    let line = broken.ini_line_of("max_client_conn");
    let mark = pooler.log_mark();
    pooler.rewrite(&broken);
    pooler.reload();
    assert!(
        wait_until(Duration::from_secs(10), || pooler
            .log_since(mark)
            .contains("max_client_conn")),
        "no error about max_client_conn after reloading a broken file:\n{}",
        pooler.log_since(mark)
    );
    let log = pooler.log_since(mark);
    assert!(
        log.contains("pgbouncer.ini"),
        "error must name the file:\n{log}"
    );
    assert!(
        log.contains(&format!(":{line}")) || log.contains(&format!("line {line}")),
        "error must name line {line}:\n{log}"
    );

    for db in [TEST_DB, "sluice2"] {
        assert_eq!(
            pooler
                .psql(TRUST_USER, db, Some(TRUST_PASSWORD), "SELECT 1")
                .as_deref(),
            Ok("1"),
            "{db} must still be served with the old config"
        );
    }
    client
        .simple_query("SELECT 1")
        .await
        .expect("the connected client survives a failed reload");
    let max = max_servers_under_load(&pg, &pooler).await;
    assert!(
        max > 2 && max <= 4,
        "the failed reload must keep default_pool_size = 4, saw {max}"
    );
}

/// SET conffile names another file, which the next reload reads (RELOAD, and
/// SIGHUP as `systemctl reload` sends it), as in PgBouncer; a conffile that
/// cannot be read fails the reload and leaves the running config.
#[test]
fn set_conffile_points_the_next_reload_at_another_file() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    // No `*` entry, which would keep a database dropped by a reload as an
    // automatic one while its pool lives.
    cfg.set("admin_users", TRUST_USER).remove_database("*");
    let pooler = Pooler::start(&cfg);
    let console = |sql: &str| pooler.psql(TRUST_USER, "pgbouncer", Some(TRUST_PASSWORD), sql);
    let databases = || console("SHOW DATABASES").expect("SHOW DATABASES");
    let conffile = || {
        console("SHOW CONFIG")
            .expect("SHOW CONFIG")
            .lines()
            .find_map(|row| row.strip_prefix("conffile|").map(str::to_owned))
            .expect("a conffile row")
    };
    assert!(conffile().starts_with(&format!("{}|", pooler.ini_path.display())));

    // The same config with one more database, in another file.
    let mut other = cfg.clone();
    other.database(
        "elsewhere",
        &format!("host=127.0.0.1 port={} dbname={TEST_DB}", pg.port),
    );
    let other_ini = cfg.dir().join("other.ini");
    other.write_files(&other_ini);
    console(&format!("SET conffile = '{}'", other_ini.display())).unwrap();
    assert!(conffile().starts_with(&format!("{}|", other_ini.display())));
    assert!(!databases().contains("elsewhere|"), "not before the reload");
    console("RELOAD").unwrap();
    assert!(databases().contains("elsewhere|"), "{}", databases());
    assert_eq!(
        pooler
            .psql(TRUST_USER, "elsewhere", Some(TRUST_PASSWORD), "SELECT 1")
            .unwrap(),
        "1"
    );

    console("SET conffile = '/nonexistent/pgbouncer.ini'").unwrap();
    let err = console("RELOAD").expect_err("a reload of a missing file");
    assert!(err.contains("/nonexistent/pgbouncer.ini"), "{err}");
    assert!(
        databases().contains("elsewhere|"),
        "the running config stays"
    );

    // Back to the first file, by SIGHUP.
    console(&format!("SET conffile = '{}'", pooler.ini_path.display())).unwrap();
    pooler.reload();
    assert!(
        wait_until(STEP, || !databases().contains("elsewhere|")),
        "{}",
        databases()
    );
}
