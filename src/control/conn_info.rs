//! What the admin console shows about each connection: a small shared record per
//! client and per server, registered at connect and removed at disconnect. Its
//! changing parts are atomics, set a few times per transaction.

// Touched at every login and logout: foldhash, not SipHash (docs/architecture.md).
use foldhash::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use atomic_waker::AtomicWaker;
use nix::time::{clock_gettime, ClockId};

use crate::net::stream::PeerAddr;
use crate::pool::PoolKey;

/// Microseconds since the Unix epoch, now.
///
/// Read a few times per transaction, so straight from the clock: going through
/// `SystemTime` and a `Duration` cost about twice as much (callgrind).
pub fn now_us() -> u64 {
    match clock_gettime(ClockId::CLOCK_REALTIME) {
        Ok(t) => u64::try_from(t.tv_sec())
            .unwrap_or(0)
            .saturating_mul(1_000_000)
            .saturating_add(t.tv_nsec() as u64 / 1_000),
        Err(_) => 0,
    }
}

/// A connection's state as SHOW CLIENTS / SHOW SERVERS name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnState {
    /// Client: logged in, not waiting. Server: linked to a client.
    Active = 0,
    /// Client waiting for a server.
    Waiting = 1,
    /// Server idle in its pool.
    Idle = 2,
    /// Server logging in.
    New = 3,
    /// Server held back from its pool until a cancel request for it has
    /// reached PostgreSQL.
    BeingCanceled = 4,
    /// Client: a CancelRequest connection whose request is on its way to
    /// PostgreSQL (PgBouncer's active_cancel_req).
    ActiveCancelReq = 5,
    /// Server: the connection carrying a cancel request to PostgreSQL
    /// (PgBouncer's active_cancel).
    ActiveCancel = 6,
}

impl ConnState {
    fn from_u8(v: u8) -> ConnState {
        match v {
            1 => ConnState::Waiting,
            2 => ConnState::Idle,
            3 => ConnState::New,
            4 => ConnState::BeingCanceled,
            5 => ConnState::ActiveCancelReq,
            6 => ConnState::ActiveCancel,
            _ => ConnState::Active,
        }
    }
}

/// One client or server connection.
#[derive(Debug)]
pub struct ConnInfo {
    pub id: u64,
    pub pool: PoolKey,
    /// The client's login user (for servers: the pool's user).
    pub user: Arc<str>,
    pub peer: PeerAddr,
    pub local: Option<SocketAddr>,
    pub connect_time_us: u64,
    /// Servers: the backend pid. Clients on a Unix socket: their process id.
    pub remote_pid: i32,
    /// A connection on TLS: its protocol and cipher (`TLSv1.3/TLS_AES_256_GCM_SHA384`).
    pub tls: Option<Box<str>>,
    /// Servers: the pool target generation they were opened for.
    pub generation: u64,
    state: AtomicU8,
    request_time_us: AtomicU64,
    wait_since_us: AtomicU64,
    /// The partner connection's id (client <-> server), 0 when unlinked.
    link: AtomicU64,
    pub application_name: Mutex<String>,
    killed: AtomicBool,
    /// Servers: to be closed instead of going back to their pool (their
    /// address was dropped from their host name's addresses).
    close_needed: AtomicBool,
    /// Clients: the statements they prepared; servers: those prepared on
    /// them (with prepared statement tracking).
    prepared_statements: AtomicU32,
    /// The one task that waits in `killed` (the connection's own). Cheaper than
    /// a `Notify`, which locks a waiter list on every wait: a session waits
    /// for a kill several times per transaction.
    kill_waker: AtomicWaker,
}

