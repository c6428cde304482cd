//! The session settings a pooler must keep consistent between a client and
//! whichever server it is given: the parameters PostgreSQL reports with
//! ParameterStatus and that clients commonly set at startup, plus the ones
//! `track_extra_parameters` names.

use std::sync::{Arc, OnceLock};

use smallvec::SmallVec;

/// Tracked whatever the config says, as PgBouncer does.
const ALWAYS_TRACKED: [&str; 5] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "standard_conforming_strings",
    "application_name",
];

/// track_extra_parameters when the config does not set it.
const DEFAULT_EXTRA: &str = "IntervalStyle";

/// How PostgreSQL spells the parameters it reports (GUC_REPORT), so that an
/// extra parameter configured as `intervalstyle` still reaches clients in
/// ParameterStatus as `IntervalStyle`: drivers look them up case-sensitively.
/// `search_path` is here because extensions such as Citus report it.
const REPORTED_SPELLING: [&str; 15] = [
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "scram_iterations",
    "search_path",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
];

/// The tracked names of this process: fixed at start-up, since
/// track_extra_parameters only changes with a restart.
static TRACKED: OnceLock<Box<[&'static str]>> = OnceLock::new();

/// Set the extra parameters to track, once, before any `ParamSet` exists.
/// A later call changes nothing (the sets already made have their length).
pub fn track_extra(extra: &[String]) {
    if TRACKED.set(tracked_names(extra)).is_err() {
        log::warn!("track_extra_parameters is fixed at start-up; the change needs a restart");
    }
}

/// The tracked names in their canonical spelling: the always-tracked ones,
/// then each extra once.
fn tracked_names<S: AsRef<str>>(extra: &[S]) -> Box<[&'static str]> {
    let mut names: Vec<&'static str> = ALWAYS_TRACKED.to_vec();
    for name in extra.iter().map(AsRef::as_ref) {
        if name.is_empty() || names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
            continue;
        }
        let spelled = REPORTED_SPELLING
            .iter()
            .find(|r| r.eq_ignore_ascii_case(name))
            .copied()
            // Leaked once per name at start-up: they live as long as the process.
            .unwrap_or_else(|| Box::leak(name.to_owned().into_boxed_str()));
        names.push(spelled);
    }
    names.into_boxed_slice()
}

fn tracked() -> &'static [&'static str] {
    TRACKED.get_or_init(|| tracked_names(&[DEFAULT_EXTRA]))
}

/// One value (or none) per tracked parameter, in the order of `tracked()`.
/// Values are shared: a client's set starts as a copy of what the pool's first
/// server reported, and every idle client would otherwise carry its own copy of
/// the same strings. Six values fit inline: the default list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSet {
    values: SmallVec<[Option<Arc<str>>; 6]>,
}

impl Default for ParamSet {
    fn default() -> ParamSet {
        ParamSet {
            values: std::iter::repeat_n(None, tracked().len()).collect(),
        }
    }
}

/// The canonical name of a tracked parameter, matched case-insensitively.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    index_of(name).map(|i| tracked()[i])
}

fn index_of(name: &str) -> Option<usize> {
    tracked().iter().position(|t| t.eq_ignore_ascii_case(name))
}

impl ParamSet {
    pub fn get(&self, name: &str) -> Option<&str> {
        index_of(name).and_then(|i| self.values[i].as_deref())
    }

    /// Set a tracked parameter; returns false (and changes nothing) for others.
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        match index_of(name) {
            Some(i) => {
                if self.values[i].as_deref() != Some(value) {
                    self.values[i] = Some(Arc::from(value));
                }
                true
            }
            None => false,
        }
    }

    /// Fill parameters this set lacks from `defaults`.
    pub fn fill_from(&mut self, defaults: &ParamSet) {
        for (mine, theirs) in self.values.iter_mut().zip(&defaults.values) {
            if mine.is_none() {
                mine.clone_from(theirs);
            }
        }
    }

    /// The SQL that brings a server whose settings are `server` to this set's values,
    /// or `None` when they already agree. Parameters this set has no value for are
    /// left alone.
    ///
    /// Runs every time a client is given a server, so values found equal are
    /// made to share one allocation (see `share`): afterwards the comparison
    /// is a pointer comparison rather than a string comparison.
    pub fn sync_sql(&mut self, server: &mut ParamSet) -> Option<String> {
        let mut sql = String::new();
        let pairs = self.values.iter_mut().zip(server.values.iter_mut());
        for (i, (wanted, has)) in pairs.enumerate() {
            let Some(wanted) = wanted else { continue };
            match has {
                Some(has) if Arc::ptr_eq(wanted, has) => continue,
                Some(has) if **has == **wanted => {
                    share(wanted, has);
                    continue;
                }
                _ => {}
            }
            sql.push_str("SET ");
            push_identifier(&mut sql, tracked()[i]);
            sql.push_str(" = ");
            push_literal(&mut sql, wanted);
            sql.push(';');
        }
        (!sql.is_empty()).then_some(sql)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        tracked()
            .iter()
            .zip(&self.values)
            .filter_map(|(name, value)| value.as_deref().map(|v| (*name, v)))
    }
}

