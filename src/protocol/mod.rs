//! The PostgreSQL v3 wire protocol, as far as a pooler needs it.
//!
//! The pooler forwards almost every byte untouched; it only frames messages (tag +
//! length), reads the startup packet, and builds or inspects a handful of messages.
//! One file per message family.

pub mod backend;
pub mod error;
pub mod frontend;
pub mod io;
pub mod scanner;
pub mod startup;

/// For unit tests: one whole message, its tag, length and body.
#[cfg(test)]
pub(crate) fn test_message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(((body.len() + 4) as i32).to_be_bytes());
    v.extend(body);
    v
}

/// Protocol version 3.0 as sent in a StartupMessage.
pub const PROTOCOL_V3: i32 = 196_608;
/// The magic "version" numbers of the special startup-phase requests.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;

/// Message tags the pooler acts on (frontend and backend share the letter space,
/// so each constant says which side sends it).
pub mod tag {
    // Frontend (client -> server).
    pub const QUERY: u8 = b'Q';
    pub const SYNC: u8 = b'S';
    pub const FUNCTION_CALL: u8 = b'F';
    pub const TERMINATE: u8 = b'X';
    pub const PASSWORD: u8 = b'p';
    pub const PARSE: u8 = b'P';
    pub const BIND: u8 = b'B';
    pub const EXECUTE: u8 = b'E';
    pub const DESCRIBE: u8 = b'D';
    pub const CLOSE: u8 = b'C';
    pub const FLUSH: u8 = b'H';
    pub const COPY_DATA: u8 = b'd';
    pub const COPY_DONE: u8 = b'c';
    pub const COPY_FAIL: u8 = b'f';

    /// The message types a client may send once logged in. PostgreSQL ends
    /// the session on any other, so the pooler refuses them before they reach
    /// a server (as PgBouncer does, with "unknown pkt").
    pub fn is_client_message(t: u8) -> bool {
        matches!(
            t,
            QUERY
                | SYNC
                | FUNCTION_CALL
                | TERMINATE
                | PARSE
                | BIND
                | EXECUTE
                | DESCRIBE
                | CLOSE
                | FLUSH
                | COPY_DATA
                | COPY_DONE
                | COPY_FAIL
        )
    }

    // Backend (server -> client).
    pub const AUTHENTICATION: u8 = b'R';
    pub const BACKEND_KEY_DATA: u8 = b'K';
    pub const PARAMETER_STATUS: u8 = b'S';
    pub const READY_FOR_QUERY: u8 = b'Z';
    pub const ERROR_RESPONSE: u8 = b'E';
    pub const NOTICE_RESPONSE: u8 = b'N';
    pub const NOTIFICATION_RESPONSE: u8 = b'A';
    pub const COMMAND_COMPLETE: u8 = b'C';
    pub const EMPTY_QUERY_RESPONSE: u8 = b'I';
    pub const ROW_DESCRIPTION: u8 = b'T';
    pub const DATA_ROW: u8 = b'D';
    pub const COPY_IN_RESPONSE: u8 = b'G';
    pub const COPY_OUT_RESPONSE: u8 = b'H';
    pub const COPY_BOTH_RESPONSE: u8 = b'W';
}

/// Errors of framing and parsing; each says what was wrong with the bytes.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("invalid packet length {0}")]
    BadLength(i64),
    #[error("packet too large: {0} bytes (max_packet_size)")]
    TooLarge(usize),
    #[error("named prepared statement too large to track: {0} bytes (at most 1 MiB)")]
    NamedParseTooLarge(usize),
    #[error("malformed {what} message")]
    Malformed { what: &'static str },
    /// A message type no client sends after the login (PgBouncer's log words).
    #[error("unknown pkt from client: {0}/0x{0:x}")]
    UnknownClientMessage(u8),
    #[error("unexpected message '{}' during {phase}", char::from(*.tag))]
    Unexpected { tag: u8, phase: &'static str },
    #[error("unsupported protocol version {}.{}", .0 >> 16, .0 & 0xffff)]
    UnsupportedVersion(i32),
    #[error("connection closed")]
    Eof,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