impl ConnInfo {
    pub fn new(
        id: u64,
        pool: PoolKey,
        user: Arc<str>,
        peer: PeerAddr,
        local: Option<SocketAddr>,
    ) -> ConnInfo {
        let now = now_us();
        let remote_pid = match peer {
            PeerAddr::Unix { pid, .. } => pid,
            PeerAddr::Tcp(_) => 0,
        };
        ConnInfo {
            id,
            pool,
            user,
            peer,
            local,
            connect_time_us: now,
            remote_pid,
            tls: None,
            generation: 0,
            state: AtomicU8::new(ConnState::Active as u8),
            request_time_us: AtomicU64::new(now),
            wait_since_us: AtomicU64::new(0),
            link: AtomicU64::new(0),
            application_name: Mutex::new(String::new()),
            killed: AtomicBool::new(false),
            close_needed: AtomicBool::new(false),
            prepared_statements: AtomicU32::new(0),
            kill_waker: AtomicWaker::new(),
        }
    }

    pub fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Ordering::Relaxed))
    }

    pub fn set_state(&self, state: ConnState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// The client starts waiting for a server (or a request begins).
    pub fn start_waiting(&self) {
        let now = now_us();
        self.wait_since_us.store(now, Ordering::Relaxed);
        self.request_time_us.store(now, Ordering::Relaxed);
        self.set_state(ConnState::Waiting);
    }

    /// Linked to a partner (0: unlinked); the state follows.
    pub fn link_to(&self, partner: u64) {
        self.link_at(partner, now_us());
    }

    fn link_at(&self, partner: u64, now_us: u64) {
        self.link.store(partner, Ordering::Relaxed);
        self.wait_since_us.store(0, Ordering::Relaxed);
        self.request_time_us.store(now_us, Ordering::Relaxed);
    }

    pub fn link(&self) -> u64 {
        self.link.load(Ordering::Relaxed)
    }

    pub fn request_time_us(&self) -> u64 {
        self.request_time_us.load(Ordering::Relaxed)
    }

    /// When it began waiting, if it is waiting.
    pub fn wait_since_us(&self) -> Option<u64> {
        match self.wait_since_us.load(Ordering::Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    pub fn prepared_statements(&self) -> u32 {
        self.prepared_statements.load(Ordering::Relaxed)
    }

    pub fn set_prepared_statements(&self, count: usize) {
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        self.prepared_statements.store(count, Ordering::Relaxed);
    }

    pub fn set_application_name(&self, name: &str) {
        let mut current = self
            .application_name
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if *current != name {
            name.clone_into(&mut current);
        }
    }

    /// A server to close once its current use ends (SHOW SERVERS close_needed).
    pub fn set_close_needed(&self) {
        self.close_needed.store(true, Ordering::Relaxed);
    }

    pub fn close_needed(&self) -> bool {
        self.close_needed.load(Ordering::Relaxed)
    }

    /// Ask the connection's task to end (KILL, KILL_CLIENT, shutdown).
    pub fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        self.kill_waker.wake();
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }

    /// Resolves once `kill` has been called. Only the connection's own task
    /// may wait here: a second waiter would take the first one's wake-up.
    pub async fn killed(&self) {
        std::future::poll_fn(|cx| self.poll_killed(cx)).await
    }

    /// `killed` as a poll, for waits written by hand.
    pub fn poll_killed(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.is_killed() {
            return Poll::Ready(());
        }
        self.kill_waker.register(cx.waker());
        // A kill between the check and the registration woke nobody.
        if self.is_killed() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Link a client and the server it was given, with one reading of the clock.
pub fn link(client: &ConnInfo, server: &ConnInfo) {
    let now = now_us();
    client.link_at(server.id, now);
    server.link_at(client.id, now);
}

/// All connections of one kind, by id, and how many each database and each
/// user has (for max_db_client_connections and max_user_client_connections).
#[derive(Default)]
pub struct ConnRegistry {
    conns: Mutex<Registered>,
}

#[derive(Default)]
struct Registered {
    by_id: HashMap<u64, Arc<ConnInfo>>,
    per_database: HashMap<Arc<str>, usize>,
    per_user: HashMap<Arc<str>, usize>,
}

/// The limit that refused a registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CountLimit {
    Database,
    User,
}

impl Registered {
    fn count(map: &HashMap<Arc<str>, usize>, key: &str) -> usize {
        map.get(key).copied().unwrap_or(0)
    }

    fn uncount(map: &mut HashMap<Arc<str>, usize>, key: &Arc<str>) {
        if let Some(n) = map.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                map.remove(key);
            }
        }
    }
}

