//! libpq-style `key=value key2='quoted value'` strings, as the values in
//! `[databases]`, `[users]` and `[peers]` are written.
//!
//! The grammar is PgBouncer's: pairs separated by blanks, blanks allowed around `=`,
//! a value either bare (up to the next blank) or in single quotes, where `''` stands
//! for one quote. Like libpq, a quoted value may also write a quote as `\'` and a
//! backslash as `\\`; any other backslash is kept as it is (PgBouncer keeps every
//! backslash, and values such as regular expressions in `connect_query` rely on it).
//! Empty values are refused, as PgBouncer does.

/// Splits `text` into `(key, value)` pairs in order. Keys are lowercased (libpq
/// keywords are lowercase; PgBouncer compares them exactly). On error, the message
/// names the offending key or character.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = text;
    loop {
        rest = skip_blanks(rest);
        if rest.is_empty() {
            return Ok(pairs);
        }
        let key_end = rest.find(['=', ' ', '\t']).unwrap_or(rest.len());
        let key = &rest[..key_end];
        if key.is_empty() {
            return Err(format!("missing parameter name before '=' in \"{rest}\""));
        }
        rest = skip_blanks(&rest[key_end..]);
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("missing '=' after '{key}'"))?;
        rest = skip_blanks(rest);
        let (value, after) = match rest.strip_prefix('\'') {
            Some(quoted) => quoted_value(key, quoted)?,
            None => {
                let end = rest.find([' ', '\t']).unwrap_or(rest.len());
                (rest[..end].to_string(), &rest[end..])
            }
        };
        if value.is_empty() {
            return Err(format!("empty value for '{key}'"));
        }
        pairs.push((key.to_ascii_lowercase(), value));
        rest = after;
    }
}

/// Reads a non-negative decimal integer value of `key`.
pub fn u32_value(key: &str, value: &str) -> Result<u32, String> {
    value
        .parse::<u32>()
        .map_err(|_| format!("{key}: invalid integer '{value}'"))
}

/// Reads a time value of `key` in seconds, possibly fractional.
pub fn seconds_value(key: &str, value: &str) -> Result<std::time::Duration, String> {
    super::value::parse_seconds(value).map_err(|e| format!("{key}: {e}"))
}

fn skip_blanks(s: &str) -> &str {
    s.trim_start_matches([' ', '\t'])
}

/// Reads a quoted value starting after its opening quote; returns the value and the
/// text after the closing quote.
fn quoted_value<'a>(key: &str, s: &'a str) -> Result<(String, &'a str), String> {
    let mut value = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\'' if matches!(chars.peek(), Some((_, '\''))) => {
                chars.next();
                value.push('\'');
            }
            '\'' => {
                let after = &s[i + 1..];
                if let Some(next) = after.chars().next().filter(|c| *c != ' ' && *c != '\t') {
                    return Err(format!(
                        "unexpected '{next}' after the quoted value of '{key}'"
                    ));
                }
                return Ok((value, after));
            }
            '\\' if matches!(chars.peek(), Some((_, '\'' | '\\'))) => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            _ => value.push(c),
        }
    }
    Err(format!("unterminated quoted value for '{key}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap()
    }

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn bare_pairs() {
        assert_eq!(
            pairs("host=localhost port=5432 dbname=foo"),
            vec![
                p("host", "localhost"),
                p("port", "5432"),
                p("dbname", "foo")
            ]
        );
        assert_eq!(pairs(""), vec![]);
        assert_eq!(pairs("   "), vec![]);
    }

    #[test]
    fn blanks_around_equals_and_between_pairs() {
        assert_eq!(
            pairs("  host = a\tport= 1   user =b  "),
            vec![p("host", "a"), p("port", "1"), p("user", "b")]
        );
    }

    #[test]
    fn quoted_values() {
        assert_eq!(
            pairs("connect_query='SELECT 1, 2' user=x"),
            vec![p("connect_query", "SELECT 1, 2"), p("user", "x")]
        );
        assert_eq!(pairs("password='it''s'"), vec![p("password", "it's")]);
        assert_eq!(pairs(r"password='it\'s'"), vec![p("password", "it's")]);
        assert_eq!(pairs(r"password='a\\b'"), vec![p("password", r"a\b")]);
        assert_eq!(pairs(r"q='a\d+'"), vec![p("q", r"a\d+")]);
        assert_eq!(
            pairs("password='x=y z;w#v'"),
            vec![p("password", "x=y z;w#v")]
        );
    }

    #[test]
    fn special_characters_in_bare_values() {
        assert_eq!(
            pairs("host=a;b password=x#y"),
            vec![p("host", "a;b"), p("password", "x#y")]
        );
        assert_eq!(pairs("password=a=b"), vec![p("password", "a=b")]);
        assert_eq!(pairs("password=it's"), vec![p("password", "it's")]);
    }

    #[test]
    fn typed_values() {
        assert_eq!(u32_value("pool_size", "10"), Ok(10));
        assert_eq!(
            u32_value("pool_size", "-1"),
            Err("pool_size: invalid integer '-1'".to_string())
        );
        assert!(u32_value("pool_size", "ten").is_err());
        assert_eq!(
            seconds_value("query_timeout", "1.5"),
            Ok(std::time::Duration::from_millis(1500))
        );
        assert!(seconds_value("query_timeout", "x")
            .unwrap_err()
            .starts_with("query_timeout: invalid time"));
    }

    #[test]
    fn keys_are_lowercased() {
        assert_eq!(pairs("Host=a"), vec![p("host", "a")]);
    }

    #[test]
    fn errors_name_the_offending_part() {
        for (text, needle) in [
            ("host", "missing '=' after 'host'"),
            ("host localhost", "missing '=' after 'host'"),
            ("=x", "missing parameter name"),
            ("host=", "empty value for 'host'"),
            ("host='' port=1", "empty value for 'host'"),
            ("password='abc", "unterminated quoted value for 'password'"),
            (
                "password='a'b",
                "unexpected 'b' after the quoted value of 'password'",
            ),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    proptest::proptest! {
        /// Any value, quoted as PgBouncer's docs say (quotes doubled, backslashes
        /// escaped), reads back as it was; keys come back lowercased.
        #[test]
        fn quoted_values_read_back_whole(
            pairs in proptest::collection::vec(("[a-zA-Z_]{1,12}", "[^\\x00]{1,20}"), 0..6),
        ) {
            let text: Vec<String> = pairs
                .iter()
                .map(|(k, v)| format!("{k} = '{}'", v.replace('\\', "\\\\").replace('\'', "''")))
                .collect();
            let expected: Vec<(String, String)> =
                pairs.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
            proptest::prop_assert_eq!(parse(&text.join("  ")), Ok(expected));
        }

        /// Any text is read or refused with a message; never a panic.
        #[test]
        fn any_text_is_read_or_refused(text in "\\PC{0,60}") {
            let _ = parse(&text);
        }
    }
}
