//! A pool of server connections for one (database, user) pair.
//!
//! Each open or opening server connection holds a `Slot`; dropping the slot (the
//! connection closed) frees it and hands it to the longest waiting client. A
//! server given back goes straight to the longest waiting client, else to the idle
//! list. Waiters are served first come, first served.

pub mod janitor;
pub mod registry;
mod settings;
mod welcome;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{oneshot, Notify};

pub use registry::{PoolKey, Registry};
pub use settings::PoolSettings;
pub use welcome::Welcome;

use crate::auth::scram::ScramKeys;
use crate::auth::Secret;
use crate::control::conn_info::{ConnInfo, ConnRegistry, ConnState};
use crate::server::dns::DnsCache;
use crate::server::{close_reason, login, CancelTarget, ServerAddress, ServerConn, ServerError};
use crate::stats::PoolStats;

/// Why a client could not get a server.
#[derive(Debug, thiserror::Error)]
pub enum AcquireError {
    /// query_wait_timeout passed while waiting.
    #[error("query_wait_timeout")]
    WaitTimeout,
    /// Opening a new connection failed, for a reason that will not pass by
    /// itself (see `ServerError::is_transient`).
    #[error("{0}")]
    Server(Arc<ServerError>),
    /// Logins to this server failed recently; not retried before server_login_retry.
    #[error("server login has been failing, try again later (server_login_retry)")]
    LoginFailing(Arc<ServerError>),
    /// The pool was closed (database removed or pooler shutting down).
    #[error("pool closed")]
    Closed,
}

/// Why `open` gave no server.
enum OpenFailed {
    /// The server could not be reached, transiently: a client waits for the
    /// pool's next attempt (or a server given back meanwhile).
    ServerDown,
    /// What the client is told.
    Refused(AcquireError),
}

/// What a waiting client is handed.
enum Grant {
    Server(Box<ServerConn>),
    Slot(Slot),
}

/// Why a pool gave no slot for a new server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NoSlot {
    /// The pool is closed or paused, or has pool_size servers (plus the
    /// reserve, when allowed).
    PoolFull,
    /// max_db_connections or max_user_connections is reached: closing another
    /// pool's idle server may make room.
    LimitReached,
    /// The server could not be reached a moment ago: the next attempt waits
    /// for server_login_retry, then one attempt at a time.
    ServerDown,
}

/// The right to have one server connection open. Freed on drop.
pub struct Slot {
    pool: Arc<Pool>,
    armed: bool,
}

impl Slot {
    /// The server using this slot closed: it leaves the admin console's list.
    pub(crate) fn forget_server(&self, id: u64) {
        self.pool.links.servers.remove(id);
    }

