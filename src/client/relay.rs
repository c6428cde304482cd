//! Forwarding one client's traffic to its server and back, in both directions at
//! once, while keeping track of where the transaction stands.
//!
//! Both directions are driven from one `poll` so neither can block the other (a
//! server busy sending a large result while the client is still sending must not
//! deadlock). Bytes are forwarded from the buffer they were read into; the scanner
//! only looks at message headers, plus the whole body of ReadyForQuery and
//! ParameterStatus. All state lives in `Relay`, so the future that drives it can
//! be dropped (for a timeout) and resumed without losing anything.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::buffers;
use crate::net::Stream;
use crate::protocol::scanner::{Frame, Scanner, MAX_INSPECTED_LEN};
use crate::protocol::{backend, tag, ProtocolError};
use crate::server::{ParamSet, ServerConn};

/// Why the relay stopped.
#[derive(Debug)]
pub enum RelayEvent {
    /// The server is idle at a transaction (or statement) boundary and every byte
    /// has been delivered: it may go back to the pool.
    Boundary,
    /// A statement left a transaction open in statement pooling mode.
    TransactionInStatementMode,
    /// The client sent Terminate; everything before it was delivered.
    ClientTerminated,
    /// The client sent a simple Query under disable_pqexec (not forwarded).
    SimpleQueryRefused,
    /// The client closed its socket (or it failed).
    ClientGone(Option<io::Error>),
    /// The server closed or failed.
    ServerGone(Option<io::Error>),
    /// A timer-relevant state began (a request sent, or an idle transaction):
    /// the caller re-arms its timeouts. Only with `watch_timers`.
    TimersChanged,
    /// The client sent bytes that are not a valid message stream.
    ClientProtocol(ProtocolError),
    /// The server sent bytes that are not a valid message stream.
    ServerProtocol(ProtocolError),
}

/// One direction's buffer: `[start, scanned)` is ready to write, `[scanned, end)`
/// has been read but not yet scanned (an incomplete message the scanner must see
/// whole).
pub struct Half {
    buf: Vec<u8>,
    /// The size it was taken at, to give it back to the spares.
    size: usize,
    start: usize,
    scanned: usize,
    end: usize,
    scanner: Scanner,
}

impl Half {
    pub fn new(size: usize) -> Half {
        let size = size.max(1024);
        Half {
            buf: buffers::take(size),
            size,
            start: 0,
            scanned: 0,
            end: 0,
            scanner: Scanner::default(),
        }
    }

    /// A buffer that starts out holding `bytes` (read by someone else), as if
    /// they had just been read.
    pub fn holding(size: usize, bytes: &[u8]) -> Half {
        let mut half = Half::new(size);
        if half.buf.len() < bytes.len() {
            half.buf.resize(bytes.len(), 0);
        }
        half.buf[..bytes.len()].copy_from_slice(bytes);
        half.end = bytes.len();
        half
    }

    /// Every byte read has been written and the stream is between messages.
    pub fn is_drained(&self) -> bool {
        self.start == self.end && self.scanner.at_boundary()
    }

