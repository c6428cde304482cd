//! Tests of loading whole configuration files: the rules of `Config::load`,
//! `set_value` and SHOW CONFIG, end to end through includes, rust-ini and the
//! section parsers.

use super::*;
use std::fs;
use std::time::Duration;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    fs::write(&p, text).unwrap();
    p
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::from_text(Path::new("/etc/pgbouncer.ini"), text)
}

#[test]
fn full_example() {
    let cfg = parse(
        "[databases]\n\
         ; foodb over Unix socket\n\
         foodb =\n\
         bardb = host=localhost dbname=bazdb\n\
         forcedb = host=localhost port=300 user=baz password=foo client_encoding=UNICODE datestyle=ISO\n\
         * = host=fallback.example.com\n\
         \n\
         [users]\n\
         alice = pool_mode=transaction pool_size=3\n\
         \n\
         [peers]\n\
         1 = host=/tmp/pgbouncer1\n\
         2 = host=/tmp/pgbouncer2 port=6433\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1, ::1\n\
         listen_port = 6543\n\
         auth_type = scram-sha-256\n\
         auth_file = /etc/pgbouncer/userlist.txt\n\
         admin_users = admin\n\
         pool_mode = transaction\n\
         server_idle_timeout = 0.5\n\
         unix_socket_mode = 0700\n",
    )
    .unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(cfg.general.listen_addr, vec!["127.0.0.1", "::1"]);
    assert_eq!(cfg.general.listen_port, 6543);
    assert_eq!(cfg.general.auth_type, AuthType::ScramSha256);
    assert_eq!(
        cfg.general.auth_file.as_deref(),
        Some(Path::new("/etc/pgbouncer/userlist.txt"))
    );
    assert_eq!(cfg.general.admin_users, vec!["admin"]);
    assert_eq!(cfg.general.pool_mode, PoolMode::Transaction);
    assert_eq!(cfg.general.server_idle_timeout, Duration::from_millis(500));
    assert_eq!(cfg.general.unix_socket_mode, 0o700);
    assert_eq!(cfg.values["server_idle_timeout"], "0.5");
    assert_eq!(cfg.values["pool_mode"], "transaction");
    assert_eq!(cfg.values["unix_socket_mode"], "448");

    assert_eq!(cfg.databases.len(), 4);
    assert_eq!(cfg.databases["foodb"], DatabaseDef::new("foodb"));
    assert_eq!(cfg.databases["bardb"].dbname.as_deref(), Some("bazdb"));
    assert_eq!(cfg.databases["forcedb"].port, 300);
    assert_eq!(cfg.databases["forcedb"].password.as_deref(), Some("foo"));
    assert_eq!(cfg.database("bardb").unwrap().name, "bardb");
    let fallback = cfg.database("other").unwrap();
    assert!(fallback.is_fallback());
    assert_eq!(fallback.target_dbname("other"), "other");

    assert_eq!(cfg.users["alice"].pool_mode, Some(PoolMode::Transaction));
    assert_eq!(cfg.users["alice"].pool_size, Some(3));
    assert_eq!(cfg.peers[&2].port, 6433);
    assert_eq!(cfg.peers[&1].host, "/tmp/pgbouncer1");
}

#[test]
fn no_fallback_means_no_database() {
    let cfg = parse("[pgbouncer]\n[databases]\na = host=x\n").unwrap();
    assert!(cfg.database("b").is_none());
    assert!(cfg.database("a").is_some());
}

#[test]
fn defaults_when_nothing_is_set() {
    let cfg = parse("[pgbouncer]\n").unwrap();
    assert!(cfg.warnings.is_empty());
    for def in Config::setting_defs() {
        let shown = &cfg.values[def.name];
        if def.name == "conffile" {
            assert_eq!(shown, "/etc/pgbouncer.ini");
        } else {
            assert_eq!(*shown, def.default_value().to_string(), "{}", def.name);
        }
    }
    assert_eq!(cfg.values.len(), Config::setting_defs().len());
    assert_eq!(cfg.values["listen_port"], "6432");
    assert_eq!(cfg.values["server_lifetime"], "3600");
    assert_eq!(cfg.values["tcp_keepalive"], "1");
    assert_eq!(cfg.general.listen_port, General::default().listen_port);
}

