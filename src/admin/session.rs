//! One console connection: read messages, answer queries, until the client
//! leaves.
//!
//! Only the simple query protocol is served. A message of the extended
//! protocol gets PgBouncer's error, and — unlike PgBouncer, which drops the
//! connection — the session then skips messages up to the next Sync and answers
//! that with ReadyForQuery, as PostgreSQL does after an error in an extended
//! query, so the client can go on with simple queries.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::protocol::backend::put_ready_for_query;
use crate::protocol::error::{put_error, sqlstate, Severity};
use crate::protocol::io::MessageReader;
use crate::protocol::{tag, ProtocolError};

use super::command::{parse, split_statements, ParseError};
use super::exec::{AdminError, Console, Reply, CONSOLE_ERROR};
use super::wire::{put_command_complete, put_message};

/// The longest message the console reads. Console statements are short
/// (PgBouncer refuses arguments over 64 bytes and SET values over 256); a
/// larger message is not a console command, and the limit keeps a client from
/// making the pooler allocate at will.
pub const MAX_MESSAGE: usize = 64 * 1024;

/// What the loop does after a message.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Continue,
    Close,
}

/// Serve `stream` until Terminate, EOF, an I/O error or an immediate SHUTDOWN.
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    console: &Console,
    stream: &mut S,
    mut reader: MessageReader,
) {
    let mut input = BytesMut::new();
    let mut out = BytesMut::with_capacity(4096);
    // Set after an extended-protocol message was refused, until the next Sync.
    let mut skipping = false;
    loop {
        let message_tag = match reader.read_message(stream, &mut input, MAX_MESSAGE).await {
            Ok(t) => t,
            Err(ProtocolError::Eof) => return,
            Err(e) => {
                log::info!("admin console ({}): closing: {e}", console.user);
                put_error(&mut out, Severity::Fatal, CONSOLE_ERROR, &e.to_string());
                let _ = write_all(stream, &out).await;
                return;
            }
        };
        let flow = match message_tag {
            tag::TERMINATE => return,
            // As PgBouncer does, disable_pqexec holds for the console too,
            // which speaks nothing else.
            tag::QUERY if console.shared.config.load().general.disable_pqexec => {
                log::info!("admin console ({}): PQexec disallowed", console.user);
                put_error(
                    &mut out,
                    Severity::Fatal,
                    CONSOLE_ERROR,
                    "PQexec disallowed",
                );
                Flow::Close
            }
            tag::QUERY if !skipping => query(console, &input, &mut out).await,
            tag::SYNC => {
                skipping = false;
                put_ready_for_query(&mut out, b'I');
                Flow::Continue
            }
            _ if skipping => Flow::Continue,
            tag::PARSE | tag::BIND | tag::EXECUTE => {
                skipping = true;
                refuse(
                    console,
                    &mut out,
                    "extended query protocol not supported by admin console",
                );
                Flow::Continue
            }
            other => {
                // Describe, Close and Flush only come inside an extended query:
                // skip to its Sync. Anything else stands alone.
                let extended = matches!(other, tag::DESCRIBE | tag::CLOSE | tag::FLUSH);
                skipping = extended;
                refuse(
                    console,
                    &mut out,
                    &format!("unsupported packet type for admin console: {other}"),
                );
                if !extended {
                    put_ready_for_query(&mut out, b'I');
                }
                Flow::Continue
            }
        };
        if !out.is_empty() {
            if let Err(e) = write_all(stream, &out).await {
                log::debug!("admin console ({}): write failed: {e}", console.user);
                return;
            }
            out.clear();
        }
        if flow == Flow::Close {
            return;
        }
    }
}

async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, out: &[u8]) -> std::io::Result<()> {
    stream.write_all(out).await?;
    stream.flush().await
}

fn refuse(console: &Console, out: &mut BytesMut, message: &str) {
    log::info!("admin console ({}): {message}", console.user);
    put_error(out, Severity::Error, CONSOLE_ERROR, message);
}

