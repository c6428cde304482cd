//! Generated hostile clients. Each round, three clients share one server
//! connection (`default_pool_size = 1`) and each runs a script drawn at random:
//! valid simple and extended queries mixed with transactions, errors and COPY
//! (also written whole before the server asks for its data, as pgx does),
//! random messages, impossible lengths, garbage bytes, messages cut short, and
//! one of three endings (Terminate, a plain close, a close without reading).
//!
//! After every round, whatever the scripts did:
//! - the pooler is still running and has logged no panic;
//! - every client's connection was closed by the pooler once the client said
//!   goodbye (no hung session);
//! - no client received an answer tagged for another client (each query carries
//!   a marker naming its client);
//! - the server is clean for the next client: PostgreSQL has no backend left
//!   inside a transaction, the next client's query starts a transaction of its
//!   own, and its extended queries work;
//! - the pool never had more than one server at once.
//!
//! `tests/hostile_logins.rs` does the same from the first byte of a login on.
//! The scripts come from proptest strategies with a fixed seed;
//! `PGSLUICE_HOSTILE_SEED` (a number) and `PGSLUICE_HOSTILE_ROUNDS` choose
//! others (see `hostile/mod.rs`).

mod hostile;
mod support;

use std::fmt;
use std::time::Duration;

use hostile::{
    contains, drive_rounds, ending, finish, query_message, spawn_reader, sql, Ending, Received, Sql,
};
use proptest::collection::vec;
use proptest::prelude::*;
use support::postgres::{TEST_DB, TRUST_USER};
use support::wire::{message, put_cstr, startup_packet, PROTOCOL_3_0};
use support::{wait_until, Pooler, PoolerConfig, Postgres};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// One thing a hostile client does.
#[derive(Clone)]
enum Step {
    /// A simple query (`Q`).
    Query(Sql),
    /// An extended-protocol sequence, in the generated order (which may be wrong).
    Extended(Vec<Ext>),
    /// COPY data, done or fail, whether or not a COPY is in progress.
    Copy(CopyMsg),
    /// A whole COPY FROM STDIN written at once, its data and CopyDone not
    /// waiting for the server to ask for them (as pgx sends one); over the
    /// extended protocol with a Sync behind the Execute and another after.
    CopyAhead { extended: bool },
    /// A message with any type byte and any body.
    RandomMessage { tag: u8, body: Vec<u8> },
    /// A header whose length is below the minimum or far too large.
    BadLength { tag: u8, len: i32 },
    /// Bytes with no framing at all.
    Garbage(Vec<u8>),
    /// A valid query written a few bytes at a time.
    Dribble { sql: Sql, chunk: usize },
    /// The first part of a valid message, the rest never sent.
    Truncated { sql: Sql, keep: usize },
    /// Wait before the next step.
    Pause(u64),
    /// Wait (a second at most) for the answers to everything sent so far: one
    /// ReadyForQuery for each query and Sync, and the login's.
    AwaitReady,
}

#[derive(Clone, Debug)]
enum Ext {
    Parse {
        statement: &'static str,
        sql: Sql,
    },
    Bind {
        portal: &'static str,
        statement: &'static str,
    },
    Describe {
        portal: bool,
        name: &'static str,
    },
    Execute {
        portal: &'static str,
        max_rows: i32,
    },
    Close {
        portal: bool,
        name: &'static str,
    },
    Flush,
    Sync,
}

#[derive(Clone, Copy, Debug)]
enum CopyMsg {
    Data,
    Done,
    Fail,
}

#[derive(Clone, Debug)]
struct Script {
    steps: Vec<Step>,
    ending: Ending,
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Query(sql) => write!(f, "Query({sql:?})"),
            Step::Extended(ext) => write!(f, "Extended({ext:?})"),
            Step::Copy(m) => write!(f, "Copy({m:?})"),
            Step::CopyAhead { extended } => write!(f, "CopyAhead(extended: {extended})"),
            Step::RandomMessage { tag, body } => {
                write!(f, "RandomMessage({:?}, {body:02x?})", *tag as char)
            }
            Step::BadLength { tag, len } => write!(f, "BadLength({:?}, {len})", *tag as char),
            Step::Garbage(bytes) => write!(f, "Garbage({bytes:02x?})"),
            Step::Dribble { sql, chunk } => write!(f, "Dribble({sql:?}, {chunk})"),
            Step::Truncated { sql, keep } => write!(f, "Truncated({sql:?}, {keep})"),
            Step::Pause(ms) => write!(f, "Pause({ms} ms)"),
            Step::AwaitReady => write!(f, "AwaitReady"),
        }
    }
}

