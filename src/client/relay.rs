//! Forwarding one client's traffic to its server and back, in both directions at
//! once, while keeping track of where the transaction stands.
//!
//! Both directions are driven from one `poll` so neither can block the other (a
//! server busy sending a large result while the client is still sending must not
//! deadlock). Bytes are forwarded from the buffer they were read into; the scanner
//! only looks at message headers, plus the whole body of ReadyForQuery and
//! ParameterStatus. All state lives in `Relay`, so the future that drives it can
//! be dropped (for a timeout) and resumed without losing anything.
//!
//! With prepared statement tracking (`crate::prepared`) a few messages are
//! rewritten, made up or held back: each such change is an `Edit` of the bytes
//! read, applied as they are written, so everything else is still forwarded
//! in place.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::buffers;
use super::copy_in::{AfterError, Began, CopyIn, Sent};
use crate::net::Stream;
use crate::prepared::{self, Inspected, Replies, Tracker};
use crate::protocol::scanner::{Frame, Scanner, MAX_INSPECTED_LEN};
use crate::protocol::{backend, tag, ProtocolError};
use crate::server::{ParamSet, ServerConn};

/// The most a buffer grows to hold one message whole: a named Parse, or a
/// message the scanner inspects.
const MAX_WHOLE: usize = 5 + if prepared::MAX_NAMED_PARSE_LEN > MAX_INSPECTED_LEN {
    prepared::MAX_NAMED_PARSE_LEN
} else {
    MAX_INSPECTED_LEN
};

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
    /// Changes to the bytes in `[start, scanned)`, in order of position (a
    /// `Vec`, one word smaller than a `VecDeque`: there are rarely more than two).
    edits: Vec<Edit>,
}

