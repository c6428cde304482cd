//! The control core: operations on the running pooler that every front door
//! (the admin console, signals, D-Bus) calls, and the snapshots they report.
//! No SQL and no transport here.

pub mod conn_info;
pub mod reload;
pub mod snapshot;
mod views;

use std::sync::Arc;
use std::time::Duration;

pub use reload::ReloadError;
pub use views::{clients, database_totals, databases, lists, pools, servers, state, stats, users};

use crate::net::tls::{ClientTls, ServerTls};
use crate::server::close_reason;
use crate::shared::Shared;

/// What the control core did, published for observers that are not the caller
/// (sd_notify, D-Bus signals). Delivered in order; a slow observer may miss
/// some (`RecvError::Lagged`) but never blocks the control core.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlEvent {
    /// A reload begins (systemd wants RELOADING=1 before it ends).
    ReloadStarted,
    /// A reload ended: Ok, or the error text.
    Reloaded(Result<(), String>),
    /// The whole pooler's state changed.
    StateChanged(PoolerState),
}

/// The pooler's state as a whole, for D-Bus's State property.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolerState {
    Running,
    Paused,
    ShuttingDown,
}

impl PoolerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolerState::Running => "running",
            PoolerState::Paused => "paused",
            PoolerState::ShuttingDown => "shutting-down",
        }
    }
}

/// The current state, derived from the switches and the shutdown request.
pub fn pooler_state(shared: &Shared) -> PoolerState {
    if shared.shutdown.borrow().is_some() {
        PoolerState::ShuttingDown
    } else if shared.switches().all_paused {
        PoolerState::Paused
    } else {
        PoolerState::Running
    }
}

fn publish(shared: &Shared, event: ControlEvent) {
    // No receivers is fine: nobody is watching.
    let _ = shared.events.send(event);
}

/// How to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Exit now, dropping every connection.
    Now,
    /// Stop accepting, wait until every server is released, then exit.
    WaitForServers,
    /// Stop accepting, wait until every client has left, then exit.
    WaitForClients,
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("no such database: {0}")]
    NoSuchDatabase(String),
    /// KILL_CLIENT of an id no client has (PgBouncer's wording; the id is logged).
    #[error("client not found")]
    NoSuchClient(u64),
    #[error("already suspended/paused")]
    AlreadyPaused,
    #[error("pooler is not paused/suspended")]
    NotPaused,
    #[error("database {0} is not paused")]
    DatabaseNotPaused(String),
    #[error("pooler is shutting down")]
    ShuttingDown,
}

/// How often waiting operations (PAUSE, WAIT_CLOSE) look again.
const POLL: Duration = Duration::from_millis(20);

/// A database named by a command must be configured (or have a pool, for `*`).
fn check_database(shared: &Shared, db: &str) -> Result<(), ControlError> {
    let known = shared.config.load().database(db).is_some()
        || !shared.pools.of_database(Some(db)).is_empty();
    if known {
        Ok(())
    } else {
        Err(ControlError::NoSuchDatabase(db.to_owned()))
    }
}

/// PAUSE: stop handing out servers and wait until every server of the
/// database(s) has been released and closed. Clients keep their connections and
/// wait for RESUME.
pub async fn pause(shared: &Arc<Shared>, db: Option<&str>) -> Result<(), ControlError> {
    {
        let mut switches = shared.switches();
        match db {
            Some(db) => {
                check_database(shared, db)?;
                if switches.is_paused(db) {
                    return Err(ControlError::AlreadyPaused);
                }
                switches.paused.insert(db.to_owned());
            }
            None => {
                if switches.all_paused {
                    return Err(ControlError::AlreadyPaused);
                }
                switches.all_paused = true;
            }
        }
    }
    for pool in shared.pools.of_database(db) {
        pool.pause(close_reason::PAUSE_MODE);
    }
    log::info!(
        "PAUSE {}: waiting for servers to be released",
        db.unwrap_or("(all)")
    );
    while shared
        .pools
        .of_database(db)
        .iter()
        .any(|p| p.counts().total > 0)
    {
        tokio::time::sleep(POLL).await;
    }
    log::info!("PAUSE {}: done", db.unwrap_or("(all)"));
    if db.is_none() {
        publish(shared, ControlEvent::StateChanged(PoolerState::Paused));
    }
    Ok(())
}

/// RESUME: undo PAUSE (or KILL) for the database(s).
pub fn resume(shared: &Arc<Shared>, db: Option<&str>) -> Result<(), ControlError> {
    if shared.shutdown.borrow().is_some() {
        return Err(ControlError::ShuttingDown);
    }
    {
        let mut switches = shared.switches();
        match db {
            Some(db) => {
                if !switches.paused.remove(db) {
                    return Err(ControlError::DatabaseNotPaused(db.to_owned()));
                }
            }
            None => {
                if !switches.all_paused && switches.paused.is_empty() {
                    return Err(ControlError::NotPaused);
                }
                switches.all_paused = false;
                switches.paused.clear();
            }
        }
    }
    let switches = shared.switches();
    let resumable: Vec<_> = shared
        .pools
        .of_database(db)
        .into_iter()
        .filter(|p| !switches.is_paused(&p.key.database))
        .collect();
    drop(switches);
    for pool in resumable {
        pool.resume();
    }
    log::info!("RESUME {}", db.unwrap_or("(all)"));
    if db.is_none() {
        publish(shared, ControlEvent::StateChanged(PoolerState::Running));
    }
    Ok(())
}