    /// PgBouncer's line for a server closing, with log_disconnections.
    pub(crate) fn log_closing(&self, server: &ServerConn, why: &str) {
        if self.pool.settings.load().log_disconnections {
            log::info!(
                "S-{}: {}/{}@{} closing because: {why} (age={}s)",
                server.id,
                self.pool.key.database,
                self.pool.key.user,
                server.cancel.address,
                server.connected_at.elapsed().as_secs()
            );
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.armed {
            self.pool.free_slot();
        }
    }
}

#[derive(Default)]
struct PoolState {
    /// Servers are boxed once, when opened: a server changes hands (idle list,
    /// waiter, session) on every transaction, and moving the whole connection
    /// record each time cost more than the allocation.
    idle: VecDeque<Box<ServerConn>>,
    /// Slots taken: open servers plus connections being opened.
    total: usize,
    connecting: usize,
    waiters: VecDeque<oneshot::Sender<Grant>>,
    /// Built from the parameters the pool's first server reported; sent to
    /// clients at login.
    welcome: Option<Arc<Welcome>>,
    /// Keys learned from a client's SCRAM login, for pass-through.
    scram_keys: Option<ScramKeys>,
    /// The secret auth_query returned for the pool's user, who is not in
    /// auth_file: a reload rebuilds the settings from auth_file, and must not
    /// lose it.
    queried_secret: Option<Secret>,
    /// The last login failure, kept for server_login_retry.
    login_failure: Option<(Instant, Arc<ServerError>)>,
    /// When the last attempt to reach the server failed transiently (see
    /// `ServerError::is_transient`); cleared by the next success.
    server_down_since: Option<Instant>,
    /// PAUSE or KILL: no server is handed out or opened; servers coming back
    /// are closed, for this reason.
    paused: Option<&'static str>,
    closed: bool,
    /// A `tick_waiters` task is running for this pool.
    ticking: bool,
    /// The settings' `round_robin`, kept here to be read under the lock the
    /// checkout takes anyway.
    round_robin: bool,
}

/// Counts shared between all pools of one database or one user, for
/// max_db_connections and max_user_connections.
#[derive(Default, Debug)]
pub struct ConnCounter(AtomicUsize);

impl ConnCounter {
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

pub struct Pool {
    pub key: PoolKey,
    settings: ArcSwap<PoolSettings>,
    state: Mutex<PoolState>,
    db_conns: Arc<ConnCounter>,
    user_conns: Arc<ConnCounter>,
    links: RegistryLinks,
    /// Wakes all waiting clients every `RECHECK` while there are any, so that
    /// each can check its deadline and the reserve pool (see `wait`).
    recheck: Notify,
    /// Cancel requests on their way to this pool's servers.
    cancels_in_flight: Arc<AtomicU32>,
    /// Woken when the pool retires its servers (a new generation).
    retired: Notify,
    pub stats: PoolStats,
}

/// What every pool shares with the registry that made it.
#[derive(Clone)]
pub(crate) struct RegistryLinks {
    pub next_server_id: Arc<AtomicU64>,
    /// Where servers are registered for the admin console.
    pub servers: Arc<ConnRegistry>,
    /// All pools, to close an idle server of a sibling when a database or user
    /// limit is reached.
    pub siblings: std::sync::Weak<registry::PoolMap>,
    /// Servers' host names, looked up and kept.
    pub dns: Arc<DnsCache>,
}

/// How often waiting clients look again at their deadline, the reserve pool
/// and room freed in sibling pools. PgBouncer checks from its periodic
/// maintenance too (three times a second), not with a timer per client.
const RECHECK: Duration = Duration::from_millis(250);

/// A snapshot of a pool's counts, for the admin console and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolCounts {
    pub idle: usize,
    /// Idle servers past server_check_delay, to be checked before use.
    pub used: usize,
    pub total: usize,
    pub connecting: usize,
    pub waiting: usize,
}

impl Pool {
    pub(crate) fn new(
        key: PoolKey,
        settings: PoolSettings,
        db_conns: Arc<ConnCounter>,
        user_conns: Arc<ConnCounter>,
        links: RegistryLinks,
    ) -> Arc<Pool> {
        let round_robin = settings.round_robin;
        Arc::new(Pool {
            key,
            settings: ArcSwap::from_pointee(settings),
            state: Mutex::new(PoolState {
                round_robin,
                ..PoolState::default()
            }),
            db_conns,
            user_conns,
            links,
            recheck: Notify::new(),
            cancels_in_flight: Default::default(),
            retired: Notify::new(),
            stats: PoolStats::default(),
        })
    }

    pub fn settings(&self) -> Arc<PoolSettings> {
        self.settings.load_full()
    }