#[test]
fn semicolons_and_hashes_inside_values_survive() {
    let cfg = parse(
        "[pgbouncer]\n\
         server_reset_query = DISCARD ALL; -- not a comment # either\n\
         # a comment\n\
         ;another\n\
         [databases]\n\
         x = host=a;b password=x#y\n\
         y = password='p;w #x' host=h\n",
    )
    .unwrap();
    assert_eq!(
        cfg.general.server_reset_query,
        "DISCARD ALL; -- not a comment # either"
    );
    assert_eq!(cfg.databases["x"].host.as_deref(), Some("a;b"));
    assert_eq!(cfg.databases["x"].password.as_deref(), Some("x#y"));
    assert_eq!(cfg.databases["y"].password.as_deref(), Some("p;w #x"));
}

#[test]
fn quoted_connstr_values() {
    let cfg = parse(
        "[pgbouncer]\n[databases]\n\
         q = connect_query='SELECT ''a'' = ''b''' application_name='my app' user=u\n",
    )
    .unwrap();
    let db = &cfg.databases["q"];
    assert_eq!(db.connect_query.as_deref(), Some("SELECT 'a' = 'b'"));
    assert_eq!(db.application_name.as_deref(), Some("my app"));
    assert_eq!(db.user.as_deref(), Some("u"));
}

#[test]
fn values_with_backslashes_and_quotes_are_verbatim() {
    let cfg = parse(
        "[pgbouncer]\nserver_check_query = select '\\d' \"x\"\nlogfile = C:\\logs\\\nsyslog_ident = a\n",
    )
    .unwrap();
    assert_eq!(cfg.general.server_check_query, "select '\\d' \"x\"");
    assert_eq!(cfg.values["logfile"], "C:\\logs\\");
    // The trailing backslash did not swallow the next line.
    assert_eq!(cfg.general.syslog_ident, "a");
}

#[test]
fn keys_are_case_insensitive_and_pgsluice_section_works() {
    let cfg = parse("[PgSluice]\nLISTEN_PORT = 7000\nPool_Mode = Statement\n").unwrap();
    assert_eq!(cfg.general.listen_port, 7000);
    assert_eq!(cfg.general.pool_mode, PoolMode::Statement);
    assert_eq!(cfg.values["pool_mode"], "statement");
}

#[test]
fn later_settings_win() {
    let cfg =
        parse("[pgbouncer]\nmax_client_conn = 10\n[pgbouncer]\nmax_client_conn = 20\n").unwrap();
    assert_eq!(cfg.general.max_client_conn, 20);
}

#[test]
fn error_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "pgbouncer.ini",
        "[pgbouncer]\nlisten_port = 6432\n\nmax_client_conn = abc\n",
    );
    let err = Config::load(&path).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "{}:4: key 'max_client_conn': invalid integer 'abc'",
            path.display()
        )
    );
    assert_eq!(err.line, Some(4));
    assert_eq!(err.key.as_deref(), Some("max_client_conn"));
}

#[test]
fn malformed_values_of_each_kind() {
    for (line, needle) in [
        ("log_connections = maybe", "invalid boolean 'maybe'"),
        ("query_timeout = soon", "invalid time 'soon'"),
        ("pool_mode = fast", "invalid value 'fast'"),
        ("listen_port = 99999", "out of range"),
        ("auth_type = magic", "invalid value 'magic'"),
    ] {
        let err = parse(&format!("[pgbouncer]\n{line}\n")).unwrap_err();
        assert_eq!(err.line, Some(2), "{line}");
        assert!(
            err.to_string().starts_with("/etc/pgbouncer.ini:2: key '"),
            "{err}"
        );
        assert!(err.to_string().contains(needle), "{line}: {err}");
    }
}