/// At `at` in a buffer, write `insert`, then leave out `skip` bytes read.
struct Edit {
    at: usize,
    skip: usize,
    insert: Vec<u8>,
    /// How much of `insert` has been written.
    sent: usize,
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
            edits: Vec::new(),
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
        self.start == self.end && self.edits.is_empty() && self.scanner.at_boundary()
    }

    /// Everything read has been written (or left out).
    fn all_sent(&self) -> bool {
        self.start == self.end && self.edits.is_empty()
    }

    /// Write `insert` in place of the `skip` bytes at `at` (scanned, and not
    /// before an earlier edit).
    fn edit(&mut self, at: usize, skip: usize, insert: Vec<u8>) {
        debug_assert!(at >= self.start && self.edits.last().is_none_or(|e| e.at <= at));
        self.edits.push(Edit {
            at,
            skip,
            insert,
            sent: 0,
        });
    }

    /// The next bytes to write: read bytes up to the next edit, or what the
    /// edit inserts. Empty when nothing is ready.
    #[inline]
    fn pending(&mut self) -> &[u8] {
        if self.edits.is_empty() {
            return &self.buf[self.start..self.scanned];
        }
        self.pending_edited()
    }

    /// `pending` with edits to apply (rare: prepared statement tracking).
    #[inline(never)]
    fn pending_edited(&mut self) -> &[u8] {
        loop {
            let Some(edit) = self.edits.first() else {
                return &self.buf[self.start..self.scanned];
            };
            let (at, inserting, skip) = (edit.at, edit.sent < edit.insert.len(), edit.skip);
            if at > self.start {
                return &self.buf[self.start..at];
            }
            if inserting {
                let edit = self.edits.first().expect("checked");
                return &edit.insert[edit.sent..];
            }
            self.start += skip;
            self.edits.remove(0);
        }
    }

    /// At a message boundary, add the answers the pooler owes the client now
    /// (prepared statement tracking) after the bytes scanned so far.
    fn send_due(&mut self, replies: &mut Replies) {
        if self.scanner.at_boundary() {
            if let Some(due) = replies.due() {
                self.edit(self.scanned, 0, due);
            }
        }
    }

    /// `n` bytes of what `pending` returned were written.
    fn advance(&mut self, n: usize) {
        match self.edits.first_mut() {
            Some(edit) if edit.at == self.start && edit.sent < edit.insert.len() => edit.sent += n,
            _ => self.start += n,
        }
    }

    /// Move the bytes from `start` on to the front of the buffer.
    fn shift_to_front(&mut self) {
        let by = self.start;
        self.buf.copy_within(self.start..self.end, 0);
        self.scanned -= by;
        self.end -= by;
        self.start = 0;
        for edit in &mut self.edits {
            edit.at -= by;
        }
    }

    /// Room to read into, made by moving pending bytes to the front. The buffer
    /// grows only when one message that must be inspected whole fills it; a
    /// slow peer just leaves no room until its writes drain.
    fn room(&mut self) -> &mut [u8] {
        if self.start == self.end && self.edits.is_empty() {
            self.start = 0;
            self.scanned = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.shift_to_front();
            } else if self.scanned == self.start && self.buf.len() < MAX_WHOLE {
                let grown = (self.buf.len() * 2).min(MAX_WHOLE);
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
        self.first_tag() == Some(tag::TERMINATE)
    }

    /// The type of the first unsent message when no client may send it.
    pub fn leading_unknown_message(&self) -> Option<u8> {
        self.first_tag().filter(|&t| !tag::is_client_message(t))
    }

    /// The type of the first message of the unsent bytes, before any scanning.
    fn first_tag(&self) -> Option<u8> {
        if self.start == self.scanned && self.edits.is_empty() {
            self.buf.get(self.start).copied()
        } else {
            None
        }
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
    /// COPY FROM STDIN: which of the client's Syncs the server ignores.
    pub copy_in: CopyIn,
    /// The client pipelined past a COPY FROM STDIN in a way that leaves the
    /// count of unanswered sync points uncertain: the server stays with this
    /// client, and is closed when it leaves.
    pub out_of_step: bool,
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
    /// ReadyForQuery that ends idle; times in microseconds. As PgBouncer's,
    /// the parse and bind counts are of named statements with tracking on:
    /// `parses` and `binds` the client's, `server_parses` the Parses of
    /// tracked statements sent to the server.
    pub queries: u64,
    pub xacts: u64,
    pub parses: u64,
    pub server_parses: u64,
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
            copy_in: CopyIn::default(),
            out_of_step: false,
            timers_changed: false,
            refused_transaction: false,
            refused_simple_query: false,
            params_changed: false,
            request_since: None,
            waiting_since: None,
            queries: 0,
            xacts: 0,
            parses: 0,
            server_parses: 0,
            binds: 0,
            query_time_us: 0,
            xact_time_us: 0,
            xact_start: None,
            bytes_up: 0,
            bytes_down: 0,
        }
    }
}

