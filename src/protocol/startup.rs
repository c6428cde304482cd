//! The first packet of a connection: StartupMessage, SSLRequest, GSSENCRequest or
//! CancelRequest. It has no tag byte, only a length.

use super::{
    ProtocolError, CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, PROTOCOL_V3, SSL_REQUEST_CODE,
};

/// A startup packet longer than this is refused (PostgreSQL uses 10000 too).
pub const MAX_STARTUP_LEN: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    Startup(Vec<(String, String)>),
    SslRequest,
    GssEncRequest,
    Cancel { pid: i32, secret: i32 },
}

/// Parse the body of a startup-phase packet (everything after the length).
pub fn parse_startup(body: &[u8]) -> Result<StartupPacket, ProtocolError> {
    let code = i32::from_be_bytes(body[0..4].try_into().expect("caller checked length"));
    let rest = &body[4..];
    match code {
        SSL_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE if rest.len() == 8 => Ok(StartupPacket::Cancel {
            pid: i32::from_be_bytes(rest[0..4].try_into().expect("4 bytes")),
            secret: i32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")),
        }),
        PROTOCOL_V3 => parse_params(rest).map(StartupPacket::Startup),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => {
            Err(ProtocolError::Malformed { what: "startup" })
        }
        other => Err(ProtocolError::UnsupportedVersion(other)),
    }
}

/// Name/value pairs, each NUL-terminated, ended by an empty name.
fn parse_params(mut rest: &[u8]) -> Result<Vec<(String, String)>, ProtocolError> {
    let malformed = || ProtocolError::Malformed { what: "startup" };
    let mut params = Vec::new();
    loop {
        let (name, tail) = super::backend::take_cstr(rest).ok_or_else(malformed)?;
        if name.is_empty() {
            return Ok(params);
        }
        let (value, tail) = super::backend::take_cstr(tail).ok_or_else(malformed)?;
        params.push((name.to_owned(), value.to_owned()));
        rest = tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    async fn read_startup(bytes: &[u8]) -> Result<StartupPacket, ProtocolError> {
        let mut stream = bytes;
        crate::protocol::io::MessageReader::new()
            .read_startup(&mut stream)
            .await
    }

    #[tokio::test]
    async fn reads_startup_message() {
        let mut buf = BytesMut::new();
        crate::protocol::frontend::put_startup(&mut buf, &[("user", "alice"), ("database", "db")]);
        let packet = read_startup(&buf[..]).await.unwrap();
        assert_eq!(
            packet,
            StartupPacket::Startup(vec![
                ("user".into(), "alice".into()),
                ("database".into(), "db".into())
            ])
        );
    }

    #[tokio::test]
    async fn reads_ssl_and_cancel_requests() {
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        assert_eq!(
            read_startup(&ssl[..]).await.unwrap(),
            StartupPacket::SslRequest
        );
        let mut buf = BytesMut::new();
        crate::protocol::frontend::put_cancel_request(&mut buf, 5, 6);
        assert_eq!(
            read_startup(&buf[..]).await.unwrap(),
            StartupPacket::Cancel { pid: 5, secret: 6 }
        );
    }

    #[tokio::test]
    async fn rejects_garbage() {
        assert!(read_startup(&[0u8, 0, 0, 2][..]).await.is_err());
        assert!(read_startup(&[0u8, 1, 0, 0][..]).await.is_err());
        // Version 2.0 is not spoken.
        assert!(matches!(
            parse_startup(&[0, 2, 0, 0, 0]),
            Err(ProtocolError::UnsupportedVersion(_))
        ));
        // Missing terminators.
        assert!(parse_startup(&[0, 3, 0, 0, b'u', b's']).is_err());
        assert!(read_startup(&[][..]).await.is_err());
    }
}
