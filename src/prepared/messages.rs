//! Reading the statement names out of the client's Parse, Bind, Describe and
//! Close messages, and writing those messages again under other names.

use crate::protocol::scanner::{declared_len, MAX_INSPECTED_LEN};
use crate::protocol::{tag, ProtocolError};

/// The longest named Parse the pooler holds whole to learn its query (a
/// larger one is refused as too large; an unnamed one may be any size).
pub const MAX_NAMED_PARSE_LEN: usize = 1024 * 1024;

/// What the message at the front of some client bytes means for statement
/// tracking. Names are bytes: PostgreSQL takes any string without NUL.
#[derive(Debug, PartialEq, Eq)]
pub enum Inspected<'a> {
    /// More bytes are needed to tell.
    More,
    /// Not about a named statement: forwarded as it is.
    Plain,
    /// A whole Parse message `len` bytes long; `rest` is what follows the
    /// name (query text and parameter types).
    Parse {
        name: &'a [u8],
        rest: &'a [u8],
        len: usize,
    },
    /// The first `prefix` bytes of a Bind message (header, portal and
    /// statement name); `rest` body bytes follow them, maybe not read yet.
    Bind {
        portal: &'a [u8],
        name: &'a [u8],
        prefix: usize,
        rest: usize,
    },
    /// A whole Describe of a statement, `len` bytes long.
    Describe { name: &'a [u8], len: usize },
    /// A whole Close of a statement, `len` bytes long.
    Close { name: &'a [u8], len: usize },
}

/// Whether the message `data` starts with is plainly not about a named
/// statement: not a Parse, Bind, Describe or Close, or one of what nearly
/// every driver sends, the unnamed statement and portal, told by the first
/// body bytes. Cheap, for every message; `inspect` for the others.
#[inline]
pub fn plainly_unnamed(data: &[u8]) -> bool {
    match data {
        [tag::PARSE, _, _, _, _, 0, ..]
        | [tag::BIND, _, _, _, _, 0, 0, ..]
        | [tag::DESCRIBE | tag::CLOSE, _, _, _, _, b'P', ..]
        | [tag::DESCRIBE | tag::CLOSE, _, _, _, _, b'S', 0, ..] => true,
        [t, ..] => !matches!(*t, tag::PARSE | tag::BIND | tag::DESCRIBE | tag::CLOSE),
        [] => false,
    }
}

/// Look at the message `data` starts with (at least its 5-byte header).
pub fn inspect(data: &[u8], max_len: usize) -> Result<Inspected<'_>, ProtocolError> {
    if data.len() < 5 {
        return Ok(Inspected::More);
    }
    let t = data[0];
    if !matches!(t, tag::PARSE | tag::BIND | tag::DESCRIBE | tag::CLOSE) {
        return Ok(Inspected::Plain);
    }
    let len = declared_len(data, max_len)?;
    let total = 1 + len;
    // The body as far as it has been read.
    let body = &data[5..data.len().min(total)];
    let complete = data.len() >= total;
    let Some(&first) = body.first() else {
        return Ok(if complete {
            Inspected::Plain
        } else {
            Inspected::More
        });
    };
    match t {
        tag::BIND => inspect_bind(body, len, complete),
        // Parse: an unnamed statement passes as it is, however long its query.
        tag::PARSE if first == 0 => Ok(Inspected::Plain),
        // Describe or Close of a portal, or of the unnamed statement.
        tag::DESCRIBE | tag::CLOSE if first != b'S' || body.get(1) == Some(&0) => {
            Ok(Inspected::Plain)
        }
        tag::PARSE if len > MAX_NAMED_PARSE_LEN => Err(ProtocolError::NamedParseTooLarge(len)),
        tag::DESCRIBE | tag::CLOSE if len > MAX_INSPECTED_LEN => Err(ProtocolError::TooLarge(len)),
        _ if !complete => Ok(Inspected::More),
        tag::PARSE => {
            let (name, rest) = split_cstr(body, "Parse")?;
            Ok(Inspected::Parse {
                name,
                rest,
                len: total,
            })
        }
        _ => {
            let (name, rest) = split_cstr(&body[1..], "Describe or Close")?;
            if !rest.is_empty() {
                return Err(ProtocolError::Malformed {
                    what: "Describe or Close",
                });
            }
            Ok(if t == tag::DESCRIBE {
                Inspected::Describe { name, len: total }
            } else {
                Inspected::Close { name, len: total }
            })
        }
    }
}