impl ConnRegistry {
    pub fn insert(&self, info: Arc<ConnInfo>) {
        // No limits: cannot be refused.
        let _ = self.insert_within(info, 0, 0);
    }

    /// Register `info` unless its database already has `max_per_database`
    /// connections here, or its user `max_per_user` (0: no limit).
    pub fn insert_within(
        &self,
        info: Arc<ConnInfo>,
        max_per_database: usize,
        max_per_user: usize,
    ) -> Result<(), CountLimit> {
        let mut r = self.lock();
        let full = |limit: usize, count: usize| limit > 0 && count >= limit;
        if full(
            max_per_database,
            Registered::count(&r.per_database, &info.pool.database),
        ) {
            return Err(CountLimit::Database);
        }
        if full(max_per_user, Registered::count(&r.per_user, &info.user)) {
            return Err(CountLimit::User);
        }
        *r.per_database
            .entry(info.pool.database.clone())
            .or_default() += 1;
        *r.per_user.entry(info.user.clone()).or_default() += 1;
        r.by_id.insert(info.id, info);
        Ok(())
    }

    pub fn remove(&self, id: u64) {
        let mut r = self.lock();
        if let Some(info) = r.by_id.remove(&id) {
            Registered::uncount(&mut r.per_database, &info.pool.database);
            Registered::uncount(&mut r.per_user, &info.user);
        }
    }

    /// How many registered connections belong to `database`.
    pub fn count_database(&self, database: &str) -> usize {
        Registered::count(&self.lock().per_database, database)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registered> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: u64) -> Option<Arc<ConnInfo>> {
        self.lock().by_id.get(&id).cloned()
    }

    /// All of them, ordered by id.
    pub fn all(&self) -> Vec<Arc<ConnInfo>> {
        let mut all: Vec<_> = self.lock().by_id.values().cloned().collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn client(id: u64, database: &str, user: &str) -> Arc<ConnInfo> {
        let pool = PoolKey {
            database: database.into(),
            user: user.into(),
        };
        let peer = PeerAddr::Unix { port: 0, pid: 0 };
        Arc::new(ConnInfo::new(id, pool, user.into(), peer, None))
    }

    #[test]
    fn registrations_are_counted_per_database_and_user_within_their_limits() {
        let reg = ConnRegistry::default();
        reg.insert_within(client(1, "a", "u"), 2, 0).unwrap();
        reg.insert_within(client(2, "a", "v"), 2, 0).unwrap();
        assert_eq!(
            reg.insert_within(client(3, "a", "w"), 2, 0),
            Err(CountLimit::Database)
        );
        // Another database is not counted against this one.
        reg.insert_within(client(4, "b", "u"), 2, 2).unwrap();
        assert_eq!(
            reg.insert_within(client(5, "c", "u"), 0, 2),
            Err(CountLimit::User)
        );
        assert_eq!(reg.len(), 3);
        // Leaving frees the place.
        reg.remove(1);
        reg.insert_within(client(6, "a", "u"), 2, 2).unwrap();
        reg.remove(99);
        assert_eq!(reg.len(), 3);
    }

    #[test]
    fn now_us_is_the_wall_clock_in_microseconds() {
        let before = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let ours = now_us();
        let after = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        assert!(
            before.as_micros() as u64 <= ours && ours <= after.as_micros() as u64,
            "{before:?} <= {ours} µs <= {after:?}"
        );
    }
}