fn put_admin_error(console: &Console, out: &mut BytesMut, e: &AdminError) {
    log::info!("admin console ({}): {}", console.user, e.message);
    put_message(
        out,
        Severity::Error,
        e.code,
        &e.message,
        e.detail.as_deref(),
    );
}

/// One Query message: its statements in order, stopping at the first error,
/// then one ReadyForQuery.
async fn query(console: &Console, body: &[u8], out: &mut BytesMut) -> Flow {
    let Some(end) = body.iter().position(|&b| b == 0) else {
        // PgBouncer drops a client whose query is not a C string.
        put_error(out, Severity::Fatal, CONSOLE_ERROR, "incomplete query");
        return Flow::Close;
    };
    let query = String::from_utf8_lossy(&body[..end]);
    log::debug!("admin console ({}): query: {query}", console.user);
    let statements = split_statements(&query);
    if statements.is_empty() {
        put_admin_error(console, out, &AdminError::invalid_command(&query));
    }
    for statement in &statements {
        // A lone statement is quoted back as the whole query, trailing `;`
        // included, as PgBouncer does; within several, the one that failed.
        let shown = if statements.len() == 1 {
            &*query
        } else {
            statement.trim_matches([' ', '\t', '\r', '\n'])
        };
        let command = match parse(statement) {
            Ok(command) => command,
            Err(ParseError::Syntax) => {
                put_admin_error(console, out, &AdminError::invalid_command(shown));
                break;
            }
            Err(ParseError::BadArguments) => {
                put_admin_error(console, out, &AdminError::new("bad arguments"));
                break;
            }
        };
        match console.run(command).await {
            Reply::Rows(rows) => {
                rows.encode(out);
                put_command_complete(out, "SHOW");
            }
            Reply::Notice {
                message,
                detail,
                tag,
            } => {
                put_message(
                    out,
                    Severity::Notice,
                    sqlstate::SUCCESSFUL_COMPLETION,
                    message,
                    detail,
                );
                put_command_complete(out, tag);
            }
            Reply::Done(tag) => put_command_complete(out, &tag),
            Reply::Error(e) => {
                put_admin_error(console, out, &e);
                break;
            }
            Reply::Hangup => return Flow::Close,
        }
    }
    put_ready_for_query(out, b'I');
    Flow::Continue
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, DuplexStream};

    use super::*;
    use crate::admin::Role;
    use crate::config::Config;
    use crate::protocol::error::parse_error_fields;
    use crate::shared::Shared;

    fn shared() -> Arc<Shared> {
        let config = Config::from_text(
            Path::new("/tmp/pgsluice-admin-session-test.ini"),
            "[pgbouncer]\nadmin_users = admin\nstats_users = stats\n\n[databases]\nsluice = host=127.0.0.1 port=1\n",
        )
        .unwrap();
        Shared::new(config, Default::default(), Default::default(), None, 0)
    }

    /// A console on one end of an in-memory pipe; the test speaks on the other.
    fn start(role: Role) -> DuplexStream {
        let (mut ours, theirs) = tokio::io::duplex(1 << 20);
        let console = Console {
            shared: shared(),
            role,
            user: "tester".into(),
        };
        tokio::spawn(async move { run(&console, &mut ours, MessageReader::new()).await });
        theirs
    }

    async fn send(stream: &mut DuplexStream, message_tag: u8, body: &[u8]) {
        let mut msg = vec![message_tag];
        msg.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        msg.extend_from_slice(body);
        stream.write_all(&msg).await.unwrap();
    }

    async fn read(stream: &mut DuplexStream) -> (u8, Vec<u8>) {
        let message_tag = stream.read_u8().await.unwrap();
        let len = stream.read_i32().await.unwrap() as usize;
        let mut body = vec![0; len - 4];
        stream.read_exact(&mut body).await.unwrap();
        (message_tag, body)
    }

    /// Everything up to and including ReadyForQuery.
    async fn until_ready(stream: &mut DuplexStream) -> Vec<(u8, Vec<u8>)> {
        let mut messages = Vec::new();
        loop {
            let m = read(stream).await;
            let done = m.0 == b'Z';
            messages.push(m);
            if done {
                return messages;
            }
        }
    }

    async fn query(stream: &mut DuplexStream, sql: &str) -> Vec<(u8, Vec<u8>)> {
        let mut body = sql.as_bytes().to_vec();
        body.push(0);
        send(stream, b'Q', &body).await;
        until_ready(stream).await
    }

    fn tags(messages: &[(u8, Vec<u8>)]) -> String {
        messages.iter().map(|(t, _)| char::from(*t)).collect()
    }

    fn error_of(messages: &[(u8, Vec<u8>)]) -> (String, String) {
        let (_, body) = messages.iter().find(|(t, _)| *t == b'E').expect("an error");
        let fields = parse_error_fields(body);
        (fields.code, fields.message)
    }

    fn completions(messages: &[(u8, Vec<u8>)]) -> Vec<String> {
        messages
            .iter()
            .filter(|(t, _)| *t == b'C')
            .map(|(_, b)| String::from_utf8_lossy(&b[..b.len() - 1]).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn statements_run_in_order_with_one_ready() {
        let mut s = start(Role::Admin);
        let m = query(&mut s, "SHOW VERSION; show state;").await;
        assert_eq!(tags(&m), "TDCTDDDCZ");
        assert_eq!(m.last().unwrap().1, b"I");
        assert_eq!(completions(&m), ["SHOW", "SHOW"]);
        assert!(String::from_utf8_lossy(&m[1].1).contains("pgsluice"));
    }

    #[tokio::test]
    async fn an_error_stops_the_rest_and_the_session_goes_on() {
        let mut s = start(Role::Admin);
        let m = query(&mut s, "SHOW VERSION; VACUUM; SHOW STATE").await;
        assert_eq!(tags(&m), "TDCEZ");
        assert_eq!(
            error_of(&m),
            (
                "08P01".into(),
                "invalid command 'VACUUM', use SHOW HELP;".into()
            )
        );
        let m = query(&mut s, "show foo;").await;
        assert_eq!(
            error_of(&m).1,
            "invalid command 'show foo;', use SHOW HELP;"
        );
        let m = query(&mut s, "").await;
        assert_eq!(error_of(&m).1, "invalid command '', use SHOW HELP;");
        let m = query(
            &mut s,
            "PAUSE \"this-name-is-far-too-long-for-pgbouncer-to-accept-as-a-database\"",
        )
        .await;
        assert_eq!(error_of(&m).1, "bad arguments");
        assert_eq!(tags(&query(&mut s, "SHOW STATE").await), "TDDDCZ");
    }

    #[tokio::test]
    async fn extended_protocol_is_refused_until_sync() {
        let mut s = start(Role::Admin);
        send(&mut s, b'P', b"\0SHOW POOLS\0\0\0").await;
        send(&mut s, b'B', b"\0\0\0\0\0\0\0\0").await;
        send(&mut s, b'D', b"P\0").await;
        send(&mut s, b'E', b"\0\0\0\0\0").await;
        send(&mut s, b'S', b"").await;
        let m = until_ready(&mut s).await;
        assert_eq!(tags(&m), "EZ");
        assert_eq!(
            error_of(&m).1,
            "extended query protocol not supported by admin console"
        );
        assert_eq!(tags(&query(&mut s, "SHOW VERSION").await), "TDCZ");
        // A message that is neither protocol gets its own error and ReadyForQuery.
        send(&mut s, b'F', b"\0\0\0\0").await;
        let m = until_ready(&mut s).await;
        assert_eq!(tags(&m), "EZ");
        assert_eq!(
            error_of(&m).1,
            "unsupported packet type for admin console: 70"
        );
    }

    #[tokio::test]
    async fn stats_users_may_only_look() {
        let mut s = start(Role::Stats);
        for sql in [
            "PAUSE",
            "RESUME",
            "RELOAD",
            "KILL sluice",
            "KILL_CLIENT 1",
            "DISABLE",
            "SHUTDOWN",
            "SET default_pool_size = 5",
        ] {
            let m = query(&mut s, sql).await;
            assert_eq!(error_of(&m).1, "admin access needed", "{sql}");
        }
        for show in crate::admin::command::Show::ALL {
            let m = query(&mut s, &format!("SHOW {}", show.name())).await;
            let ok = !m.iter().any(|(t, _)| *t == b'E');
            assert_eq!(
                ok,
                *show != crate::admin::command::Show::Fds,
                "SHOW {show:?}"
            );
        }
        // The settings drivers probe are no-ops for anyone.
        let m = query(&mut s, "SET client_encoding = 'UTF8'").await;
        assert_eq!(tags(&m), "NCZ");
        assert_eq!(parse_error_fields(&m[0].1).message, "SET ignored");
        assert_eq!(completions(&m), ["SET"]);
        let m = query(&mut s, "SELECT client_encoding").await;
        assert_eq!(tags(&m), "TDCZ");
        assert_eq!(&m[1].1[2..], b"\0\0\0\x05UTF-8");
    }

    #[tokio::test]
    async fn admin_commands_and_pgbouncer_wordings() {
        let mut s = start(Role::Admin);
        let m = query(&mut s, "SET default_pool_size = 7").await;
        assert_eq!(completions(&m), ["SET default_pool_size=7"]);
        let m = query(&mut s, "SET no_such_setting = 7").await;
        assert_eq!(error_of(&m).1, "SET failed");
        for (sql, message) in [
            ("PAUSE pgbouncer", "cannot pause admin db: pgbouncer"),
            ("KILL pgsluice", "cannot kill admin db: pgsluice"),
            (
                "RECONNECT pgbouncer",
                "cannot reconnect admin db: pgbouncer",
            ),
            ("WAIT_CLOSE pgbouncer", "cannot wait in admin db: pgbouncer"),
            ("DISABLE pgbouncer", "cannot disable admin db: pgbouncer"),
            ("ENABLE pgbouncer", "cannot enable admin db: pgbouncer"),
            ("DISABLE", "a database is required"),
            ("ENABLE", "a database is required"),
            ("KILL_CLIENT abc", "invalid client pointer supplied"),
            ("RELOAD now", "invalid command 'RELOAD now', use SHOW HELP;"),
        ] {
            let m = query(&mut s, sql).await;
            assert_eq!(error_of(&m).1, message, "{sql}");
        }
        for sql in ["SUSPEND", "SHOW FDS"] {
            let m = query(&mut s, sql).await;
            assert_eq!(error_of(&m).0, "0A000", "{sql}");
            assert!(error_of(&m).1.contains("not supported"), "{sql}");
        }
        let m = query(&mut s, "DISABLE sluice; ENABLE sluice; PAUSE; RESUME").await;
        assert_eq!(completions(&m), ["DISABLE", "ENABLE", "PAUSE", "RESUME"]);
        let m = query(&mut s, "SHOW HELP").await;
        assert_eq!(tags(&m), "NCZ");
        assert!(String::from_utf8_lossy(&m[0].1).contains("KILL_CLIENT <client_id>"));
    }

    #[tokio::test]
    async fn terminate_and_oversized_messages_end_the_session() {
        let (mut ours, mut theirs) = tokio::io::duplex(1 << 20);
        let console = Console {
            shared: shared(),
            role: Role::Admin,
            user: "tester".into(),
        };
        let task =
            tokio::spawn(async move { run(&console, &mut ours, MessageReader::new()).await });
        send(&mut theirs, b'X', b"").await;
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();

        let mut s = start(Role::Admin);
        let mut header = vec![b'Q'];
        header.extend_from_slice(&((MAX_MESSAGE as i32) + 5).to_be_bytes());
        s.write_all(&header).await.unwrap();
        let (message_tag, body) = read(&mut s).await;
        assert_eq!(message_tag, b'E');
        assert_eq!(parse_error_fields(&body).severity, "FATAL");
    }
}