fn inspect_bind(body: &[u8], len: usize, complete: bool) -> Result<Inspected<'_>, ProtocolError> {
    let malformed = ProtocolError::Malformed { what: "Bind" };
    let Some(portal_end) = body.iter().position(|&b| b == 0) else {
        return more_or(complete || body.len() >= MAX_INSPECTED_LEN, malformed);
    };
    let Some(name_len) = body[portal_end + 1..].iter().position(|&b| b == 0) else {
        return more_or(complete || body.len() >= MAX_INSPECTED_LEN, malformed);
    };
    if name_len == 0 {
        return Ok(Inspected::Plain);
    }
    let name_end = portal_end + 1 + name_len;
    Ok(Inspected::Bind {
        portal: &body[..portal_end],
        name: &body[portal_end + 1..name_end],
        prefix: 5 + name_end + 1,
        rest: len - 4 - (name_end + 1),
    })
}

/// `Ok(More)`, or the error when waiting cannot help.
fn more_or(hopeless: bool, error: ProtocolError) -> Result<Inspected<'static>, ProtocolError> {
    if hopeless {
        Err(error)
    } else {
        Ok(Inspected::More)
    }
}

fn split_cstr<'a>(
    data: &'a [u8],
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), ProtocolError> {
    let end = data
        .iter()
        .position(|&b| b == 0)
        .ok_or(ProtocolError::Malformed { what })?;
    Ok((&data[..end], &data[end + 1..]))
}

fn put_header(out: &mut Vec<u8>, t: u8, body_len: usize) {
    out.push(t);
    out.extend_from_slice(&((body_len + 4) as i32).to_be_bytes());
}

fn put_cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

/// Parse `name` with `rest` (query text and parameter types) as its body.
pub fn put_parse(out: &mut Vec<u8>, name: &str, rest: &[u8]) {
    put_header(out, tag::PARSE, name.len() + 1 + rest.len());
    put_cstr(out, name.as_bytes());
    out.extend_from_slice(rest);
}

/// The header, portal and statement name of a Bind whose other `rest` body
/// bytes follow.
pub fn put_bind_prefix(out: &mut Vec<u8>, portal: &[u8], name: &str, rest: usize) {
    put_header(out, tag::BIND, portal.len() + 1 + name.len() + 1 + rest);
    put_cstr(out, portal);
    put_cstr(out, name.as_bytes());
}

/// Describe or Close (`t`) of statement `name`.
pub fn put_statement_message(out: &mut Vec<u8>, t: u8, name: &str) {
    put_header(out, t, 1 + name.len() + 1);
    out.push(b'S');
    put_cstr(out, name.as_bytes());
}

