//! Reading whole messages, for the phases where the pooler itself speaks the
//! protocol (authentication, server login, resetting a server, the console).
//! The hot relay path does not use this; it scans bytes in place (see `scanner`).
//!
//! `MessageReader` reads what the socket has, not a message's exact length: a
//! login is then one read per message instead of two, and a read that leaves
//! the socket empty tells the runtime so, which spares a failing read before
//! the next message. Bytes read past the last message are the caller's to
//! hand on (`into_leftover`).

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::startup::{parse_startup, StartupPacket, MAX_STARTUP_LEN};
use super::ProtocolError;

/// How much is asked of the socket at least, per read. Login messages are far
/// smaller; one read usually takes a whole message.
const READ_AHEAD: usize = 1024;

/// The body length a tagged message's 5-byte header announces, checked.
fn body_len(header: &[u8], max_len: usize) -> Result<usize, ProtocolError> {
    let len = i32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    if len < 4 {
        return Err(ProtocolError::BadLength(len.into()));
    }
    let body_len = len as usize - 4;
    if body_len + 4 > max_len {
        return Err(ProtocolError::TooLarge(body_len + 4));
    }
    Ok(body_len)
}

/// Whole messages from a stream, read ahead into a buffer of its own.
#[derive(Debug, Default)]
pub struct MessageReader {
    pending: BytesMut,
}

impl MessageReader {
    pub fn new() -> MessageReader {
        MessageReader::default()
    }

    /// Go on from bytes an earlier reader read ahead.
    pub fn with_leftover(pending: BytesMut) -> MessageReader {
        MessageReader { pending }
    }

    /// Read until at least `need` bytes are pending.
    async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        need: usize,
    ) -> Result<(), ProtocolError> {
        while self.pending.len() < need {
            self.pending
                .reserve((need - self.pending.len()).max(READ_AHEAD));
            if stream.read_buf(&mut self.pending).await? == 0 {
                return Err(ProtocolError::Eof);
            }
        }
        Ok(())
    }

    /// The next tagged message: its tag, and its body in `buf` (cleared first).
    pub async fn read_message<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        buf: &mut BytesMut,
        max_len: usize,
    ) -> Result<u8, ProtocolError> {
        self.fill(stream, 5).await?;
        let body_len = body_len(&self.pending[..5], max_len)?;
        self.fill(stream, 5 + body_len).await?;
        let message_tag = self.pending[0];
        self.pending.advance(5);
        buf.clear();
        buf.extend_from_slice(&self.pending[..body_len]);
        self.pending.advance(body_len);
        Ok(message_tag)
    }

    /// The next startup-phase packet (untagged: SSLRequest, StartupMessage, …).
    pub async fn read_startup<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<StartupPacket, ProtocolError> {
        self.fill(stream, 4).await?;
        let len = i32::from_be_bytes([
            self.pending[0],
            self.pending[1],
            self.pending[2],
            self.pending[3],
        ]);
        if len < 8 || len as usize > MAX_STARTUP_LEN {
            return Err(ProtocolError::BadLength(len.into()));
        }
        let len = len as usize;
        self.fill(stream, len).await?;
        let mut packet = self.pending.split_to(len).freeze();
        packet.advance(4);
        parse_startup(packet)
    }

    /// Bytes read past the last message returned.
    pub fn into_leftover(self) -> BytesMut {
        self.pending
    }

    pub fn has_leftover(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_reader_splits_what_it_reads_ahead_into_messages() {
        // A startup packet, two tagged messages and the start of a third, in
        // one read.
        let mut data = vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        data.extend_from_slice(&[b'p', 0, 0, 0, 7, b'a', b'b', 0]);
        data.extend_from_slice(&[b'Q', 0, 0, 0, 5, 0]);
        data.extend_from_slice(&[b'X', 0]);
        let mut stream = &data[..];
        let mut reader = MessageReader::new();
        let mut buf = BytesMut::new();
        assert!(matches!(
            reader.read_startup(&mut stream).await.unwrap(),
            StartupPacket::SslRequest
        ));
        assert_eq!(
            reader
                .read_message(&mut stream, &mut buf, 100)
                .await
                .unwrap(),
            b'p'
        );
        assert_eq!(&buf[..], b"ab\0");
        assert_eq!(
            reader
                .read_message(&mut stream, &mut buf, 100)
                .await
                .unwrap(),
            b'Q'
        );
        assert_eq!(&buf[..], b"\0");
        assert!(reader.has_leftover());
        // The incomplete message is not lost: it is handed on…
        assert_eq!(&reader.into_leftover()[..], &[b'X', 0]);
    }

    #[tokio::test]
    async fn a_reader_reports_truncation_and_oversize() {
        let data = [b'Z', 0, 0, 0, 5];
        let mut buf = BytesMut::new();
        let mut reader = MessageReader::new();
        assert!(matches!(
            reader.read_message(&mut &data[..], &mut buf, 100).await,
            Err(ProtocolError::Eof)
        ));
        let data = [b'Z', 0, 0, 0, 200, 0];
        let mut reader = MessageReader::new();
        assert!(matches!(
            reader.read_message(&mut &data[..], &mut buf, 100).await,
            Err(ProtocolError::TooLarge(_))
        ));
        let data = [0, 0, 0, 3];
        let mut reader = MessageReader::new();
        assert!(matches!(
            reader.read_startup(&mut &data[..]).await,
            Err(ProtocolError::BadLength(3))
        ));
    }

    #[tokio::test]
    async fn a_reader_goes_on_from_leftover_bytes() {
        let mut reader = MessageReader::with_leftover(BytesMut::from(&[b'Z', 0, 0][..]));
        let rest = [0, 5, b'I'];
        let mut buf = BytesMut::new();
        assert_eq!(
            reader
                .read_message(&mut &rest[..], &mut buf, 100)
                .await
                .unwrap(),
            b'Z'
        );
        assert_eq!(&buf[..], b"I");
        assert!(!reader.has_leftover());
    }
}
