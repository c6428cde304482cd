//! A logged-in client: wait for it to speak, get it a server, relay until the
//! transaction (or statement, or session) ends, give the server back. Repeat.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use super::cancel::{CancelLink, CancelTarget};
use super::login::{server_refusal, LoginParts};
use super::relay::{Half, Relay, RelayEvent, TxState};
use crate::config::PoolMode;
use crate::control::conn_info::{ConnInfo, ConnState};
use crate::net::stream::PeerAddr;
use crate::net::Stream;
use crate::pool::Pool;
use crate::protocol::error::{put_error, sqlstate, Severity};
use crate::server::{ParamSet, ServerConn};
use crate::shared::Shared;
use crate::stats::Delta;

/// Why a client was disconnected, for the log line (PgBouncer's wording).
/// What a killed client is told.
const KILLED: &str = "admin kill";

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
    addr: PeerAddr,
    user: String,
    database: String,
    pool: Arc<Pool>,
    params: ParamSet,
    cancel_key: (i32, i32),
    cancel_link: Arc<CancelLink>,
    connected_at: Instant,
    /// What the admin console shows; also how KILL reaches this session.
    info: Arc<ConnInfo>,
}

/// The timeouts in force for one transaction (user overrides applied).
struct Timeouts {
    query: Duration,
    idle_transaction: Duration,
}

impl Session {
    pub fn new(
        shared: Arc<Shared>,
        id: u64,
        stream: Stream,
        addr: PeerAddr,
        parts: LoginParts,
    ) -> Session {
        shared.clients.insert(parts.info.clone());
        Session {
            shared,
            id,
            stream,
            addr,
            user: parts.user,
            database: parts.database,
            pool: parts.pool,
            params: parts.params,
            cancel_key: parts.cancel_key,
            cancel_link: parts.cancel_link,
            connected_at: parts.connected_at,
            info: parts.info,
        }
    }

    pub async fn run(&mut self) {
        let reason = self.serve().await;
        let config = self.shared.config.load();
        if config.general.log_disconnections {
            let why = match &reason {
                Disconnect::ClientClose => "client close request".to_owned(),
                Disconnect::Pooler(message) => message.clone(),
            };
            log::info!(
                "C-{}: {}/{}@{} closing because: {why} (age={}s)",
                self.id,
                self.database,
                self.user,
                self.addr,
                self.connected_at.elapsed().as_secs()
            );
        }
    }

    async fn serve(&mut self) -> Disconnect {
        loop {
            let first = match self.read_idle().await {
                Ok(Some(half)) => half,
                Ok(None) => return Disconnect::ClientClose,
                Err(reason) => return reason,
            };
            if first.starts_with_terminate() {
                return Disconnect::ClientClose;
            }
            // Getting a server (which may log in to PostgreSQL) and relaying are
            // boxed: the task's future is as large as its largest state, and
            // an idle client should cost only the wait for its next bytes.
            let server = match Box::pin(self.acquire()).await {
                Ok(server) => server,
                Err(reason) => return reason,
            };
            if let Some(reason) = Box::pin(self.transaction(server, first)).await {
                return reason;
            }
        }
    }

