//! The messages the console sends that the rest of the pooler never builds:
//! RowDescription, DataRow, CommandComplete, and errors or notices that carry a
//! DETAIL line. Everything else (ReadyForQuery, plain errors) comes from
//! `crate::protocol`.
//!
//! Result columns are always sent in text format, as PgBouncer does; the type
//! OID in the RowDescription only tells a driver how to parse the text.

use bytes::{BufMut, BytesMut};

use crate::protocol::error::Severity;
use crate::protocol::tag;

/// The column types the console uses, with PgBouncer's choice of OID for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    /// `text` (OID 25). PgBouncer also sends times as text.
    Text,
    /// `int4` (OID 23).
    Int4,
    /// `int8` (OID 20).
    Int8,
    /// `numeric` (OID 1700): every statistics counter, so that 64-bit unsigned
    /// counters never overflow a driver's signed integer.
    Numeric,
}

impl ColType {
    pub const fn oid(self) -> u32 {
        match self {
            ColType::Text => 25,
            ColType::Int4 => 23,
            ColType::Int8 => 20,
            ColType::Numeric => 1700,
        }
    }

    /// `pg_type.typlen`: -1 for the variable-length types.
    pub const fn typlen(self) -> i16 {
        match self {
            ColType::Text | ColType::Numeric => -1,
            ColType::Int4 => 4,
            ColType::Int8 => 8,
        }
    }
}

/// One result column: its name and type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColType,
}

/// Shorthands for the static column tables.
pub const fn text(name: &'static str) -> Column {
    Column {
        name,
        ty: ColType::Text,
    }
}
pub const fn int4(name: &'static str) -> Column {
    Column {
        name,
        ty: ColType::Int4,
    }
}
pub const fn int8(name: &'static str) -> Column {
    Column {
        name,
        ty: ColType::Int8,
    }
}
pub const fn numeric(name: &'static str) -> Column {
    Column {
        name,
        ty: ColType::Numeric,
    }
}

/// Start a message: tag and a length placeholder; returns where the length goes.
fn begin(buf: &mut BytesMut, message_tag: u8) -> usize {
    buf.put_u8(message_tag);
    let at = buf.len();
    buf.put_i32(0);
    at
}

