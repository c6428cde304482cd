//! The server settings drivers probe on connect (`SHOW client_encoding`,
//! `SET datestyle = ...`). The console is not PostgreSQL, but some clients insist,
//! so it answers these with fixed values and accepts SETs of them as no-ops —
//! the same names and values PgBouncer answers.

/// One faked setting.
#[derive(Debug, PartialEq, Eq)]
pub struct FakeParam {
    /// The name, as the result column is called.
    pub name: &'static str,
    pub value: &'static str,
}

/// PgBouncer's list (src/admin.c `fake_param_list`), values included: note
/// `UTF-8` with a hyphen, unlike the `UTF8` of the ParameterStatus at login.
pub const FAKE_PARAMS: &[FakeParam] = &[
    FakeParam {
        name: "client_encoding",
        value: "UTF-8",
    },
    FakeParam {
        name: "default_transaction_isolation",
        value: "read committed",
    },
    FakeParam {
        name: "standard_conforming_strings",
        value: "on",
    },
    FakeParam {
        name: "datestyle",
        value: "ISO",
    },
    FakeParam {
        name: "timezone",
        value: "GMT",
    },
    FakeParam {
        name: "extra_float_digits",
        value: "2",
    },
];

/// The faked setting called `name` (case-insensitive, as PostgreSQL's GUCs).
pub fn find(name: &str) -> Option<&'static FakeParam> {
    FAKE_PARAMS
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case() {
        assert_eq!(find("TimeZone").map(|p| p.value), Some("GMT"));
        assert_eq!(find("DateStyle").map(|p| p.name), Some("datestyle"));
        assert_eq!(find("CLIENT_ENCODING").map(|p| p.value), Some("UTF-8"));
        assert!(find("pools").is_none());
    }
}
