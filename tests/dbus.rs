//! The D-Bus interface (`org.pgsluice.Pooler1`) end to end, on a private
//! `dbus-daemon` per test that is configured like the system bus (default deny,
//! EXTERNAL auth, a Unix socket in a temporary directory) and includes the
//! shipped policy file `systemd/org.pgsluice.Pooler1.conf`.
//!
//! pgsluice finds the bus through `DBUS_SYSTEM_BUS_ADDRESS` (or
//! `DBUS_SESSION_BUS_ADDRESS`). The harness's `Pooler` passes no environment, so
//! [`Sluice`] starts pgsluice with `support::process` and the bus address. As
//! root (CI) pgsluice is started as root with `user = postgres` and drops
//! privileges itself, so these tests also show that it connects to the bus after
//! the drop: the shipped policy lets only `postgres` own the name.
//!
//! Methods are called with `busctl --address=…` where a person or systemd would
//! (Reload, the access checks) and with a zbus client where typed results or
//! signals are compared. Every wait is bounded.

mod support;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use futures_util::StreamExt;
use nix::sys::signal::Signal;
use nix::unistd::User;
use tokio_postgres::{Client, NoTls};
use zbus::zvariant::OwnedValue;

use support::pooler::tcp_connstr;
use support::postgres::{TEST_DB, TRUST_USER};
use support::process::{pgsluice_command, Proc};
use support::{pg_os_user, run_bounded, stop_child, tail, temp_dir, PoolerConfig, Postgres};

const NAME: &str = "org.pgsluice.Pooler1";
const PATH: &str = "/org/pgsluice/Pooler1";
const IFACE: &str = "org.pgsluice.Pooler1";
const ADMIN: &str = "sluice_admin";
const CONSOLE_DB: &str = "pgbouncer";
/// Bound on every wait in these tests.
const STEP: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// A private message bus.
// ---------------------------------------------------------------------------

/// How the private bus is configured.
#[derive(Clone, Copy, PartialEq, Eq)]
enum BusPolicy {
    /// Like the system bus, with the shipped policy file included.
    SystemWithPolicy,
    /// Like the system bus, without any policy for pgsluice.
    SystemBare,
    /// Like a session bus: everything allowed.
    Session,
}

/// A `dbus-daemon --nofork` on a Unix socket in its own directory.
struct Bus {
    address: String,
    child: Child,
    _dir: tempfile::TempDir,
}

/// The policy file this checkout ships.
fn shipped_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/org.pgsluice.Pooler1.conf")
}

/// The system bus's default policy (Debian's system.conf), trimmed to what
/// matters here: everyone may connect and talk to the bus itself; owning names
/// and calling methods is denied unless a policy file allows it.
const SYSTEM_DEFAULT_POLICY: &str = r#"
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus"
           send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
"#;

/// A session bus's policy, opened to every user (a real session bus takes
/// only its owner, and pgsluice runs as postgres here).
const SESSION_POLICY: &str = r#"
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
"#;

