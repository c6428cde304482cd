//! One connection to PostgreSQL: login, the parameters it reports, and the small
//! conversations the pooler has with it on its own (bringing it to a client's
//! settings, resetting it, checking it).

pub mod address;
pub mod cancel;
pub mod close_reason;
pub mod dns;
pub mod login;
pub mod params;

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

pub use address::ServerAddress;
pub use cancel::{CancelInFlight, CancelTarget};
pub use login::{Credentials, LoginTarget};
pub use params::ParamSet;

use crate::net::Stream;
use crate::pool::Slot;
use crate::protocol::error::{parse_error_fields, ErrorFields};
use crate::protocol::io::MessageReader;
use crate::protocol::{backend, frontend, tag, ProtocolError};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot connect to {0}: {1}")]
    Connect(String, #[source] std::io::Error),
    #[error("no server address configured")]
    NoAddress,
    #[error("server login failed: {0}")]
    Refused(ErrorFields),
    #[error("server asked for a {0} password, but none is known for this user")]
    NoPassword(&'static str),
    #[error("SCRAM: {0}")]
    Scram(#[from] crate::auth::scram::ScramError),
    #[error("server protocol error: {0}")]
    Protocol(String),
    #[error("server query failed: {0}")]
    Query(ErrorFields),
    #[error("server connect timeout")]
    Timeout,
    #[error("TLS with {0}: {1}")]
    Tls(String, String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ServerError {
    /// A failure to reach a server that may pass by itself: the server is
    /// down, restarting or not accepting connections yet (SQLSTATE class 57:
    /// admin or crash shutdown, "the database system is starting up"), or
    /// the network failed. Clients wait for such a server, as with
    /// PgBouncer, while the pool tries again every server_login_retry. A
    /// refused login, a TLS or protocol problem, or a missing address will
    /// not fix itself, and is reported at once.
    pub fn is_transient(&self) -> bool {
        match self {
            ServerError::Connect(..) | ServerError::Timeout | ServerError::Io(_) => true,
            ServerError::Refused(fields) => fields.code.starts_with("57"),
            _ => false,
        }
    }
}

impl From<ProtocolError> for ServerError {
    fn from(e: ProtocolError) -> Self {
        match e {
            ProtocolError::Io(io) => ServerError::Io(io),
            other => ServerError::Protocol(other.to_string()),
        }
    }
}

/// Everything a server reported with ParameterStatus, in arrival order, plus the
/// tracked ones indexed for comparison.
#[derive(Clone, Debug, Default)]
pub struct ServerParamsReport {
    pub all: Vec<(String, String)>,
    pub tracked: ParamSet,
}

impl ServerParamsReport {
    pub fn set(&mut self, name: &str, value: &str) {
        self.tracked.set(name, value);
        match self.all.iter_mut().find(|(n, _)| n == name) {
            Some(entry) => entry.1 = value.to_owned(),
            None => self.all.push((name.to_owned(), value.to_owned())),
        }
    }
}

/// A logged-in server connection. It holds its pool slot: dropping it (closing
/// the connection) frees the slot for another connection.
pub struct ServerConn {
    pub id: u64,
    pub stream: Stream,
    /// Its address and BackendKeyData. Shared with the cancel link of the client
    /// using it, which is set on every transaction: an `Arc` spares a copy.
    pub cancel: Arc<CancelTarget>,
    /// The tracked settings the server has now.
    pub params: ParamSet,
    pub connected_at: Instant,
    /// When it last went back to the pool (for idle timeouts and checks).
    pub released_at: Instant,
    /// The pool's target generation it was opened for; older ones are retired.
    pub generation: u64,
    /// What the admin console shows about it.
    pub info: std::sync::Arc<crate::control::conn_info::ConnInfo>,
    /// The statements prepared on it by prepared statement tracking.
    pub statements: crate::prepared::ServerStatements,
    /// Held for its `Drop`: closing the connection frees the pool slot.
    #[allow(dead_code)]
    pub(crate) slot: Slot,
}

impl std::fmt::Debug for ServerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "S-{} pid={} {}",
            self.id, self.cancel.pid, self.cancel.address
        )
    }
}

impl Drop for ServerConn {
    fn drop(&mut self) {
        self.slot.forget_server(self.info.id);
    }
}

impl ServerConn {
    /// Not to be used again: opened for an older target of its pool
    /// (`generation`, RECONNECT or a reload), or at an address its host name
    /// no longer has.
    pub fn is_retired(&self, generation: u64) -> bool {
        self.generation != generation || self.info.close_needed()
    }

    /// True when the server has sent nothing since it was last used. Anything
    /// unread on an idle server (a FATAL from an admin terminating it, a closed
    /// socket) means its state is unknown.
    pub fn is_quiet(&mut self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }

    /// Run a simple query whose results the pooler discards (settings sync, reset,
    /// health check). Succeeds only if the server ends idle and without error.
    pub async fn run_internal(&mut self, sql: &str, max_packet: usize) -> Result<(), ServerError> {
        let mut buf = BytesMut::with_capacity(sql.len() + 8);
        frontend::put_query(&mut buf, sql);
        self.stream.send(&buf).await?;
        self.read_until_ready(buf, max_packet, |_| Ok(())).await
    }

    /// Run one statement with text parameters (extended protocol) and return
    /// its rows, each column as text or `None` for NULL. Succeeds only if the
    /// server ends idle and without error, as [`ServerConn::run_internal`].
    pub async fn query_rows(
        &mut self,
        sql: &str,
        params: &[&str],
        max_packet: usize,
    ) -> Result<Vec<Vec<Option<String>>>, ServerError> {
        let mut buf = BytesMut::with_capacity(sql.len() + 64);
        frontend::put_extended_query(&mut buf, sql, params);
        self.stream.send(&buf).await?;
        let mut rows = Vec::new();
        self.read_until_ready(buf, max_packet, |row| {
            let columns = backend::parse_data_row(row)?;
            rows.push(
                columns
                    .into_iter()
                    .map(|value| value.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            );
            Ok(())
        })
        .await?;
        Ok(rows)
    }

    /// Read a query's answer up to ReadyForQuery, handing each DataRow body to
    /// `on_row` and tracking ParameterStatus. The server must end idle, without
    /// error, without COPY, and with nothing more sent.
    async fn read_until_ready(
        &mut self,
        mut buf: BytesMut,
        max_packet: usize,
        mut on_row: impl FnMut(&[u8]) -> Result<(), ProtocolError>,
    ) -> Result<(), ServerError> {
        let mut failure: Option<ErrorFields> = None;
        let mut reader = MessageReader::new();
        loop {
            match reader
                .read_message(&mut self.stream, &mut buf, max_packet)
                .await?
            {
                tag::PARAMETER_STATUS => {
                    let (name, value) = backend::parse_parameter_status(&buf)?;
                    self.params.set(name, value);
                }
                tag::DATA_ROW => on_row(&buf)?,
                tag::ERROR_RESPONSE => failure = Some(parse_error_fields(&buf)),
                tag::READY_FOR_QUERY => {
                    if let Some(err) = failure {
                        return Err(ServerError::Query(err));
                    }
                    if buf.first() != Some(&b'I') {
                        return Err(ServerError::Protocol(
                            "server not idle after internal query".into(),
                        ));
                    }
                    if reader.has_leftover() {
                        // Read from the socket, so not seen by the idle check.
                        return Err(ServerError::Protocol(
                            "unexpected data after an internal query".into(),
                        ));
                    }
                    return Ok(());
                }
                tag::COPY_IN_RESPONSE | tag::COPY_OUT_RESPONSE | tag::COPY_BOTH_RESPONSE => {
                    return Err(ServerError::Protocol("internal query started COPY".into()))
                }
                _ => {}
            }
        }
    }

    /// Close politely: a Terminate if the socket takes it right away, then
    /// drop. The log says `why` (with log_disconnections), in PgBouncer's
    /// words where it has some.
    pub fn close(mut self, why: &str) {
        self.slot.log_closing(&self, why);
        let mut buf = BytesMut::with_capacity(5);
        frontend::put_terminate(&mut buf);
        self.stream.try_write_now(&buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: &str) -> ServerError {
        ServerError::Refused(ErrorFields {
            severity: "FATAL".into(),
            code: code.into(),
            message: String::new(),
        })
    }

    #[test]
    fn only_failures_that_can_pass_by_themselves_are_transient() {
        let refused_io = || std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(ServerError::Connect("127.0.0.1:5432".into(), refused_io()).is_transient());
        assert!(ServerError::Timeout.is_transient());
        assert!(ServerError::Io(refused_io()).is_transient());
        // "the database system is starting up", admin and crash shutdown.
        for code in ["57P03", "57P01", "57P02"] {
            assert!(refused(code).is_transient(), "{code}");
        }
        // A wrong password, a missing role or database, a full server.
        for code in ["28P01", "28000", "3D000", "53300"] {
            assert!(!refused(code).is_transient(), "{code}");
        }
        assert!(!ServerError::NoAddress.is_transient());
        assert!(!ServerError::Tls("h".into(), "handshake failed".into()).is_transient());
        assert!(!ServerError::NoPassword("md5").is_transient());
    }
}