/// Statement and portal names: unnamed, or one of two names (never tokio-postgres's
/// `s0`, `s1`, … that the checking client uses).
fn name() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just("h1"), Just("h2")]
}

fn ext() -> impl Strategy<Value = Ext> {
    prop_oneof![
        3 => (name(), sql()).prop_map(|(statement, sql)| Ext::Parse { statement, sql }),
        3 => (name(), name()).prop_map(|(portal, statement)| Ext::Bind { portal, statement }),
        1 => (any::<bool>(), name()).prop_map(|(portal, name)| Ext::Describe { portal, name }),
        3 => (name(), prop_oneof![Just(0), Just(1), Just(-1)])
            .prop_map(|(portal, max_rows)| Ext::Execute { portal, max_rows }),
        1 => (any::<bool>(), name()).prop_map(|(portal, name)| Ext::Close { portal, name }),
        1 => Just(Ext::Flush),
        2 => Just(Ext::Sync),
    ]
}

/// A well-formed extended query most of the time, any sequence otherwise.
fn extended() -> impl Strategy<Value = Vec<Ext>> {
    prop_oneof![
        2 => (name(), sql(), any::<bool>()).prop_map(|(statement, sql, sync)| {
            let mut seq = vec![
                Ext::Parse { statement, sql },
                Ext::Bind { portal: "", statement },
                Ext::Describe { portal: true, name: "" },
                Ext::Execute { portal: "", max_rows: 0 },
            ];
            seq.push(if sync { Ext::Sync } else { Ext::Flush });
            seq
        }),
        1 => vec(ext(), 1..6),
    ]
}

/// Type bytes of the frontend protocol and a few that mean nothing.
fn tag() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => proptest::sample::select(b"QPBDEHSCdcfFpX".to_vec()),
        1 => any::<u8>(),
    ]
}

/// Steps of a client that speaks the protocol correctly, if not sensibly.
fn valid_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => sql().prop_map(Step::Query),
        4 => extended().prop_map(Step::Extended),
        1 => prop_oneof![Just(CopyMsg::Data), Just(CopyMsg::Done), Just(CopyMsg::Fail)]
            .prop_map(Step::Copy),
        1 => any::<bool>().prop_map(|extended| Step::CopyAhead { extended }),
        1 => (sql(), 1..8usize).prop_map(|(sql, chunk)| Step::Dribble { sql, chunk }),
        2 => (0..15u64).prop_map(Step::Pause),
        4 => Just(Step::AwaitReady),
    ]
}

/// Any step, broken ones included.
fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => valid_step(),
        1 => (tag(), vec(any::<u8>(), 0..40))
            .prop_map(|(tag, body)| Step::RandomMessage { tag, body }),
        1 => (tag(), prop_oneof![-8..4i32, Just(i32::MAX), 0x4000_0000..0x7fff_ffffi32])
            .prop_map(|(tag, len)| Step::BadLength { tag, len }),
        1 => vec(any::<u8>(), 1..30).prop_map(Step::Garbage),
        1 => (sql(), 1..20usize).prop_map(|(sql, keep)| Step::Truncated { sql, keep }),
    ]
}

/// A third of the clients speak the protocol correctly and only end badly;
/// the others may send anything.
fn script() -> impl Strategy<Value = Script> {
    // A correct client waits for its answers before it ends.
    let valid = vec(valid_step(), 1..12).prop_map(|mut steps| {
        steps.push(Step::AwaitReady);
        steps
    });
    let steps = prop_oneof![1 => valid, 2 => vec(step(), 1..12)];
    (steps, ending()).prop_map(|(steps, ending)| Script { steps, ending })
}

