//! ErrorResponse / NoticeResponse: building them, and reading the fields of one.

use bytes::{BufMut, BytesMut};

use super::tag;

/// SQLSTATE codes the pooler itself sends.
pub mod sqlstate {
    /// The code of a NOTICE that reports no error.
    pub const SUCCESSFUL_COMPLETION: &str = "00000";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const CONNECTION_FAILURE: &str = "08006";
    pub const INVALID_PASSWORD: &str = "28P01";
    pub const INVALID_AUTHORIZATION: &str = "28000";
    pub const INVALID_CATALOG_NAME: &str = "3D000";
    pub const TOO_MANY_CONNECTIONS: &str = "53300";
    pub const QUERY_CANCELED: &str = "57014";
    pub const ADMIN_SHUTDOWN: &str = "57P01";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
}

/// Severity of a message built by the pooler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Fatal,
    Notice,
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
        }
    }
}

/// Append an ErrorResponse (or NoticeResponse for notice/warning severities).
pub fn put_error(buf: &mut BytesMut, severity: Severity, code: &str, message: &str) {
    let message_tag = match severity {
        Severity::Notice | Severity::Warning => tag::NOTICE_RESPONSE,
        Severity::Error | Severity::Fatal => tag::ERROR_RESPONSE,
    };
    let sev = severity.as_str();
    let fields = [(b'S', sev), (b'V', sev), (b'C', code), (b'M', message)];
    let body_len: usize = fields.iter().map(|(_, v)| 1 + v.len() + 1).sum::<usize>() + 1;
    buf.reserve(1 + 4 + body_len);
    buf.put_u8(message_tag);
    buf.put_i32((4 + body_len) as i32);
    for (field, value) in fields {
        buf.put_u8(field);
        // A NUL inside the text would end the field early; PostgreSQL never sends one.
        buf.extend(value.bytes().filter(|&b| b != 0));
        buf.put_u8(0);
    }
    buf.put_u8(0);
}

/// An error or notice read from a server, as far as the pooler needs it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorFields {
    pub severity: String,
    pub code: String,
    pub message: String,
}

impl std::fmt::Display for ErrorFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.severity, self.code, self.message)
    }
}

/// Parse the body (after tag and length) of an ErrorResponse or NoticeResponse.
pub fn parse_error_fields(body: &[u8]) -> ErrorFields {
    let mut fields = ErrorFields::default();
    let mut rest = body;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind == 0 {
            break;
        }
        let end = tail.iter().position(|&b| b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match kind {
            b'S' => fields.severity = value,
            b'C' => fields.code = value,
            b'M' => fields.message = value,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_error_parses_back() {
        let mut buf = BytesMut::new();
        put_error(
            &mut buf,
            Severity::Fatal,
            "28P01",
            "password authentication failed",
        );
        assert_eq!(buf[0], b'E');
        let len = i32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
        assert_eq!(len + 1, buf.len());
        let fields = parse_error_fields(&buf[5..]);
        assert_eq!(fields.severity, "FATAL");
        assert_eq!(fields.code, "28P01");
        assert_eq!(fields.message, "password authentication failed");
    }

    #[test]
    fn notice_uses_notice_tag() {
        let mut buf = BytesMut::new();
        put_error(&mut buf, Severity::Notice, "00000", "hello");
        assert_eq!(buf[0], b'N');
    }

    #[test]
    fn truncated_fields_do_not_panic() {
        let fields = parse_error_fields(b"SERROR\0CXX");
        assert_eq!(fields.severity, "ERROR");
        assert_eq!(fields.code, "XX");
    }
}