impl TxState {
    /// Every sync point sent has its answer and the server is not in the
    /// middle of anything the relay knows of: what both a transaction
    /// boundary and a clean server after the client left require.
    pub fn server_settled(&self) -> bool {
        self.outstanding == 0 && !self.unsynced && !self.out_of_step
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
    /// Prepared statement tracking (max_prepared_statements), if on.
    pub tracking: Option<&'a mut Tracker>,
    /// The type of the server message being passed through in pieces.
    pub down_tag: u8,
}

/// The bookkeeping of a ReadyForQuery with `status` (not refused).
fn ready_for_query(tx: &mut TxState, status: u8) {
    let now = Instant::now();
    tx.copy_in.ready_for_query();
    tx.status = status;
    tx.outstanding = tx.outstanding.saturating_sub(1);
    tx.answered = true;
    tx.queries += 1;
    if let Some(since) = tx.request_since {
        tx.query_time_us += now.duration_since(since).as_micros() as u64;
    }
    if status == b'I' {
        if let Some(start) = tx.xact_start.take() {
            tx.xacts += 1;
            tx.xact_time_us += now.duration_since(start).as_micros() as u64;
        }
    }
    if tx.outstanding == 0 {
        tx.request_since = None;
        if status != b'I' {
            tx.waiting_since = Some(now);
            tx.timers_changed = true;
        }
    } else {
        tx.request_since = Some(now);
        tx.timers_changed = true;
    }
}

/// A client message that asks for something (not Terminate, not refused),
/// as seen by the transaction's bookkeeping. False for a Sync the server
/// ignores (sent during COPY FROM STDIN): it will get no answer.
#[inline(always)]
fn note_request(tx: &mut TxState, t: u8, now: Instant) -> bool {
    if tx.xact_start.is_none() {
        tx.xact_start = Some(now);
    }
    if tx.copy_in.client_sent(t) == Sent::Ignored {
        return false;
    }
    match t {
        tag::QUERY | tag::SYNC | tag::FUNCTION_CALL => {
            if tx.outstanding == 0 {
                tx.request_since = Some(now);
                tx.timers_changed = true;
            }
            tx.outstanding += 1;
            tx.unsynced = false;
            tx.waiting_since = None;
        }
        tag::PARSE | tag::BIND | tag::DESCRIBE | tag::CLOSE | tag::EXECUTE => {
            tx.unsynced = true;
            tx.waiting_since = None;
        }
        _ => {}
    }
    true
}

/// The server began COPY FROM STDIN: returns how many of the Syncs already
/// sent it will ignore.
///
/// After a COPY started by an Execute the server waits for a Sync of its own
/// before it ends the query (and an implicit transaction) with ReadyForQuery:
/// until the client sends it the server is unsynced, as after a Parse, even
/// with nothing outstanding.
fn copy_in_began(tx: &mut TxState) -> u32 {
    match tx.copy_in.began(tx.outstanding) {
        Began::InStep { ignored, unsynced } => {
            tx.outstanding -= ignored;
            tx.unsynced |= unsynced;
            ignored
        }
        Began::OutOfStep => {
            tx.out_of_step = true;
            0
        }
    }
}

impl Relay<'_> {
    /// Scan newly read client bytes: count sync points, spot Terminate, and
    /// rewrite what names a prepared statement.
    pub fn scan_up(&mut self) -> Result<(), ProtocolError> {
        let half = &mut *self.up;
        // One clock reading for all the messages of one read.
        let mut arrived: Option<Instant> = None;
        while half.scanned < half.end {
            let data = &half.buf[half.scanned..half.end];
            if let (Some(tracking), true) = (self.tracking.as_mut(), half.scanner.at_boundary()) {
                let inspected = if prepared::plainly_unnamed(data) {
                    Inspected::Plain
                } else {
                    prepared::inspect(data, self.max_packet)?
                };
                if matches!(inspected, Inspected::More) {
                    break;
                }
                if !matches!(inspected, Inspected::Plain) {
                    self.tx.parses += u64::from(matches!(inspected, Inspected::Parse { .. }));
                    self.tx.binds += u64::from(matches!(inspected, Inspected::Bind { .. }));
                    let mut insert = Vec::new();
                    let server = &mut self.server.statements;
                    if let Some(replaced) = tracking.rewrite(&inspected, server, &mut insert) {
                        let body_left = match inspected {
                            Inspected::Bind { rest, .. } => rest,
                            _ => 0,
                        };
                        note_request(self.tx, data[0], *arrived.get_or_insert_with(Instant::now));
                        half.edit(half.scanned, replaced, insert);
                        half.scanned += replaced;
                        half.scanner.pass_body(body_left);
                        continue;
                    }
                }
            }
            let Some((frame, len)) = half.scanner.next_frame(data, self.max_packet, |_| false)?
            else {
                break;
            };
            if let Frame::Header { tag: t } = frame {
                match t {
                    tag::QUERY if self.refuse_simple_query => {
                        self.tx.refused_simple_query = true;
                        return Ok(());
                    }
                    tag::TERMINATE => {
                        // Never forwarded: the server stays open for the next client.
                        // Anything after Terminate is ignored.
                        self.tx.terminated = true;
                        half.end = half.scanned;
                        half.scanner = Scanner::default();
                        return Ok(());
                    }
                    // PostgreSQL would end the session at once, leaving a
                    // server that looks idle but is closing.
                    t if !tag::is_client_message(t) => {
                        return Err(ProtocolError::UnknownClientMessage(t));
                    }
                    _ => {
                        let now = *arrived.get_or_insert_with(Instant::now);
                        if note_request(self.tx, t, now) {
                            if let Some(tracking) = self.tracking.as_mut() {
                                tracking.forwarded(t);
                            }
                        }
                    }
                }
            }
            half.scanned += len;
        }
        self.send_due_answers();
        Ok(())
    }