    /// Apply new settings after a reload. Idle servers of an older target are
    /// retired by the janitor; busy ones when they come back.
    pub fn update_settings(self: &Arc<Self>, settings: PoolSettings) {
        let target_changed = settings.target != self.settings.load().target;
        let mut settings = settings;
        settings.generation = self.settings.load().generation + u64::from(target_changed);
        self.lock().round_robin = settings.round_robin;
        self.settings.store(Arc::new(settings));
        if target_changed {
            let mut st = self.lock();
            st.login_failure = None;
            st.server_down_since = None;
            st.welcome = None;
            drop(st);
            self.mark_servers_close_needed(|_| true);
        }
        // A larger pool may let waiters go on now.
        self.grant_waiters();
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn counts(&self) -> PoolCounts {
        let s = self.settings.load();
        let st = self.lock();
        let needs_check = |server: &ServerConn| {
            s.server_check_query.is_some() && server.released_at.elapsed() >= s.server_check_delay
        };
        let used = st.idle.iter().filter(|server| needs_check(server)).count();
        PoolCounts {
            idle: st.idle.len() - used,
            used,
            total: st.total,
            connecting: st.connecting,
            waiting: st.waiters.iter().filter(|w| !w.is_closed()).count(),
        }
    }

    /// Cancel requests on their way to this pool's servers (SHOW POOLS'
    /// cl_active_cancel_req and sv_active_cancel: each is one request and one
    /// connection to the server).
    pub fn cancels_in_flight(&self) -> u32 {
        self.cancels_in_flight.load(Ordering::Relaxed)
    }

    /// Did the last attempt to reach the server fail (transiently)?
    pub fn server_down(&self) -> bool {
        self.lock().server_down_since.is_some()
    }

    pub fn welcome(&self) -> Option<Arc<Welcome>> {
        self.lock().welcome.clone()
    }

    /// Remember keys from a client's SCRAM login for logging in on its behalf.
    pub fn set_scram_keys(&self, keys: ScramKeys) {
        self.lock().scram_keys = Some(keys);
    }

    /// The secret auth_query last returned for the pool's user, if any.
    pub fn queried_secret(&self) -> Option<Secret> {
        self.lock().queried_secret.clone()
    }

    /// Keep the secret auth_query returned for the pool's user; true when it
    /// differs from the one kept before (the password changed, or this is the
    /// first lookup), so the caller rebuilds the login target with it.
    pub fn remember_queried_secret(&self, secret: &Secret) -> bool {
        let mut st = self.lock();
        if st.queried_secret.as_ref() == Some(secret) {
            return false;
        }
        st.queried_secret = Some(secret.clone());
        true
    }

    /// Close the pool: idle servers are closed now (saying `why`), waiters
    /// fail, servers given back later are closed.
    pub fn close(&self, why: &str) {
        let idle = {
            let mut st = self.lock();
            st.closed = true;
            st.waiters.clear();
            std::mem::take(&mut st.idle)
        };
        idle.into_iter().for_each(|server| server.close(why));
    }

    /// PAUSE, or KILL: hand out nothing, close idle servers now and busy ones
    /// when they come back, saying `why`.
    pub fn pause(&self, why: &'static str) {
        let idle = {
            let mut st = self.lock();
            st.paused = Some(why);
            std::mem::take(&mut st.idle)
        };
        idle.into_iter().for_each(|server| server.close(why));
    }

    /// RESUME: let waiting clients go on.
    pub fn resume(self: &Arc<Self>) {
        self.lock().paused = None;
        self.grant_waiters();
    }

    /// Whether its servers are opened to the host name `host`.
    pub fn connects_to(&self, host: &str) -> bool {
        self.settings()
            .target
            .addresses
            .iter()
            .any(|address| matches!(address, ServerAddress::Tcp { host: h, .. } if h == host))
    }

    /// RECONNECT: every server is replaced after its current use.
    pub fn reconnect(self: &Arc<Self>) {
        let mut settings = (**self.settings.load()).clone();
        settings.generation += 1;
        self.settings.store(Arc::new(settings));
        let idle = std::mem::take(&mut self.lock().idle);
        idle.into_iter()
            .for_each(|server| server.close(close_reason::CONFIG_CHANGED));
        self.mark_servers_close_needed(|_| true);
    }

    /// Mark the pool's open servers that `which` picks to be closed after
    /// their current use (SHOW SERVERS close_needed), and wake the sessions
    /// that close theirs at once (server_fast_close). Returns how many.
    pub fn mark_servers_close_needed(&self, which: impl Fn(&ConnInfo) -> bool) -> usize {
        let mut marked = 0;
        for server in self.links.servers.all() {
            if server.pool == self.key && !server.close_needed() && which(&server) {
                server.set_close_needed();
                marked += 1;
            }
        }
        self.retired.notify_waiters();
        marked
    }

    /// Wait until `server` (of `generation`) is retired: RECONNECT, a reload
    /// that changed the pool's target, or its address dropped by DNS.
    pub async fn retired(&self, server: &ConnInfo, generation: u64) {
        loop {
            let notified = self.retired.notified();
            tokio::pin!(notified);
            // Registered before the check, so a retirement in between wakes it.
            notified.as_mut().enable();
            if self.settings.load().generation != generation || server.close_needed() {
                return;
            }
            notified.await;
        }
    }

    /// Servers opened for an older target generation, or marked
    /// close_needed, that are still open.
    pub fn outdated_servers(&self) -> usize {
        let generation = self.settings.load().generation;
        self.links
            .servers
            .all()
            .iter()
            .filter(|s| s.pool == self.key && (s.generation != generation || s.close_needed()))
            .count()
    }

    /// When this pool has room but max_db_connections or max_user_connections
    /// is reached (`NoSlot::LimitReached`), close the longest idle server of
    /// another pool of the same database or user, as PgBouncer does. True if
    /// one was closed.
    fn evict_idle_sibling(&self) -> bool {
        let s = self.settings.load();
        let db_full = s.max_db_connections > 0 && self.db_conns.get() >= s.max_db_connections;
        let user_full =
            s.max_user_connections > 0 && self.user_conns.get() >= s.max_user_connections;
        if !db_full && !user_full {
            return false;
        }
        let Some(pools) = self.links.siblings.upgrade() else {
            return false;
        };
        let candidates: Vec<Arc<Pool>> = pools
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|p| p.key != self.key)
            .filter(|p| {
                (db_full && p.key.database == self.key.database)
                    || (user_full && p.key.user == self.key.user)
            })
            .cloned()
            .collect();
        for pool in candidates {
            // One pool lock at a time: never ours and a sibling's together.
            let victim = pool.lock().idle.pop_front();
            if let Some(server) = victim {
                log::debug!(
                    "{server:?}: closing idle server to make room for {}/{}",
                    self.key.database,
                    self.key.user
                );
                server.close(close_reason::EVICTED);
                return true;
            }
        }
        false
    }

