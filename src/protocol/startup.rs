//! The first packet of a connection: StartupMessage, SSLRequest, GSSENCRequest or
//! CancelRequest. It has no tag byte, only a length.

use bytes::Bytes;

use super::{
    ProtocolError, CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, PROTOCOL_V3, SSL_REQUEST_CODE,
};

/// A startup packet longer than this is refused (PostgreSQL uses 10000 too).
pub const MAX_STARTUP_LEN: usize = 10_000;

#[derive(Debug, PartialEq, Eq)]
pub enum StartupPacket {
    Startup(StartupParams),
    SslRequest,
    GssEncRequest,
    Cancel { pid: i32, secret: i32 },
}

/// The name/value pairs of a StartupMessage, checked once when the packet is
/// parsed and then read in place: every login reads them, and copying each
/// name and value into its own string cost more than the rest of the parse.
#[derive(Debug, PartialEq, Eq)]
pub struct StartupParams(Bytes);

impl StartupParams {
    /// `pairs`: NUL-terminated UTF-8 names and values, ended by an empty name.
    /// Kept up to that empty name, and checked as UTF-8 there in one pass.
    fn parse(pairs: Bytes) -> Result<StartupParams, ProtocolError> {
        let malformed = || ProtocolError::Malformed { what: "startup" };
        let nul_after = |from: usize| {
            pairs[from..]
                .iter()
                .position(|&b| b == 0)
                .map(|at| from + at)
        };
        let mut at = 0;
        loop {
            let name_end = nul_after(at).ok_or_else(malformed)?;
            if name_end == at {
                // A NUL is a whole character in UTF-8, so the names and values
                // between them are UTF-8 when all of them together are.
                std::str::from_utf8(&pairs[..at]).map_err(|_| malformed())?;
                return Ok(StartupParams(pairs.slice(..at)));
            }
            at = nul_after(name_end + 1).ok_or_else(malformed)? + 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        // `parse` checked it: UTF-8 pairs, each ended by a NUL.
        let mut rest = std::str::from_utf8(&self.0).unwrap_or_default();
        std::iter::from_fn(move || {
            let (name, tail) = rest.split_once('\0')?;
            let (value, tail) = tail.split_once('\0')?;
            rest = tail;
            Some((name, value))
        })
    }

    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> StartupParams {
        let mut packet = bytes::BytesMut::new();
        super::frontend::put_startup(&mut packet, pairs);
        match parse_startup(packet.freeze().slice(4..)) {
            Ok(StartupPacket::Startup(params)) => params,
            other => panic!("not a startup message: {other:?}"),
        }
    }
}

/// Parse the body of a startup-phase packet (everything after the length, at
/// least 4 bytes).
pub fn parse_startup(body: Bytes) -> Result<StartupPacket, ProtocolError> {
    let code = i32::from_be_bytes(body[0..4].try_into().expect("caller checked length"));
    let rest = &body[4..];
    match code {
        SSL_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::SslRequest),
        GSSENC_REQUEST_CODE if rest.is_empty() => Ok(StartupPacket::GssEncRequest),
        CANCEL_REQUEST_CODE if rest.len() == 8 => Ok(StartupPacket::Cancel {
            pid: i32::from_be_bytes(rest[0..4].try_into().expect("4 bytes")),
            secret: i32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")),
        }),
        PROTOCOL_V3 => StartupParams::parse(body.slice(4..)).map(StartupPacket::Startup),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE | CANCEL_REQUEST_CODE => {
            Err(ProtocolError::Malformed { what: "startup" })
        }
        other => Err(ProtocolError::UnsupportedVersion(other)),
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
        let StartupPacket::Startup(params) = read_startup(&buf[..]).await.unwrap() else {
            panic!("not a startup message");
        };
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            [("user", "alice"), ("database", "db")]
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
            parse_startup(Bytes::from_static(&[0, 2, 0, 0, 0])),
            Err(ProtocolError::UnsupportedVersion(_))
        ));
        // Missing terminators.
        assert!(parse_startup(Bytes::from_static(&[0, 3, 0, 0, b'u', b's'])).is_err());
        // A value that is not UTF-8.
        assert!(parse_startup(Bytes::from_static(&[0, 3, 0, 0, b'u', 0, 0xff, 0, 0])).is_err());
        assert!(read_startup(&[][..]).await.is_err());
    }

    #[test]
    fn pairs_end_at_the_empty_name() {
        // A name without its value's terminator.
        assert!(parse_startup(Bytes::from_static(b"\0\x03\0\0user\0alice")).is_err());
        // Bytes after the empty name are not read, so need not be UTF-8.
        let Ok(StartupPacket::Startup(params)) =
            parse_startup(Bytes::from_static(b"\0\x03\0\0user\0alice\0\0\xff"))
        else {
            panic!("not a startup message");
        };
        assert_eq!(params.iter().collect::<Vec<_>>(), [("user", "alice")]);
        // An empty value is a value.
        let Ok(StartupPacket::Startup(params)) =
            parse_startup(Bytes::from_static(b"\0\x03\0\0options\0\0user\0bob\0\0"))
        else {
            panic!("not a startup message");
        };
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            [("options", ""), ("user", "bob")]
        );
    }

    proptest::proptest! {
        /// Any body of a startup packet is read or refused; never a panic.
        #[test]
        fn any_startup_body_is_read_or_refused(
            version in proptest::sample::select(vec![
                PROTOCOL_V3, CANCEL_REQUEST_CODE, SSL_REQUEST_CODE, GSSENC_REQUEST_CODE, 0,
            ]),
            rest in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
        ) {
            let mut body = version.to_be_bytes().to_vec();
            body.extend(rest);
            let _ = parse_startup(bytes::Bytes::from(body));
        }
    }
}
