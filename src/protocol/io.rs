//! Reading whole tagged messages, for the phases where the pooler itself speaks
//! the protocol (authentication, server login, resetting a server). The hot relay
//! path does not use this; it scans bytes in place (see `scanner`).

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::ProtocolError;

/// Read one message into `buf` (cleared first) and return its tag; the body is
/// `buf[..]` afterwards.
pub async fn read_message<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    max_len: usize,
) -> Result<u8, ProtocolError> {
    let mut header = [0u8; 5];
    match stream.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ProtocolError::Eof),
        Err(e) => return Err(e.into()),
    }
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len < 4 {
        return Err(ProtocolError::BadLength(len.into()));
    }
    let body_len = len as usize - 4;
    if body_len + 4 > max_len {
        return Err(ProtocolError::TooLarge(body_len + 4));
    }
    buf.clear();
    buf.resize(body_len, 0);
    match stream.read_exact(&mut buf[..]).await {
        Ok(_) => Ok(header[0]),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(ProtocolError::Eof),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_message_and_detects_truncation() {
        let data = [b'Z', 0, 0, 0, 5, b'I'];
        let mut buf = BytesMut::new();
        let tag = read_message(&mut &data[..], &mut buf, 1000).await.unwrap();
        assert_eq!(tag, b'Z');
        assert_eq!(&buf[..], b"I");
        assert!(matches!(
            read_message(&mut &data[..4], &mut buf, 1000).await,
            Err(ProtocolError::Eof)
        ));
        assert!(matches!(
            read_message(&mut &data[..], &mut buf, 4).await,
            Err(ProtocolError::TooLarge(_))
        ));
    }
}