    /// Answers the pooler owes the client and nothing comes before any more:
    /// they go after the server messages read so far.
    fn send_due_answers(&mut self) {
        if let Some(tracking) = self.tracking.as_mut() {
            self.down.send_due(&mut tracking.replies);
        }
    }

    /// Scan newly read server bytes: ReadyForQuery and ParameterStatus, and
    /// with statement tracking the end of every message.
    fn scan_down(&mut self) -> Result<(), ProtocolError> {
        let half = &mut *self.down;
        let tracked = self.tracking.is_some();
        while half.scanned < half.end {
            let data = &half.buf[half.scanned..half.end];
            let inspect = |t| {
                t == tag::READY_FOR_QUERY
                    || t == tag::PARAMETER_STATUS
                    || (tracked && t == tag::COMMAND_COMPLETE)
            };
            let Some((frame, len)) = half.scanner.next_frame(data, self.max_packet, inspect)?
            else {
                break;
            };
            let at = half.scanned;
            // The type of the message this frame ends, and whether it was
            // bodiless (so `at..at + len` is all of it).
            let ended = match frame {
                Frame::Whole { tag: t, body } => {
                    match t {
                        tag::READY_FOR_QUERY => {
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
                            ready_for_query(self.tx, status);
                        }
                        tag::PARAMETER_STATUS => {
                            // The client's own SET changed a tracked setting: it is
                            // now what this client wants, and what this server has.
                            let (name, value) = backend::parse_parameter_status(body)?;
                            self.server.params.set(name, value);
                            self.client_params.set(name, value);
                            self.tx.params_changed = true;
                        }
                        _ => {
                            if let Some(tracking) = self.tracking.as_mut() {
                                if body == b"DISCARD ALL\0" || body == b"DEALLOCATE ALL\0" {
                                    // The server dropped every statement, and the
                                    // client asked for its own to go.
                                    self.server.statements.clear();
                                    tracking.statements.clear();
                                }
                            }
                        }
                    }
                    Some((t, false))
                }
                Frame::Header { tag: t } => {
                    self.down_tag = t;
                    if t == tag::ERROR_RESPONSE
                        && self.tx.copy_in.server_error() == AfterError::OutOfStep
                    {
                        self.tx.out_of_step = true;
                    }
                    if t == tag::COPY_IN_RESPONSE {
                        let ignored = copy_in_began(self.tx);
                        if let Some(tracking) = self.tracking.as_mut() {
                            tracking.replies.drop_syncs_after_front(ignored);
                        }
                    }
                    half.scanner.at_boundary().then_some((t, true))
                }
                Frame::Body => half.scanner.at_boundary().then_some((self.down_tag, false)),
            };
            half.scanned += len;
            if let (Some((t, bodiless)), Some(tracking)) = (ended, self.tracking.as_mut()) {
                let tracker = &mut **tracking;
                let statements = &mut self.server.statements;
                let withhold = prepared::may_answer(t)
                    && tracker
                        .replies
                        .on_server_message(t, statements, &mut tracker.statements);
                if withhold {
                    if !bodiless {
                        return Err(ProtocolError::Malformed {
                            what: "ParseComplete or CloseComplete",
                        });
                    }
                    half.edit(at, len, Vec::new());
                }
                // What the pooler owes next goes right after this message.
                half.send_due(&mut tracker.replies);
            }
        }
        Ok(())
    }