impl Bus {
    fn start(policy: BusPolicy) -> Bus {
        let dir = temp_dir("dbus");
        let socket = dir.path().join("bus.sock");
        let mut body = match policy {
            BusPolicy::Session => SESSION_POLICY.to_string(),
            BusPolicy::SystemWithPolicy | BusPolicy::SystemBare => {
                SYSTEM_DEFAULT_POLICY.to_string()
            }
        };
        if policy == BusPolicy::SystemWithPolicy {
            body.push_str(&format!(
                "  <include>{}</include>\n",
                shipped_policy().display()
            ));
            if pg_os_user().is_none() {
                // Not root: pgsluice runs as we do, not as postgres, and we cannot
                // be root to call methods: let this user do both.
                let me = User::from_uid(nix::unistd::getuid())
                    .expect("looking up our user")
                    .expect("our user has a name")
                    .name;
                body.push_str(&format!(
                    "  <policy user=\"{me}\">\n    <allow own=\"{NAME}\"/>\n    \
                     <allow send_destination=\"{NAME}\" send_interface=\"{IFACE}\"/>\n  \
                     </policy>\n"
                ));
            }
        }
        let kind = if policy == BusPolicy::Session {
            "session"
        } else {
            "system"
        };
        let config = format!(
            "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\"\n \
             \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n\
             <busconfig>\n  <type>{kind}</type>\n  <auth>EXTERNAL</auth>\n  \
             <listen>unix:path={}</listen>\n{body}</busconfig>\n",
            socket.display()
        );
        let config_path = dir.path().join("bus.conf");
        fs::write(&config_path, config).expect("writing bus.conf");
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", config_path.display()))
            .args(["--print-address", "--nofork"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start dbus-daemon (install the dbus package: make deps): {e}")
            });
        // Lets a later test process clean up after this one if it is killed.
        let _ = fs::write(dir.path().join("harness.pid"), format!("{}\n", child.id()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let address = match rx.recv_timeout(STEP) {
            Ok(line) if !line.trim().is_empty() => line.trim().to_string(),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("dbus-daemon printed no address within {STEP:?}");
            }
        };
        Bus {
            address,
            child,
            _dir: dir,
        }
    }

    /// A zbus client connection to this bus, as this (test) process.
    async fn connect(&self) -> zbus::Connection {
        let build = zbus::connection::Builder::address(self.address.as_str())
            .expect("bus address")
            .build();
        support::within(STEP, "connecting to the private bus", build)
            .await
            .expect("connecting to the private bus")
    }

    /// `busctl --address=<bus> args…`, bounded, as this process or as `user`.
    fn busctl_as(&self, user: Option<&User>, args: &[&str]) -> Output {
        let mut cmd = Command::new("busctl");
        cmd.arg(format!("--address={}", self.address))
            .args(["--no-pager", "--timeout=20"])
            .args(args);
        if let Some(user) = user {
            cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        run_bounded(&mut cmd, STEP, &format!("busctl {}", args.join(" ")))
    }

    fn busctl(&self, args: &[&str]) -> Output {
        self.busctl_as(None, args)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        stop_child(&mut self.child, Signal::SIGTERM, Duration::from_secs(5));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------
// pgsluice, with the bus address in its environment.
// ---------------------------------------------------------------------------

/// A pgsluice process started by the test (as root with `user = postgres`
/// when we are root), stdout and stderr into a log file.
struct Sluice {
    port: u16,
    ini: PathBuf,
    proc: Proc,
    /// Keeps the directory (ini, userlist, log) alive.
    _cfg: PoolerConfig,
}

/// The config the tests use: trust auth, transaction pooling, an admin user
/// for the console, no `*` fallback (so a database exists only when listed).
fn config(pg: &Postgres) -> PoolerConfig {
    let mut cfg = PoolerConfig::new(pg);
    cfg.set("auth_type", "trust")
        .set("pool_mode", "transaction")
        .set("admin_users", ADMIN)
        .user_secret(ADMIN, "adminpass")
        .remove_database("*");
    if pg_os_user().is_some() {
        cfg.set("user", "postgres");
    }
    cfg
}

impl Sluice {
    fn start(cfg: &PoolerConfig, env: &[(&str, &str)]) -> Sluice {
        let ini = cfg.dir().join("pgbouncer.ini");
        cfg.write_files(&ini);
        let mut cmd = pgsluice_command();
        cmd.env_remove("DBUS_SYSTEM_BUS_ADDRESS")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .envs(env.iter().copied())
            .env("RUST_BACKTRACE", "1")
            .arg(&ini)
            .current_dir(cfg.dir());
        let proc = Proc::spawn(cmd, &cfg.dir().join("pgsluice.log"));
        // Lets a later test process clean up after this one if it is killed.
        let _ = fs::write(cfg.dir().join("harness.pid"), format!("{}\n", proc.pid));
        proc.wait_for_log("process up");
        Sluice {
            port: cfg.port(),
            ini,
            proc,
            _cfg: cfg.clone(),
        }
    }

    /// pgsluice on the private bus `bus` as its system bus, once it holds the name.
    fn on_system_bus(cfg: &PoolerConfig, bus: &Bus) -> Sluice {
        let sluice = Sluice::start(cfg, &[("DBUS_SYSTEM_BUS_ADDRESS", &bus.address)]);
        sluice.wait_for_log("D-Bus: serving");
        sluice
    }

    fn log(&self) -> String {
        self.proc.log()
    }

    fn wait_for_log(&self, needle: &str) {
        self.proc.wait_for_log(needle);
    }

    /// The log lines that mention D-Bus.
    fn dbus_lines(&self) -> Vec<String> {
        self.log()
            .lines()
            .filter(|l| l.contains("D-Bus") || l.contains("dbus"))
            .map(str::to_string)
            .collect()
    }

    /// A client of `db` as the trust user, its connection task spawned.
    async fn connect(&self, db: &str) -> Result<Client, tokio_postgres::Error> {
        self.connect_as(TRUST_USER, db).await
    }

    async fn connect_as(&self, user: &str, db: &str) -> Result<Client, tokio_postgres::Error> {
        let connstr = tcp_connstr(self.port, user, db, None);
        let (client, connection) = self
            .within(
                "tokio-postgres login",
                tokio_postgres::connect(&connstr, NoTls),
            )
            .await?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A connection to the admin console.
    async fn console(&self) -> Client {
        self.connect_as(ADMIN, CONSOLE_DB)
            .await
            .expect("admin console login")
    }

    /// A SHOW on the admin console, each row as column → text value.
    async fn show(&self, console: &Client, what: &str) -> Vec<HashMap<String, Option<String>>> {
        let messages = self
            .within(what, console.simple_query(&format!("SHOW {what}")))
            .await
            .unwrap_or_else(|e| panic!("SHOW {what}: {e}"));
        support::rows_by_name(&messages)
    }

    /// Await `fut` for at most STEP; on timeout panic with the pgsluice log.
    async fn within<F: std::future::Future>(&self, what: &str, fut: F) -> F::Output {
        match tokio::time::timeout(STEP, fut).await {
            Ok(v) => v,
            Err(_) => panic!(
                "{what}: no result within {STEP:?}\n--- pgsluice log (tail) ---\n{}",
                tail(&self.log(), 80)
            ),
        }
    }
}

// ---------------------------------------------------------------------------
// A typed client of the interface.
// ---------------------------------------------------------------------------

type Rows = Vec<HashMap<String, OwnedValue>>;

#[zbus::proxy(
    interface = "org.pgsluice.Pooler1",
    default_service = "org.pgsluice.Pooler1",
    default_path = "/org/pgsluice/Pooler1"
)]
trait Pooler1 {
    fn reload(&self) -> zbus::Result<()>;
    fn pause(&self, database: &str) -> zbus::Result<()>;
    fn resume(&self, database: &str) -> zbus::Result<()>;
    fn disable(&self, database: &str) -> zbus::Result<()>;
    fn enable(&self, database: &str) -> zbus::Result<()>;
    fn kill_client(&self, id: u64) -> zbus::Result<()>;
    fn set(&self, key: &str, value: &str) -> zbus::Result<()>;
    fn shutdown(&self, mode: &str) -> zbus::Result<()>;
    fn get_pools(&self) -> zbus::Result<Rows>;
    fn get_stats(&self) -> zbus::Result<Rows>;
    fn get_databases(&self) -> zbus::Result<Rows>;
    fn get_clients(&self) -> zbus::Result<Rows>;
    fn get_servers(&self) -> zbus::Result<Rows>;
    #[zbus(property)]
    fn state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn client_connections(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn server_connections(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn config_file(&self) -> zbus::Result<String>;
    #[zbus(signal)]
    fn reloaded(&self, ok: bool, message: String) -> zbus::Result<()>;
    #[zbus(signal, name = "StateChanged")]
    fn state_signal(&self, state: String) -> zbus::Result<()>;
}

/// A proxy that reads properties from the service every time (no cache).
async fn proxy(connection: &zbus::Connection) -> Pooler1Proxy<'static> {
    Pooler1Proxy::builder(connection)
        .cache_properties(zbus::proxy::CacheProperties::No)
        .build()
        .await
        .expect("building the Pooler1 proxy")
}

/// The D-Bus error name of a failed call.
fn error_name(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, _, _) => name.to_string(),
        other => format!("not a method error: {other}"),
    }
}

fn text_of(v: &OwnedValue) -> String {
    String::try_from(v.try_clone().expect("clone value")).expect("a string value")
}

fn u64_of(v: &OwnedValue) -> u64 {
    u64::try_from(v).expect("a u64 value")
}

/// A transaction-mode client that holds a server: BEGIN and one query.
async fn holding_a_server(sluice: &Sluice) -> Client {
    let client = sluice.connect(TEST_DB).await.expect("login");
    sluice
        .within("BEGIN", client.batch_execute("BEGIN; SELECT 1"))
        .await
        .expect("BEGIN; SELECT 1");
    client
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

/// `busctl call … Reload` (what ExecReload= runs) returns once the new config
/// serves: a database added to the ini is reachable right after. A broken ini
/// makes it fail with the file and line in the message, the old config keeps
/// serving, and both outcomes are announced by the Reloaded signal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_returns_when_the_new_config_serves_and_reports_errors() {
    let pg = Postgres::start();
    let bus = Bus::start(BusPolicy::SystemWithPolicy);
    let mut cfg = config(&pg);
    let sluice = Sluice::on_system_bus(&cfg, &bus);
    let connection = bus.connect().await;
    let pooler = proxy(&connection).await;
    let mut reloads = pooler.receive_reloaded().await.expect("subscribe Reloaded");

    let added = "sluice_added";
    assert!(
        sluice.connect(added).await.is_err(),
        "{added} is not configured yet"
    );
    cfg.database(
        added,
        &format!("host=127.0.0.1 port={} dbname={TEST_DB}", pg.port),
    );
    cfg.write_files(&sluice.ini);
    let out = bus.busctl(&["call", NAME, PATH, IFACE, "Reload"]);
    assert!(out.status.success(), "Reload: {}", text(&out.stderr));
    // No wait, no retry: the call returned, so the new database is there.
    let client = sluice
        .connect(added)
        .await
        .expect("login to the added database");
    let one: i32 = client
        .query_one("SELECT 1", &[])
        .await
        .expect("query")
        .get(0);
    assert_eq!(one, 1);
    let signal = sluice
        .within("Reloaded(true)", reloads.next())
        .await
        .expect("a Reloaded signal");
    let args = signal.args().expect("Reloaded args");
    assert!(args.ok, "{:?}", args.message);
    assert_eq!(args.message, "");

    // A broken line: the error names the file and the line.
    let mut broken = cfg.clone();
    broken.set("max_client_conn", "lots");
    let line = broken.ini_line_of("max_client_conn");
    broken.write_files(&sluice.ini);
    let out = bus.busctl(&["call", NAME, PATH, IFACE, "Reload"]);
    assert!(!out.status.success(), "a broken config must fail the call");
    let stderr = text(&out.stderr);
    let location = format!("{}:{line}:", sluice.ini.display());
    assert!(
        stderr.contains(&location) && stderr.contains("max_client_conn"),
        "want {location:?} and the key in: {stderr}"
    );
    // The typed client sees the error name and the same text.
    let e = pooler.reload().await.expect_err("still broken");
    assert_eq!(error_name(&e), "org.pgsluice.Pooler1.Error.ReloadFailed");
    assert!(e.to_string().contains(&location), "{e}");
    let signal = sluice
        .within("Reloaded(false)", reloads.next())
        .await
        .expect("a Reloaded signal");
    let args = signal.args().expect("Reloaded args");
    assert!(!args.ok);
    assert!(args.message.contains(&location), "{}", args.message);

    // The running config stays: the added database still serves.
    let again = sluice
        .connect(added)
        .await
        .expect("login after the failed reload");
    again.simple_query("SELECT 1").await.expect("query");
    let names: Vec<String> = pooler
        .get_databases()
        .await
        .expect("GetDatabases")
        .iter()
        .map(|r| text_of(&r["name"]))
        .collect();
    assert!(names.iter().any(|n| n == added), "{names:?}");
    drop(client);
}

/// Pause("") with a transaction in flight returns only when it has ended;
/// meanwhile and afterwards new work waits; Resume("") releases it. The state
/// changes are announced by StateChanged and PropertiesChanged(State).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_waits_for_the_transaction_and_resume_releases_clients() {
    let pg = Postgres::start();
    let bus = Bus::start(BusPolicy::SystemWithPolicy);
    let sluice = Sluice::on_system_bus(&config(&pg), &bus);
    let connection = bus.connect().await;
    let pooler = proxy(&connection).await;
    let mut states = pooler.receive_state_signal().await.expect("subscribe");
    let props = zbus::fdo::PropertiesProxy::builder(&connection)
        .destination(NAME)
        .expect("destination")
        .path(PATH)
        .expect("path")
        .build()
        .await
        .expect("Properties proxy");
    let mut changes = props
        .receive_properties_changed()
        .await
        .expect("subscribe PropertiesChanged");
    assert_eq!(pooler.state().await.expect("State"), "running");

    // A second client, logged in and idle, for after the pause.
    let waiter = sluice.connect(TEST_DB).await.expect("login");
    waiter
        .simple_query("SELECT 1")
        .await
        .expect("warm-up query");
    let busy = holding_a_server(&sluice).await;

    let pausing = {
        let pooler = pooler.clone();
        tokio::spawn(async move { pooler.pause("").await })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        !pausing.is_finished(),
        "Pause returned while a transaction still held a server"
    );
    sluice
        .within("COMMIT", busy.batch_execute("COMMIT"))
        .await
        .expect("COMMIT of the transaction in flight");
    sluice
        .within("Pause after the COMMIT", pausing)
        .await
        .expect("pause task")
        .expect("Pause");
    assert_eq!(pooler.state().await.expect("State"), "paused");
    let signal = sluice
        .within("StateChanged(paused)", states.next())
        .await
        .expect("signal");
    assert_eq!(signal.args().expect("args").state, "paused");
    let change = sluice
        .within("PropertiesChanged(paused)", changes.next())
        .await
        .expect("signal");
    let args = change.args().expect("args");
    assert_eq!(args.interface_name.as_str(), IFACE);
    assert_eq!(
        args.changed_properties.get("State").map(|v| v.to_string()),
        Some("\"paused\"".to_string())
    );

    // New work waits while paused…
    let query = tokio::spawn(async move { waiter.simple_query("SELECT 2").await.map(|_| waiter) });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(!query.is_finished(), "a query ran while paused");
    // … and Resume lets it through.
    pooler.resume("").await.expect("Resume");
    sluice
        .within("the waiting query after Resume", query)
        .await
        .expect("query task")
        .expect("the waiting query");
    let signal = sluice
        .within("StateChanged(running)", states.next())
        .await
        .expect("signal");
    assert_eq!(signal.args().expect("args").state, "running");
    let change = sluice
        .within("PropertiesChanged(running)", changes.next())
        .await
        .expect("signal");
    assert_eq!(
        change
            .args()
            .expect("args")
            .changed_properties
            .get("State")
            .map(|v| v.to_string()),
        Some("\"running\"".to_string())
    );
    assert_eq!(pooler.state().await.expect("State"), "running");
    // A second Resume has nothing to undo: the core's error, under its name.
    let e = pooler.resume("").await.expect_err("not paused");
    assert_eq!(error_name(&e), "org.pgsluice.Pooler1.Error.NotPaused");
}

/// With two clients holding servers, GetPools equals SHOW POOLS field by
/// field (sv_active = 2 in both), and the other reads match their SHOWs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_equal_the_show_commands() {
    let pg = Postgres::start();
    let bus = Bus::start(BusPolicy::SystemWithPolicy);
    let sluice = Sluice::on_system_bus(&config(&pg), &bus);
    let connection = bus.connect().await;
    let pooler = proxy(&connection).await;
    let _a = holding_a_server(&sluice).await;
    let _b = holding_a_server(&sluice).await;
    // One console connection for every SHOW, open throughout: the state does
    // not change between a SHOW and its D-Bus twin.
    let console = sluice.console().await;