#[test]
fn unknown_key_and_section_are_warnings() {
    let cfg = parse("[pgbouncer]\nno_such_thing = 1\n[weird]\nx = 1\n").unwrap();
    assert_eq!(
        cfg.warnings,
        vec![
            "/etc/pgbouncer.ini:3: unknown section [weird] ignored".to_string(),
            "unknown parameter: /etc/pgbouncer.ini:2: no_such_thing".to_string(),
        ]
    );
}

#[test]
fn unimplemented_setting_warns_only_when_not_default() {
    let cfg = parse(
        "[pgbouncer]\nsuspend_timeout = 20\nsuspend_timeout = 30\nmax_prepared_statements = 200\n",
    )
    .unwrap();
    assert_eq!(cfg.warnings.len(), 1, "{:?}", cfg.warnings);
    assert!(cfg.warnings[0].starts_with("/etc/pgbouncer.ini:3: setting 'suspend_timeout'"));
    assert!(cfg.warnings[0].contains("not implemented"));
    assert_eq!(cfg.general.suspend_timeout, Duration::from_secs(30));
    assert_eq!(cfg.values["suspend_timeout"], "30");

    let cfg = parse("[pgbouncer]\nlisten_port = 7000\n").unwrap();
    assert!(cfg.warnings.is_empty(), "implemented settings do not warn");
}

#[test]
fn cert_auth_without_client_certificates_warns() {
    let cfg = parse("[pgbouncer]\nauth_type = cert\nclient_tls_sslmode = require\n").unwrap();
    assert_eq!(
        cfg.warnings,
        vec![
            "auth_type = cert needs TLS to clients and client_tls_ca_file: without them \
             no client certificate is asked for, so every login fails"
                .to_string()
        ]
    );
    let cfg = parse(
        "[pgbouncer]\nauth_type = cert\nclient_tls_sslmode = require\nclient_tls_ca_file = /ca.crt\n",
    )
    .unwrap();
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

#[test]
fn database_errors_name_line_and_entry() {
    let err = parse("[pgbouncer]\n[databases]\napp = host=x colour=blue\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/pgbouncer.ini:3: key 'app': unknown connection parameter 'colour'"
    );
    for reserved in ["pgbouncer", "pgsluice"] {
        let err = parse(&format!("[pgbouncer]\n[databases]\n{reserved} = host=x\n")).unwrap_err();
        assert!(
            err.to_string().contains("reserved for the admin console"),
            "{err}"
        );
        assert_eq!(err.line, Some(3));
    }
    let err = parse("[pgbouncer]\n[users]\nu = pool_size=x\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "/etc/pgbouncer.ini:3: key 'u': pool_size: invalid integer 'x'"
    );
    let err = parse("[pgbouncer]\n[peers]\n0 = host=x\n").unwrap_err();
    assert_eq!(err.line, Some(3));
}

#[test]
fn missing_main_section_is_an_error() {
    let err = parse("[databases]\na = host=x\n").unwrap_err();
    assert!(err.to_string().contains("[pgbouncer] missing"), "{err}");
}

#[test]
fn includes_nested_and_relative() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "conf.d/dbs.ini",
        "[databases]\n%include more/x.ini\n",
    );
    write(dir.path(), "conf.d/more/x.ini", "x = host=included\n");
    let main = write(
        dir.path(),
        "pgbouncer.ini",
        "[pgbouncer]\nlisten_port = 7001\n%include conf.d/dbs.ini\n",
    );
    let cfg = Config::load(&main).unwrap();
    assert_eq!(cfg.databases["x"].host.as_deref(), Some("included"));
    assert_eq!(cfg.general.listen_port, 7001);
    assert_eq!(cfg.file, main);

    // An error in an included file names that file and its line.
    write(dir.path(), "conf.d/more/x.ini", "\nx = hots=typo\n");
    let err = Config::load(&main).unwrap_err();
    assert_eq!(err.file, Some(dir.path().join("conf.d/more/x.ini")));
    assert_eq!(err.line, Some(2));
}

