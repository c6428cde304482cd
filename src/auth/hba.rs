//! `auth_type = hba`: the authentication method for each connection comes from
//! the first matching line of `auth_hba_file`, a pg_hba.conf subset as
//! PgBouncer reads it.
//!
//! A line is `local DATABASE USER METHOD` or `host|hostssl|hostnossl DATABASE
//! USER ADDRESS METHOD`, with ADDRESS a CIDR block, `all`, or an address and a
//! netmask in two fields. DATABASE is `all`, `sameuser`, `replication` or a
//! comma-separated list of names; USER is `all` or a list; a list item may be
//! `@file`, naming a file of names (relative to the hba file). Names may be
//! double-quoted. METHOD is trust, reject, password, md5, scram-sha-256,
//! peer or cert; of the options after it, `map=NAME` on a peer or cert line
//! names a user name map of auth_ident_file (see `ident`), and the others are
//! ignored. A connection no line matches is rejected, as one a `reject` line
//! matches.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::config::ConfigError;

/// How one connection must authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Trust,
    Reject,
    /// `password`: a cleartext password.
    Password,
    Md5,
    ScramSha256,
    /// The Unix socket peer's OS user name must be the user name (or map to
    /// it).
    Peer,
    /// A client certificate whose common name is the user name (or maps to
    /// it).
    Cert,
}

/// The connection a method is looked up for.
#[derive(Clone, Copy, Debug)]
pub struct Connection<'a> {
    /// The client's address; `None` on a Unix socket.
    pub addr: Option<IpAddr>,
    pub tls: bool,
    pub database: &'a str,
    pub user: &'a str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Local,
    Host,
    HostSsl,
    HostNoSsl,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Names {
    All,
    /// The database named like the user (databases only).
    SameUser,
    /// Replication connections, which pgsluice does not serve: never matches.
    Replication,
    List(Vec<String>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Address {
    All,
    Net { base: IpAddr, prefix: u8 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Rule {
    kind: Kind,
    databases: Names,
    users: Names,
    address: Address,
    method: Method,
    /// `map=` of a peer or cert line.
    map: Option<String>,
}

/// What the first matching line says of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict<'a> {
    pub method: Method,
    /// For peer and cert: the auth_ident_file map that says which system user
    /// may log in as which user. `None`: only as the same name.
    pub map: Option<&'a str>,
}

/// The parsed file, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HbaRules {
    rules: Vec<Rule>,
}

impl HbaRules {
    /// Read and parse `path`; an error names the file and line.
    pub fn load(path: &Path) -> Result<HbaRules, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, &e))?;
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        HbaRules::parse(&text, &dir)
            .map_err(|(line, reason)| ConfigError::new(reason).at(path, line))
    }

    /// Parse file text; `dir` resolves `@file` items. On error: line, reason.
    fn parse(text: &str, dir: &Path) -> Result<HbaRules, (usize, String)> {
        let mut rules = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let fields = tokens(line);
            if fields.is_empty() {
                continue;
            }
            let rule = parse_rule(&fields, dir).map_err(|reason| (index + 1, reason))?;
            rules.push(rule);
        }
        Ok(HbaRules { rules })
    }

    /// The verdict of the first line that matches, or `Reject`.
    pub fn verdict_for(&self, conn: &Connection<'_>) -> Verdict<'_> {
        match self.rules.iter().find(|rule| rule.matches(conn)) {
            Some(rule) => Verdict {
                method: rule.method,
                map: rule.map.as_deref(),
            },
            None => Verdict {
                method: Method::Reject,
                map: None,
            },
        }
    }
}

impl Rule {
    fn matches(&self, conn: &Connection<'_>) -> bool {
        let kind_ok = match (&self.kind, conn.addr) {
            (Kind::Local, None) => true,
            (Kind::Host, Some(_)) => true,
            (Kind::HostSsl, Some(_)) => conn.tls,
            (Kind::HostNoSsl, Some(_)) => !conn.tls,
            _ => false,
        };
        let address_ok = match (&self.address, conn.addr) {
            (Address::All, _) => true,
            (Address::Net { base, prefix }, Some(addr)) => in_net(addr, *base, *prefix),
            (Address::Net { .. }, None) => false,
        };
        kind_ok
            && address_ok
            && names_match(&self.databases, conn.database, conn.user)
            && names_match(&self.users, conn.user, conn.user)
    }
}

fn names_match(names: &Names, name: &str, user: &str) -> bool {
    match names {
        Names::All => true,
        Names::SameUser => name == user,
        Names::Replication => false,
        Names::List(list) => list.iter().any(|n| n == name),
    }
}