    let shown = sluice.show(&console, "POOLS").await;
    let got = pooler.get_pools().await.expect("GetPools");
    assert_eq!(got.len(), shown.len(), "{got:?}\n{shown:?}");
    for row in &shown {
        let key = (row["database"].clone(), row["user"].clone());
        let mine = got
            .iter()
            .find(|g| (Some(text_of(&g["database"])), Some(text_of(&g["user"]))) == key)
            .unwrap_or_else(|| panic!("no GetPools row for {key:?}: {got:?}"));
        for (column, value) in row {
            match (value, mine.get(column)) {
                (None, None) => {}
                (Some(v), Some(d)) if d.value_signature() == "t" => {
                    assert_eq!(
                        v.parse::<u64>().ok(),
                        Some(u64_of(d)),
                        "{column} of {key:?}"
                    );
                }
                (Some(v), Some(d)) => assert_eq!(*v, text_of(d), "{column} of {key:?}"),
                (v, d) => panic!("{column} of {key:?}: SHOW {v:?}, D-Bus {d:?}"),
            }
        }
        assert_eq!(mine.len(), row.values().filter(|v| v.is_some()).count());
    }
    let pool = got
        .iter()
        .find(|g| text_of(&g["database"]) == TEST_DB)
        .expect("the sluice pool");
    assert_eq!(u64_of(&pool["sv_active"]), 2, "{pool:?}");
    assert_eq!(u64_of(&pool["cl_active"]), 2, "{pool:?}");