#[test]
fn missing_include_names_the_including_line() {
    let dir = tempfile::tempdir().unwrap();
    let main = write(
        dir.path(),
        "pgbouncer.ini",
        "[pgbouncer]\n\n%include missing.ini\n",
    );
    let err = Config::load(&main).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("{}:3: ", main.display())),
        "{text}"
    );
    assert!(text.contains("missing.ini"), "{text}");
    assert!(text.contains("No such file or directory"), "{text}");
}

#[test]
fn unreadable_main_file() {
    let err = Config::load(Path::new("/nonexistent/pgsluice.ini")).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("/nonexistent/pgsluice.ini: "), "{text}");
    assert!(text.contains("No such file or directory"), "{text}");
}

#[test]
fn set_value_on_changeable_settings() {
    let mut cfg = parse("[pgbouncer]\n").unwrap();
    cfg.set_value("default_pool_size", "42").unwrap();
    assert_eq!(cfg.general.default_pool_size, 42);
    assert_eq!(cfg.values["default_pool_size"], "42");
    cfg.set_value("Query_Timeout", " 1.5 ").unwrap();
    assert_eq!(cfg.general.query_timeout, Duration::from_millis(1500));
    assert_eq!(cfg.values["query_timeout"], "1.5");
    cfg.set_value("log_connections", "off").unwrap();
    assert!(!cfg.general.log_connections);
    assert_eq!(cfg.values["log_connections"], "0");
    cfg.set_value("auth_user", "pgbouncer_auth").unwrap();
    assert_eq!(cfg.general.auth_user.as_deref(), Some("pgbouncer_auth"));
}

#[test]
fn set_value_refuses_restart_only_bad_and_unknown() {
    let mut cfg = parse("[pgbouncer]\n").unwrap();
    let before = cfg.values.clone();
    let err = cfg.set_value("listen_port", "7000").unwrap_err();
    assert_eq!(
        err.to_string(),
        "key 'listen_port': cannot be changed at run time (changeable = no); change it in the config file and restart"
    );
    for key in [
        "unix_socket_dir",
        "user",
        "pidfile",
        "so_reuseport",
        "listen_addr",
    ] {
        assert!(cfg.set_value(key, "1").is_err(), "{key}");
    }
    let err = cfg.set_value("max_client_conn", "lots").unwrap_err();
    assert_eq!(
        err.to_string(),
        "key 'max_client_conn': invalid integer 'lots'"
    );
    let err = cfg.set_value("bogus", "1").unwrap_err();
    assert_eq!(err.to_string(), "key 'bogus': unknown parameter");
    assert_eq!(cfg.values, before, "a refused SET changes nothing");
    assert_eq!(cfg.general.listen_port, 6432);
}

#[test]
fn show_config_rows() {
    let mut cfg = parse("[pgbouncer]\nauth_file = /etc/u.txt\n").unwrap();
    let rows = cfg.show_config();
    assert_eq!(rows.len(), Config::setting_defs().len());
    let row = |rows: &[ShowConfigRow], k: &str| rows.iter().find(|r| r.key == k).unwrap().clone();
    assert_eq!(
        row(&rows, "listen_port"),
        ShowConfigRow {
            key: "listen_port",
            value: Some("6432".into()),
            default: Some("6432"),
            changeable: false
        }
    );
    assert_eq!(row(&rows, "auth_file").value.as_deref(), Some("/etc/u.txt"));
    assert_eq!(row(&rows, "auth_file").default, None);
    assert_eq!(row(&rows, "user").value, None);
    assert_eq!(row(&rows, "verbose").value.as_deref(), Some("0"));
    assert_eq!(row(&rows, "verbose").default, None);
    assert_eq!(
        row(&rows, "conffile").value.as_deref(),
        Some("/etc/pgbouncer.ini")
    );
    assert_eq!(row(&rows, "unix_socket_mode").value.as_deref(), Some("511"));
    assert_eq!(row(&rows, "unix_socket_mode").default, Some("0777"));
    cfg.set_value("auth_user", "x").unwrap();
    assert_eq!(
        row(&cfg.show_config(), "auth_user").value.as_deref(),
        Some("x")
    );
}