/// Make two equal values one allocation: the one at the lower address. Every
/// set that meets another converges the same way, so after a few rounds the
/// clients and servers of a pool hold the same allocation for each value.
fn share(a: &mut Arc<str>, b: &mut Arc<str>) {
    if Arc::as_ptr(a).cast::<u8>() < Arc::as_ptr(b).cast::<u8>() {
        *b = a.clone();
    } else {
        *a = b.clone();
    }
}

/// A parameter name for SET. Names made of letters, digits and underscores
/// (possibly qualified, as `citus.x`) go as they are, since PostgreSQL matches
/// parameter names case-insensitively; anything else from the config is
/// quoted, so that nothing in it can end the SET.
fn push_identifier(sql: &mut String, name: &str) {
    let plain = |part: &str| {
        part.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if name.split('.').all(plain) {
        sql.push_str(name);
    } else {
        sql.push('"');
        sql.push_str(&name.replace('"', "\"\""));
        sql.push('"');
    }
}

/// A SQL string literal that is safe whatever standard_conforming_strings is:
/// E'' syntax with quotes and backslashes escaped.
fn push_literal(sql: &mut String, value: &str) {
    sql.push_str("E'");
    for c in value.chars() {
        match c {
            '\'' => sql.push_str("''"),
            '\\' => sql.push_str("\\\\"),
            _ => sql.push(c),
        }
    }
    sql.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_case_insensitively() {
        let mut p = ParamSet::default();
        assert!(p.set("timezone", "UTC"));
        assert_eq!(p.get("TimeZone"), Some("UTC"));
        assert!(!p.set("search_path", "x"));
        assert_eq!(canonical_name("datestyle"), Some("DateStyle"));
    }

    #[test]
    fn extra_names_take_postgres_spelling_once() {
        let names = tracked_names(&["intervalstyle", "TIMEZONE", "", "IntervalStyle", "citus.x"]);
        assert_eq!(
            &*names,
            [
                "client_encoding",
                "DateStyle",
                "TimeZone",
                "standard_conforming_strings",
                "application_name",
                "IntervalStyle",
                "citus.x",
            ]
        );
        // This process runs with the default list, which tracks IntervalStyle.
        assert_eq!(canonical_name("intervalstyle"), Some("IntervalStyle"));
        assert_eq!(ParamSet::default().values.len(), 6);
    }

    #[test]
    fn set_names_are_quoted_unless_plain() {
        let quoted = |name| {
            let mut sql = String::new();
            push_identifier(&mut sql, name);
            sql
        };
        assert_eq!(quoted("DateStyle"), "DateStyle");
        assert_eq!(quoted("citus.max_worker_nodes"), "citus.max_worker_nodes");
        assert_eq!(quoted("x=1;DROP"), "\"x=1;DROP\"");
        assert_eq!(quoted("a\"b"), "\"a\"\"b\"");
        assert_eq!(quoted("9lives"), "\"9lives\"");
    }

    #[test]
    fn sync_sql_covers_only_differences() {
        let mut server = ParamSet::default();
        server.set("TimeZone", "UTC");
        server.set("DateStyle", "ISO, MDY");
        let mut client = ParamSet::default();
        client.set("TimeZone", "UTC");
        assert_eq!(client.sync_sql(&mut server), None);
        client.set("DateStyle", "German");
        client.set("application_name", "it's\\me");
        assert_eq!(
            client.sync_sql(&mut server).unwrap(),
            "SET DateStyle = E'German';SET application_name = E'it''s\\\\me';"
        );
    }

    #[test]
    fn equal_values_end_up_shared() {
        let i = index_of("TimeZone").unwrap();
        let mut sets: Vec<ParamSet> = (0..4)
            .map(|_| {
                let mut p = ParamSet::default();
                p.set("TimeZone", "Europe/Berlin");
                p
            })
            .collect();
        let (first, rest) = sets.split_at_mut(1);
        // The first round leaves the first set with the lowest allocation;
        // the second hands it to every other set.
        for _ in 0..2 {
            for other in rest.iter_mut() {
                assert_eq!(first[0].sync_sql(other), None);
            }
        }
        let shared = sets[0].values[i].clone().unwrap();
        for p in &sets {
            assert!(Arc::ptr_eq(p.values[i].as_ref().unwrap(), &shared));
            assert_eq!(p.get("TimeZone"), Some("Europe/Berlin"));
        }
        // A different value is still seen as different.
        sets[1].set("TimeZone", "UTC");
        let (a, b) = sets.split_at_mut(1);
        assert_eq!(
            a[0].sync_sql(&mut b[0]).as_deref(),
            Some("SET TimeZone = E'Europe/Berlin';")
        );
    }

    #[test]
    fn fill_keeps_own_values() {
        let mut defaults = ParamSet::default();
        defaults.set("TimeZone", "UTC");
        defaults.set("client_encoding", "UTF8");
        let mut client = ParamSet::default();
        client.set("TimeZone", "Asia/Tokyo");
        client.fill_from(&defaults);
        assert_eq!(client.get("TimeZone"), Some("Asia/Tokyo"));
        assert_eq!(client.get("client_encoding"), Some("UTF8"));
        // Filled values are shared with the defaults, not copied.
        let i = index_of("client_encoding").unwrap();
        assert!(Arc::ptr_eq(
            client.values[i].as_ref().unwrap(),
            defaults.values[i].as_ref().unwrap()
        ));
    }
}