fn ext_message(ext: &Ext, who: &str) -> Vec<u8> {
    let mut body = Vec::new();
    let tag = match ext {
        Ext::Parse { statement, sql } => {
            put_cstr(&mut body, statement);
            put_cstr(&mut body, &sql.text(who));
            body.extend(0i16.to_be_bytes());
            b'P'
        }
        Ext::Bind { portal, statement } => {
            put_cstr(&mut body, portal);
            put_cstr(&mut body, statement);
            // No parameter formats, no parameters, no result formats.
            body.extend([0u8; 6]);
            b'B'
        }
        Ext::Describe { portal, name } => {
            body.push(if *portal { b'P' } else { b'S' });
            put_cstr(&mut body, name);
            b'D'
        }
        Ext::Execute { portal, max_rows } => {
            put_cstr(&mut body, portal);
            body.extend(max_rows.to_be_bytes());
            b'E'
        }
        Ext::Close { portal, name } => {
            body.push(if *portal { b'P' } else { b'S' });
            put_cstr(&mut body, name);
            b'C'
        }
        Ext::Flush => b'H',
        Ext::Sync => b'S',
    };
    message(tag, &body)
}

fn copy_ahead(extended: bool, who: &str) -> Vec<u8> {
    let mut bytes = if extended {
        let (statement, portal) = ("", "");
        let request = [
            Ext::Parse {
                statement,
                sql: Sql::CopyIn,
            },
            Ext::Bind { portal, statement },
            Ext::Execute {
                portal,
                max_rows: 0,
            },
            Ext::Sync,
        ];
        request.iter().flat_map(|e| ext_message(e, who)).collect()
    } else {
        query_message(Sql::CopyIn, who)
    };
    bytes.extend(copy_message(CopyMsg::Data, who));
    bytes.extend(copy_message(CopyMsg::Done, who));
    if extended {
        bytes.extend(ext_message(&Ext::Sync, who));
    }
    bytes
}

fn copy_message(m: CopyMsg, who: &str) -> Vec<u8> {
    match m {
        CopyMsg::Data => message(b'd', format!("{who}\n").as_bytes()),
        CopyMsg::Done => message(b'c', b""),
        CopyMsg::Fail => message(b'f', b"hostile client gave up\0"),
    }
}

/// Run one script as one client; returns what it received.
async fn run_client(port: u16, who: String, script: Script) -> Result<Received, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .write_all(&startup_packet(
            PROTOCOL_3_0,
            &[("user", TRUST_USER), ("database", TEST_DB)],
        ))
        .await
        .map_err(|e| format!("startup: {e}"))?;
    let (reader, mut writer) = stream.into_split();
    let (received, mut progress, reading) = spawn_reader(reader);
    let mut sync_points = 1;
    for step in &script.steps {
        sync_points += match step {
            // At least one: an extended COPY's first Sync is answered only
            // if the COPY failed to start.
            Step::Query(_) | Step::Dribble { .. } | Step::CopyAhead { .. } => 1,
            Step::Extended(seq) => seq.iter().filter(|e| matches!(e, Ext::Sync)).count(),
            _ => 0,
        };
        let bytes = match step {
            Step::Query(sql) => query_message(*sql, &who),
            Step::Extended(seq) => seq.iter().flat_map(|e| ext_message(e, &who)).collect(),
            Step::Copy(m) => copy_message(*m, &who),
            Step::CopyAhead { extended } => copy_ahead(*extended, &who),
            Step::RandomMessage { tag, body } => message(*tag, body),
            Step::BadLength { tag, len } => {
                let mut header = vec![*tag];
                header.extend(len.to_be_bytes());
                header
            }
            Step::Garbage(bytes) => bytes.clone(),
            Step::Dribble { sql, chunk } => {
                for piece in query_message(*sql, &who).chunks(*chunk) {
                    if writer.write_all(piece).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                continue;
            }
            Step::Truncated { sql, keep } => {
                let whole = query_message(*sql, &who);
                whole[..(*keep).min(whole.len() - 1)].to_vec()
            }
            Step::Pause(ms) => {
                tokio::time::sleep(Duration::from_millis(*ms)).await;
                continue;
            }
            Step::AwaitReady => {
                let answered = progress.wait_for(|p| p.ready >= sync_points);
                let _ = tokio::time::timeout(Duration::from_secs(1), answered).await;
                continue;
            }
        };
        // The pooler may have closed the connection already (after a protocol
        // error); the script carries on writing into the void, as a hostile
        // client would.
        let _ = writer.write_all(&bytes).await;
    }

    finish(writer, reading, received, script.ending).await
}

