//! `auth_ident_file`: the user name maps that `map=NAME` on a `peer` or `cert`
//! line of auth_hba_file refers to. The subset of pg_ident.conf PgBouncer
//! reads: lines `MAP SYSTEM-USER DATABASE-USER`, where DATABASE-USER is a user
//! name or `all`; `#` starts a comment and double quotes keep blanks. Regular
//! expressions, `+group` and include directives are refused, as PgBouncer
//! does not have them either.

use std::path::Path;

use super::hba::tokens;
use crate::config::ConfigError;

/// Who may log in as whom, line by line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdentMaps {
    lines: Vec<Mapping>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Mapping {
    map: String,
    system_user: String,
    /// `None`: `all`, any user.
    database_user: Option<String>,
}

impl IdentMaps {
    /// Read and parse `path`; an error names the file and line.
    pub fn load(path: &Path) -> Result<IdentMaps, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
        IdentMaps::parse(&text).map_err(|(line, reason)| ConfigError::new(reason).at(path, line))
    }

    /// Parse file text. On error: line, reason.
    fn parse(text: &str) -> Result<IdentMaps, (usize, String)> {
        let mut lines = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let fields = tokens(line);
            if fields.is_empty() {
                continue;
            }
            let mapping = parse_mapping(&fields).map_err(|reason| (index + 1, reason))?;
            lines.push(mapping);
        }
        Ok(IdentMaps { lines })
    }

    /// May the system user `system_user` log in as `user` under map `map`?
    pub fn allows(&self, map: &str, system_user: &str, user: &str) -> bool {
        self.lines.iter().any(|m| {
            m.map == map
                && m.system_user == system_user
                && m.database_user.as_deref().is_none_or(|u| u == user)
        })
    }
}

fn parse_mapping(fields: &[String]) -> Result<Mapping, String> {
    let directives = ["include", "include_if_exists", "include_dir"];
    if let Some(directive) = fields.first().filter(|f| directives.contains(&f.as_str())) {
        return Err(format!("\"{directive}\" is not supported"));
    }
    let [map, system_user, database_user] = fields else {
        return Err(format!(
            "expected MAP SYSTEM-USER DATABASE-USER, found {} field(s)",
            fields.len()
        ));
    };
    if system_user.starts_with('/') {
        return Err(format!(
            "regular expressions (\"{system_user}\") are not supported"
        ));
    }
    let database_user = match database_user.as_str() {
        "all" => None,
        name if name.starts_with('+') => {
            return Err(format!("group names (\"{name}\") are not supported"))
        }
        name if name.starts_with('/') => {
            return Err(format!(
                "regular expressions (\"{name}\") are not supported"
            ))
        }
        name => Some(unquote(name)),
    };
    Ok(Mapping {
        map: unquote(map),
        system_user: unquote(system_user),
        database_user,
    })
}

fn unquote(field: &str) -> String {
    field.replace('"', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_lets_one_system_user_in_as_one_user_or_all() {
        let maps = IdentMaps::parse(
            "# MAP   SYSTEM-USER           DATABASE-USER\n\
             certs   app.example.org       app      # the app's certificate\n\
             certs   app.example.org       reports\n\
             certs   \"ops team\"          all\n\
             local   root                  \"all\"\n\
             includes  root                  postgres\n",
        )
        .unwrap();
        assert!(maps.allows("certs", "app.example.org", "app"));
        assert!(maps.allows("certs", "app.example.org", "reports"));
        assert!(!maps.allows("certs", "app.example.org", "postgres"));
        assert!(maps.allows("certs", "ops team", "postgres"));
        assert!(!maps.allows("other", "app.example.org", "app"));
        // A quoted "all" is a user named all.
        assert!(maps.allows("local", "root", "all"));
        assert!(!maps.allows("local", "root", "postgres"));
        // A map may be named like a directive's prefix.
        assert!(maps.allows("includes", "root", "postgres"));
        assert!(!IdentMaps::default().allows("certs", "app.example.org", "app"));
    }

    #[test]
    fn what_pgbouncer_does_not_read_is_refused_with_the_line() {
        for (text, reason) in [
            ("m sys", "found 2 field(s)"),
            ("m sys user extra", "found 4 field(s)"),
            ("m /^(.*)$ \\1", "regular expressions"),
            ("m sys +admins", "group names"),
            ("include other.conf", "\"include\" is not supported"),
            ("include_dir conf.d", "\"include_dir\" is not supported"),
        ] {
            let err = IdentMaps::parse(&format!("m sys user\n{text}\n")).unwrap_err();
            assert_eq!(err.0, 2, "{text}");
            assert!(err.1.contains(reason), "{text}: {}", err.1);
        }
    }
}
