//! The session settings a pooler must keep consistent between a client and
//! whichever server it is given: the parameters PostgreSQL reports with
//! ParameterStatus and that clients commonly set at startup.

use std::sync::Arc;

/// Tracked parameters, in PostgreSQL's canonical spelling (as ParameterStatus
/// reports them). Startup packets may spell them in any case.
pub const TRACKED: [&str; 6] = [
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "application_name",
];

/// One value (or none) per tracked parameter. Values are shared: a client's
/// set starts as a copy of what the pool's first server reported, and every
/// idle client would otherwise carry its own copy of the same strings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamSet {
    values: [Option<Arc<str>>; TRACKED.len()],
}

/// The canonical name of a tracked parameter, matched case-insensitively.
pub fn canonical_name(name: &str) -> Option<&'static str> {
    index_of(name).map(|i| TRACKED[i])
}

fn index_of(name: &str) -> Option<usize> {
    TRACKED.iter().position(|t| t.eq_ignore_ascii_case(name))
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
            sql.push_str(TRACKED[i]);
            sql.push_str(" = ");
            push_literal(&mut sql, wanted);
            sql.push(';');
        }
        (!sql.is_empty()).then_some(sql)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &str)> {
        TRACKED
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
