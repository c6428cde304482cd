//! Finding message boundaries in a byte stream without copying it.
//!
//! The relay forwards bytes in place; the scanner walks them and reports each
//! message header, and the whole body of the few message types the caller asks to
//! see. A message longer than the buffer is passed through in pieces.

use super::ProtocolError;

/// What the scanner found at the front of the unscanned bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A message whose body is passed through without inspection; `consumed` is 5.
    Header { tag: u8 },
    /// A whole message the caller asked to inspect (header and body in the buffer).
    Whole { tag: u8, body: &'a [u8] },
    /// Part of the body of the message last reported as `Header`.
    Body,
}

/// Tracks where the next message starts across reads.
#[derive(Debug, Default, Clone)]
pub struct Scanner {
    /// Body bytes of the current pass-through message not yet seen.
    remaining: usize,
}

/// The largest message the pooler will hold whole to inspect (ParameterStatus,
/// ReadyForQuery, …). Larger ones of those types mean a broken peer.
pub const MAX_INSPECTED_LEN: usize = 64 * 1024;

/// The length a message's header (at least 5 bytes of `data`) declares,
/// counting itself but not the type byte, checked against `max_len`.
pub fn declared_len(data: &[u8], max_len: usize) -> Result<usize, ProtocolError> {
    let len = i32::from_be_bytes([data[1], data[2], data[3], data[4]]);
    if len < 4 {
        return Err(ProtocolError::BadLength(len.into()));
    }
    let len = len as usize;
    if len > max_len {
        return Err(ProtocolError::TooLarge(len));
    }
    Ok(len)
}

impl Scanner {
    /// True when the scanned bytes end exactly at a message boundary.
    pub fn at_boundary(&self) -> bool {
        self.remaining == 0
    }

    /// The caller took a message's first bytes itself; `body_left` more of
    /// it follow, to pass through.
    pub fn pass_body(&mut self, body_left: usize) {
        self.remaining = body_left;
    }

