//! A logged-in client: wait for it to speak, get it a server, relay until the
//! transaction (or statement, or session) ends, give the server back. Repeat.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::cancel::CancelLink;
use super::login::{server_refusal, LoginParts};
use super::relay::{Half, Relay, RelayEvent, TxState};
use super::KILLED;
use crate::config::PoolMode;
use crate::control::conn_info::{ConnInfo, ConnState};
use crate::net::Stream;
use crate::pool::{Pool, PoolSettings};
use crate::prepared::Tracker;
use crate::protocol::error::{put_error, sqlstate, Severity};
use crate::protocol::ProtocolError;
use crate::server::{close_reason, ParamSet, ServerConn};
use crate::shared::Shared;
use crate::stats::Delta;

/// Why a client was disconnected, for the log line (PgBouncer's wording).
#[derive(Debug)]
enum Disconnect {
    ClientClose,
    /// The pooler closed it; the client has been sent a FATAL with this text.
    Pooler(String),
}

pub struct Session {
    shared: Arc<Shared>,
    id: u64,
    stream: Stream,
    pool: Arc<Pool>,
    params: ParamSet,
    cancel_key: (i32, i32),
    cancel_link: Arc<CancelLink>,
    connected_at: Instant,
    /// What the admin console shows; also how KILL reaches this session.
    info: Arc<ConnInfo>,
    /// What the client sent after its login without waiting for the answer:
    /// its first request (almost always empty).
    pipelined: Box<[u8]>,
    /// Statement tracking (max_prepared_statements): during a transaction,
    /// and between transactions while the client has statements prepared.
    /// Boxed, so that any other idle client pays a pointer.
    tracker: Option<Box<Tracker>>,
}

/// The settings one round (a wait for a server, then a transaction) consults,
/// read from the configuration once per round rather than at every use.
struct Tuning {
    pool: Arc<PoolSettings>,
    query_wait_timeout: Duration,
    query_timeout: Duration,
    idle_transaction_timeout: Duration,
    transaction_timeout: Duration,
    pkt_buf: usize,
    disable_pqexec: bool,
    max_prepared_statements: usize,
}

impl Session {
    pub fn new(shared: Arc<Shared>, id: u64, stream: Stream, parts: LoginParts) -> Session {
        // Listed and counted at login; unlisted by `drop`.
        parts.admission.hand_over();
        Session {
            shared,
            id,
            stream,
            pool: parts.pool,
            params: parts.params,
            cancel_key: parts.cancel_key,
            cancel_link: parts.cancel_link,
            connected_at: parts.connected_at,
            info: parts.info,
            pipelined: parts.pipelined.to_vec().into_boxed_slice(),
            tracker: None,
        }
    }

