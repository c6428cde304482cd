//! Messages a server sends: the pooler builds them for its clients and parses the
//! ones it must understand while logging in to PostgreSQL.

use bytes::{BufMut, BytesMut};

use super::{tag, ProtocolError};

/// Authentication request codes (the first int32 of an 'R' message).
pub mod auth_code {
    pub const OK: i32 = 0;
    pub const CLEARTEXT: i32 = 3;
    pub const MD5: i32 = 5;
    pub const SASL: i32 = 10;
    pub const SASL_CONTINUE: i32 = 11;
    pub const SASL_FINAL: i32 = 12;
}

fn put_header(buf: &mut BytesMut, message_tag: u8, body_len: usize) {
    buf.reserve(5 + body_len);
    buf.put_u8(message_tag);
    buf.put_i32((4 + body_len) as i32);
}

pub fn put_auth_ok(buf: &mut BytesMut) {
    put_header(buf, tag::AUTHENTICATION, 4);
    buf.put_i32(auth_code::OK);
}

pub fn put_auth_cleartext(buf: &mut BytesMut) {
    put_header(buf, tag::AUTHENTICATION, 4);
    buf.put_i32(auth_code::CLEARTEXT);
}

pub fn put_auth_md5(buf: &mut BytesMut, salt: [u8; 4]) {
    put_header(buf, tag::AUTHENTICATION, 8);
    buf.put_i32(auth_code::MD5);
    buf.put_slice(&salt);
}

/// AuthenticationSASL offering the one mechanism pgsluice supports.
pub fn put_auth_sasl(buf: &mut BytesMut) {
    let mechanism = b"SCRAM-SHA-256\0\0";
    put_header(buf, tag::AUTHENTICATION, 4 + mechanism.len());
    buf.put_i32(auth_code::SASL);
    buf.put_slice(mechanism);
}

pub fn put_auth_sasl_continue(buf: &mut BytesMut, data: &[u8]) {
    put_header(buf, tag::AUTHENTICATION, 4 + data.len());
    buf.put_i32(auth_code::SASL_CONTINUE);
    buf.put_slice(data);
}

pub fn put_auth_sasl_final(buf: &mut BytesMut, data: &[u8]) {
    put_header(buf, tag::AUTHENTICATION, 4 + data.len());
    buf.put_i32(auth_code::SASL_FINAL);
    buf.put_slice(data);
}

pub fn put_parameter_status(buf: &mut BytesMut, name: &str, value: &str) {
    put_header(buf, tag::PARAMETER_STATUS, name.len() + value.len() + 2);
    buf.put_slice(name.as_bytes());
    buf.put_u8(0);
    buf.put_slice(value.as_bytes());
    buf.put_u8(0);
}

pub fn put_backend_key_data(buf: &mut BytesMut, pid: i32, secret: i32) {
    put_header(buf, tag::BACKEND_KEY_DATA, 8);
    buf.put_i32(pid);
    buf.put_i32(secret);
}

pub fn put_ready_for_query(buf: &mut BytesMut, status: u8) {
    put_header(buf, tag::READY_FOR_QUERY, 1);
    buf.put_u8(status);
}

/// Split a NUL-terminated string off the front of `data`.
pub fn take_cstr(data: &[u8]) -> Option<(&str, &[u8])> {
    let end = data.iter().position(|&b| b == 0)?;
    let text = std::str::from_utf8(&data[..end]).ok()?;
    Some((text, &data[end + 1..]))
}

/// A ParameterStatus body: name and value.
pub fn parse_parameter_status(body: &[u8]) -> Result<(&str, &str), ProtocolError> {
    let malformed = ProtocolError::Malformed {
        what: "ParameterStatus",
    };
    let (name, rest) = take_cstr(body).ok_or(malformed)?;
    let (value, _) = take_cstr(rest).ok_or(ProtocolError::Malformed {
        what: "ParameterStatus",
    })?;
    Ok((name, value))
}

/// A DataRow body: each column's value, `None` for NULL.
pub fn parse_data_row(body: &[u8]) -> Result<Vec<Option<&[u8]>>, ProtocolError> {
    let malformed = || ProtocolError::Malformed { what: "DataRow" };
    let count = body.get(..2).ok_or_else(malformed)?;
    let count = u16::from_be_bytes([count[0], count[1]]);
    let mut rest = &body[2..];
    let mut columns = Vec::with_capacity(count.into());
    for _ in 0..count {
        let len = rest.get(..4).ok_or_else(malformed)?;
        let len = i32::from_be_bytes(len.try_into().expect("4 bytes"));
        rest = &rest[4..];
        if len < 0 {
            columns.push(None);
            continue;
        }
        let len = len as usize;
        let value = rest.get(..len).ok_or_else(malformed)?;
        columns.push(Some(value));
        rest = &rest[len..];
    }
    if !rest.is_empty() {
        return Err(malformed());
    }
    Ok(columns)
}