    /// Wait, holding no server and no buffer, until the client sends something.
    /// `Ok(None)` when it closes.
    async fn read_idle(&mut self) -> Result<Option<Half>, Disconnect> {
        let (idle_timeout, pkt_buf) = {
            let config = self.shared.config.load();
            let user_timeout = config
                .users
                .get(&self.user)
                .and_then(|u| u.client_idle_timeout);
            (
                user_timeout.unwrap_or(config.general.client_idle_timeout),
                config.general.pkt_buf,
            )
        };
        loop {
            let readable = async {
                if idle_timeout.is_zero() {
                    Ok(self.stream.readable().await)
                } else {
                    tokio::time::timeout(idle_timeout, self.stream.readable()).await
                }
            };
            let ready = tokio::select! {
                biased;
                _ = self.info.killed() => None,
                ready = readable => Some(ready),
            };
            let Some(ready) = ready else {
                return Err(self.fatal(sqlstate::ADMIN_SHUTDOWN, KILLED).await);
            };
            match ready {
                Err(_) => {
                    return Err(self
                        .fatal(sqlstate::PROTOCOL_VIOLATION, "client_idle_timeout")
                        .await)
                }
                Ok(Err(_)) => return Ok(None),
                Ok(Ok(())) => {}
            }
            let mut half = Half::new(pkt_buf);
            match half.try_fill(&self.stream) {
                Ok(0) => return Ok(None),
                Ok(_) => return Ok(Some(half)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => return Ok(None),
            }
        }
    }

    /// Get a server and bring it to this client's settings.
    async fn acquire(&mut self) -> Result<ServerConn, Disconnect> {
        let wait = self.shared.config.load().general.query_wait_timeout;
        let started = Instant::now();
        self.info.start_waiting();
        let acquired = tokio::select! {
            biased;
            _ = self.info.killed() => None,
            acquired = self.pool.acquire(wait) => Some(acquired),
        };
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
        if let Some(sql) = self.params.sync_sql(&server.params) {
            let max_packet = self.pool.settings().max_packet_size;
            if let Err(e) = server.run_internal(&sql, max_packet).await {
                server.close();
                let message = format!("could not apply client settings on server: {e}");
                return Err(self.fatal(sqlstate::PROTOCOL_VIOLATION, &message).await);
            }
        }
        self.cancel_link.set(Some(CancelTarget {
            address: server.address.clone(),
            pid: server.backend_pid,
            secret: server.backend_secret,
        }));
        self.info.link_to(server.info.id);
        server.info.link_to(self.info.id);
        server.info.set_state(ConnState::Active);
        Ok(server)
    }

    fn timeouts(&self) -> Timeouts {
        let config = self.shared.config.load();
        let user = config.users.get(&self.user);
        Timeouts {
            query: user
                .and_then(|u| u.query_timeout)
                .unwrap_or(config.general.query_timeout),
            idle_transaction: user
                .and_then(|u| u.idle_transaction_timeout)
                .unwrap_or(config.general.idle_transaction_timeout),
        }
    }

    /// Relay with `server` until the pool mode says to let it go (returns `None`)
    /// or the client is done (returns why).
    async fn transaction(&mut self, mut server: ServerConn, mut up: Half) -> Option<Disconnect> {
        let settings = self.pool.settings();
        let timeouts = self.timeouts();
        let mut down = Half::new(self.shared.config.load().general.pkt_buf);
        let mut tx = TxState::new();
        let mut relay = Relay {
            client: &mut self.stream,
            server: &mut server,
            up: &mut up,
            down: &mut down,
            tx: &mut tx,
            client_params: &mut self.params,
            statement_mode: settings.mode == PoolMode::Statement,
            hold_server: settings.mode == PoolMode::Session,
            max_packet: settings.max_packet_size,
            watch_timers: !timeouts.query.is_zero() || !timeouts.idle_transaction.is_zero(),
        };
        let info = self.info.clone();
        let outcome = match relay.scan_up() {
            Err(e) => Outcome::Event(RelayEvent::ClientProtocol(e)),
            Ok(()) => tokio::select! {
                biased;
                _ = info.killed() => Outcome::Killed,
                outcome = drive(&mut relay, &timeouts) => outcome,
            },
        };
        self.record(&tx);
        let event = match outcome {
            Outcome::Event(event) => event,
            Outcome::TimedOut(what) => {
                if what == QUERY_TIMEOUT {
                    // Closing the socket does not stop a running query; a cancel does.
                    cancel_running_query(&server);
                }
                server.close();
                return Some(self.fatal(sqlstate::PROTOCOL_VIOLATION, what).await);
            }
            Outcome::Killed => {
                server.close();
                return Some(self.fatal(sqlstate::ADMIN_SHUTDOWN, KILLED).await);
            }
        };
        match event {
            RelayEvent::Boundary => {
                self.finish(server, &settings, false).await;
                None
            }
            RelayEvent::ClientTerminated | RelayEvent::ClientGone(_) => {
                let clean = tx.outstanding == 0
                    && !tx.unsynced
                    && tx.status == b'I'
                    && up.is_drained()
                    && down.is_drained();
                if clean {
                    self.finish(server, &settings, true).await;
                } else {
                    server.close();
                }
                Some(Disconnect::ClientClose)
            }
            RelayEvent::TransactionInStatementMode => {
                server.close();
                Some(
                    self.fatal(
                        sqlstate::PROTOCOL_VIOLATION,
                        "transaction blocks not allowed in statement pooling mode",
                    )
                    .await,
                )
            }
            RelayEvent::ServerGone(_) => {
                drop(server);
                Some(
                    self.fatal(sqlstate::PROTOCOL_VIOLATION, "server conn crashed?")
                        .await,
                )
            }
            RelayEvent::ServerProtocol(e) => {
                server.close();
                let message = format!("server protocol error: {e}");
                Some(self.fatal(sqlstate::PROTOCOL_VIOLATION, &message).await)
            }
            RelayEvent::TimersChanged => unreachable!("handled in the relay loop"),
            RelayEvent::ClientProtocol(e) => {
                server.close();
                let message = format!("client protocol error: {e}");
                Some(self.fatal(sqlstate::PROTOCOL_VIOLATION, &message).await)
            }
        }
    }

    /// After a stretch of relaying: statistics, and what the console shows.
    fn record(&self, tx: &TxState) {
        self.pool.stats.add(&Delta {
            xacts: tx.xacts,
            queries: tx.queries,
            bytes_received: tx.bytes_up,
            bytes_sent: tx.bytes_down,
            xact_time_us: tx.xact_time_us,
            query_time_us: tx.query_time_us,
            parses: tx.parses,
            binds: tx.binds,
        });
        self.cancel_link.set(None);
        self.info.link_to(0);
        if let Some(app) = self.params.get("application_name") {
            self.info.set_application_name(app);
        }
    }

    /// Give an idle server back, after server_reset_query when the client left
    /// a session (or always, with server_reset_query_always).
    async fn finish(
        &self,
        mut server: ServerConn,
        settings: &crate::pool::PoolSettings,
        client_left: bool,
    ) {
        let reset = &settings.server_reset_query;
        let wants_reset = !reset.is_empty()
            && ((client_left && settings.mode == PoolMode::Session)
                || settings.server_reset_query_always);
        if wants_reset {
            let ran = tokio::time::timeout(
                Duration::from_secs(10),
                server.run_internal(reset, settings.max_packet_size),
            )
            .await;
            if !matches!(ran, Ok(Ok(()))) {
                log::warn!("{server:?}: server_reset_query failed, closing the server");
                server.close();
                return;
            }
        }
        self.pool.release(server);
    }

    /// Tell the client why it is being disconnected.
    async fn fatal(&mut self, code: &str, message: &str) -> Disconnect {
        let config = self.shared.config.load();
        if config.general.log_pooler_errors {
            log::warn!(
                "C-{}: {}/{}@{} pooler error: {message}",
                self.id,
                self.database,
                self.user,
                self.addr
            );
        }
        let mut buf = BytesMut::with_capacity(64 + message.len());
        put_error(&mut buf, Severity::Fatal, code, message);
        let _ = self.stream.write_all(&buf).await;
        Disconnect::Pooler(message.to_owned())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared.cancels.unregister(self.cancel_key);
        self.shared.clients.remove(self.info.id);
    }
}

/// How a stretch of relaying ended.
enum Outcome {
    Event(RelayEvent),
    TimedOut(&'static str),
    Killed,
}

/// Run the relay until it reports something other than a timer change, or a
/// timeout that its current state armed passes.
async fn drive(relay: &mut Relay<'_>, timeouts: &Timeouts) -> Outcome {
    loop {
        let event = match next_deadline(relay.tx, timeouts) {
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

const QUERY_TIMEOUT: &str = "query timeout";
const IDLE_TRANSACTION_TIMEOUT: &str = "idle transaction timeout";

/// The next timeout that could fire in the current state, with its message.
fn next_deadline(tx: &TxState, timeouts: &Timeouts) -> Option<(Instant, &'static str)> {
    if let (Some(since), false) = (tx.request_since, timeouts.query.is_zero()) {
        return Some((since + timeouts.query, QUERY_TIMEOUT));
    }
    if let (Some(since), false) = (tx.waiting_since, timeouts.idle_transaction.is_zero()) {
        return Some((since + timeouts.idle_transaction, IDLE_TRANSACTION_TIMEOUT));
    }
    None
}

/// Ask PostgreSQL to cancel what `server` is running, in the background.
fn cancel_running_query(server: &ServerConn) {
    let target = CancelTarget {
        address: server.address.clone(),
        pid: server.backend_pid,
        secret: server.backend_secret,
    };
    tokio::spawn(async move {
        if let Err(e) = super::cancel::forward(&target).await {
            log::warn!("cancel after query timeout failed: {e}");
        }
    });
}