    // SERVERS: the same connections (by id), two active on sluice.
    let shown = sluice.show(&console, "SERVERS").await;
    let got = pooler.get_servers().await.expect("GetServers");
    let mut shown_ids: Vec<i64> = shown
        .iter()
        .map(|r| r["id"].as_deref().unwrap().parse().unwrap())
        .collect();
    let mut got_ids: Vec<i64> = got
        .iter()
        .map(|r| i64::try_from(&r["id"]).expect("id is x"))
        .collect();
    shown_ids.sort_unstable();
    got_ids.sort_unstable();
    assert_eq!(got_ids, shown_ids);
    let active = got
        .iter()
        .filter(|r| text_of(&r["database"]) == TEST_DB && text_of(&r["state"]) == "active")
        .count();
    assert_eq!(active, 2, "{got:?}");

    // CLIENTS: the two, with their ports; DATABASES and STATS by name.
    let clients = pooler.get_clients().await.expect("GetClients");
    let on_sluice = clients
        .iter()
        .filter(|r| text_of(&r["database"]) == TEST_DB)
        .count();
    assert_eq!(on_sluice, 2, "{clients:?}");
    let dbs = pooler.get_databases().await.expect("GetDatabases");
    let sluice_db = dbs
        .iter()
        .find(|r| text_of(&r["name"]) == TEST_DB)
        .expect("sluice in GetDatabases");
    assert_eq!(
        i64::try_from(&sluice_db["port"]).unwrap(),
        i64::from(pg.port)
    );
    assert!(!bool::try_from(&sluice_db["paused"]).unwrap());
    let stats = pooler.get_stats().await.expect("GetStats");
    assert!(
        stats.iter().any(|r| text_of(&r["database"]) == TEST_DB
            && r.contains_key("total_xact_count")
            && r.contains_key("avg_wait_time")),
        "{stats:?}"
    );
    assert_eq!(
        pooler.server_connections().await.unwrap() as usize,
        got.len()
    );
    // The two pool clients and the console.
    assert_eq!(pooler.client_connections().await.unwrap(), 3);
    assert_eq!(
        pooler.config_file().await.unwrap(),
        sluice.ini.display().to_string()
    );
}