/// A BackendKeyData body: process id and secret key.
pub fn parse_backend_key_data(body: &[u8]) -> Result<(i32, i32), ProtocolError> {
    if body.len() != 8 {
        return Err(ProtocolError::Malformed {
            what: "BackendKeyData",
        });
    }
    let pid = i32::from_be_bytes(body[0..4].try_into().expect("4 bytes"));
    let secret = i32::from_be_bytes(body[4..8].try_into().expect("4 bytes"));
    Ok((pid, secret))
}

/// An Authentication request from a server, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum AuthRequest<'a> {
    Ok,
    Cleartext,
    Md5([u8; 4]),
    Sasl(Vec<&'a str>),
    SaslContinue(&'a [u8]),
    SaslFinal(&'a [u8]),
    Other(i32),
}

pub fn parse_auth_request(body: &[u8]) -> Result<AuthRequest<'_>, ProtocolError> {
    let malformed = || ProtocolError::Malformed {
        what: "Authentication",
    };
    if body.len() < 4 {
        return Err(malformed());
    }
    let code = i32::from_be_bytes(body[0..4].try_into().expect("4 bytes"));
    let data = &body[4..];
    Ok(match code {
        auth_code::OK => AuthRequest::Ok,
        auth_code::CLEARTEXT => AuthRequest::Cleartext,
        auth_code::MD5 => AuthRequest::Md5(data.try_into().map_err(|_| malformed())?),
        auth_code::SASL => {
            let mut mechanisms = Vec::new();
            let mut rest = data;
            while let Some((name, tail)) = take_cstr(rest) {
                if name.is_empty() {
                    break;
                }
                mechanisms.push(name);
                rest = tail;
            }
            AuthRequest::Sasl(mechanisms)
        }
        auth_code::SASL_CONTINUE => AuthRequest::SaslContinue(data),
        auth_code::SASL_FINAL => AuthRequest::SaslFinal(data),
        other => AuthRequest::Other(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_status_round_trip() {
        let mut buf = BytesMut::new();
        put_parameter_status(&mut buf, "TimeZone", "UTC");
        assert_eq!(buf[0], b'S');
        assert_eq!(
            parse_parameter_status(&buf[5..]).unwrap(),
            ("TimeZone", "UTC")
        );
    }

    #[test]
    fn auth_requests_parse() {
        let mut buf = BytesMut::new();
        put_auth_md5(&mut buf, [1, 2, 3, 4]);
        assert_eq!(
            parse_auth_request(&buf[5..]).unwrap(),
            AuthRequest::Md5([1, 2, 3, 4])
        );
        let mut buf = BytesMut::new();
        put_auth_sasl(&mut buf);
        assert_eq!(
            parse_auth_request(&buf[5..]).unwrap(),
            AuthRequest::Sasl(vec!["SCRAM-SHA-256"])
        );
        assert!(parse_auth_request(&[0, 0]).is_err());
        assert!(parse_auth_request(&[0, 0, 0, 5, 1]).is_err());
    }

    #[test]
    fn data_rows_parse_values_and_nulls() {
        // Two columns: "ab" and NULL.
        let body = [0, 2, 0, 0, 0, 2, b'a', b'b', 0xff, 0xff, 0xff, 0xff];
        assert_eq!(parse_data_row(&body).unwrap(), vec![Some(&b"ab"[..]), None]);
        assert_eq!(
            parse_data_row(&[0, 0]).unwrap(),
            Vec::<Option<&[u8]>>::new()
        );
        // A value longer than the message, a missing column, a trailing byte.
        assert!(parse_data_row(&[0, 1, 0, 0, 0, 5, b'a']).is_err());
        assert!(parse_data_row(&[0, 2, 0, 0, 0, 0]).is_err());
        assert!(parse_data_row(&[0, 1, 0, 0, 0, 0, 9]).is_err());
        assert!(parse_data_row(&[0]).is_err());
    }

    #[test]
    fn backend_key_data_round_trip() {
        let mut buf = BytesMut::new();
        put_backend_key_data(&mut buf, 42, -7);
        assert_eq!(parse_backend_key_data(&buf[5..]).unwrap(), (42, -7));
        assert!(parse_backend_key_data(&[1, 2, 3]).is_err());
    }
}