    /// Serve the client until it leaves. (One `async fn` for the whole loop:
    /// every level of nesting adds to the future each idle client keeps.)
    pub async fn run(&mut self) {
        let reason = 'serve: {
            if let Some(round) = self.pipelined_round() {
                if let Some(reason) = round.await {
                    break 'serve reason;
                }
            }
            loop {
                let first = match self.read_idle().await {
                    Ok(Some(half)) => half,
                    Ok(None) => break 'serve Disconnect::ClientClose,
                    Err(reason) => break 'serve reason,
                };
                if let Some(reason) = self.begin_round(first).await {
                    break 'serve reason;
                }
            }
        };
        let config = self.shared.config.load();
        if config.general.log_disconnections {
            let why = match &reason {
                Disconnect::ClientClose => "client close request".to_owned(),
                Disconnect::Pooler(message) => message.clone(),
            };
            log::info!(
                "C-{}: {}/{}@{} closing because: {why} (age={}s)",
                self.id,
                self.info.pool.database,
                self.info.user,
                self.info.peer,
                self.connected_at.elapsed().as_secs()
            );
        }
    }

    /// A round for what the client pipelined behind its login, if anything.
    #[allow(clippy::type_complexity)]
    fn pipelined_round(
        &mut self,
    ) -> Option<Pin<Box<impl Future<Output = Option<Disconnect>> + Send + '_>>> {
        if self.pipelined.is_empty() {
            return None;
        }
        let bytes = std::mem::take(&mut self.pipelined);
        let first = Half::holding(self.shared.config.load().general.pkt_buf, &bytes);
        Some(self.begin_round(first))
    }

    /// Start a round with what the client sent: `None` when it ended with the
    /// server given back, else why the client is done. Getting a server (which
    /// may log in to PostgreSQL) and relaying are boxed: the task's future is as
    /// large as its largest state, and an idle client should cost only the
    /// wait for its next bytes.
    #[allow(clippy::type_complexity)]
    fn begin_round(
        &mut self,
        first: Half,
    ) -> Pin<Box<impl Future<Output = Option<Disconnect>> + Send + '_>> {
        Box::pin(self.round(first))
    }

    /// One round: get a server, relay until it can be given back (`None`) or
    /// the client is done (why).
    ///
    /// This future is allocated for every transaction: keeping it within
    /// 1 KiB lets malloc serve it from its per-thread cache, which is why the
    /// rare paths below it (opening or checking a server, the reset query)
    /// are boxed and the request and settings are lent, not moved, further down.
    async fn round(&mut self, mut first: Half) -> Option<Disconnect> {
        if first.starts_with_terminate() {
            return Some(Disconnect::ClientClose);
        }
        if let Some(t) = first.leading_unknown_message() {
            // Refused before it costs a server.
            return Some(Box::pin(self.refuse_unknown_message(t)).await);
        }
        let tuning = self.tuning();
        let server = match self.acquire(&tuning).await {
            Ok(server) => server,
            Err(reason) => return Some(reason),
        };
        self.transaction(server, &mut first, &tuning).await
    }

    fn tuning(&self) -> Tuning {
        let config = self.shared.config.load();
        let user = config.users.get(&*self.info.user);
        Tuning {
            pool: self.pool.settings(),
            query_wait_timeout: config.general.query_wait_timeout,
            query_timeout: user
                .and_then(|u| u.query_timeout)
                .unwrap_or(config.general.query_timeout),
            idle_transaction_timeout: user
                .and_then(|u| u.idle_transaction_timeout)
                .unwrap_or(config.general.idle_transaction_timeout),
            transaction_timeout: user
                .and_then(|u| u.transaction_timeout)
                .unwrap_or(config.general.transaction_timeout),
            pkt_buf: config.general.pkt_buf,
            disable_pqexec: config.general.disable_pqexec,
            max_prepared_statements: config.general.max_prepared_statements as usize,
        }
    }

    /// Wait, holding no server and no buffer, until the client sends something.
    /// `Ok(None)` when it closes.
    ///
    /// Every idle client sits here, so the wait keeps almost no state of its
    /// own: the socket and the kill flag hold the task's waker, and the timer
    /// is allocated only when client_idle_timeout is set.
    async fn read_idle(&mut self) -> Result<Option<Half>, Disconnect> {
        // In a block of its own, so that nothing of the wait is kept while a
        // FATAL is written.
        let (code, message) = {
            let (pkt_buf, mut timer) = self.idle_settings();
            let session = &mut *self;
            let end = std::future::poll_fn(move |cx| {
                if session.info.poll_killed(cx).is_ready() {
                    return Poll::Ready(IdleEnd::Killed);
                }
                match session.stream.poll_read_ready(cx) {
                    Poll::Ready(Ok(())) => {
                        // A buffer only now that there is something to read. A
                        // read that does not fill it also tells the runtime the
                        // socket is drained, which spares a failing read later.
                        let mut half = Half::new(pkt_buf);
                        match half.poll_fill(&mut session.stream, cx) {
                            Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(IdleEnd::Closed),
                            Poll::Ready(Ok(_)) => return Poll::Ready(IdleEnd::Data(half)),
                            // Readiness was stale; the failed read cleared it and
                            // registered for the next.
                            Poll::Pending => {}
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(IdleEnd::Closed),
                    Poll::Pending => {}
                }
                match timer.as_mut().map(|t| t.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => Poll::Ready(IdleEnd::TimedOut),
                    _ => Poll::Pending,
                }
            })
            .await;
            match end {
                IdleEnd::Data(half) => return Ok(Some(half)),
                IdleEnd::Closed => return Ok(None),
                IdleEnd::Killed => (sqlstate::ADMIN_SHUTDOWN, KILLED),
                IdleEnd::TimedOut => (sqlstate::PROTOCOL_VIOLATION, "client_idle_timeout"),
            }
        };
        Err(Box::pin(self.fatal(code, message)).await)
    }

    /// pkt_buf, and the client_idle_timeout timer if one is set.
    fn idle_settings(&self) -> (usize, Option<Pin<Box<tokio::time::Sleep>>>) {
        let config = self.shared.config.load();
        let idle_timeout = config
            .users
            .get(&*self.info.user)
            .and_then(|u| u.client_idle_timeout)
            .unwrap_or(config.general.client_idle_timeout);
        let timer = (!idle_timeout.is_zero()).then(|| Box::pin(tokio::time::sleep(idle_timeout)));
        (config.general.pkt_buf, timer)
    }

    /// Get a server and bring it to this client's settings.
    async fn acquire(&mut self, tuning: &Tuning) -> Result<Box<ServerConn>, Disconnect> {
        let started = Instant::now();
        self.info.start_waiting();
        let acquired = self.wait_for_server(tuning).await;
        self.info.set_state(ConnState::Active);
        let mut server = match acquired {
            None => return Err(self.fatal(sqlstate::ADMIN_SHUTDOWN, KILLED).await),
            Some(Ok(server)) => server,
            Some(Err(e)) => {
                self.info.link_to(0);
                let refusal = server_refusal(e);
                return Err(self.fatal(refusal.code, &refusal.message).await);
            }
        };
        self.pool.stats.add_wait(started.elapsed());
        if let Some(sql) = self.params.sync_sql(&mut server.params) {
            if let Err(e) = server.run_internal(&sql, tuning.pool.max_packet_size).await {
                let message = format!("could not apply client settings on server: {e}");
                server.close(&message);
                return Err(self.fatal(sqlstate::PROTOCOL_VIOLATION, &message).await);
            }
        }
        self.cancel_link.set(Some(server.cancel.clone()));
        crate::control::conn_info::link(&self.info, &server.info);
        server.info.set_state(ConnState::Active);
        Ok(server)
    }

    /// The pool's answer, or `None` if the client was killed meanwhile. A client
    /// still queued after query_wait_notify is told so once, with a NOTICE (as
    /// PgBouncer 1.25 does), and keeps its place in the queue while it is told.
    async fn wait_for_server(
        &mut self,
        tuning: &Tuning,
    ) -> Option<Result<Box<ServerConn>, crate::pool::AcquireError>> {
        let waited_long = AtomicBool::new(false);
        let acquiring = self
            .pool
            .acquire(tuning.query_wait_timeout, Some(&waited_long));
        tokio::pin!(acquiring);
        let mut told = false;
        loop {
            let step = std::future::poll_fn(|cx| {
                if self.info.poll_killed(cx).is_ready() {
                    return Poll::Ready(None);
                }
                if let Poll::Ready(acquired) = acquiring.as_mut().poll(cx) {
                    return Poll::Ready(Some(Some(acquired)));
                }
                if !told && waited_long.load(Ordering::Relaxed) {
                    return Poll::Ready(Some(None));
                }
                Poll::Pending
            })
            .await;
            match step {
                None => return None,
                Some(Some(acquired)) => return Some(acquired),
                Some(None) => {
                    told = true;
                    // Boxed: the rare path, kept out of every round's future.
                    Box::pin(send_queued_notice(&mut self.stream)).await;
                }
            }
        }
    }

    /// Relay with `server` until the pool mode says to let it go (returns `None`)
    /// or the client is done (returns why).
    async fn transaction(
        &mut self,
        mut server: Box<ServerConn>,
        up: &mut Half,
        tuning: &Tuning,
    ) -> Option<Disconnect> {
        let settings = &tuning.pool;
        let fast_close = settings.mode == PoolMode::Session && settings.server_fast_close;
        let generation = server.generation;
        let server_info = server.info.clone();
        let mut down = Half::new(tuning.pkt_buf);
        let mut tx = TxState::new();
        // In session mode the server is the client's alone: its names are its own.
        let track = settings.mode != PoolMode::Session && tuning.max_prepared_statements > 0;
        let tracking = match &mut self.tracker {
            tracker if track => {
                let tracker = tracker.get_or_insert_with(|| Tracker::take(&self.shared.statements));
                tracker.capacity = tuning.max_prepared_statements;
                Some(&mut **tracker)
            }
            _ => None,
        };
        let mut relay = Relay {
            client: &mut self.stream,
            server: &mut server,
            up,
            down: &mut down,
            tx: &mut tx,
            client_params: &mut self.params,
            statement_mode: settings.mode == PoolMode::Statement,
            hold_server: settings.mode == PoolMode::Session,
            max_packet: settings.max_packet_size,
            watch_timers: !tuning.query_timeout.is_zero()
                || !tuning.idle_transaction_timeout.is_zero()
                || !tuning.transaction_timeout.is_zero(),
            refuse_simple_query: tuning.disable_pqexec,
            tracking,
            down_tag: 0,
        };
        let info = self.info.clone();
        let outcome = match relay.scan_up() {
            Err(e) => Outcome::Event(RelayEvent::ClientProtocol(e)),
            Ok(()) if relay.tx.refused_simple_query => {
                Outcome::Event(RelayEvent::SimpleQueryRefused)
            }
            // Boxed: an option of session pooling, kept out of every round's future.
            Ok(()) if fast_close => {
                Box::pin(relay_until_retired(
                    &mut relay,
                    tuning,
                    &info,
                    &self.pool,
                    (&server_info, generation),
                ))
                .await
            }
            Ok(()) => tokio::select! {
                biased;
                _ = info.killed() => Outcome::Killed,
                outcome = drive(&mut relay, tuning) => outcome,
            },
        };
        self.record(&mut tx, &server);
        let event = match outcome {
            Outcome::Event(event) => event,
            Outcome::TimedOut(what) => {
                if tx.request_since.is_some() {
                    // Closing the socket does not stop a running query; a cancel does.
                    cancel_running_query(self.shared.clone(), &server);
                }
                server.close(what);
                return Some(self.fatal(sqlstate::PROTOCOL_VIOLATION, what).await);
            }
            Outcome::Killed => {
                server.close(KILLED);
                return Some(self.fatal(sqlstate::ADMIN_SHUTDOWN, KILLED).await);
            }
        };
        match event {
            // In session pooling only server_fast_close ends a transaction's
            // relay: the pool retired the server, and the client goes with it so
            // that it notices its session is gone (PgBouncer's words).
            RelayEvent::Boundary if settings.mode == PoolMode::Session => {
                server.close(close_reason::CONFIG_CHANGED);
                Some(
                    self.fatal(sqlstate::PROTOCOL_VIOLATION, close_reason::CONFIG_CHANGED)
                        .await,
                )
            }
            RelayEvent::Boundary => {
                self.finish(server, settings, false).await;
                None
            }
            RelayEvent::ClientTerminated | RelayEvent::ClientGone(_) => {
                let clean = tx.server_settled()
                    && tx.status == b'I'
                    && up.is_drained()
                    && down.is_drained();
                if clean {
                    self.finish(server, settings, true).await;
                } else if tx.out_of_step {
                    server.close(close_reason::OUT_OF_STEP);
                } else {
                    server.close(close_reason::UNCLEAN);
                }
                Some(Disconnect::ClientClose)
            }
            RelayEvent::SimpleQueryRefused => {
                // Messages before the Query may have reached the server.
                server.close(close_reason::UNCLEAN);
                Some(
                    self.fatal(sqlstate::PROTOCOL_VIOLATION, "PQexec disallowed")
                        .await,
                )
            }
            RelayEvent::TransactionInStatementMode => {
                server.close(close_reason::UNCLEAN);
                Some(
                    self.fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        "transaction blocks not allowed in statement pooling mode",
                    )
                    .await,
                )
            }
            RelayEvent::ServerGone(_) => {
                server.close(close_reason::CRASHED);
                Some(
                    self.fatal(sqlstate::PROTOCOL_VIOLATION, close_reason::CRASHED)
                        .await,
                )
            }
            RelayEvent::ServerProtocol(e) => {
                let message = format!("server protocol error: {e}");
                server.close(&message);
                Some(self.fatal(sqlstate::PROTOCOL_VIOLATION, &message).await)
            }
            RelayEvent::TimersChanged => unreachable!("handled in the relay loop"),
            RelayEvent::ClientProtocol(ProtocolError::UnknownClientMessage(t)) => {
                // Whatever went before it may be unanswered yet.
                server.close(close_reason::UNCLEAN);
                Some(self.refuse_unknown_message(t).await)
            }
            RelayEvent::ClientProtocol(e) => {
                server.close(close_reason::UNCLEAN);
                let message = format!("client protocol error: {e}");
                Some(self.fatal(sqlstate::PROTOCOL_VIOLATION, &message).await)
            }
        }
    }

    /// After a stretch of relaying: statistics, and what the console shows.
    fn record(&mut self, tx: &mut TxState, server: &ServerConn) {
        if let Some(tracker) = self.tracker.as_deref_mut() {
            tx.server_parses += std::mem::take(&mut tracker.server_parses);
            // Given back or closed, the server answers nothing more.
            tracker.replies.clear();
            self.info.set_prepared_statements(tracker.statements.len());
            server.info.set_prepared_statements(server.statements.len());
        }
        // An idle client keeps a tracker only for what it prepared.
        self.tracker = self.tracker.take().and_then(Tracker::keep_or_give_back);
        self.pool.stats.add(&Delta {
            xacts: tx.xacts,
            queries: tx.queries,
            bytes_received: tx.bytes_up,
            bytes_sent: tx.bytes_down,
            xact_time_us: tx.xact_time_us,
            query_time_us: tx.query_time_us,
            parses: tx.parses,
            server_parses: tx.server_parses,
            binds: tx.binds,
        });
        self.cancel_link.set(None);
        self.info.link_to(0);
        if tx.params_changed {
            if let Some(app) = self.params.get("application_name") {
                self.info.set_application_name(app);
            }
        }
    }

    /// Give an idle server back, after server_reset_query when the client left
    /// a session (or always, with server_reset_query_always).
    async fn finish(&self, server: Box<ServerConn>, settings: &PoolSettings, client_left: bool) {
        let reset = &settings.server_reset_query;
        let wants_reset = !reset.is_empty()
            && ((client_left && settings.mode == PoolMode::Session)
                || settings.server_reset_query_always);
        if wants_reset {
            // Boxed: the reset is the rare path, and its state would otherwise
            // make every round's future larger.
            Box::pin(self.reset_and_release(server, settings)).await;
        } else {
            self.pool.release(server);
        }
    }

    /// Run server_reset_query, then give the server back (or close it if the
    /// reset failed).
    async fn reset_and_release(&self, mut server: Box<ServerConn>, settings: &PoolSettings) {
        let ran = tokio::time::timeout(
            Duration::from_secs(10),
            server.run_internal(&settings.server_reset_query, settings.max_packet_size),
        )
        .await;
        if matches!(ran, Ok(Ok(()))) {
            // A reset query may well be DISCARD ALL: take no prepared
            // statement on the server for granted any more.
            server.statements.clear();
            server.info.set_prepared_statements(0);
            self.pool.release(server);
        } else {
            log::warn!("{server:?}: server_reset_query failed, closing the server");
            server.close(close_reason::RESET_FAILED);
        }
    }

    /// A message type no client may send: logged with its number, as PgBouncer
    /// does, and refused with PgBouncer's words.
    async fn refuse_unknown_message(&mut self, t: u8) -> Disconnect {
        log::error!(
            "C-{}: {}/{}@{} {}",
            self.id,
            self.info.pool.database,
            self.info.user,
            self.info.peer,
            ProtocolError::UnknownClientMessage(t)
        );
        self.fatal(sqlstate::PROTOCOL_VIOLATION, "unknown pkt")
            .await
    }

    /// Tell the client why it is being disconnected.
    async fn fatal(&mut self, code: &str, message: &str) -> Disconnect {
        let config = self.shared.config.load();
        if config.general.log_pooler_errors {
            log::warn!(
                "C-{}: {}/{}@{} pooler error: {message}",
                self.id,
                self.info.pool.database,
                self.info.user,
                self.info.peer
            );
        }
        let mut buf = BytesMut::with_capacity(64 + message.len());
        put_error(&mut buf, Severity::Fatal, code, message);
        if self.stream.send(&buf).await.is_ok() {
            self.stream.close_tls().await;
        }
        Disconnect::Pooler(message.to_owned())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.cancels.unregister(self.cancel_key);
        self.shared.clients.remove(self.info.id);
    }
}