/// The other methods, thin calls into the control core: Disable/Enable,
/// KillClient, Set, their errors under their names, and Shutdown, whose reply
/// arrives before the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_methods_errors_and_shutdown() {
    let pg = Postgres::start();
    let bus = Bus::start(BusPolicy::SystemWithPolicy);
    let mut sluice = Sluice::on_system_bus(&config(&pg), &bus);
    let connection = bus.connect().await;
    let pooler = proxy(&connection).await;

    pooler.disable(TEST_DB).await.expect("Disable");
    assert!(
        sluice.connect(TEST_DB).await.is_err(),
        "a disabled database takes no new clients"
    );
    pooler.enable(TEST_DB).await.expect("Enable");
    let victim = sluice.connect(TEST_DB).await.expect("login after Enable");
    victim.simple_query("SELECT 1").await.expect("query");

    let id = pooler
        .get_clients()
        .await
        .expect("GetClients")
        .iter()
        .find(|r| text_of(&r["database"]) == TEST_DB)
        .map(|r| i64::try_from(&r["id"]).expect("id"))
        .expect("the client");
    pooler.kill_client(id as u64).await.expect("KillClient");
    let after = sluice
        .within(
            "a query of a killed client",
            victim.simple_query("SELECT 1"),
        )
        .await;
    assert!(after.is_err(), "the killed client's connection is gone");

    pooler.set("default_pool_size", "3").await.expect("Set");
    let dbs = pooler.get_databases().await.expect("GetDatabases");
    let row = dbs
        .iter()
        .find(|r| text_of(&r["name"]) == TEST_DB)
        .expect("sluice");
    assert_eq!(i64::try_from(&row["pool_size"]).unwrap(), 3);

    for (call, name, message) in [
        (
            pooler.disable("").await,
            "InvalidArgs",
            "Disable needs a database name",
        ),
        (
            pooler.pause("nope").await,
            "NoSuchDatabase",
            "no such database: nope",
        ),
        (
            pooler.kill_client(999_999).await,
            "NoSuchClient",
            "client not found",
        ),
        (
            pooler.set("listen_port", "1").await,
            "SetFailed",
            "cannot be changed at run time",
        ),
        (pooler.shutdown("later").await, "InvalidArgs", "'later'"),
    ] {
        let e = call.expect_err(name);
        assert_eq!(error_name(&e), format!("org.pgsluice.Pooler1.Error.{name}"));
        assert!(e.to_string().contains(message), "{e}");
    }

    // Shutdown now: the caller gets its reply, then the process exits.
    let out = bus.busctl(&["call", NAME, PATH, IFACE, "Shutdown", "s", "now"]);
    assert!(out.status.success(), "Shutdown: {}", text(&out.stderr));
    // Panics with the log if it does not exit.
    sluice.proc.wait_exit(STEP);
}

