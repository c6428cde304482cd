//! Parsing console statements into [`Command`]s.
//!
//! The grammar is PgBouncer's (src/admin.c), which is much smaller than SQL:
//!
//! ```text
//! statement := WORD [WORD]                       -- SHOW POOLS, PAUSE mydb, RELOAD
//!            | SET WORD ('=' | TO) (WORD | STRING)
//! WORD      := [0-9A-Za-z_]+ | "..." ("" inside stands for ")
//! STRING    := '...'         ('' inside stands for ')
//! ```
//!
//! Whitespace is space, tab, CR and LF; keywords are case-insensitive, while
//! names keep their case (PgBouncer compares database names exactly). A query
//! string may hold several statements separated by `;`; PgBouncer accepts only one
//! (with an optional trailing `;`), so every query it accepts is parsed the same
//! way here.
//!
//! Parsing does not look at who is asking: the permission check and the
//! argument checks that PgBouncer makes after it (`a database is required`,
//! `invalid client pointer supplied`) happen when the command runs, in the same
//! order as PgBouncer, so that a stats user gets the same error PgBouncer gives.

use crate::control::ShutdownMode;

use super::params::{self, FakeParam};

/// What can go wrong in a statement before it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not a statement of the grammar, or an unknown command or SHOW name:
    /// PgBouncer answers `invalid command '<query>', use SHOW HELP;`.
    Syntax,
    /// A name or value longer than PgBouncer's buffers, or an empty SET key:
    /// PgBouncer answers `bad arguments`.
    BadArguments,
}

/// PgBouncer copies the command word, the argument and the SET value into
/// fixed buffers of these sizes (quotes included, plus the terminating NUL) and
/// refuses longer ones; keeping the limits keeps the two consoles answering alike.
const MAX_COMMAND: usize = 16;
const MAX_ARGUMENT: usize = 64;
const MAX_SET_VALUE: usize = 256;

/// The SHOW subjects, in the order SHOW HELP lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    Help,
    Config,
    Databases,
    Pools,
    Clients,
    Servers,
    Users,
    Version,
    Peers,
    PeerPools,
    /// Removed from PgBouncer 1.26 (it served online restart); refused.
    Fds,
    Sockets,
    ActiveSockets,
    Lists,
    Mem,
    State,
    DnsHosts,
    DnsZones,
    Stats,
    StatsTotals,
    StatsAverages,
    Totals,
}

impl Show {
    pub const ALL: &'static [Show] = &[
        Show::Help,
        Show::Config,
        Show::Databases,
        Show::Pools,
        Show::Clients,
        Show::Servers,
        Show::Users,
        Show::Version,
        Show::Peers,
        Show::PeerPools,
        Show::Fds,
        Show::Sockets,
        Show::ActiveSockets,
        Show::Lists,
        Show::Mem,
        Show::State,
        Show::DnsHosts,
        Show::DnsZones,
        Show::Stats,
        Show::StatsTotals,
        Show::StatsAverages,
        Show::Totals,
    ];

    /// The word after SHOW, lower case.
    pub fn name(self) -> &'static str {
        match self {
            Show::Help => "help",
            Show::Config => "config",
            Show::Databases => "databases",
            Show::Pools => "pools",
            Show::Clients => "clients",
            Show::Servers => "servers",
            Show::Users => "users",
            Show::Version => "version",
            Show::Peers => "peers",
            Show::PeerPools => "peer_pools",
            Show::Fds => "fds",
            Show::Sockets => "sockets",
            Show::ActiveSockets => "active_sockets",
            Show::Lists => "lists",
            Show::Mem => "mem",
            Show::State => "state",
            Show::DnsHosts => "dns_hosts",
            Show::DnsZones => "dns_zones",
            Show::Stats => "stats",
            Show::StatsTotals => "stats_totals",
            Show::StatsAverages => "stats_averages",
            Show::Totals => "totals",
        }
    }

    pub fn from_name(word: &str) -> Option<Show> {
        Show::ALL
            .iter()
            .copied()
            .find(|s| s.name().eq_ignore_ascii_case(word))
    }
}

