//! Messages a client sends: the pooler builds them to log in to PostgreSQL and to
//! bring a server to a client's settings, and parses the password messages of its
//! own clients.

use bytes::{BufMut, BytesMut};

use super::{tag, ProtocolError, CANCEL_REQUEST_CODE, PROTOCOL_V3, SSL_REQUEST_CODE};

/// StartupMessage with the given parameters (user and database among them).
pub fn put_startup(buf: &mut BytesMut, params: &[(&str, &str)]) {
    let body_len: usize = 4
        + params
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>()
        + 1;
    buf.reserve(4 + body_len);
    buf.put_i32((4 + body_len) as i32);
    buf.put_i32(PROTOCOL_V3);
    for (key, value) in params {
        buf.put_slice(key.as_bytes());
        buf.put_u8(0);
        buf.put_slice(value.as_bytes());
        buf.put_u8(0);
    }
    buf.put_u8(0);
}

/// SSLRequest: asks the server for TLS before the startup message.
pub fn put_ssl_request(buf: &mut BytesMut) {
    buf.put_i32(8);
    buf.put_i32(SSL_REQUEST_CODE);
}

pub fn put_cancel_request(buf: &mut BytesMut, pid: i32, secret: i32) {
    buf.put_i32(16);
    buf.put_i32(CANCEL_REQUEST_CODE);
    buf.put_i32(pid);
    buf.put_i32(secret);
}

/// PasswordMessage carrying a NUL-terminated password or md5 response.
pub fn put_password(buf: &mut BytesMut, password: &str) {
    buf.put_u8(tag::PASSWORD);
    buf.put_i32((4 + password.len() + 1) as i32);
    buf.put_slice(password.as_bytes());
    buf.put_u8(0);
}

/// SASLInitialResponse: mechanism name and the client-first-message.
pub fn put_sasl_initial_response(buf: &mut BytesMut, mechanism: &str, data: &[u8]) {
    buf.put_u8(tag::PASSWORD);
    buf.put_i32((4 + mechanism.len() + 1 + 4 + data.len()) as i32);
    buf.put_slice(mechanism.as_bytes());
    buf.put_u8(0);
    buf.put_i32(data.len() as i32);
    buf.put_slice(data);
}

/// SASLResponse: the client-final-message.
pub fn put_sasl_response(buf: &mut BytesMut, data: &[u8]) {
    buf.put_u8(tag::PASSWORD);
    buf.put_i32((4 + data.len()) as i32);
    buf.put_slice(data);
}

pub fn put_query(buf: &mut BytesMut, sql: &str) {
    buf.put_u8(tag::QUERY);
    buf.put_i32((4 + sql.len() + 1) as i32);
    buf.put_slice(sql.as_bytes());
    buf.put_u8(0);
}

/// One statement with text parameters over the extended protocol, as a single
/// round trip: Parse, Bind and Execute of the unnamed statement and portal, then
/// Sync. Parameters are sent as values, never spliced into the SQL.
pub fn put_extended_query(buf: &mut BytesMut, sql: &str, params: &[&str]) {
    // Parse: statement name, query, no parameter types (the server infers them).
    buf.put_u8(tag::PARSE);
    buf.put_i32((4 + 1 + sql.len() + 1 + 2) as i32);
    buf.put_u8(0);
    buf.put_slice(sql.as_bytes());
    buf.put_u8(0);
    buf.put_i16(0);
    // Bind: portal and statement names, no format codes (all text), the values,
    // no result format codes (all text).
    let values: usize = params.iter().map(|p| 4 + p.len()).sum();
    buf.put_u8(tag::BIND);
    buf.put_i32((4 + 1 + 1 + 2 + 2 + values + 2) as i32);
    buf.put_u8(0);
    buf.put_u8(0);
    buf.put_i16(0);
    buf.put_i16(params.len() as i16);
    for param in params {
        buf.put_i32(param.len() as i32);
        buf.put_slice(param.as_bytes());
    }
    buf.put_i16(0);
    // Execute the unnamed portal with no row limit.
    buf.put_u8(tag::EXECUTE);
    buf.put_i32(4 + 1 + 4);
    buf.put_u8(0);
    buf.put_i32(0);
    buf.put_u8(tag::SYNC);
    buf.put_i32(4);
}

pub fn put_terminate(buf: &mut BytesMut) {
    buf.put_u8(tag::TERMINATE);
    buf.put_i32(4);
}

/// The password of a PasswordMessage body (cleartext or md5 response), without its NUL.
pub fn parse_password(body: &[u8]) -> Result<&[u8], ProtocolError> {
    match body.split_last() {
        Some((0, password)) => Ok(password),
        _ => Err(ProtocolError::Malformed {
            what: "PasswordMessage",
        }),
    }
}

/// A SASLInitialResponse body: mechanism and the initial data.
pub fn parse_sasl_initial_response(body: &[u8]) -> Result<(&str, &[u8]), ProtocolError> {
    let malformed = || ProtocolError::Malformed {
        what: "SASLInitialResponse",
    };
    let (mechanism, rest) = super::backend::take_cstr(body).ok_or_else(malformed)?;
    if rest.len() < 4 {
        return Err(malformed());
    }
    let len = i32::from_be_bytes(rest[0..4].try_into().expect("4 bytes"));
    let data = &rest[4..];
    if len < 0 || len as usize != data.len() {
        return Err(malformed());
    }
    Ok((mechanism, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sasl_initial_response_round_trip() {
        let mut buf = BytesMut::new();
        put_sasl_initial_response(&mut buf, "SCRAM-SHA-256", b"n,,n=,r=abc");
        let len = i32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
        assert_eq!(len + 1, buf.len());
        let (mechanism, data) = parse_sasl_initial_response(&buf[5..]).unwrap();
        assert_eq!(mechanism, "SCRAM-SHA-256");
        assert_eq!(data, b"n,,n=,r=abc");
    }

    #[test]
    fn sasl_initial_response_rejects_bad_length() {
        assert!(parse_sasl_initial_response(b"SCRAM-SHA-256\0\0\0\0\x09abc").is_err());
        assert!(parse_sasl_initial_response(b"SCRAM").is_err());
    }

    #[test]
    fn password_needs_terminator() {
        assert_eq!(parse_password(b"secret\0").unwrap(), b"secret");
        assert!(parse_password(b"secret").is_err());
        assert!(parse_password(b"").is_err());
    }

    #[test]
    fn extended_query_frames_each_message_by_its_length() {
        let mut buf = BytesMut::new();
        put_extended_query(&mut buf, "SELECT $1", &["alice"]);
        let mut tags = Vec::new();
        let mut rest = &buf[..];
        while !rest.is_empty() {
            let len = i32::from_be_bytes(rest[1..5].try_into().unwrap()) as usize;
            tags.push(rest[0]);
            rest = &rest[1 + len..];
        }
        assert_eq!(tags, b"PBES");
        // The Bind carries the value, length-prefixed, not the SQL text.
        let bind = &buf[buf.iter().position(|&b| b == b'B').unwrap()..];
        assert!(bind.windows(9).any(|w| w == b"\0\0\0\x05alice"));
    }

    #[test]
    fn startup_length_is_consistent() {
        let mut buf = BytesMut::new();
        put_startup(&mut buf, &[("user", "u"), ("database", "d")]);
        let len = i32::from_be_bytes(buf[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, buf.len());
        assert_eq!(*buf.last().unwrap(), 0);
    }
}