/// A bodiless answer (ParseComplete, CloseComplete).
pub fn put_empty(out: &mut Vec<u8>, t: u8) {
    put_header(out, t, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::protocol::test_message as msg;

    #[test]
    fn unnamed_statements_and_portals_are_plain() {
        let max = 1 << 20;
        for m in [
            msg(b'P', b"\0SELECT 1\0\0\0"),
            msg(b'B', b"\0\0\0\0\0\0\0\0"),
            msg(b'B', b"portal\0\0\0\0\0\0\0\0"),
            msg(b'D', b"P\0"),
            msg(b'D', b"S\0"),
            msg(b'C', b"Pcursor\0"),
            msg(b'E', b"\0\0\0\0\0"),
            msg(b'S', b""),
        ] {
            assert_eq!(inspect(&m, max).unwrap(), Inspected::Plain, "{m:?}");
        }
        for m in [
            msg(b'P', b"\0SELECT 1\0\0\0"),
            msg(b'B', b"\0\0\0\0"),
            msg(b'E', b"\0\0\0\0\0"),
            msg(b'D', b"P\0"),
        ] {
            assert!(plainly_unnamed(&m), "{m:?}");
        }
        for m in [
            msg(b'P', b"s\0SELECT 1\0\0\0"),
            msg(b'B', b"\0s\0\0\0"),
            msg(b'B', b"p\0\0"),
            msg(b'D', b"Ss\0"),
            msg(b'C', b"Ss\0"),
        ] {
            assert!(!plainly_unnamed(&m), "{m:?}");
        }
        // An unnamed Parse is known as plain from its first body byte.
        assert_eq!(
            inspect(&msg(b'P', b"\0SELECT 1\0\0\0")[..6], max).unwrap(),
            Inspected::Plain
        );
    }

    #[test]
    fn named_messages_are_taken_apart() {
        let max = 1 << 20;
        let parse = msg(b'P', b"s1\0SELECT $1\0\0\x01\0\0\0\x17");
        assert_eq!(
            inspect(&parse, max).unwrap(),
            Inspected::Parse {
                name: b"s1",
                rest: b"SELECT $1\0\0\x01\0\0\0\x17",
                len: parse.len()
            }
        );
        assert_eq!(
            inspect(&parse[..parse.len() - 1], max).unwrap(),
            Inspected::More
        );
        let bind = msg(b'B', b"p\0s1\0\0\0\0\x01\0\0\0\x011\0\0");
        assert_eq!(
            inspect(&bind[..10], max).unwrap(),
            Inspected::Bind {
                portal: b"p",
                name: b"s1",
                prefix: 10,
                rest: bind.len() - 10
            }
        );
        assert_eq!(inspect(&bind[..8], max).unwrap(), Inspected::More);
        let describe = msg(b'D', b"Ss1\0");
        assert_eq!(
            inspect(&describe, max).unwrap(),
            Inspected::Describe {
                name: b"s1",
                len: 9
            }
        );
        let close = msg(b'C', b"Ss1\0");
        assert_eq!(
            inspect(&close, max).unwrap(),
            Inspected::Close {
                name: b"s1",
                len: 9
            }
        );
    }

    #[test]
    fn broken_messages_are_errors() {
        let max = 1 << 20;
        assert!(
            inspect(&msg(b'P', b"s1"), max).is_err(),
            "no NUL after the name"
        );
        assert!(
            inspect(&msg(b'B', b"p\0s1"), max).is_err(),
            "no NUL after the statement"
        );
        assert!(inspect(&msg(b'C', b"Ss1\0junk"), max).is_err());
        assert!(
            inspect(&[b'P', 0, 0, 0, 2, 1], max).is_err(),
            "length below 4"
        );
        let mut huge = vec![b'B', 0, 0x10, 0, 0];
        huge.extend(std::iter::repeat_n(b'x', 70_000));
        assert!(
            inspect(&huge, 1 << 30).is_err(),
            "no sane portal name is this long"
        );
        assert!(
            inspect(&msg(b'P', b"s\0q\0\0\0"), 4).is_err(),
            "over max_packet_size"
        );
    }

    #[test]
    fn rewritten_messages_have_their_new_length() {
        let mut out = Vec::new();
        put_parse(&mut out, "PGSLUICE_1", b"SELECT 1\0\0\0");
        assert_eq!(
            inspect(&out, 1 << 20).unwrap(),
            Inspected::Parse {
                name: b"PGSLUICE_1",
                rest: b"SELECT 1\0\0\0",
                len: out.len()
            }
        );
        let mut bind = Vec::new();
        put_bind_prefix(&mut bind, b"", "PGSLUICE_1", 6);
        bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        assert_eq!(
            inspect(&bind, 1 << 20).unwrap(),
            Inspected::Bind {
                portal: b"",
                name: b"PGSLUICE_1",
                prefix: 17,
                rest: 6
            }
        );
        let mut close = Vec::new();
        put_statement_message(&mut close, b'C', "PGSLUICE_1");
        assert_eq!(
            inspect(&close, 1 << 20).unwrap(),
            Inspected::Close {
                name: b"PGSLUICE_1",
                len: close.len()
            }
        );
        let mut done = Vec::new();
        put_empty(&mut done, b'1');
        assert_eq!(done, [b'1', 0, 0, 0, 4]);
    }
}
