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
    fn startup_length_is_consistent() {
        let mut buf = BytesMut::new();
        put_startup(&mut buf, &[("user", "u"), ("database", "d")]);
        let len = i32::from_be_bytes(buf[0..4].try_into().unwrap()) as usize;
        assert_eq!(len, buf.len());
        assert_eq!(*buf.last().unwrap(), 0);
    }
}
