//! pgbench through pgsluice: many clients, few servers, no failed transaction.

mod support;

use std::process::Output;
use std::time::Duration;

use support::pooler::TRUST_PASSWORD;
use support::postgres::TRUST_USER;
use support::{wait_until, Pooler, PoolerConfig, Postgres};

/// What pgbench 15 reports at the end of a run.
#[derive(Debug)]
struct Report {
    processed: u64,
    failed: u64,
}

/// Check the exit status and read the report; panic with pgbench's output otherwise.
fn report(out: &Output, what: &str, pooler: &Pooler) -> Report {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let context = || {
        format!(
            "{what}: {}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- pgsluice log (tail) ---\n{}",
            out.status,
            support::tail(&pooler.log(), 60)
        )
    };
    assert!(out.status.success(), "{}", context());
    // "number of transactions actually processed: 3093" or "...: 500/500"
    let processed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no processed count; {}", context()));
    // "number of failed transactions: 0 (0.000%)"
    let failed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("number of failed transactions: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no failed count; {}", context()));
    Report { processed, failed }
}

fn init(pooler: &Pooler) {
    let out = pooler.pgbench(TRUST_USER, Some(TRUST_PASSWORD), &["-i", "-s", "1", "-q"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.contains("done in"),
        "pgbench -i through the pooler failed ({}):\n{stderr}\n--- pgsluice log (tail) ---\n{}",
        out.status,
        support::tail(&pooler.log(), 60)
    );
}

/// pgbench with 50 clients for `seconds` per (script, protocol): every run
/// processes transactions and none fails.
fn fifty_clients(pooler: &Pooler, label: &str, runs: &[(&str, &str)], seconds: &str) {
    for &(script, mode) in runs {
        let mut args = vec!["-M", mode, "-c", "50", "-j", "2", "-T", seconds];
        if script == "-S" {
            args.push("-S");
        }
        let what = format!("{label}pgbench {script} -M {mode} -c 50");
        let r = report(
            &pooler.pgbench(TRUST_USER, Some(TRUST_PASSWORD), &args),
            &what,
            pooler,
        );
        assert_eq!(r.failed, 0, "{what}: {r:?}");
        assert!(r.processed > 0, "{what}: {r:?}");
    }
}

#[test]
fn transaction_mode_50_clients_on_5_servers() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("pool_mode", "transaction")
        .set("default_pool_size", "5");
    let pooler = Pooler::start(&cfg);
    init(&pooler);
    assert_eq!(
        pg.sql_db("sluice", "SELECT count(*) FROM pgbench_accounts"),
        "100000",
        "pgbench -i wrote scale 1 through the pooler"
    );

    let sampler = pg.sample_backends(TRUST_USER);
    fifty_clients(
        &pooler,
        "",
        &[
            ("-S", "simple"),
            ("-S", "extended"),
            ("tpcb", "simple"),
            ("tpcb", "extended"),
        ],
        "5",
    );
    let samples = sampler.stop();
    assert!(
        samples.max > 0,
        "never saw a server connection of {TRUST_USER}: {samples:?}"
    );
    assert!(
        samples.max <= 5,
        "50 clients used more than default_pool_size = 5 servers: {samples:?}"
    );
}

/// `--threads 2`: the same traffic served by a two-thread runtime (the default
/// is one thread), with the same guarantees: no failed transaction, never more
/// servers than the pool allows.
#[test]
fn two_threads_serve_pgbench_like_one() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("pool_mode", "transaction")
        .set("default_pool_size", "5");
    cfg.args = vec!["--threads".into(), "2".into()];
    let pooler = Pooler::start(&cfg);
    let count_workers = || {
        std::fs::read_dir(format!("/proc/{}/task", pooler.pid))
            .expect("the pooler's threads")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.trim_end() == "pgsluice-worker")
            .count()
    };
    // A thread takes its name once it runs, which may be just after the port opened.
    assert!(
        wait_until(Duration::from_secs(5), || count_workers() >= 2),
        "--threads 2 started {} runtime threads",
        count_workers()
    );
    init(&pooler);

    let sampler = pg.sample_backends(TRUST_USER);
    fifty_clients(
        &pooler,
        "--threads 2: ",
        &[("-S", "extended"), ("tpcb", "simple")],
        "4",
    );
    let samples = sampler.stop();
    assert!(
        (1..=5).contains(&samples.max),
        "50 clients on default_pool_size = 5: {samples:?}"
    );
}

/// In session mode a client keeps its server until it disconnects, so 10
/// clients on 5 servers means 5 of them wait. With `-t` each client
/// disconnects after its transactions, handing its server to a waiting client:
/// all 10 × 50 transactions must complete, on never more than 5 servers.
/// (With `-T` instead, the waiting clients would simply wait out the run.)
///
/// One thread per client (`-j` = `-c`): with `-M prepared`, pgbench 15 prepares
/// a client's statements with a blocking PQprepare, so a client waiting for a
/// server stalls every other client of its thread, including those holding the
/// servers it waits for, until query_wait_timeout (PgBouncer too). `-M simple`
/// and `-M extended` send asynchronously and do not stall.
///
/// The second wave of clients prepares pgbench's statements under the same
/// names on reused servers, so this also proves server_reset_query (DISCARD ALL)
/// runs between sessions: without it they fail with "already exists".
#[test]
fn session_mode_prepared_clients_queue_for_servers() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("pool_mode", "session")
        .set("default_pool_size", "5");
    let pooler = Pooler::start(&cfg);
    init(&pooler);

    let sampler = pg.sample_backends(TRUST_USER);
    let args = ["-M", "prepared", "-c", "10", "-j", "10", "-t", "50"];
    let r = report(
        &pooler.pgbench(TRUST_USER, Some(TRUST_PASSWORD), &args),
        "pgbench -M prepared -c 10 -j 10 -t 50 (session mode)",
        &pooler,
    );
    let samples = sampler.stop();
    assert_eq!(r.failed, 0, "{r:?}");
    assert_eq!(
        r.processed, 500,
        "every client ran all its transactions: {r:?}"
    );
    assert!(samples.max > 0, "{samples:?}");
    assert!(
        samples.max <= 5,
        "session mode used more than default_pool_size = 5 servers: {samples:?}"
    );
}