/// Fill in the length of the message begun at `at` (it counts itself, not the tag).
fn finish(buf: &mut BytesMut, at: usize) {
    let len = i32::try_from(buf.len() - at).expect("console message under 2 GiB");
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Append a string as a C string. A NUL inside would end it early and shift
/// every later field, so NULs are dropped (names and values never hold one).
fn put_cstr(buf: &mut BytesMut, s: &str) {
    buf.extend(s.bytes().filter(|&b| b != 0));
    buf.put_u8(0);
}

/// RowDescription: for each column its name, no table (0, 0), the type OID and
/// length, typmod -1 and text format — the same field values PgBouncer sends.
pub fn put_row_description(buf: &mut BytesMut, columns: &[Column]) {
    let at = begin(buf, tag::ROW_DESCRIPTION);
    buf.put_i16(i16::try_from(columns.len()).expect("fewer than 32768 columns"));
    for column in columns {
        put_cstr(buf, column.name);
        buf.put_u32(0); // table OID
        buf.put_i16(0); // column number
        buf.put_u32(column.ty.oid());
        buf.put_i16(column.ty.typlen());
        buf.put_i32(-1); // typmod
        buf.put_i16(0); // text format
    }
    finish(buf, at);
}

/// DataRow: each value as text, `None` as SQL NULL (length -1).
pub fn put_data_row<'a, I>(buf: &mut BytesMut, values: I)
where
    I: IntoIterator<Item = Option<&'a str>>,
    I::IntoIter: ExactSizeIterator,
{
    let values = values.into_iter();
    let at = begin(buf, tag::DATA_ROW);
    buf.put_i16(i16::try_from(values.len()).expect("fewer than 32768 columns"));
    for value in values {
        match value {
            Some(text) => {
                buf.put_i32(i32::try_from(text.len()).expect("value under 2 GiB"));
                buf.put_slice(text.as_bytes());
            }
            None => buf.put_i32(-1),
        }
    }
    finish(buf, at);
}

/// CommandComplete with its tag ("SHOW", "PAUSE", "SET key=value", …).
pub fn put_command_complete(buf: &mut BytesMut, command_tag: &str) {
    let at = begin(buf, tag::COMMAND_COMPLETE);
    put_cstr(buf, command_tag);
    finish(buf, at);
}

/// An ErrorResponse or NoticeResponse with an optional DETAIL field; the
/// protocol module's `put_error` has no DETAIL, and the console uses it for
/// SHOW HELP's command list and to say why a SET or RELOAD failed.
pub fn put_message(
    buf: &mut BytesMut,
    severity: Severity,
    code: &str,
    message: &str,
    detail: Option<&str>,
) {
    let (message_tag, sev) = match severity {
        Severity::Error => (tag::ERROR_RESPONSE, "ERROR"),
        Severity::Fatal => (tag::ERROR_RESPONSE, "FATAL"),
        Severity::Notice => (tag::NOTICE_RESPONSE, "NOTICE"),
        Severity::Warning => (tag::NOTICE_RESPONSE, "WARNING"),
    };
    let at = begin(buf, message_tag);
    for (field, value) in [(b'S', sev), (b'V', sev), (b'C', code), (b'M', message)] {
        buf.put_u8(field);
        put_cstr(buf, value);
    }
    if let Some(detail) = detail {
        buf.put_u8(b'D');
        put_cstr(buf, detail);
    }
    buf.put_u8(0);
    finish(buf, at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::parse_error_fields;

    #[test]
    fn row_description_bytes() {
        let mut buf = BytesMut::new();
        put_row_description(&mut buf, &[text("ab"), int4("c"), numeric("d"), int8("e")]);
        let mut expected: Vec<u8> = vec![b'T', 0, 0, 0, 0, 0, 4];
        let field = |name: &[u8], oid: u32, len: i16| {
            let mut f = name.to_vec();
            f.push(0);
            f.extend_from_slice(&0u32.to_be_bytes());
            f.extend_from_slice(&0i16.to_be_bytes());
            f.extend_from_slice(&oid.to_be_bytes());
            f.extend_from_slice(&len.to_be_bytes());
            f.extend_from_slice(&(-1i32).to_be_bytes());
            f.extend_from_slice(&0i16.to_be_bytes());
            f
        };
        expected.extend(field(b"ab", 25, -1));
        expected.extend(field(b"c", 23, 4));
        expected.extend(field(b"d", 1700, -1));
        expected.extend(field(b"e", 20, 8));
        let len = (expected.len() - 1) as i32;
        expected[1..5].copy_from_slice(&len.to_be_bytes());
        assert_eq!(&buf[..], &expected[..]);
    }

    #[test]
    fn data_row_bytes_with_null_and_empty() {
        let mut buf = BytesMut::new();
        put_data_row(&mut buf, [Some("x1"), None, Some("")]);
        let expected: &[u8] = &[
            b'D', 0, 0, 0, 20, // tag, length 4+2+6+4+4
            0, 3, // three columns
            0, 0, 0, 2, b'x', b'1', // "x1"
            0xff, 0xff, 0xff, 0xff, // NULL
            0, 0, 0, 0, // ""
        ];
        assert_eq!(&buf[..], expected);
    }

    #[test]
    fn command_complete_bytes() {
        let mut buf = BytesMut::new();
        put_command_complete(&mut buf, "SHOW");
        assert_eq!(&buf[..], b"C\0\0\0\x09SHOW\0");
    }

    #[test]
    fn nul_in_a_name_cannot_shift_fields() {
        let mut buf = BytesMut::new();
        put_command_complete(&mut buf, "SET a=\0b");
        assert_eq!(&buf[..], b"C\0\0\0\x0cSET a=b\0");
    }

    #[test]
    fn message_with_detail_parses_back() {
        let mut buf = BytesMut::new();
        put_message(
            &mut buf,
            Severity::Notice,
            "00000",
            "Console usage",
            Some("\n\tSHOW HELP"),
        );
        assert_eq!(buf[0], b'N');
        let len = i32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
        assert_eq!(len + 1, buf.len());
        let fields = parse_error_fields(&buf[5..]);
        assert_eq!(fields.severity, "NOTICE");
        assert_eq!(fields.code, "00000");
        assert_eq!(fields.message, "Console usage");
        assert!(buf.windows(11).any(|w| w == b"D\n\tSHOW HEL"));
        assert_eq!(buf[buf.len() - 1], 0);

        let mut buf = BytesMut::new();
        put_message(&mut buf, Severity::Error, "08P01", "SET failed", None);
        assert_eq!(buf[0], b'E');
        assert!(!buf.contains(&b'D'));
    }
}