    /// Take a slot if the pool and the database/user limits allow one more server.
    fn try_slot(self: &Arc<Self>, st: &mut PoolState, allow_reserve: bool) -> Result<Slot, NoSlot> {
        let s = self.settings.load();
        let limit = s.pool_size
            + if allow_reserve {
                s.reserve_pool_size
            } else {
                0
            };
        if st.closed || st.paused.is_some() || st.total >= limit {
            return Err(NoSlot::PoolFull);
        }
        if let Some(failed) = st.server_down_since {
            if st.connecting > 0 || failed.elapsed() < s.server_login_retry {
                return Err(NoSlot::ServerDown);
            }
        }
        if !take_counter(&self.db_conns, s.max_db_connections) {
            return Err(NoSlot::LimitReached);
        }
        if !take_counter(&self.user_conns, s.max_user_connections) {
            self.db_conns.0.fetch_sub(1, Ordering::Relaxed);
            return Err(NoSlot::LimitReached);
        }
        st.total += 1;
        Ok(Slot {
            pool: self.clone(),
            armed: true,
        })
    }

    fn free_slot(self: &Arc<Self>) {
        {
            let mut st = self.lock();
            st.total -= 1;
            self.db_conns.0.fetch_sub(1, Ordering::Relaxed);
            self.user_conns.0.fetch_sub(1, Ordering::Relaxed);
            drop(st);
        }
        self.grant_waiters();
    }

