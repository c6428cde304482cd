//! The values of generic settings: their syntax, their SHOW CONFIG form, and the
//! set of current values that [`General`](super::General) and SHOW CONFIG are made
//! from.
//!
//! Value syntax follows PgBouncer, which reads integers with C's `strtol(.., 0)`
//! (so `0777` is octal and `0x10` is hex), times as fractional seconds, and prints
//! times with C's `%g`. Booleans additionally accept the usual words (PgBouncer
//! itself takes only integers).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::settings::{SettingDef, SETTINGS};

/// A parsed setting value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Time(Duration),
    /// The canonical spelling from the setting's list.
    Enum(&'static str),
}

impl fmt::Display for Value {
    /// SHOW CONFIG form: booleans as 0/1, integers in decimal, times as seconds in
    /// C's `%g` form (`3600`, `0.5`, `1e+06`), enumerations in canonical spelling.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Str(s) => f.write_str(s),
            Value::Int(n) => write!(f, "{n}"),
            Value::Bool(b) => f.write_str(if *b { "1" } else { "0" }),
            Value::Time(d) => f.write_str(&format_g(d.as_micros() as f64 / 1e6)),
            Value::Enum(s) => f.write_str(s),
        }
    }
}

/// Reads an integer the way C's `strtol(text, .., 0)` does when it must consume the
/// whole text: optional sign, then `0x` hex, `0` octal, or decimal.
pub fn parse_c_int(text: &str) -> Option<i64> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) =
        if let Some(hex) = rest.strip_prefix("0x").or_else(|| rest.strip_prefix("0X")) {
            (16, hex)
        } else if rest.len() > 1 && rest.starts_with('0') {
            (8, &rest[1..])
        } else {
            (10, rest)
        };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let n = i64::from_str_radix(digits, radix).ok()?;
    Some(if negative { -n } else { n })
}

/// Reads a boolean: the usual words, or an integer (non-zero is true, as PgBouncer
/// reads its boolean settings as integers).
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.to_ascii_lowercase().as_str() {
        "yes" | "on" | "true" => Some(true),
        "no" | "off" | "false" => Some(false),
        other => parse_c_int(other).map(|n| n != 0),
    }
}

/// Reads non-negative seconds, possibly fractional, into a Duration truncated to
/// microseconds (PgBouncer keeps microseconds too).
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid time '{text}' (seconds expected, e.g. 30 or 0.5)");
    let secs: f64 = text.parse().map_err(|_| bad())?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad());
    }
    let micros = secs * 1e6;
    if micros >= u64::MAX as f64 {
        return Err(format!("time '{text}' is too large"));
    }
    Ok(Duration::from_micros(micros as u64))
}

/// Formats like C's `printf("%g", v)`: six significant digits, trailing zeros
/// dropped, exponent form below 1e-4 and from 1e6 on.
pub fn format_g(v: f64) -> String {
    if v == 0.0 {
        return "0".to_string();
    }
    // Rounding to six significant digits first decides which form %g picks.
    let sci = format!("{v:.5e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim_fraction(mantissa), exp.abs())
    } else {
        let decimals = (5 - exp) as usize;
        trim_fraction(&format!("{v:.decimals$}")).to_string()
    }
}

fn trim_fraction(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// The typed value of every generic setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettingValues {
    map: BTreeMap<&'static str, Value>,
}

impl Default for SettingValues {
    fn default() -> SettingValues {
        SettingValues {
            map: SETTINGS
                .iter()
                .map(|d| (d.name, d.default_value()))
                .collect(),
        }
    }
}

impl SettingValues {
    /// Sets a value that was produced by `SettingDef::parse` of the same setting.
    pub fn set(&mut self, def: &'static SettingDef, value: Value) {
        self.map.insert(def.name, value);
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }

    /// Every setting in SHOW CONFIG order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &Value)> {
        self.map.iter().map(|(k, v)| (*k, v))
    }

    // The typed accessors below are only called with names from the table and of the
    // right kind (checked by tests); a mismatch falls back to the neutral value.

    pub fn str(&self, name: &str) -> &str {
        match self.map.get(name) {
            Some(Value::Str(s)) => s,
            other => mismatch(name, other, ""),
        }
    }

    pub fn int(&self, name: &str) -> i64 {
        match self.map.get(name) {
            Some(Value::Int(n)) => *n,
            other => mismatch(name, other, 0),
        }
    }

    pub fn bool(&self, name: &str) -> bool {
        match self.map.get(name) {
            Some(Value::Bool(b)) => *b,
            other => mismatch(name, other, false),
        }
    }

    pub fn time(&self, name: &str) -> Duration {
        match self.map.get(name) {
            Some(Value::Time(d)) => *d,
            other => mismatch(name, other, Duration::ZERO),
        }
    }

    pub fn word(&self, name: &str) -> &'static str {
        match self.map.get(name) {
            Some(Value::Enum(w)) => w,
            other => mismatch(name, other, ""),
        }
    }
}

fn mismatch<T>(name: &str, found: Option<&Value>, fallback: T) -> T {
    debug_assert!(false, "setting {name}: unexpected value {found:?}");
    fallback
}

#[cfg(test)]
mod tests {
    use super::super::settings::find;
    use super::*;

    #[test]
    fn integers_read_like_strtol_base_0() {
        assert_eq!(parse_c_int("42"), Some(42));
        assert_eq!(parse_c_int("0"), Some(0));
        assert_eq!(parse_c_int("0777"), Some(0o777));
        assert_eq!(parse_c_int("0x1F"), Some(31));
        assert_eq!(parse_c_int("-3"), Some(-3));
        assert_eq!(parse_c_int("+3"), Some(3));
        for bad in ["", "abc", "12abc", "0x", "089", "1.5", " 1", "--1"] {
            assert_eq!(parse_c_int(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn g_format_matches_c() {
        for (v, want) in [
            (0.0, "0"),
            (5.0, "5"),
            (0.5, "0.5"),
            (3600.0, "3600"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (1000000.0, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25, "1.25"),
            (999999.5, "1e+06"),
        ] {
            assert_eq!(format_g(v), want, "{v}");
        }
    }

    #[test]
    fn values_accessors() {
        let mut v = SettingValues::default();
        assert_eq!(v.int("listen_port"), 6432);
        assert!(v.bool("tcp_keepalive"));
        assert_eq!(v.time("server_lifetime"), Duration::from_secs(3600));
        assert_eq!(v.word("pool_mode"), "session");
        assert_eq!(v.str("unix_socket_dir"), "/tmp");
        let d = find("listen_port").unwrap();
        v.set(d, d.parse("7000").unwrap());
        assert_eq!(v.int("listen_port"), 7000);
        assert_eq!(v.iter().count(), SETTINGS.len());
    }
}