/// The shipped policy on a bus configured like the system bus: the service
/// user owns the name, root may call methods, another user may not but may
/// read properties and introspect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_bus_policy_lets_root_call_and_others_read() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to act as root, postgres and nobody");
        return;
    }
    let pg = Postgres::start();
    let bus = Bus::start(BusPolicy::SystemWithPolicy);
    let sluice = Sluice::on_system_bus(&config(&pg), &bus);
    let connection = bus.connect().await;

    // Owned by postgres: pgsluice connected after dropping privileges.
    let dbus = zbus::fdo::DBusProxy::new(&connection)
        .await
        .expect("DBus proxy");
    let owner_uid = dbus
        .get_connection_unix_user(NAME.try_into().expect("bus name"))
        .await
        .expect("GetConnectionUnixUser");
    let (pg_uid, _) = pg_os_user().expect("root has a postgres user");
    assert_eq!(owner_uid, pg_uid.as_raw(), "the name's owner is postgres");

    // root may call.
    let mark = sluice.log().len();
    let out = bus.busctl(&["call", NAME, PATH, IFACE, "Reload"]);
    assert!(out.status.success(), "root Reload: {}", text(&out.stderr));
    assert!(sluice.log()[mark..].contains("config reloaded"));

    // nobody may not call, but may read and introspect.
    let nobody = User::from_name("nobody")
        .expect("looking up nobody")
        .expect("a nobody user");
    let mark = sluice.log().len();
    for call in [
        &["call", NAME, PATH, IFACE, "Reload"][..],
        &["call", NAME, PATH, IFACE, "Pause", "s", ""][..],
        &["call", NAME, PATH, IFACE, "GetPools"][..],
    ] {
        let out = bus.busctl_as(Some(&nobody), call);
        assert!(!out.status.success(), "nobody may not {call:?}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("Access denied") || stderr.contains("AccessDenied"),
            "{call:?}: {stderr}"
        );
    }
    thread::sleep(Duration::from_millis(300));
    let since = sluice.log()[mark..].to_string();
    assert!(
        !since.contains("config reloaded") && !since.contains("PAUSE"),
        "a denied call reached pgsluice:\n{since}"
    );
    let out = bus.busctl_as(
        Some(&nobody),
        &["get-property", NAME, PATH, IFACE, "Version"],
    );
    assert!(
        out.status.success(),
        "nobody Version: {}",
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout).trim(),
        format!("s \"pgsluice {}\"", env!("CARGO_PKG_VERSION"))
    );
    let out = bus.busctl_as(Some(&nobody), &["get-property", NAME, PATH, IFACE, "State"]);
    assert_eq!(text(&out.stdout).trim(), "s \"running\"");
    let out = bus.busctl_as(Some(&nobody), &["introspect", NAME, PATH, IFACE]);
    assert!(
        out.status.success(),
        "nobody introspect: {}",
        text(&out.stderr)
    );
    let listing = text(&out.stdout);
    for member in [".Reload", ".Pause", ".GetPools", ".State", ".StateChanged"] {
        assert!(listing.contains(member), "{member} in:\n{listing}");
    }
}