/// Is `addr` in `base/prefix`? IPv4-mapped IPv6 clients count as IPv4.
fn in_net(addr: IpAddr, base: IpAddr, prefix: u8) -> bool {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    match (addr, base) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Split a line into fields: blanks separate, `#` starts a comment, double
/// quotes keep blanks, commas and `#` (a quoted field is marked by a leading
/// `"` so that `"all"` stays a name).
pub(super) fn tokens(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut in_field = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                in_field = true;
                current.push('"');
            }
            '#' if !quoted => break,
            c if c.is_whitespace() && !quoted => {
                if in_field {
                    fields.push(std::mem::take(&mut current));
                    in_field = false;
                }
            }
            c => {
                current.push(c);
                in_field = true;
            }
        }
    }
    if in_field {
        fields.push(current);
    }
    fields
}

fn parse_rule(fields: &[String], dir: &Path) -> Result<Rule, String> {
    let kind = match fields[0].as_str() {
        "local" => Kind::Local,
        "host" => Kind::Host,
        "hostssl" => Kind::HostSsl,
        "hostnossl" => Kind::HostNoSsl,
        other => return Err(format!("unknown connection type \"{other}\"")),
    };
    let field = |i: usize, what: &str| {
        fields
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing {what}"))
    };
    let databases = parse_names(field(1, "database")?, dir, true)?;
    let users = parse_names(field(2, "user")?, dir, false)?;
    let (address, method_at) = if kind == Kind::Local {
        (Address::All, 3)
    } else {
        parse_address(field(3, "address")?, fields.get(4).map(String::as_str))?
    };
    let method = match field(method_at, "method")? {
        "trust" => Method::Trust,
        "reject" => Method::Reject,
        "password" => Method::Password,
        "md5" => Method::Md5,
        "scram-sha-256" => Method::ScramSha256,
        "peer" => Method::Peer,
        "cert" => Method::Cert,
        other => return Err(format!("unsupported authentication method \"{other}\"")),
    };
    let mut map = None;
    for option in &fields[method_at + 1..] {
        let Some((name, value)) = option.split_once('=') else {
            return Err(format!("unexpected \"{option}\" after the method"));
        };
        // As in PgBouncer, a map serves only the methods that have a system
        // user name to map: elsewhere it is ignored, as other options are.
        if name == "map" && matches!(method, Method::Peer | Method::Cert) {
            map = Some(value.trim_matches('"').to_owned());
        }
    }
    Ok(Rule {
        kind,
        databases,
        users,
        address,
        method,
        map,
    })
}

/// A comma-separated list; `all` (and for databases `sameuser`,
/// `replication`) unquoted are keywords.
fn parse_names(field: &str, dir: &Path, databases: bool) -> Result<Names, String> {
    let mut list = Vec::new();
    for item in field.split(',') {
        match item {
            "all" => return Ok(Names::All),
            "sameuser" if databases => return Ok(Names::SameUser),
            "replication" if databases => return Ok(Names::Replication),
            "" => return Err(format!("empty name in \"{field}\"")),
            _ if item.starts_with('+') => {
                return Err(format!("group names (\"{item}\") are not supported"))
            }
            _ if item.starts_with('@') => {
                let path = dir.join(&item[1..]);
                list.extend(names_file(&path)?);
            }
            _ => list.push(item.trim_matches('"').to_owned()),
        }
    }
    Ok(Names::List(list))
}

/// The names in an `@file`: separated by blanks, commas or lines.
fn names_file(path: &PathBuf) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
        .filter(|name| !name.is_empty())
        .map(|name| name.trim_matches('"').to_owned())
        .collect())
}