/// One parsed console statement. Database arguments are `None` when absent
/// (or given as the empty quoted name `""`, which PgBouncer treats the same).
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    Show(Show),
    /// SHOW (or SELECT) of a faked server setting.
    ShowParam(&'static FakeParam),
    Set {
        key: String,
        value: String,
    },
    Pause(Option<String>),
    Resume(Option<String>),
    Reconnect(Option<String>),
    WaitClose(Option<String>),
    /// DISABLE and ENABLE need a database; a missing one is reported when the
    /// command runs (after the permission check, as PgBouncer does).
    Disable(Option<String>),
    Enable(Option<String>),
    Kill(Option<String>),
    /// The argument as given; it must be a client id, checked when run.
    KillClient(String),
    Reload,
    Shutdown(ShutdownMode),
    /// Removed from PgBouncer 1.26 (it served online restart); refused.
    Suspend,
}

impl Command {
    /// The CommandComplete tag of a successful run (SET adds `key=value`).
    pub fn tag(&self) -> &'static str {
        match self {
            Command::Show(_) | Command::ShowParam(_) => "SHOW",
            Command::Set { .. } => "SET",
            Command::Pause(_) => "PAUSE",
            Command::Resume(_) => "RESUME",
            Command::Reconnect(_) => "RECONNECT",
            Command::WaitClose(_) => "WAIT_CLOSE",
            Command::Disable(_) => "DISABLE",
            Command::Enable(_) => "ENABLE",
            Command::Kill(_) => "KILL",
            Command::KillClient(_) => "KILL_CLIENT",
            Command::Reload => "RELOAD",
            Command::Shutdown(_) => "SHUTDOWN",
            Command::Suspend => "SUSPEND",
        }
    }
}

/// Split a query string into its statements at every `;` outside quotes.
/// Empty statements (blank, or between two `;`) are dropped.
pub fn split_statements(query: &str) -> Vec<&str> {
    let mut statements = Vec::new();
    let mut quote: Option<u8> = None;
    let mut start = 0;
    for (i, b) in query.bytes().enumerate() {
        match (quote, b) {
            // A doubled quote closes and reopens at once, so it needs no case.
            (Some(q), _) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b';') => {
                statements.push(&query[start..i]);
                start = i + 1;
            }
            (None, _) => {}
        }
    }
    statements.push(&query[start..]);
    statements.retain(|s| !s.bytes().all(is_space));
    statements
}

/// Parse one statement (no `;`).
pub fn parse(statement: &str) -> Result<Command, ParseError> {
    let tokens = lex(statement)?;
    match tokens.as_slice() {
        [Token::Word(cmd)] => command(cmd, None),
        [Token::Word(cmd), Token::Word(arg)] if arg.spaced => command(cmd, Some(arg)),
        [Token::Word(set), Token::Word(key), op, value] if set.is_keyword("set") && key.spaced => {
            let value = match (op, value) {
                (Token::Equals, Token::Word(v) | Token::Str(v)) => v,
                (Token::Word(to), Token::Word(v) | Token::Str(v))
                    if to.is_keyword("to") && to.spaced && v.spaced =>
                {
                    v
                }
                _ => return Err(ParseError::Syntax),
            };
            if key.raw.len() >= MAX_ARGUMENT
                || key.value.is_empty()
                || value.raw.len() >= MAX_SET_VALUE
            {
                return Err(ParseError::BadArguments);
            }
            Ok(Command::Set {
                key: key.value.clone(),
                value: value.value.clone(),
            })
        }
        _ => Err(ParseError::Syntax),
    }
}

/// `CMD [ARG]`: look the command word up.
fn command(cmd: &Lexeme, arg: Option<&Lexeme>) -> Result<Command, ParseError> {
    if cmd.raw.len() >= MAX_COMMAND || arg.is_some_and(|a| a.raw.len() >= MAX_ARGUMENT) {
        return Err(ParseError::BadArguments);
    }
    let db = arg.map(|a| a.value.clone()).filter(|v| !v.is_empty());
    let word = cmd.value.to_ascii_lowercase();
    Ok(match word.as_str() {
        "show" | "select" => {
            let subject = db.ok_or(ParseError::Syntax)?;
            if let Some(param) = params::find(&subject) {
                Command::ShowParam(param)
            } else {
                Command::Show(Show::from_name(&subject).ok_or(ParseError::Syntax)?)
            }
        }
        "pause" => Command::Pause(db),
        "resume" => Command::Resume(db),
        "reconnect" => Command::Reconnect(db),
        "wait_close" => Command::WaitClose(db),
        "disable" => Command::Disable(db),
        "enable" => Command::Enable(db),
        "kill" => Command::Kill(db),
        "kill_client" => Command::KillClient(db.unwrap_or_default()),
        "reload" if db.is_none() => Command::Reload,
        "shutdown" => Command::Shutdown(match db.as_deref() {
            None => ShutdownMode::Now,
            Some(mode) if mode.eq_ignore_ascii_case("wait_for_servers") => {
                ShutdownMode::WaitForServers
            }
            Some(mode) if mode.eq_ignore_ascii_case("wait_for_clients") => {
                ShutdownMode::WaitForClients
            }
            Some(_) => return Err(ParseError::Syntax),
        }),
        "suspend" => Command::Suspend,
        _ => return Err(ParseError::Syntax),
    })
}