    /// Look at `data` (unscanned bytes) and return the next frame and how many bytes
    /// it spans, or `None` when more bytes are needed to decide.
    /// `inspect(tag)` says which message types must be delivered whole.
    pub fn next_frame<'a>(
        &mut self,
        data: &'a [u8],
        max_len: usize,
        inspect: impl Fn(u8) -> bool,
    ) -> Result<Option<(Frame<'a>, usize)>, ProtocolError> {
        if self.remaining > 0 {
            if data.is_empty() {
                return Ok(None);
            }
            let n = self.remaining.min(data.len());
            self.remaining -= n;
            return Ok(Some((Frame::Body, n)));
        }
        if data.len() < 5 {
            return Ok(None);
        }
        let tag = data[0];
        let len = declared_len(data, max_len)?;
        if inspect(tag) {
            if len > MAX_INSPECTED_LEN {
                return Err(ProtocolError::TooLarge(len));
            }
            if data.len() < 1 + len {
                return Ok(None);
            }
            return Ok(Some((
                Frame::Whole {
                    tag,
                    body: &data[5..1 + len],
                },
                1 + len,
            )));
        }
        self.remaining = len - 4;
        Ok(Some((Frame::Header { tag }, 5)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::test_message as msg;

    #[test]
    fn walks_passthrough_and_whole_messages() {
        let mut data = msg(b'D', b"row-bytes");
        data.extend(msg(b'Z', b"I"));
        let mut s = Scanner::default();
        let inspect = |t| t == b'Z';
        let (f, n) = s.next_frame(&data, 1 << 20, inspect).unwrap().unwrap();
        assert_eq!(f, Frame::Header { tag: b'D' });
        assert_eq!(n, 5);
        assert!(!s.at_boundary());
        let (f, n2) = s.next_frame(&data[5..], 1 << 20, inspect).unwrap().unwrap();
        assert_eq!(f, Frame::Body);
        assert_eq!(n2, 9);
        assert!(s.at_boundary());
        let (f, n3) = s
            .next_frame(&data[14..], 1 << 20, inspect)
            .unwrap()
            .unwrap();
        assert_eq!(
            f,
            Frame::Whole {
                tag: b'Z',
                body: b"I"
            }
        );
        assert_eq!(n3, 6);
    }

    #[test]
    fn body_split_across_reads() {
        let data = msg(b'd', &[7u8; 100]);
        let mut s = Scanner::default();
        s.next_frame(&data[..5], 1 << 20, |_| false)
            .unwrap()
            .unwrap();
        let (f, n) = s
            .next_frame(&data[5..40], 1 << 20, |_| false)
            .unwrap()
            .unwrap();
        assert_eq!((f, n), (Frame::Body, 35));
        let (f, n) = s
            .next_frame(&data[40..], 1 << 20, |_| false)
            .unwrap()
            .unwrap();
        assert_eq!((f, n), (Frame::Body, 65));
        assert!(s.at_boundary());
    }

    #[test]
    fn waits_for_whole_inspected_message_and_header() {
        let data = msg(b'S', b"TimeZone\0UTC\0");
        let mut s = Scanner::default();
        assert!(s
            .next_frame(&data[..3], 1 << 20, |_| true)
            .unwrap()
            .is_none());
        assert!(s
            .next_frame(&data[..10], 1 << 20, |_| true)
            .unwrap()
            .is_none());
        assert!(s.next_frame(&data, 1 << 20, |_| true).unwrap().is_some());
    }

    #[test]
    fn rejects_bad_and_oversized_lengths() {
        let mut s = Scanner::default();
        assert!(s.next_frame(&[b'Q', 0, 0, 0, 3], 100, |_| false).is_err());
        assert!(s.next_frame(&[b'Q', 0, 0, 1, 0], 100, |_| false).is_err());
        assert!(s
            .next_frame(&[b'Z', 0, 2, 0, 0], 1 << 30, |_| true)
            .is_err());
    }

    /// Feed `stream` to a scanner the way the relay does: the bytes read so far
    /// end at each of `cuts`, and what the scanner cannot decide on yet waits
    /// for the next read. Returns the messages it reported, reassembled.
    fn scan_in_reads(
        stream: &[u8],
        cuts: &[usize],
        inspect: impl Fn(u8) -> bool,
    ) -> Vec<(u8, Vec<u8>)> {
        let mut s = Scanner::default();
        let mut reads: Vec<usize> = cuts.iter().map(|&c| c % (stream.len() + 1)).collect();
        reads.push(stream.len());
        reads.sort_unstable();
        let (mut pos, mut messages, mut open) = (0, Vec::new(), None);
        for end in reads {
            while let Some((frame, n)) = s.next_frame(&stream[pos..end], 1 << 20, &inspect).unwrap()
            {
                assert!(
                    n > 0 && pos + n <= end,
                    "a frame of {n} bytes at {pos} of {end}"
                );
                match frame {
                    Frame::Whole { tag, body } => messages.push((tag, body.to_vec())),
                    Frame::Header { tag } => open = Some((tag, Vec::new())),
                    Frame::Body => open
                        .as_mut()
                        .unwrap()
                        .1
                        .extend_from_slice(&stream[pos..pos + n]),
                }
                pos += n;
                if s.at_boundary() {
                    messages.extend(open.take());
                }
            }
        }
        assert_eq!(pos, stream.len(), "every byte scanned");
        messages
    }

    proptest::proptest! {
        /// However the stream is split into reads, the scanner finds the same
        /// messages, whole where asked and passed through in pieces otherwise.
        #[test]
        fn any_split_into_reads_finds_the_same_messages(
            messages in proptest::collection::vec(
                (proptest::sample::select(b"DZSCdE".to_vec()), proptest::collection::vec(proptest::num::u8::ANY, 0..300)),
                0..12,
            ),
            cuts in proptest::collection::vec(0usize..4000, 0..8),
        ) {
            let stream: Vec<u8> = messages.iter().flat_map(|(t, body)| msg(*t, body)).collect();
            let found = scan_in_reads(&stream, &cuts, |t| t == b'Z' || t == b'S');
            proptest::prop_assert_eq!(found, messages);
        }

        /// Arbitrary bytes give a frame, a wait or an error: never a panic, and
        /// never a frame longer than the bytes.
        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
            max_len in 0usize..1000,
            inspect_all in proptest::bool::ANY,
        ) {
            let mut s = Scanner::default();
            if let Ok(Some((_, n))) = s.next_frame(&data, max_len, |_| inspect_all) {
                proptest::prop_assert!(n > 0 && n <= data.len());
            }
        }
    }
}