/// RECONNECT: replace every server of the database(s) after its current use.
pub fn reconnect(shared: &Arc<Shared>, db: Option<&str>) -> Result<(), ControlError> {
    if let Some(db) = db {
        check_database(shared, db)?;
    }
    for pool in shared.pools.of_database(db) {
        pool.reconnect();
    }
    Ok(())
}

/// WAIT_CLOSE: wait until the servers that RECONNECT or a reload retired have
/// all closed.
pub async fn wait_close(shared: &Arc<Shared>, db: Option<&str>) -> Result<(), ControlError> {
    if let Some(db) = db {
        check_database(shared, db)?;
    }
    while shared
        .pools
        .of_database(db)
        .iter()
        .any(|p| p.outdated_servers() > 0)
    {
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// DISABLE: refuse new clients of the database; connected ones carry on.
pub fn disable(shared: &Arc<Shared>, db: &str) -> Result<(), ControlError> {
    check_database(shared, db)?;
    shared.switches().disabled.insert(db.to_owned());
    Ok(())
}

pub fn enable(shared: &Arc<Shared>, db: &str) -> Result<(), ControlError> {
    check_database(shared, db)?;
    shared.switches().disabled.remove(db);
    Ok(())
}

/// KILL: drop every client and server of the database(s) now; new clients wait
/// for RESUME, as after PAUSE.
pub fn kill(shared: &Arc<Shared>, db: Option<&str>) -> Result<(), ControlError> {
    {
        let mut switches = shared.switches();
        match db {
            Some(db) => {
                check_database(shared, db)?;
                switches.paused.insert(db.to_owned());
            }
            None if switches.all_paused => return Err(ControlError::AlreadyPaused),
            None => switches.all_paused = true,
        }
    }
    for pool in shared.pools.of_database(db) {
        pool.pause(close_reason::DATABASE_KILLED);
    }
    for client in shared.clients.all() {
        // The console is not a database: KILL of all of them spares it, as
        // in PgBouncer (and spares the console that asked).
        if db.is_none_or(|db| *client.pool.database == *db) && !client.pool.is_console() {
            client.kill();
        }
    }
    Ok(())
}

/// KILL_CLIENT: disconnect one client (its server is closed if it was mid-use).
pub fn kill_client(shared: &Arc<Shared>, id: u64) -> Result<(), ControlError> {
    let client = shared
        .clients
        .get(id)
        .ok_or(ControlError::NoSuchClient(id))?;
    client.kill();
    Ok(())
}

/// RELOAD, whoever asks (SIGHUP, the console, D-Bus).
pub fn reload(shared: &Arc<Shared>) -> Result<(), ReloadError> {
    publish(shared, ControlEvent::ReloadStarted);
    let result = reload::reload(shared);
    if result.is_ok() {
        shared.listeners.apply(&shared.config.load().general);
    }
    match &result {
        Ok(()) => log::info!("config reloaded"),
        Err(e) => log::error!("reload failed, keeping the running config: {e}"),
    }
    publish(
        shared,
        ControlEvent::Reloaded(result.as_ref().map(|_| ()).map_err(|e| e.to_string())),
    );
    result
}

/// SHUTDOWN: the daemon carries it out.
pub fn shutdown(shared: &Arc<Shared>, mode: ShutdownMode) {
    log::info!("shutdown requested: {mode:?}");
    shared.shutdown.send_replace(Some(mode));
    publish(
        shared,
        ControlEvent::StateChanged(PoolerState::ShuttingDown),
    );
}

/// SET key = value: change one setting at run time.
pub fn set(shared: &Arc<Shared>, key: &str, value: &str) -> Result<(), crate::config::ConfigError> {
    let mut config = (**shared.config.load()).clone();
    config.set_value(key, value)?;
    // New TLS files or mode take effect for the next TLS handshake; if they do
    // not load, nothing changes. Only the side the setting belongs to is
    // read again.
    let key = key.to_ascii_lowercase();
    if key.starts_with("client_tls") {
        config.tls.client = Arc::new(ClientTls::load(&config.general)?);
    } else if key.starts_with("server_tls") {
        config.tls.server = Arc::new(ServerTls::load(&config.general)?);
    } else if matches!(
        key.as_str(),
        "auth_type" | "auth_hba_file" | "auth_ident_file"
    ) {
        config.load_hba()?;
    }
    shared.pools.apply(&config, &shared.secrets.load());
    shared.listeners.apply(&config.general);
    shared.config.store(Arc::new(config));
    Ok(())
}

/// The version string SHOW VERSION and D-Bus report.
pub fn version() -> String {
    format!("pgsluice {}", env!("CARGO_PKG_VERSION"))
}