    /// Room to read into, made by moving pending bytes to the front. The buffer
    /// grows only when one message that must be inspected whole fills it; a
    /// slow peer just leaves no room until its writes drain.
    fn room(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.scanned = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.scanned -= self.start;
                self.end -= self.start;
                self.start = 0;
            } else if self.scanned == self.start && self.buf.len() < MAX_INSPECTED_LEN + 5 {
                let grown = (self.buf.len() * 2).min(MAX_INSPECTED_LEN + 5);
                self.buf.resize(grown, 0);
            }
        }
        &mut self.buf[self.end..]
    }

    /// Read what the socket has; `Ok(0)` means the peer closed.
    pub fn poll_fill(
        &mut self,
        stream: &mut Stream,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let mut read_buf = ReadBuf::new(self.room());
        match Pin::new(stream).poll_read(cx, &mut read_buf) {
            Poll::Ready(Ok(())) => {
                let n = read_buf.filled().len();
                self.end += n;
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// The unsent bytes begin with a Terminate message.
    pub fn starts_with_terminate(&self) -> bool {
        self.start == self.scanned && self.buf.get(self.start) == Some(&tag::TERMINATE)
    }
}

impl Drop for Half {
    fn drop(&mut self) {
        buffers::give_back(std::mem::take(&mut self.buf), self.size);
    }
}

/// Where the conversation stands, as seen from the forwarded messages.
#[derive(Debug)]
pub struct TxState {
    /// Sync points (Query, Sync, FunctionCall) sent and not yet answered by
    /// ReadyForQuery.
    pub outstanding: u32,
    /// Status byte of the last ReadyForQuery: b'I', b'T' or b'E'.
    pub status: u8,
    /// A ReadyForQuery arrived since the relay began (there is a boundary to act on).
    pub answered: bool,
    /// Extended-protocol messages were sent after the last Sync: the server is in
    /// the middle of something even if nothing is outstanding.
    pub unsynced: bool,
    /// The client sent Terminate.
    pub terminated: bool,
    /// `request_since` or `waiting_since` was set since the caller last looked.
    pub timers_changed: bool,
    /// Statement mode: a ReadyForQuery left a transaction open. It was held back
    /// (the client gets an error in its place) and nothing more is read.
    pub refused_transaction: bool,
    /// disable_pqexec: the client sent a simple Query; it and what follows it
    /// were not scanned, so never forwarded.
    pub refused_simple_query: bool,
    /// When the oldest outstanding request was sent (for query_timeout).
    pub request_since: Option<Instant>,
    /// When the server last became idle-in-transaction waiting for the client.
    pub waiting_since: Option<Instant>,
    /// A ParameterStatus changed the client's tracked settings.
    pub params_changed: bool,
    /// Counts for statistics: a query per ReadyForQuery, a transaction per
    /// ReadyForQuery that ends idle; times in microseconds.
    pub queries: u64,
    pub xacts: u64,
    pub parses: u64,
    pub binds: u64,
    pub query_time_us: u64,
    pub xact_time_us: u64,
    /// When the current transaction's first message arrived.
    pub xact_start: Option<Instant>,
    pub bytes_up: u64,
    pub bytes_down: u64,
}

impl TxState {
    pub fn new() -> TxState {
        TxState {
            outstanding: 0,
            status: b'I',
            answered: false,
            unsynced: false,
            terminated: false,
            timers_changed: false,
            refused_transaction: false,
            refused_simple_query: false,
            params_changed: false,
            request_since: None,
            waiting_since: None,
            queries: 0,
            xacts: 0,
            parses: 0,
            binds: 0,
            query_time_us: 0,
            xact_time_us: 0,
            xact_start: None,
            bytes_up: 0,
            bytes_down: 0,
        }
    }
}

impl Default for TxState {
    fn default() -> Self {
        Self::new()
    }
}

/// Everything the relay works on, borrowed for one drive.
pub struct Relay<'a> {
    pub client: &'a mut Stream,
    pub server: &'a mut ServerConn,
    pub up: &'a mut Half,
    pub down: &'a mut Half,
    pub tx: &'a mut TxState,
    pub client_params: &'a mut ParamSet,
    pub statement_mode: bool,
    /// With session pooling the server stays with the client: no boundary events.
    pub hold_server: bool,
    pub max_packet: usize,
    /// Report `TimersChanged` (only worth it when a timeout is configured).
    pub watch_timers: bool,
    /// disable_pqexec: refuse simple Query messages.
    pub refuse_simple_query: bool,
}

impl Relay<'_> {
    /// Scan newly read client bytes: count sync points, spot Terminate.
    pub fn scan_up(&mut self) -> Result<(), ProtocolError> {
        let half = &mut *self.up;
        // One clock reading for all the messages of one read.
        let mut arrived: Option<Instant> = None;
        while half.scanned < half.end {
            let data = &half.buf[half.scanned..half.end];
            let Some((frame, len)) = half.scanner.next_frame(data, self.max_packet, |_| false)?
            else {
                break;
            };
            if let Frame::Header { tag: t } = frame {
                let now = *arrived.get_or_insert_with(Instant::now);
                if self.tx.xact_start.is_none() {
                    self.tx.xact_start = Some(now);
                }
                match t {
                    tag::QUERY if self.refuse_simple_query => {
                        self.tx.refused_simple_query = true;
                        return Ok(());
                    }
                    tag::QUERY | tag::SYNC | tag::FUNCTION_CALL => {
                        if self.tx.outstanding == 0 {
                            self.tx.request_since = Some(now);
                            self.tx.timers_changed = true;
                        }
                        self.tx.outstanding += 1;
                        self.tx.unsynced = false;
                        self.tx.waiting_since = None;
                    }
                    tag::PARSE | tag::BIND | tag::DESCRIBE | tag::CLOSE | tag::EXECUTE => {
                        self.tx.unsynced = true;
                        self.tx.waiting_since = None;
                        self.tx.parses += u64::from(t == tag::PARSE);
                        self.tx.binds += u64::from(t == tag::BIND);
                    }
                    tag::TERMINATE => {
                        // Never forwarded: the server stays open for the next client.
                        // Anything after Terminate is ignored.
                        self.tx.terminated = true;
                        half.end = half.scanned;
                        half.scanner = Scanner::default();
                        return Ok(());
                    }
                    _ => {}
                }
            }
            half.scanned += len;
        }
        Ok(())
    }

    /// Scan newly read server bytes: ReadyForQuery and ParameterStatus.
    fn scan_down(&mut self) -> Result<(), ProtocolError> {
        let half = &mut *self.down;
        while half.scanned < half.end {
            let data = &half.buf[half.scanned..half.end];
            let inspect = |t| t == tag::READY_FOR_QUERY || t == tag::PARAMETER_STATUS;
            let Some((frame, len)) = half.scanner.next_frame(data, self.max_packet, inspect)?
            else {
                break;
            };
            if let Frame::Whole { tag: t, body } = frame {
                if t == tag::READY_FOR_QUERY {
                    let status = *body.first().ok_or(ProtocolError::Malformed {
                        what: "ReadyForQuery",
                    })?;
                    if self.statement_mode && status != b'I' {
                        // Not forwarded, like PgBouncer: the client must not
                        // believe its transaction block began.
                        self.tx.refused_transaction = true;
                        half.end = half.scanned;
                        return Ok(());
                    }
                    let now = Instant::now();
                    self.tx.status = status;
                    self.tx.outstanding = self.tx.outstanding.saturating_sub(1);
                    self.tx.answered = true;
                    self.tx.queries += 1;
                    if let Some(since) = self.tx.request_since {
                        self.tx.query_time_us += now.duration_since(since).as_micros() as u64;
                    }
                    if status == b'I' {
                        if let Some(start) = self.tx.xact_start.take() {
                            self.tx.xacts += 1;
                            self.tx.xact_time_us += now.duration_since(start).as_micros() as u64;
                        }
                    }
                    if self.tx.outstanding == 0 {
                        self.tx.request_since = None;
                        if status != b'I' {
                            self.tx.waiting_since = Some(now);
                            self.tx.timers_changed = true;
                        }
                    } else {
                        self.tx.request_since = Some(now);
                        self.tx.timers_changed = true;
                    }
                } else {
                    // The client's own SET changed a tracked setting: it is now what
                    // this client wants, and what this server has.
                    let (name, value) = backend::parse_parameter_status(body)?;
                    self.server.params.set(name, value);
                    self.client_params.set(name, value);
                    self.tx.params_changed = true;
                }
            }
            half.scanned += len;
        }
        Ok(())
    }

    /// Nothing is in flight in either direction and the last answer ended it.
    fn at_boundary(&self) -> bool {
        self.tx.answered
            && self.tx.outstanding == 0
            && !self.tx.unsynced
            && self.up.is_drained()
            && self.down.is_drained()
            && !self.client.wants_flush()
            && !self.server.stream.wants_flush()
    }

    fn boundary_event(&self) -> Option<RelayEvent> {
        if self.tx.refused_transaction {
            let delivered = self.down.start == self.down.end && !self.client.wants_flush();
            return delivered.then_some(RelayEvent::TransactionInStatementMode);
        }
        if self.hold_server || !self.at_boundary() {
            return None;
        }
        (self.tx.status == b'I').then_some(RelayEvent::Boundary)
    }

    /// Drive both directions until one of them has something to report.
    pub fn poll_relay(&mut self, cx: &mut Context<'_>) -> Poll<RelayEvent> {
        // A read that returned Pending has registered this task for the socket's
        // next readiness, and nothing can make it ready before this poll returns:
        // trying it again on a later pass of the loop would only repeat the check
        // (three of the seven reads of a select-only transaction did that).
        let mut client_read_parked = false;
        let mut server_read_parked = false;
        loop {
            let mut progressed = false;

            // Client -> server: write what is pending, then read more.
            if self.up.start < self.up.scanned {
                let pending = &self.up.buf[self.up.start..self.up.scanned];
                match Pin::new(&mut self.server.stream).poll_write(cx, pending) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(RelayEvent::ServerGone(None)),
                    Poll::Ready(Ok(n)) => {
                        self.up.start += n;
                        self.tx.bytes_up += n as u64;
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(RelayEvent::ServerGone(Some(e))),
                    Poll::Pending => {}
                }
            }
            // Over TLS, the request is not the server's until rustls has
            // written all of it (see the same for the client below).
            if self.up.start == self.up.scanned && self.server.stream.wants_flush() {
                match Pin::new(&mut self.server.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(RelayEvent::ServerGone(Some(e))),
                    Poll::Pending => {}
                }
            }
            if self.tx.terminated {
                if self.up.start == self.up.scanned {
                    return Poll::Ready(RelayEvent::ClientTerminated);
                }
            } else if !client_read_parked && !self.up.room().is_empty() {
                match self.up.poll_fill(self.client, cx) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(RelayEvent::ClientGone(None)),
                    Poll::Ready(Ok(_)) => {
                        if let Err(e) = self.scan_up() {
                            return Poll::Ready(RelayEvent::ClientProtocol(e));
                        }
                        if self.tx.refused_simple_query {
                            return Poll::Ready(RelayEvent::SimpleQueryRefused);
                        }
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(RelayEvent::ClientGone(Some(e))),
                    Poll::Pending => client_read_parked = true,
                }
            }

            // Server -> client.
            if self.down.start < self.down.scanned {
                let pending = &self.down.buf[self.down.start..self.down.scanned];
                match Pin::new(&mut *self.client).poll_write(cx, pending) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(RelayEvent::ClientGone(None)),
                    Poll::Ready(Ok(n)) => {
                        self.down.start += n;
                        self.tx.bytes_down += n as u64;
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(RelayEvent::ClientGone(Some(e))),
                    Poll::Pending => {}
                }
            }
            // A TLS client's stream may still hold what it took: it must reach
            // the socket before the transaction can be called done.
            if self.down.start == self.down.scanned && self.client.wants_flush() {
                match Pin::new(&mut *self.client).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(RelayEvent::ClientGone(Some(e))),
                    Poll::Pending => {}
                }
            }
            if let Some(event) = self.boundary_event() {
                return Poll::Ready(event);
            }
            if !server_read_parked && !self.tx.refused_transaction && !self.down.room().is_empty() {
                match self.down.poll_fill(&mut self.server.stream, cx) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(RelayEvent::ServerGone(None)),
                    Poll::Ready(Ok(_)) => {
                        if let Err(e) = self.scan_down() {
                            return Poll::Ready(RelayEvent::ServerProtocol(e));
                        }
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(RelayEvent::ServerGone(Some(e))),
                    Poll::Pending => server_read_parked = true,
                }
            }

            if self.watch_timers && std::mem::take(&mut self.tx.timers_changed) {
                return Poll::Ready(RelayEvent::TimersChanged);
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }

    /// Flush what the client has not been sent yet (used before an error message
    /// that must come after it).
    pub async fn run(&mut self) -> RelayEvent {
        std::future::poll_fn(|cx| self.poll_relay(cx)).await
    }
}