    /// Nothing is in flight in either direction and the last answer ended it.
    fn at_boundary(&self) -> bool {
        self.tx.answered
            && self.tx.server_settled()
            && self.up.is_drained()
            && self.down.is_drained()
            && !self.client.wants_flush()
            && !self.server.stream.wants_flush()
    }

    fn boundary_event(&self) -> Option<RelayEvent> {
        if self.tx.refused_transaction {
            let delivered = self.down.all_sent() && !self.client.wants_flush();
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
            let pending = self.up.pending();
            if !pending.is_empty() {
                match Pin::new(&mut self.server.stream).poll_write(cx, pending) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(RelayEvent::ServerGone(None)),
                    Poll::Ready(Ok(n)) => {
                        self.up.advance(n);
                        self.tx.bytes_up += n as u64;
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(RelayEvent::ServerGone(Some(e))),
                    Poll::Pending => {}
                }
            }
            // Over TLS, the request is not the server's until rustls has
            // written all of it (see the same for the client below).
            if self.up.pending().is_empty() && self.server.stream.wants_flush() {
                match Pin::new(&mut self.server.stream).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(RelayEvent::ServerGone(Some(e))),
                    Poll::Pending => {}
                }
            }
            if self.tx.terminated {
                if self.up.pending().is_empty() {
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
            let pending = self.down.pending();
            if !pending.is_empty() {
                match Pin::new(&mut *self.client).poll_write(cx, pending) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(RelayEvent::ClientGone(None)),
                    Poll::Ready(Ok(n)) => {
                        self.down.advance(n);
                        self.tx.bytes_down += n as u64;
                        progressed = true;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(RelayEvent::ClientGone(Some(e))),
                    Poll::Pending => {}
                }
            }
            // A TLS client's stream may still hold what it took: it must reach
            // the socket before the transaction can be called done.
            if self.down.pending().is_empty() && self.client.wants_flush() {
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

    /// Session pooling: stop holding the server, so that the relay reports the
    /// end of the client's current transaction. True if it has ended already,
    /// with nothing in flight.
    pub fn stop_holding_server(&mut self) -> bool {
        self.hold_server = false;
        matches!(self.boundary_event(), Some(RelayEvent::Boundary))
    }

    /// Relay until something is to be reported (see `poll_relay`).
    pub async fn run(&mut self) -> RelayEvent {
        std::future::poll_fn(|cx| self.poll_relay(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write everything `half` has ready, `chunk` bytes at most per write
    /// (a socket that takes little at a time), moving the rest to the front
    /// of the buffer after every write, as `room` does when it fills.
    fn drain(half: &mut Half, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let pending = half.pending();
            if pending.is_empty() {
                return out;
            }
            let n = pending.len().min(chunk);
            out.extend_from_slice(&pending[..n]);
            half.advance(n);
            if half.start > 0 {
                half.shift_to_front();
            }
        }
    }

    #[test]
    fn edits_insert_and_leave_out_bytes_in_order_across_partial_writes() {
        for chunk in [1, 2, 3, 7, 100] {
            let mut half = Half::holding(1024, b"aaBBBcccDDee");
            half.scanned = half.end;
            half.edit(0, 0, b"<".to_vec());
            half.edit(2, 3, b"bb".to_vec());
            half.edit(8, 2, Vec::new());
            half.edit(12, 0, b">".to_vec());
            assert!(!half.is_drained());
            assert_eq!(drain(&mut half, chunk), b"<aabbcccee>", "chunk {chunk}");
            assert!(half.all_sent() && half.is_drained());
        }
    }
}