#[test]
fn restart_required_lists_changed_fixed_settings() {
    let old = parse("[pgbouncer]\nlisten_port = 1\nmax_client_conn = 5\n").unwrap();
    let new = parse("[pgbouncer]\nlisten_port = 2\nmax_client_conn = 6\n").unwrap();
    assert_eq!(old.restart_required(&new), vec!["listen_port"]);
    assert!(old.restart_required(&old).is_empty());
}

/// Why the line scanner sits in front of rust-ini: with quotes and escapes off,
/// rust-ini keeps `;` and `#` inside values (good), but it joins a line ending in a
/// backslash with the next one and reads an indented comment as part of a key.
#[test]
fn rust_ini_behaviour_that_the_line_scanner_guards_against() {
    let options = || ParseOption {
        enabled_quote: false,
        enabled_escape: false,
        ..ParseOption::default()
    };
    let ini = Ini::load_from_str_opt("[s]\na = host=a;b password=x#y\n", options()).unwrap();
    assert_eq!(ini.get_from(Some("s"), "a"), Some("host=a;b password=x#y"));

    let ini = Ini::load_from_str_opt("[s]\na = x\\\nb = 1\n", options()).unwrap();
    assert_eq!(
        ini.get_from(Some("s"), "b"),
        None,
        "the backslash joined the lines"
    );

    let ini = Ini::load_from_str_opt("[s]\n  ; note\nb = 1\n", options()).unwrap();
    assert_eq!(
        ini.get_from(Some("s"), "b"),
        None,
        "the comment became part of a key"
    );

    // The same texts through Config come out as PgBouncer reads them.
    let cfg =
        parse("[pgbouncer]\nlogfile = x\\\nsyslog_ident = y\n  ; note\njob_name = z\n").unwrap();
    assert_eq!(cfg.values["logfile"], "x\\");
    assert_eq!(cfg.values["syslog_ident"], "y");
    assert_eq!(cfg.values["job_name"], "z");
}

#[test]
fn auth_lookup_takes_the_entry_values_first_then_the_generic_ones() {
    let cfg = parse(
        "[databases]\n\
         plain = host=h\n\
         own = host=h auth_user=dbauth auth_query='SELECT 1' auth_dbname=authdb\n\
         [pgbouncer]\n",
    )
    .unwrap();
    // No auth_user anywhere: no lookup.
    assert_eq!(cfg.auth_lookup(&cfg.databases["plain"]), None);

    let cfg = parse(
        "[databases]\n\
         plain = host=h\n\
         own = host=h auth_user=dbauth auth_query='SELECT 1' auth_dbname=authdb\n\
         [pgbouncer]\n\
         auth_user = generic\n\
         auth_dbname = central\n",
    )
    .unwrap();
    let generic = cfg.auth_lookup(&cfg.databases["plain"]).unwrap();
    assert_eq!(generic.user, "generic");
    assert!(generic.query.contains("FROM pg_authid WHERE rolname=$1"));
    assert_eq!(generic.database, Some("central"));
    let own = cfg.auth_lookup(&cfg.databases["own"]).unwrap();
    assert_eq!(
        (own.user, own.query, own.database),
        ("dbauth", "SELECT 1", Some("authdb"))
    );
}