/// No bus (the address names a missing socket), or a bus without the policy
/// that refuses the name: pgsluice starts, serves, and says so in exactly one
/// warning.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_refusing_bus_is_one_warning() {
    let pg = Postgres::start();
    let nowhere = temp_dir("nobus");
    let missing = format!("unix:path={}", nowhere.path().join("no-bus.sock").display());
    let bare = Bus::start(BusPolicy::SystemBare);
    for (what, address, reason) in [
        ("missing", missing.as_str(), ""),
        ("refusing", bare.address.as_str(), "AccessDenied"),
    ] {
        let sluice = Sluice::start(&config(&pg), &[("DBUS_SYSTEM_BUS_ADDRESS", address)]);
        let client = sluice.connect(TEST_DB).await.expect("login");
        client.simple_query("SELECT 1").await.expect("query");
        sluice.wait_for_log("D-Bus");
        // Give a second warning the chance to show up.
        tokio::time::sleep(Duration::from_secs(1)).await;
        client.simple_query("SELECT 1").await.expect("query");
        let lines = sluice.dbus_lines();
        assert_eq!(lines.len(), 1, "{what} bus: {lines:#?}");
        assert!(
            lines[0].contains("WARNING") && lines[0].contains(NAME),
            "{what} bus: {}",
            lines[0]
        );
        assert!(lines[0].contains(reason), "{what} bus: {}", lines[0]);
    }
}