/// How many clients got an answer carrying their marker, and how many were
/// refused for a protocol violation (SQLSTATE 08P01).
#[derive(Default)]
struct Tally {
    answered: usize,
    refused: usize,
}

impl Tally {
    fn add(&mut self, received: &[u8], own: &str) {
        self.answered += usize::from(contains(received, own.as_bytes()));
        self.refused += usize::from(contains(received, b"C08P01\0"));
    }
}

/// The backends of the test user inside a transaction, and all of them.
fn backends(pg: &Postgres) -> (u32, u32) {
    let row = pg.sql(&format!(
        "SELECT count(*) FILTER (WHERE state LIKE 'idle in transaction%'), count(*) \
         FROM pg_stat_activity WHERE usename = '{TRUST_USER}' \
         AND backend_type = 'client backend'"
    ));
    let (a, b) = row.split_once('|').expect("two columns");
    (a.parse().unwrap(), b.parse().unwrap())
}

/// After a round: the next client finds a clean server.
async fn check_server_is_clean(pooler: &Pooler, pg: &Postgres) -> Result<(), String> {
    if !wait_until(Duration::from_secs(15), || backends(pg).0 == 0) {
        return Err(format!(
            "a backend stayed inside a transaction: {:?}",
            backends(pg)
        ));
    }
    let client = pooler
        .connect(TRUST_USER, TEST_DB, None)
        .await
        .map_err(|e| format!("the next client cannot log in: {e}"))?;
    // A simple query: in the extended protocol, statement_timestamp() moves on
    // from Bind (which starts the transaction) to Execute.
    let messages = pooler
        .within(
            Duration::from_secs(30),
            "the next client's query",
            client.simple_query(
                "SELECT now() = statement_timestamp() AS fresh, \
                 txid_current_if_assigned() IS NULL AS no_xid",
            ),
        )
        .await
        .map_err(|e| {
            format!(
                "the next client's query failed: {}",
                support::db_message(&e)
            )
        })?;
    let fresh = support::rows_by_name(&messages)
        .first()
        .map(|row| row.values().all(|v| v.as_deref() == Some("t")));
    if fresh != Some(true) {
        return Err(format!(
            "the next client's query ran inside a transaction left open: {:?}",
            support::rows_by_name(&messages)
        ));
    }
    let extended = pooler
        .within(
            Duration::from_secs(30),
            "the next client's extended query",
            client.query_one("SELECT $1::int4 + 1", &[&6i32]),
        )
        .await
        .map_err(|e| {
            format!(
                "the next client's extended query failed: {}",
                support::db_message(&e)
            )
        })?;
    if extended.get::<_, i32>(0) != 7 {
        return Err("the next client's extended query got a wrong answer".into());
    }
    let (in_transaction, all) = backends(pg);
    if all > 1 || in_transaction > 0 {
        return Err(format!(
            "with a pool of one: {all} backends, {in_transaction} inside a transaction"
        ));
    }
    Ok(())
}

fn run_rounds(pool_mode: &str) {
    let pg = Postgres::start();
    pg.sql_db(
        TEST_DB,
        "CREATE TABLE hostile_t(who text); GRANT ALL ON hostile_t TO PUBLIC",
    );
    let mut cfg = PoolerConfig::new(&pg);
    cfg.set("pool_mode", pool_mode)
        .set("default_pool_size", "1")
        .set("auth_type", "trust")
        // Clients queue for the one server while another holds it in a script.
        .set("query_wait_timeout", "60");
    let mut pooler = Pooler::start(&cfg);
    let mut tally = Tally::default();
    let clients = drive_rounds(
        &format!("{pool_mode} pooling"),
        &mut pooler,
        script(),
        run_client,
        |bytes, own| tally.add(bytes, own),
        |runtime, pooler| runtime.block_on(check_server_is_clean(pooler, &pg)),
    );
    // The scripts reached both sides of the pooler: valid queries were answered,
    // broken input was refused with a protocol violation.
    assert!(
        tally.answered * 8 >= clients && tally.refused * 8 >= clients,
        "of {clients} clients, {} got an answer to their own query and {} a \
         protocol violation: the scripts do not exercise the pooler",
        tally.answered,
        tally.refused
    );
}

#[test]
fn hostile_clients_in_transaction_pooling() {
    run_rounds("transaction");
}

#[test]
fn hostile_clients_in_session_pooling() {
    run_rounds("session");
}
