//! A result set as the console builds it: typed values under a column list,
//! turned into RowDescription + DataRows by [`ResultSet::encode`].

use bytes::BytesMut;

use super::wire::{put_data_row, put_row_description, ColType, Column};

/// One cell. Numbers stay numbers until encoding so that the encoder can
/// keep each within its column's type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Null,
    Text(String),
    Int(i64),
    /// A counter (statistics are unsigned 64-bit in PgBouncer).
    Count(u64),
}

impl Value {
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }

    pub fn opt_text(s: Option<impl Into<String>>) -> Value {
        s.map_or(Value::Null, |s| Value::Text(s.into()))
    }

    /// 0 or 1, as PgBouncer reports flags in int4 columns.
    pub fn flag(b: bool) -> Value {
        Value::Int(i64::from(b))
    }

    /// The text sent for this value in a column of type `ty`. Integers are
    /// clamped to an int4 column's range: a driver that parses int4 strictly
    /// must never meet a value it cannot hold (PgBouncer would wrap around).
    pub fn render(&self, ty: ColType) -> Option<String> {
        let clamp = |n: i128| -> String {
            match ty {
                ColType::Int4 => n.clamp(i32::MIN.into(), i32::MAX.into()).to_string(),
                ColType::Int8 => n.clamp(i64::MIN.into(), i64::MAX.into()).to_string(),
                ColType::Text | ColType::Numeric => n.to_string(),
            }
        };
        match self {
            Value::Null => None,
            Value::Text(s) => Some(s.clone()),
            Value::Int(n) => Some(clamp(i128::from(*n))),
            Value::Count(n) => Some(clamp(i128::from(*n))),
        }
    }
}

/// Rows under a column list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultSet {
    pub columns: Vec<Column>,
    pub rows: Vec<Vec<Value>>,
}

impl ResultSet {
    pub fn new(columns: &[Column]) -> ResultSet {
        ResultSet {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Add a row; it must have one value per column.
    pub fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(
            row.len(),
            self.columns.len(),
            "row width differs from the column list"
        );
        self.rows.push(row);
    }

    /// Append RowDescription and one DataRow per row (no CommandComplete).
    pub fn encode(&self, buf: &mut BytesMut) {
        put_row_description(buf, &self.columns);
        for row in &self.rows {
            let texts: Vec<Option<String>> = row
                .iter()
                .zip(&self.columns)
                .map(|(value, column)| value.render(column.ty))
                .collect();
            put_data_row(buf, texts.iter().map(|t| t.as_deref()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::wire::{int4, numeric, text};

    #[test]
    fn values_render_within_their_column_type() {
        assert_eq!(
            Value::Count(u64::MAX).render(ColType::Numeric).as_deref(),
            Some("18446744073709551615")
        );
        assert_eq!(
            Value::Count(u64::MAX).render(ColType::Int4).as_deref(),
            Some("2147483647")
        );
        assert_eq!(Value::Int(-5).render(ColType::Int4).as_deref(), Some("-5"));
        assert_eq!(
            Value::Count(u64::MAX).render(ColType::Int8).as_deref(),
            Some("9223372036854775807")
        );
        assert_eq!(
            Value::flag(true).render(ColType::Int4).as_deref(),
            Some("1")
        );
        assert_eq!(Value::Null.render(ColType::Text), None);
        assert_eq!(Value::opt_text(None::<String>), Value::Null);
    }

    #[test]
    fn encodes_description_then_rows() {
        let mut rs = ResultSet::new(&[text("list"), int4("items"), numeric("n")]);
        rs.push(vec![Value::text("pools"), Value::Count(3), Value::Null]);
        let mut buf = BytesMut::new();
        rs.encode(&mut buf);
        assert_eq!(buf[0], b'T');
        let t_len = i32::from_be_bytes(buf[1..5].try_into().unwrap()) as usize;
        let row = &buf[1 + t_len..];
        let expected: &[u8] = &[
            b'D', 0, 0, 0, 24, 0, 3, 0, 0, 0, 5, b'p', b'o', b'o', b'l', b's', 0, 0, 0, 1, b'3',
            0xff, 0xff, 0xff, 0xff,
        ];
        assert_eq!(row, expected);
    }
}