    /// Give free slots to waiting clients while the limits allow.
    fn grant_waiters(self: &Arc<Self>) {
        let mut st = self.lock();
        while st.waiters.iter().any(|w| !w.is_closed()) {
            let Ok(mut slot) = self.try_slot(&mut st, false) else {
                return;
            };
            loop {
                match st.waiters.pop_front() {
                    Some(waiter) => match waiter.send(Grant::Slot(slot)) {
                        Ok(()) => break,
                        Err(Grant::Slot(back)) => slot = back,
                        Err(Grant::Server(_)) => unreachable!("sent a slot"),
                    },
                    None => {
                        // Nobody took it: undo without re-entering free_slot.
                        slot.armed = false;
                        st.total -= 1;
                        self.db_conns.0.fetch_sub(1, Ordering::Relaxed);
                        self.user_conns.0.fetch_sub(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }

    /// Give a server back after use. It goes to the longest waiting client, else
    /// to the idle list; a retired or closed pool's server is closed.
    pub fn release(self: &Arc<Self>, mut server: Box<ServerConn>) {
        if server.cancel.in_flight() {
            self.release_when_canceled(server);
            return;
        }
        let generation = self.settings.load().generation;
        let mut st = self.lock();
        if st.closed || st.paused.is_some() || server.is_retired(generation) {
            let why = match st.paused {
                Some(why) if !st.closed => why,
                _ => close_reason::CONFIG_CHANGED,
            };
            drop(st);
            server.close(why);
            return;
        }
        server.released_at = Instant::now();
        server.info.link_to(0);
        server.info.set_state(ConnState::Idle);
        while let Some(waiter) = st.waiters.pop_front() {
            match waiter.send(Grant::Server(server)) {
                Ok(()) => return,
                Err(Grant::Server(back)) => server = back,
                Err(Grant::Slot(_)) => unreachable!("sent a server"),
            }
        }
        st.idle.push_back(server);
    }

    /// A cancel request for `server` is still on its way: given to another
    /// client now, the server could have that client's query canceled. Hold it,
    /// in state being_canceled, until PostgreSQL has taken every cancel request
    /// (see `crate::server::cancel`). No new one can start: the client that
    /// used the server has let go of it.
    fn release_when_canceled(self: &Arc<Self>, server: Box<ServerConn>) {
        server.info.link_to(0);
        server.info.set_state(ConnState::BeingCanceled);
        let pool = self.clone();
        tokio::spawn(async move {
            server.cancel.settled().await;
            pool.release(server);
        });
    }

    /// Get a server for a client: an idle one, a new one, or the next one given
    /// back, waiting at most `wait_timeout` (zero: forever). A client that has
    /// waited query_wait_notify finds `waited_long` set, and waits on; it is
    /// checked when waiters wake to look at their deadlines, so at most one
    /// `RECHECK` late, with no timer of its own.
    pub async fn acquire(
        self: &Arc<Self>,
        wait_timeout: Duration,
        waited_long: Option<&AtomicBool>,
    ) -> Result<Box<ServerConn>, AcquireError> {
        // The clock is read only if this client has to wait.
        let mut started = None;
        loop {
            let step = self.take_or_queue()?;
            let step = match step {
                Ok(grant) => grant,
                Err(mut rx) => {
                    let started = *started.get_or_insert_with(Instant::now);
                    let deadline = (!wait_timeout.is_zero()).then(|| started + wait_timeout);
                    self.wait(&mut rx, started, deadline, waited_long).await?
                }
            };
            match step {
                Grant::Server(server) => {
                    if let Some(server) = self.checked(server).await {
                        return Ok(server);
                    }
                }
                // Boxed: logging in to a server is the rare path, and its state
                // would otherwise make every client's round larger.
                Grant::Slot(slot) => match Box::pin(self.open(slot)).await {
                    Ok(server) => return Ok(server),
                    // Wait (within wait_timeout) for the next attempt.
                    Err(OpenFailed::ServerDown) => continue,
                    Err(OpenFailed::Refused(e)) => return Err(e),
                },
            }
        }
    }

    /// Under the lock: an idle server, else a slot for a new one, else a place
    /// in the queue.
    #[allow(clippy::type_complexity)]
    fn take_or_queue(
        self: &Arc<Self>,
    ) -> Result<Result<Grant, oneshot::Receiver<Grant>>, AcquireError> {
        for attempt in 0..2 {
            let mut st = self.lock();
            if st.closed {
                return Err(AcquireError::Closed);
            }
            if st.paused.is_none() {
                let next = if st.round_robin {
                    st.idle.pop_front()
                } else {
                    st.idle.pop_back()
                };
                if let Some(server) = next {
                    return Ok(Ok(Grant::Server(server)));
                }
                match self.try_slot(&mut st, false) {
                    Ok(slot) => return Ok(Ok(Grant::Slot(slot))),
                    // Only a database or user limit can be helped by closing
                    // another pool's idle server (tried once).
                    Err(NoSlot::LimitReached) if attempt == 0 => {
                        drop(st);
                        if self.evict_idle_sibling() {
                            continue;
                        }
                        st = self.lock();
                    }
                    Err(_) => {}
                }
            }
            let (tx, rx) = oneshot::channel();
            st.waiters.push_back(tx);
            if !st.ticking {
                st.ticking = true;
                tokio::spawn(tick_waiters(Arc::downgrade(self)));
            }
            return Ok(Err(rx));
        }
        unreachable!("the second attempt always returns")
    }

    /// Wait for a grant, taking a reserve slot once reserve_pool_timeout has
    /// passed and checking the db/user limits again now and then (another pool's
    /// server closing frees room without waking this pool's waiters).
    ///
    /// The checks run when `tick_waiters` wakes every waiter of the pool, so a
    /// deadline is noticed up to one `RECHECK` late. A timer for each waiting
    /// client cost about 900 instructions per wait (callgrind), a tenth of
    /// what the pooler spends on a whole transaction.
    async fn wait(
        self: &Arc<Self>,
        rx: &mut oneshot::Receiver<Grant>,
        started: Instant,
        deadline: Option<Instant>,
        waited_long: Option<&AtomicBool>,
    ) -> Result<Grant, AcquireError> {
        loop {
            let recheck = self.recheck.notified();
            tokio::select! {
                biased;
                grant = &mut *rx => return grant.map_err(|_| AcquireError::Closed),
                () = recheck => {}
            }
            let s = self.settings.load_full();
            let reserve_ok = s.reserve_pool_size > 0 && started.elapsed() >= s.reserve_pool_timeout;
            let mut slot = {
                let mut st = self.lock();
                self.try_slot(&mut st, reserve_ok)
            };
            if matches!(slot, Err(NoSlot::LimitReached)) && self.evict_idle_sibling() {
                let mut st = self.lock();
                slot = self.try_slot(&mut st, reserve_ok);
            }
            let slot = slot.ok();
            let now = Instant::now();
            if let Some(waited_long) = waited_long {
                let notify = s.query_wait_notify;
                if !notify.is_zero() && now.duration_since(started) >= notify {
                    waited_long.store(true, Ordering::Relaxed);
                }
            }
            let timed_out = deadline.is_some_and(|d| now >= d);
            if slot.is_some() || timed_out {
                // Leave the queue; a grant that arrived meanwhile still counts.
                rx.close();
                if let Ok(grant) = rx.try_recv() {
                    return Ok(grant); // any extra slot is freed on drop
                }
                if let Some(slot) = slot {
                    return Ok(Grant::Slot(slot));
                }
                return Err(AcquireError::WaitTimeout);
            }
        }
    }

    /// Checks before an idle server is handed out; `None` when it was closed.
    async fn checked(self: &Arc<Self>, mut server: Box<ServerConn>) -> Option<Box<ServerConn>> {
        let s = self.settings.load_full();
        let expired =
            !s.server_lifetime.is_zero() && server.connected_at.elapsed() >= s.server_lifetime;
        let unfit = if expired {
            Some(close_reason::LIFETIME_OVER)
        } else if server.is_retired(s.generation) {
            Some(close_reason::CONFIG_CHANGED)
        } else if !server.is_quiet() {
            Some(close_reason::GOT_DIRTY)
        } else {
            None
        };
        if let Some(why) = unfit {
            server.close(why);
            return None;
        }
        // The clock is read only when a check is configured.
        let due_check = s
            .server_check_query
            .as_deref()
            .filter(|_| server.released_at.elapsed() >= s.server_check_delay);
        if let Some(query) = due_check {
            // Boxed: the check is the rare path, and its state would otherwise
            // make every client's round larger.
            let outcome = Box::pin(tokio::time::timeout(
                s.server_connect_timeout.max(Duration::from_secs(1)),
                server.run_internal(query, s.max_packet_size),
            ))
            .await;
            if !matches!(outcome, Ok(Ok(()))) {
                log::warn!("{server:?}: server check query failed, closing");
                server.close(close_reason::CHECK_FAILED);
                return None;
            }
        }
        Some(server)
    }

    /// Open a new server connection in `slot`.
    async fn open(self: &Arc<Self>, slot: Slot) -> Result<Box<ServerConn>, OpenFailed> {
        let s = self.settings.load_full();
        let scram_keys = {
            let mut st = self.lock();
            if let Some((when, err)) = &st.login_failure {
                if when.elapsed() < s.server_login_retry {
                    return Err(OpenFailed::Refused(AcquireError::LoginFailing(err.clone())));
                }
            }
            st.connecting += 1;
            st.scram_keys.clone()
        };
        let attempt = async {
            let login = login::login(
                &s.target,
                &s.tcp,
                (&self.links.dns, s.dns),
                &s.server_tls,
                scram_keys.as_ref(),
                s.max_packet_size,
            );
            if s.server_connect_timeout.is_zero() {
                login.await
            } else {
                tokio::time::timeout(s.server_connect_timeout, login)
                    .await
                    .unwrap_or(Err(ServerError::Timeout))
            }
        };
        let result = attempt.await;
        let mut st = self.lock();
        st.connecting -= 1;
        match result {
            Ok(logged_in) => {
                st.login_failure = None;
                if st.server_down_since.take().is_some() {
                    log::info!(
                        "{}/{}: server reachable again",
                        self.key.database,
                        self.key.user
                    );
                }
                if st.welcome.is_none() {
                    st.welcome = Some(Arc::new(Welcome::new(&logged_in.report)));
                }
                drop(st);
                let id = self.links.next_server_id.fetch_add(1, Ordering::Relaxed);
                let local = logged_in.stream.local_addr();
                let peer = logged_in.stream.peer_addr();
                let mut info =
                    ConnInfo::new(id, self.key.clone(), self.key.user.clone(), peer, local);
                info.remote_pid = logged_in.backend_pid;
                info.generation = s.generation;
                info.tls = logged_in
                    .stream
                    .tls_description()
                    .map(String::into_boxed_str);
                info.set_state(ConnState::Idle);
                if let Some(app) = logged_in.report.tracked.get("application_name") {
                    info.set_application_name(app);
                }
                let info = Arc::new(info);
                self.links.servers.insert(info.clone());
                // PgBouncer's line, with log_connections.
                let level = if s.log_connections {
                    log::Level::Info
                } else {
                    log::Level::Debug
                };
                let local = logged_in.stream.local_addr();
                log::log!(
                    level,
                    "S-{id}: {}/{}@{} new connection to server (from {})",
                    self.key.database,
                    self.key.user,
                    logged_in.address,
                    local.map_or_else(|| "unix socket".to_owned(), |a| a.to_string())
                );
                if let Some(tls) = &info.tls {
                    log::debug!(
                        "S-{id}: {}/{}@{} SSL established: {tls}",
                        self.key.database,
                        self.key.user,
                        logged_in.address
                    );
                }
                Ok(Box::new(ServerConn {
                    id,
                    stream: logged_in.stream,
                    cancel: Arc::new(CancelTarget::new(
                        logged_in.address,
                        (logged_in.backend_pid, logged_in.backend_secret),
                        self.key.clone(),
                        self.cancels_in_flight.clone(),
                    )),
                    params: logged_in.report.tracked,
                    connected_at: logged_in.connected_at,
                    released_at: Instant::now(),
                    generation: s.generation,
                    info,
                    statements: Default::default(),
                    slot,
                }))
            }
            Err(e) => {
                let transient = e.is_transient();
                let e = Arc::new(e);
                if transient {
                    st.server_down_since = Some(Instant::now());
                } else if matches!(
                    *e,
                    ServerError::Refused(_) | ServerError::NoPassword(_) | ServerError::Scram(_)
                ) {
                    // Authentication problems will not fix themselves; don't hammer.
                    st.login_failure = Some((Instant::now(), e.clone()));
                }
                drop(st);
                drop(slot);
                log::warn!(
                    "{}/{}: server connection failed: {e}",
                    self.key.database,
                    self.key.user
                );
                if transient {
                    Err(OpenFailed::ServerDown)
                } else {
                    Err(OpenFailed::Refused(AcquireError::Server(e)))
                }
            }
        }
    }

    /// Janitor work: retire idle servers past their lifetime or idle timeout, or of
    /// an old target; returns them for closing outside the lock.
    #[allow(clippy::vec_box)] // they were boxed in the idle list; no point moving them out
    fn take_expired(&self, now: Instant) -> Vec<(Box<ServerConn>, &'static str)> {
        let s = self.settings.load();
        let mut st = self.lock();
        let mut expired = Vec::new();
        let mut keep = VecDeque::with_capacity(st.idle.len());
        for server in st.idle.drain(..) {
            let too_old = !s.server_lifetime.is_zero()
                && now.duration_since(server.connected_at) >= s.server_lifetime;
            let too_idle = !s.server_idle_timeout.is_zero()
                && now.duration_since(server.released_at) >= s.server_idle_timeout;
            let why = if too_old {
                close_reason::LIFETIME_OVER
            } else if too_idle {
                close_reason::IDLE_TIMEOUT
            } else if server.is_retired(s.generation) {
                close_reason::CONFIG_CHANGED
            } else {
                keep.push_back(server);
                continue;
            };
            expired.push((server, why));
        }
        st.idle = keep;
        expired
    }

    /// How many servers to open to reach min_pool_size (0 when not possible).
    fn missing_for_min(&self) -> usize {
        let s = self.settings.load();
        let st = self.lock();
        if st.closed || st.login_failure.is_some() || s.min_pool_size == 0 {
            return 0;
        }
        s.min_pool_size.saturating_sub(st.total)
    }
}

fn take_counter(counter: &ConnCounter, limit: usize) -> bool {
    let prev = counter.0.fetch_add(1, Ordering::Relaxed);
    if limit > 0 && prev >= limit {
        counter.0.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    true
}

/// Wake a pool's waiting clients every `RECHECK` for as long as any wait;
/// started by the first client to queue, it ends when the queue is empty (or
/// the pool is gone).
async fn tick_waiters(pool: std::sync::Weak<Pool>) {
    loop {
        tokio::time::sleep(RECHECK).await;
        let Some(pool) = pool.upgrade() else { return };
        {
            let mut st = pool.lock();
            st.waiters.retain(|w| !w.is_closed());
            if st.waiters.is_empty() {
                st.ticking = false;
                return;
            }
        }
        pool.recheck.notify_waiters();
    }
}