/// A word or quoted string: its text as written and its value.
#[derive(Debug, PartialEq, Eq)]
struct Lexeme {
    raw: String,
    value: String,
    quoted: bool,
    /// Whitespace came before it; two words must be apart (`SHOW"x"` is not
    /// two words in PgBouncer's grammar).
    spaced: bool,
}

impl Lexeme {
    fn is_keyword(&self, keyword: &str) -> bool {
        !self.quoted && self.value.eq_ignore_ascii_case(keyword)
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token {
    /// A bare word or a `"quoted"` name.
    Word(Lexeme),
    /// A `'quoted'` string (only valid as a SET value).
    Str(Lexeme),
    Equals,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn lex(statement: &str) -> Result<Vec<Token>, ParseError> {
    let bytes = statement.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    loop {
        let before = i;
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        // The start of the statement counts as a separator.
        let spaced = i > before || tokens.is_empty();
        let Some(&b) = bytes.get(i) else {
            return Ok(tokens);
        };
        match b {
            b'=' => {
                tokens.push(Token::Equals);
                i += 1;
            }
            b'"' | b'\'' => {
                let end = closing_quote(bytes, i).ok_or(ParseError::Syntax)?;
                let raw = &statement[i..=end];
                let q = char::from(b);
                let lexeme = Lexeme {
                    raw: raw.to_string(),
                    value: raw[1..raw.len() - 1].replace(&format!("{q}{q}"), &q.to_string()),
                    quoted: true,
                    spaced,
                };
                tokens.push(if b == b'"' {
                    Token::Word(lexeme)
                } else {
                    Token::Str(lexeme)
                });
                i = end + 1;
            }
            b if is_word(b) => {
                let start = i;
                while i < bytes.len() && is_word(bytes[i]) {
                    i += 1;
                }
                let raw = &statement[start..i];
                tokens.push(Token::Word(Lexeme {
                    raw: raw.to_string(),
                    value: raw.to_string(),
                    quoted: false,
                    spaced,
                }));
            }
            _ => return Err(ParseError::Syntax),
        }
    }
}

/// The index of the quote that closes the one at `open`, skipping doubled quotes.
fn closing_quote(bytes: &[u8], open: usize) -> Option<usize> {
    let q = bytes[open];
    let mut i = open + 1;
    loop {
        let at = i + bytes.get(i..)?.iter().position(|&b| b == q)?;
        if bytes.get(at + 1) == Some(&q) {
            i = at + 2;
        } else {
            return Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Command {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e:?}"))
    }

    fn db(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    #[test]
    fn every_show_subject_parses_in_any_case() {
        for &show in Show::ALL {
            assert_eq!(ok(&format!("SHOW {}", show.name())), Command::Show(show));
            assert_eq!(
                ok(&format!("show {}", show.name().to_uppercase())),
                Command::Show(show)
            );
            assert_eq!(ok(&format!("SeLeCt {}", show.name())), Command::Show(show));
        }
        assert_eq!(ok("SHOW \"pools\""), Command::Show(Show::Pools));
        assert_eq!(ok(" \t\r\nSHOW\n\tPOOLS \n"), Command::Show(Show::Pools));
    }

    #[test]
    fn fake_settings_are_shown_by_select_too() {
        let Command::ShowParam(p) = ok("SHOW client_encoding") else {
            panic!()
        };
        assert_eq!((p.name, p.value), ("client_encoding", "UTF-8"));
        let Command::ShowParam(p) = ok("select TimeZone") else {
            panic!()
        };
        assert_eq!(p.value, "GMT");
        for name in [
            "default_transaction_isolation",
            "standard_conforming_strings",
            "DateStyle",
            "extra_float_digits",
        ] {
            assert!(matches!(ok(&format!("SHOW {name}")), Command::ShowParam(_)));
        }
    }

    #[test]
    fn unknown_show_subjects_and_commands_are_syntax_errors() {
        for bad in [
            "SHOW",
            "SHOW nothing",
            "SHOW \"\"",
            "SELECT 1",
            "SHOW POOLS extra",
            "VACUUM",
            "BEGIN",
            "set",
            "SET x",
            "RELOAD now",
            "SHUTDOWN later",
            "",
            "   ",
            "SHOW POOLS;",
            "SHOW -- comment",
            "SHOW pools()",
            "SHOW\"pools\"",
            "SHOW 'pools'",
            "\"SHOW",
        ] {
            assert_eq!(parse(bad), Err(ParseError::Syntax), "{bad:?}");
        }
    }

    #[test]
    fn database_commands_take_an_optional_name() {
        assert_eq!(ok("PAUSE"), Command::Pause(None));
        assert_eq!(ok("pause sluice"), Command::Pause(db("sluice")));
        assert_eq!(ok("RESUME"), Command::Resume(None));
        assert_eq!(ok("Resume sluice"), Command::Resume(db("sluice")));
        assert_eq!(ok("RECONNECT"), Command::Reconnect(None));
        assert_eq!(ok("reconnect x1"), Command::Reconnect(db("x1")));
        assert_eq!(ok("WAIT_CLOSE"), Command::WaitClose(None));
        assert_eq!(ok("wait_close x"), Command::WaitClose(db("x")));
        assert_eq!(ok("KILL"), Command::Kill(None));
        assert_eq!(ok("kill x"), Command::Kill(db("x")));
        assert_eq!(ok("DISABLE"), Command::Disable(None));
        assert_eq!(ok("DISABLE x"), Command::Disable(db("x")));
        assert_eq!(ok("ENABLE"), Command::Enable(None));
        assert_eq!(ok("enable x"), Command::Enable(db("x")));
        // PgBouncer passes `""` on as an empty name, which means "none".
        assert_eq!(ok("PAUSE \"\""), Command::Pause(None));
    }

    #[test]
    fn names_keep_their_case_and_quotes_are_undone() {
        assert_eq!(ok("PAUSE MyDb"), Command::Pause(db("MyDb")));
        assert_eq!(ok("PAUSE \"my-db\""), Command::Pause(db("my-db")));
        assert_eq!(ok("PAUSE \"a\"\"b\""), Command::Pause(db("a\"b")));
        assert_eq!(ok("PAUSE \"semi;colon\""), Command::Pause(db("semi;colon")));
        assert_eq!(ok("\"PAUSE\" x"), Command::Pause(db("x")));
        assert_eq!(parse("PAUSE my-db"), Err(ParseError::Syntax));
        assert_eq!(parse("PAUSE \"unterminated"), Err(ParseError::Syntax));
    }

    #[test]
    fn other_commands() {
        assert_eq!(ok("RELOAD"), Command::Reload);
        assert_eq!(ok("shutdown"), Command::Shutdown(ShutdownMode::Now));
        assert_eq!(
            ok("SHUTDOWN WAIT_FOR_SERVERS"),
            Command::Shutdown(ShutdownMode::WaitForServers)
        );
        assert_eq!(
            ok("shutdown wait_for_clients"),
            Command::Shutdown(ShutdownMode::WaitForClients)
        );
        assert_eq!(ok("SUSPEND"), Command::Suspend);
        assert_eq!(ok("KILL_CLIENT 42"), Command::KillClient("42".into()));
        assert_eq!(ok("KILL_CLIENT"), Command::KillClient(String::new()));
        assert_eq!(ok("kill_client abc"), Command::KillClient("abc".into()));
    }

    #[test]
    fn set_forms() {
        let set = |k: &str, v: &str| Command::Set {
            key: k.into(),
            value: v.into(),
        };
        assert_eq!(
            ok("SET default_pool_size = 10"),
            set("default_pool_size", "10")
        );
        assert_eq!(
            ok("set default_pool_size=10"),
            set("default_pool_size", "10")
        );
        assert_eq!(
            ok("SET default_pool_size TO 10"),
            set("default_pool_size", "10")
        );
        assert_eq!(ok("SET x to 'a b'"), set("x", "a b"));
        assert_eq!(ok("SET x = 'it''s'"), set("x", "it's"));
        assert_eq!(ok("SET x = ''"), set("x", ""));
        assert_eq!(ok("SET x = \"q\"\"d\""), set("x", "q\"d"));
        assert_eq!(ok("SET \"Key\" = v"), set("Key", "v"));
        assert_eq!(ok("SET DateStyle TO ISO"), set("DateStyle", "ISO"));
        for bad in [
            "SET x = -1",
            "SET x = 1.5",
            "SET x == 1",
            "SET x 1",
            "SET = 1",
            "SET x =",
            "SET x TO",
            "SET x TOy",
            "\"SET\" x = 1",
            "SET x = 'unterminated",
            "SET 'x' = 1",
            "SET x = 1 2",
        ] {
            assert_eq!(parse(bad), Err(ParseError::Syntax), "{bad:?}");
        }
        assert_eq!(parse("SET \"\" = 1"), Err(ParseError::BadArguments));
    }

    #[test]
    fn lengths_are_limited_like_pgbouncer() {
        assert_eq!(parse("ABCDEFGHIJKLMNOP"), Err(ParseError::BadArguments));
        assert_eq!(parse("ABCDEFGHIJKLMNO"), Err(ParseError::Syntax));
        let name63 = "d".repeat(63);
        assert_eq!(ok(&format!("PAUSE {name63}")), Command::Pause(Some(name63)));
        let name64 = "d".repeat(64);
        assert_eq!(
            parse(&format!("PAUSE {name64}")),
            Err(ParseError::BadArguments)
        );
        let value255 = "v".repeat(255);
        assert!(parse(&format!("SET x = {value255}")).is_ok());
        assert_eq!(
            parse(&format!("SET x = {}", "v".repeat(256))),
            Err(ParseError::BadArguments)
        );
    }

    #[test]
    fn statements_split_at_semicolons_outside_quotes() {
        assert_eq!(split_statements("SHOW POOLS"), vec!["SHOW POOLS"]);
        assert_eq!(split_statements("SHOW POOLS;"), vec!["SHOW POOLS"]);
        assert_eq!(
            split_statements("SHOW POOLS; show stats ;;\n"),
            vec!["SHOW POOLS", " show stats "]
        );
        assert_eq!(
            split_statements("PAUSE \"a;b\"; SET x = ';'"),
            vec!["PAUSE \"a;b\"", " SET x = ';'"]
        );
        assert_eq!(
            split_statements("SET x = 'it''s;'; RELOAD"),
            vec!["SET x = 'it''s;'", " RELOAD"]
        );
        assert!(split_statements("").is_empty());
        assert!(split_statements(" ; ;").is_empty());
        // An unterminated quote swallows the rest; the lexer then refuses it.
        assert_eq!(
            split_statements("PAUSE \"x; RELOAD"),
            vec!["PAUSE \"x; RELOAD"]
        );
    }

    #[test]
    fn tags() {
        assert_eq!(ok("SHOW POOLS").tag(), "SHOW");
        assert_eq!(ok("SHOW timezone").tag(), "SHOW");
        assert_eq!(ok("WAIT_CLOSE").tag(), "WAIT_CLOSE");
        assert_eq!(ok("KILL_CLIENT 1").tag(), "KILL_CLIENT");
        assert_eq!(ok("SET a = b").tag(), "SET");
        assert_eq!(ok("SHUTDOWN").tag(), "SHUTDOWN");
    }

    proptest::proptest! {
        /// Any statement is a command or a parse error; never a panic.
        #[test]
        fn any_statement_is_a_command_or_an_error(statement in "\\PC{0,60}") {
            let _ = parse(&statement);
        }

        /// Keywords are matched in any letter case, as PgBouncer's are.
        #[test]
        fn keywords_in_any_case_mean_the_same(
            statement in proptest::sample::select(vec![
                "SHOW POOLS", "SHOW STATS_TOTALS", "SHOW SERVERS", "PAUSE", "RESUME",
                "RELOAD", "KILL_CLIENT 5", "WAIT_CLOSE", "SHUTDOWN WAIT_FOR_CLIENTS",
            ]),
            upper in proptest::collection::vec(proptest::bool::ANY, 30),
        ) {
            let mixed: String = statement
                .chars()
                .zip(upper.iter().cycle())
                .map(|(c, &up)| if up { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
                .collect();
            proptest::prop_assert_eq!(parse(&mixed), parse(statement));
        }
    }
}