/// `all`, `addr/prefix`, or `addr` followed by a netmask; returns where the
/// method field is.
fn parse_address(field: &str, next: Option<&str>) -> Result<(Address, usize), String> {
    if field == "all" {
        return Ok((Address::All, 4));
    }
    let bad = || format!("invalid address \"{field}\"");
    if let Some((addr, prefix)) = field.split_once('/') {
        let base: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        if prefix > max {
            return Err(bad());
        }
        return Ok((Address::Net { base, prefix }, 4));
    }
    let base: IpAddr = field.parse().map_err(|_| bad())?;
    let mask: IpAddr = next
        .ok_or_else(|| format!("address \"{field}\" needs a netmask or a /prefix"))?
        .parse()
        .map_err(|_| format!("invalid netmask after \"{field}\""))?;
    let bits = match mask {
        IpAddr::V4(m) => u128::from(u32::from(m)) << 96,
        IpAddr::V6(m) => u128::from(m),
    };
    let prefix = bits.leading_ones();
    if bits.checked_shl(prefix).unwrap_or(0) != 0 || base.is_ipv4() != mask.is_ipv4() {
        return Err(format!("invalid netmask after \"{field}\""));
    }
    let prefix = if base.is_ipv4() {
        prefix.min(32)
    } else {
        prefix
    };
    Ok((
        Address::Net {
            base,
            prefix: prefix as u8,
        },
        5,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> HbaRules {
        HbaRules::parse(text, Path::new("/nonexistent")).unwrap()
    }

    fn local<'a>(database: &'a str, user: &'a str) -> Connection<'a> {
        Connection {
            addr: None,
            tls: false,
            database,
            user,
        }
    }

    fn tcp<'a>(addr: &str, database: &'a str, user: &'a str) -> Connection<'a> {
        Connection {
            addr: Some(addr.parse().unwrap()),
            tls: false,
            database,
            user,
        }
    }

    #[test]
    fn the_first_matching_line_decides_and_no_match_rejects() {
        let hba = rules(
            "# comment\n\
             local all all trust\n\
             host  app alice,bob 10.0.0.0/8 md5   # inline comment\n\
             host  all alice     10.1.0.0/16 reject\n\
             host  all all       0.0.0.0/0  scram-sha-256\n",
        );
        let local = local("x", "y");
        assert_eq!(hba.verdict_for(&local).method, Method::Trust);
        assert_eq!(
            hba.verdict_for(&tcp("10.1.2.3", "app", "alice")).method,
            Method::Md5
        );
        assert_eq!(
            hba.verdict_for(&tcp("10.1.2.3", "other", "alice")).method,
            Method::Reject
        );
        assert_eq!(
            hba.verdict_for(&tcp("192.168.1.1", "other", "carol"))
                .method,
            Method::ScramSha256
        );
        assert_eq!(rules("").verdict_for(&local).method, Method::Reject);
        assert_eq!(
            rules("local all all md5")
                .verdict_for(&tcp("127.0.0.1", "d", "u"))
                .method,
            Method::Reject
        );
    }

    #[test]
    fn ssl_kinds_sameuser_quotes_netmasks_and_ipv6() {
        let hba = rules(
            "hostssl   all      all  127.0.0.1/32 cert\n\
             hostnossl sameuser all  127.0.0.1 255.255.255.255 password\n\
             host      \"all\"  all  ::1/128 md5\n\
             host      all      all  all trust\n",
        );
        let mut conn = tcp("127.0.0.1", "alice", "alice");
        assert_eq!(hba.verdict_for(&conn).method, Method::Password);
        conn.tls = true;
        assert_eq!(hba.verdict_for(&conn).method, Method::Cert);
        // A quoted "all" is a database named all.
        assert_eq!(hba.verdict_for(&tcp("::1", "all", "u")).method, Method::Md5);
        assert_eq!(
            hba.verdict_for(&tcp("::1", "db", "u")).method,
            Method::Trust
        );
        // An IPv4 client on an IPv6 socket.
        assert_eq!(
            hba.verdict_for(&tcp("::ffff:127.0.0.1", "alice", "alice"))
                .method,
            Method::Password
        );
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        for (text, reason) in [
            ("hostx all all all trust", "unknown connection type"),
            ("host all all 10.0.0.0/33 trust", "invalid address"),
            ("host all all 10.0.0.0 255.0.255.0 trust", "invalid netmask"),
            ("host all all 10.0.0.0 trust", "invalid netmask"),
            ("local all all ident", "unsupported authentication method"),
            ("local all +admins trust", "group names"),
            ("local all", "missing user"),
            ("local all all trust extra", "unexpected \"extra\""),
        ] {
            let err = HbaRules::parse(&format!("local all all trust\n{text}\n"), Path::new("/"))
                .unwrap_err();
            assert_eq!(err.0, 2, "{text}");
            assert!(err.1.contains(reason), "{text}: {}", err.1);
        }
    }

    #[test]
    fn peer_and_cert_lines_keep_their_map_and_other_lines_ignore_it() {
        let hba = rules(
            "local   all all           peer map=omicron\n\
             hostssl all all 0.0.0.0/0 cert clientcert=verify-full map=\"certs\"\n\
             host    all all 0.0.0.0/0 md5 map=ignored\n",
        );
        let local = local("d", "u");
        assert_eq!(
            hba.verdict_for(&local),
            Verdict {
                method: Method::Peer,
                map: Some("omicron")
            }
        );
        let mut conn = tcp("10.0.0.1", "d", "u");
        assert_eq!(hba.verdict_for(&conn).map, None);
        conn.tls = true;
        assert_eq!(hba.verdict_for(&conn).map, Some("certs"));
    }

    #[test]
    fn at_files_list_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admins"), "alice, bob\n# nobody\ncarol\n").unwrap();
        let hba = HbaRules::parse("host all @admins all trust\n", dir.path()).unwrap();
        assert_eq!(
            hba.verdict_for(&tcp("1.2.3.4", "d", "carol")).method,
            Method::Trust
        );
        assert_eq!(
            hba.verdict_for(&tcp("1.2.3.4", "d", "dave")).method,
            Method::Reject
        );
        assert!(HbaRules::parse("host all @missing all trust\n", dir.path()).is_err());
    }
}