/// What ended an idle client's wait.
enum IdleEnd {
    Data(Half),
    Closed,
    Killed,
    TimedOut,
}

/// How a stretch of relaying ended.
enum Outcome {
    Event(RelayEvent),
    TimedOut(&'static str),
    Killed,
}

/// Run the relay until it reports something other than a timer change, or a
/// timeout that its current state armed passes.
async fn drive(relay: &mut Relay<'_>, tuning: &Tuning) -> Outcome {
    loop {
        let event = match next_deadline(relay.tx, tuning) {
            None => relay.run().await,
            Some((when, what)) => match tokio::time::timeout_at(when.into(), relay.run()).await {
                Ok(event) => event,
                Err(_) => return Outcome::TimedOut(what),
            },
        };
        if !matches!(event, RelayEvent::TimersChanged) {
            return Outcome::Event(event);
        }
    }
}

/// Session pooling with server_fast_close: relay as usual until the pool
/// retires the server (RECONNECT, a new target, its address dropped by DNS),
/// then until the client's transaction ends, which the relay reports as a
/// `Boundary`.
async fn relay_until_retired(
    relay: &mut Relay<'_>,
    tuning: &Tuning,
    info: &ConnInfo,
    pool: &Pool,
    (server, generation): (&ConnInfo, u64),
) -> Outcome {
    let retired = pool.retired(server, generation);
    tokio::pin!(retired);
    loop {
        tokio::select! {
            biased;
            _ = info.killed() => return Outcome::Killed,
            () = &mut retired, if relay.hold_server => {
                if relay.stop_holding_server() {
                    return Outcome::Event(RelayEvent::Boundary);
                }
            }
            outcome = drive(relay, tuning) => return outcome,
        }
    }
}

const QUERY_TIMEOUT: &str = "query timeout";
const IDLE_TRANSACTION_TIMEOUT: &str = "idle transaction timeout";
const TRANSACTION_TIMEOUT: &str = "transaction timeout";

/// The next timeout that could fire in the current state, with its message
/// (PgBouncer's words).
fn next_deadline(tx: &TxState, tuning: &Tuning) -> Option<(Instant, &'static str)> {
    let armed = |since: Option<Instant>, timeout: Duration, what| {
        since
            .filter(|_| !timeout.is_zero())
            .map(|since| (since + timeout, what))
    };
    let state = armed(tx.request_since, tuning.query_timeout, QUERY_TIMEOUT).or_else(|| {
        armed(
            tx.waiting_since,
            tuning.idle_transaction_timeout,
            IDLE_TRANSACTION_TIMEOUT,
        )
    });
    let whole = armed(
        tx.xact_start,
        tuning.transaction_timeout,
        TRANSACTION_TIMEOUT,
    );
    match (state, whole) {
        (Some(a), Some(b)) => Some(if b.0 < a.0 { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// The NOTICE a client gets when it has been queued for query_wait_notify, in
/// PgBouncer's words. A client that cannot take it will fail its next read or
/// write, where the session notices.
async fn send_queued_notice(stream: &mut Stream) {
    let mut buf = BytesMut::with_capacity(128);
    put_error(
        &mut buf,
        Severity::Notice,
        sqlstate::SUCCESSFUL_COMPLETION,
        QUEUED,
    );
    if let Err(e) = stream.send(&buf).await {
        log::debug!("sending the queued notice failed: {e}");
    }
}

const QUEUED: &str = "No server connection available in postgres backend, client being queued";

/// Ask PostgreSQL to cancel what `server` is running, in the background. The
/// session closes the server next, so nothing waits for the cancel.
fn cancel_running_query(shared: Arc<Shared>, server: &ServerConn) {
    let cancel = server.cancel.begin();
    let wait = shared.config.load().general.cancel_wait_timeout;
    tokio::spawn(async move { super::cancel::deliver(&shared, cancel, wait, None).await });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what an async fn taking a session and a request returns.
    fn future_size<F, Fut>(_: F) -> usize
    where
        F: FnOnce(&'static mut Session, Half) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }

    /// Every transaction allocates its round; glibc's per-thread cache serves
    /// blocks of up to 1 KiB, and a larger one took about 500 instructions
    /// more to allocate and free (callgrind). See `Session::round`.
    #[test]
    fn a_round_fits_mallocs_thread_cache() {
        let size = future_size(Session::round);
        assert!(size <= 1016, "a round's future is {size} bytes");
    }
}