/// `dbus = off` stays off the bus; `dbus = session` with another `dbus_name`
/// serves under that name on the session bus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dbus_off_and_session_bus_under_another_name() {
    let pg = Postgres::start();
    let bus = Bus::start(BusPolicy::Session);
    let env = [
        ("DBUS_SYSTEM_BUS_ADDRESS", bus.address.as_str()),
        ("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str()),
    ];
    let other = "org.pgsluice.Test7";
    let mut cfg = config(&pg);
    cfg.set("dbus", "session").set("dbus_name", other);
    let session = Sluice::start(&cfg, &env);
    session.wait_for_log("D-Bus: serving");
    let out = bus.busctl(&["get-property", other, PATH, IFACE, "Version"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("pgsluice"));

    let mut cfg = config(&pg);
    cfg.set("dbus", "off");
    let off = Sluice::start(&cfg, &env);
    let client = off.connect(TEST_DB).await.expect("login");
    client.simple_query("SELECT 1").await.expect("query");
    // On this bus anyone may own anything: a pgsluice that ignored `off` would
    // have taken the default name by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connection = bus.connect().await;
    let dbus = zbus::fdo::DBusProxy::new(&connection)
        .await
        .expect("DBus proxy");
    let names: Vec<String> = dbus
        .list_names()
        .await
        .expect("ListNames")
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(names.iter().any(|n| n == other), "{names:?}");
    assert!(!names.iter().any(|n| n == NAME), "{names:?}");
    assert_eq!(off.dbus_lines(), Vec::<String>::new());
    drop(session);
}
