//! Generated hostile clients. Each round, three clients share one server
//! connection (`default_pool_size = 1`) and each runs a script drawn at random:
//! valid simple and extended queries mixed with transactions, errors and COPY,
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
//! `hostile_logins` does the same from the first byte on (md5 auth): startup
//! packets of any version and parameters, SSL and GSSENC requests, cancel
//! requests, right, wrong and random passwords, random SASL messages, garbage,
//! and queries after the login or in place of it. After every round both an md5
//! and a SCRAM user still log in, with `max_client_conn = 40` so that login slots
//! leaked by earlier rounds would soon refuse them; the other checks are those
//! above that do not need a login.
//!
//! The scripts come from proptest strategies with a fixed seed, so a run is
//! reproducible; `PGSLUICE_HOSTILE_SEED` (a number) and `PGSLUICE_HOSTILE_ROUNDS`
//! choose others. There is no shrinking: the pooler keeps its state from round to
//! round, so a failure reports the round's scripts as they ran.

mod support;

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use support::postgres::{TEST_DB, TRUST_USER};
use support::wire::{md5_password_response, message, put_cstr, startup_packet, PROTOCOL_3_0};
use support::{tail, wait_until, Pooler, PoolerConfig, Postgres};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

const CLIENTS_PER_ROUND: usize = 3;
const DEFAULT_ROUNDS: u32 = 100;
const DEFAULT_SEED: u64 = 0x5eed_f00d;
/// How long the pooler may take to close a connection its client has left.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

/// One thing a hostile client does.
#[derive(Clone)]
enum Step {
    /// A simple query (`Q`).
    Query(Sql),
    /// An extended-protocol sequence, in the generated order (which may be wrong).
    Extended(Vec<Ext>),
    /// COPY data, done or fail, whether or not a COPY is in progress.
    Copy(CopyMsg),
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

#[derive(Clone, Copy, Debug)]
enum Sql {
    Marker,
    Begin,
    Commit,
    Rollback,
    DivisionByZero,
    SyntaxError,
    Insert,
    Sleep,
    CopyIn,
    CopyOut,
    BigRow,
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

#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Terminate, then close.
    Terminate,
    /// Close without Terminate.
    Close,
    /// Close without Terminate and without reading what is left.
    Abandon,
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

impl Sql {
    /// The SQL text for client `who`; the marker query names the client.
    fn text(self, who: &str) -> String {
        match self {
            Sql::Marker => format!("SELECT '{who}'"),
            Sql::Begin => "BEGIN".into(),
            Sql::Commit => "COMMIT".into(),
            Sql::Rollback => "ROLLBACK".into(),
            Sql::DivisionByZero => "SELECT 1/0".into(),
            Sql::SyntaxError => "SELEKT 1".into(),
            Sql::Insert => format!("INSERT INTO hostile_t VALUES ('{who}')"),
            Sql::Sleep => "SELECT pg_sleep(0.005)".into(),
            Sql::CopyIn => "COPY hostile_t FROM STDIN".into(),
            Sql::CopyOut => format!("COPY (SELECT '{who}' FROM generate_series(1, 500)) TO STDOUT"),
            Sql::BigRow => format!("SELECT '{who}' || repeat('x', 200000)"),
        }
    }
}

fn sql() -> impl Strategy<Value = Sql> {
    prop_oneof![
        4 => Just(Sql::Marker),
        2 => Just(Sql::Begin),
        1 => Just(Sql::Commit),
        1 => Just(Sql::Rollback),
        1 => Just(Sql::DivisionByZero),
        1 => Just(Sql::SyntaxError),
        2 => Just(Sql::Insert),
        1 => Just(Sql::Sleep),
        1 => Just(Sql::CopyIn),
        1 => Just(Sql::CopyOut),
        1 => Just(Sql::BigRow),
    ]
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
    let ending = prop_oneof![
        Just(Ending::Terminate),
        Just(Ending::Close),
        Just(Ending::Abandon)
    ];
    // A correct client waits for its answers before it ends.
    let valid = vec(valid_step(), 1..12).prop_map(|mut steps| {
        steps.push(Step::AwaitReady);
        steps
    });
    let steps = prop_oneof![1 => valid, 2 => vec(step(), 1..12)];
    (steps, ending).prop_map(|(steps, ending)| Script { steps, ending })
}

fn query_message(sql: Sql, who: &str) -> Vec<u8> {
    let mut body = Vec::new();
    put_cstr(&mut body, &sql.text(who));
    message(b'Q', &body)
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

fn copy_message(m: CopyMsg, who: &str) -> Vec<u8> {
    match m {
        CopyMsg::Data => message(b'd', format!("{who}\n").as_bytes()),
        CopyMsg::Done => message(b'c', b""),
        CopyMsg::Fail => message(b'f', b"hostile client gave up\0"),
    }
}

/// The marker every query of client `index` in round `round` carries. The
/// trailing `|` keeps `1.1` from matching as the start of `1.10`.
fn marker(round: u32, index: usize) -> String {
    format!("mk:{round}.{index}|")
}

/// What the pooler sent a client.
#[derive(Default)]
struct Received {
    bytes: Vec<u8>,
}

/// Follows the message framing of what the pooler sends.
#[derive(Default)]
struct Frames {
    header: Vec<u8>,
    body_left: usize,
}

impl Frames {
    /// Take in the next bytes; returns how many messages of type `tag` began.
    fn feed(&mut self, mut bytes: &[u8], tag: u8) -> usize {
        let mut seen = 0;
        while !bytes.is_empty() {
            if self.body_left > 0 {
                let n = self.body_left.min(bytes.len());
                self.body_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.header.len() == 5 {
                let len = i32::from_be_bytes(self.header[1..5].try_into().unwrap());
                seen += usize::from(self.header[0] == tag);
                self.body_left = (len as usize).saturating_sub(4);
                self.header.clear();
            }
        }
        seen
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
            Step::Query(_) | Step::Dribble { .. } => 1,
            Step::Extended(seq) => seq.iter().filter(|e| matches!(e, Ext::Sync)).count(),
            _ => 0,
        };
        let bytes = match step {
            Step::Query(sql) => query_message(*sql, &who),
            Step::Extended(seq) => seq.iter().flat_map(|e| ext_message(e, &who)).collect(),
            Step::Copy(m) => copy_message(*m, &who),
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

/// What a client's reader has seen so far.
#[derive(Clone, Copy, Default)]
struct Progress {
    bytes: usize,
    /// ReadyForQuery messages, the login's included (meaningless before the
    /// login, where answers to SSLRequest are single bytes).
    ready: usize,
}

/// Read everything the pooler sends into `Received`, reporting progress.
fn spawn_reader(
    mut reader: OwnedReadHalf,
) -> (
    Arc<Mutex<Received>>,
    tokio::sync::watch::Receiver<Progress>,
    tokio::task::JoinHandle<()>,
) {
    let received = Arc::new(Mutex::new(Received::default()));
    let sink = received.clone();
    let (progress, watch) = tokio::sync::watch::channel(Progress::default());
    let reading = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        let mut frames = Frames::default();
        loop {
            match reader.read(&mut buf).await {
                // Closed: the reading task ends, which `finish` waits for.
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    sink.lock().unwrap().bytes.extend_from_slice(&buf[..n]);
                    let ready = frames.feed(&buf[..n], b'Z');
                    progress.send_modify(|p| {
                        p.bytes += n;
                        p.ready += ready;
                    });
                }
            }
        }
    });
    (received, watch, reading)
}

/// End a client's script its way; returns what it received.
async fn finish(
    mut writer: OwnedWriteHalf,
    reading: tokio::task::JoinHandle<()>,
    received: Arc<Mutex<Received>>,
    ending: Ending,
) -> Result<Received, String> {
    match ending {
        Ending::Terminate | Ending::Close => {
            if matches!(ending, Ending::Terminate) {
                let _ = writer.write_all(&message(b'X', b"")).await;
            }
            let _ = writer.shutdown().await;
            if tokio::time::timeout(CLOSE_WAIT, reading).await.is_err() {
                return Err(format!(
                    "the pooler did not close the connection within {CLOSE_WAIT:?} \
                     after the client's {ending:?}"
                ));
            }
        }
        Ending::Abandon => {
            reading.abort();
            drop(writer);
        }
    }
    let mut received = received.lock().unwrap();
    Ok(std::mem::take(&mut *received))
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

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every marker in `bytes` must be `own`; returns the first foreign one.
fn foreign_marker(bytes: &[u8], own: &str) -> Option<String> {
    let mut rest = bytes;
    while let Some(at) = rest.windows(3).position(|w| w == b"mk:") {
        let candidate = &rest[at..];
        if !candidate.starts_with(own.as_bytes()) {
            let end = candidate.len().min(own.len() + 4);
            return Some(String::from_utf8_lossy(&candidate[..end]).into_owned());
        }
        rest = &candidate[3..];
    }
    None
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

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value}: not a number")),
    )
}

/// A proptest runner for `PGSLUICE_HOSTILE_ROUNDS` cases from
/// `PGSLUICE_HOSTILE_SEED` (or the defaults), without shrinking or persistence;
/// also the seed and the number of rounds.
fn seeded_runner() -> (TestRunner, u64, u32) {
    let seed = env_number("PGSLUICE_HOSTILE_SEED").unwrap_or(DEFAULT_SEED);
    let rounds = env_number("PGSLUICE_HOSTILE_ROUNDS").unwrap_or(DEFAULT_ROUNDS.into()) as u32;
    let config = Config {
        cases: rounds,
        max_shrink_iters: 0,
        failure_persistence: None,
        ..Config::default()
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    (TestRunner::new_with_rng(config, rng), seed, rounds)
}

/// The rounds of one test: each round draws a script per client from
/// `script`, runs the clients at once with `client` (given the pooler's port,
/// the client's marker and its script), checks that no client received another's
/// marker, hands each client's bytes and marker to `count`, then runs
/// `check_after` (on the rounds' runtime) and looks for a panic in the pooler's log. Panics with the seed
/// and the round's scripts on the first failure; returns the number of clients.
fn drive_rounds<T, S, F>(
    what: &str,
    pooler: &mut Pooler,
    script: S,
    client: impl Fn(u16, String, T) -> F,
    mut count: impl FnMut(&[u8], &str),
    check_after: impl Fn(&tokio::runtime::Runtime, &Pooler) -> Result<(), String>,
) -> usize
where
    T: Clone + fmt::Debug,
    S: Strategy<Value = T>,
    F: Future<Output = Result<Received, String>> + Send + 'static,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut runner, seed, rounds) = seeded_runner();
    let round_number = Mutex::new(0u32);
    let count = Mutex::new(&mut count);
    let outcome = runner.run(&vec(script, CLIENTS_PER_ROUND), |scripts| {
        let round = {
            let mut n = round_number.lock().unwrap();
            *n += 1;
            *n
        };
        let fail = |e: String| TestCaseError::fail(format!("round {round}: {e}"));
        let results = runtime.block_on(async {
            let clients = scripts.iter().enumerate().map(|(i, script)| {
                tokio::spawn(client(pooler.port, marker(round, i), script.clone()))
            });
            futures_util::future::join_all(clients).await
        });
        for (i, result) in results.into_iter().enumerate() {
            let received = result
                .map_err(|e| fail(format!("client {i}: {e}")))?
                .map_err(|e| fail(format!("client {i}: {e}")))?;
            let own = marker(round, i);
            if let Some(other) = foreign_marker(&received.bytes, &own) {
                return Err(fail(format!(
                    "client {i} received an answer for another client: {other}"
                )));
            }
            (count.lock().unwrap())(&received.bytes, &own);
        }
        check_after(&runtime, pooler).map_err(|e| fail(format!("after it: {e}")))?;
        let log = pooler.log();
        if log.contains("panicked") {
            return Err(fail(format!(
                "the pooler logged a panic:\n{}",
                tail(&log, 60)
            )));
        }
        Ok(())
    });
    assert!(pooler.is_running(), "the pooler is still running");
    if let Err(e) = outcome {
        panic!(
            "seed {seed} ({what}): {e}\n--- pgsluice log (tail) ---\n{}",
            tail(&pooler.log(), 80)
        );
    }
    assert_eq!(*round_number.lock().unwrap(), rounds, "every round ran");
    rounds as usize * CLIENTS_PER_ROUND
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

// ---------------------------------------------------------------------------
// Hostile logins: the same rounds before and during the login.

/// One thing a client does from its first byte on.
#[derive(Clone, Debug)]
enum Hello {
    SslRequest,
    GssEncRequest,
    /// A CancelRequest with a key that is probably no one's.
    Cancel {
        pid: i32,
        key: i32,
    },
    /// A startup packet: any protocol version, any parameters.
    Startup {
        version: i32,
        params: Vec<(String, String)>,
    },
    /// A PasswordMessage: the right md5 answer to the last challenge, or not.
    Password(Answer),
    SaslInitial {
        mechanism: String,
        data: Vec<u8>,
    },
    SaslResponse(Vec<u8>),
    /// A bare length, as a startup packet begins.
    BadLength(i32),
    Garbage(Vec<u8>),
    /// A marker query, as if logged in.
    Query(Sql),
    /// Wait (300 ms at most) for the pooler to send something more.
    Wait,
}

#[derive(Clone, Debug)]
enum Answer {
    Right,
    Wrong,
    Bytes(Vec<u8>),
}

#[derive(Clone, Debug)]
struct LoginScript {
    steps: Vec<Hello>,
    ending: Ending,
}

const SSL_REQUEST_CODE: i32 = 80_877_103;
const GSSENC_REQUEST_CODE: i32 = 80_877_104;
const CANCEL_REQUEST_CODE: i32 = 80_877_102;

/// Users with a password the client knows (auth_file holds the md5 hash of the
/// first and the plain password of the second) and others.
fn login_user() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(support::postgres::MD5_USER.to_string()),
        2 => Just(TRUST_USER.to_string()),
        1 => Just(support::postgres::SCRAM_USER.to_string()),
        1 => Just("nobody_here".to_string()),
        1 => "[a-z\\x{e9}]{0,8}",
    ]
}

fn startup() -> impl Strategy<Value = Hello> {
    let database = prop_oneof![
        4 => Just(Some(TEST_DB.to_string())),
        1 => Just(Some("pgbouncer".to_string())),
        1 => Just(Some("no_such_db".to_string())),
        1 => Just(None),
    ];
    let extra = vec(
        prop_oneof![
            (Just("application_name".to_string()), "\\PC{0,20}"),
            (
                Just("client_encoding".to_string()),
                "UTF8|SQL_ASCII|LATIN1|bogus"
            ),
            (
                Just("options".to_string()),
                "-c statement_timeout=[0-9]{1,4}"
            ),
            (Just("replication".to_string()), "true|database|0"),
            ("[a-z_]{1,12}", "\\PC{0,12}"),
        ],
        0..3,
    );
    let version = prop_oneof![
        8 => Just(PROTOCOL_3_0),
        1 => Just(131_072i32),
        1 => Just(196_610i32),
        1 => any::<i32>(),
    ];
    (version, login_user(), database, extra).prop_map(|(version, user, database, extra)| {
        let mut params = vec![("user".to_string(), user)];
        params.extend(database.map(|d| ("database".to_string(), d)));
        params.extend(extra);
        Hello::Startup { version, params }
    })
}

fn hello() -> impl Strategy<Value = Hello> {
    prop_oneof![
        1 => Just(Hello::SslRequest),
        1 => Just(Hello::GssEncRequest),
        1 => (any::<i32>(), any::<i32>()).prop_map(|(pid, key)| Hello::Cancel { pid, key }),
        4 => startup(),
        3 => prop_oneof![
            3 => Just(Answer::Right),
            1 => Just(Answer::Wrong),
            1 => vec(any::<u8>(), 0..40).prop_map(Answer::Bytes),
        ]
        .prop_map(Hello::Password),
        1 => ("SCRAM-SHA-256|SCRAM-SHA-256-PLUS|[A-Z-]{0,12}", vec(any::<u8>(), 0..60))
            .prop_map(|(mechanism, data)| Hello::SaslInitial { mechanism, data }),
        1 => vec(any::<u8>(), 0..60).prop_map(Hello::SaslResponse),
        1 => prop_oneof![-8..8i32, Just(i32::MAX), 10_001..0x7fff_ffffi32].prop_map(Hello::BadLength),
        1 => vec(any::<u8>(), 1..30).prop_map(Hello::Garbage),
        2 => sql().prop_map(Hello::Query),
        4 => Just(Hello::Wait),
    ]
}

/// Half the clients begin as a client should (a startup, then the right
/// password, or a wrong one) before going their own way; the others do
/// anything from the first byte.
fn login_script() -> impl Strategy<Value = LoginScript> {
    let ending = prop_oneof![
        Just(Ending::Terminate),
        Just(Ending::Close),
        Just(Ending::Abandon)
    ];
    let proper_startup = (
        prop_oneof![Just(support::postgres::MD5_USER), Just(TRUST_USER)],
        "\\PC{0,20}",
    )
        .prop_map(|(user, application_name)| Hello::Startup {
            version: PROTOCOL_3_0,
            params: vec![
                ("user".into(), user.into()),
                ("database".into(), TEST_DB.into()),
                ("application_name".into(), application_name),
            ],
        });
    let answer = prop_oneof![3 => Just(Answer::Right), 1 => Just(Answer::Wrong)];
    let proper = (proper_startup, answer, vec(hello(), 0..6)).prop_map(|(first, answer, rest)| {
        let mut steps = vec![first, Hello::Wait, Hello::Password(answer), Hello::Wait];
        steps.extend(rest);
        steps
    });
    let steps = prop_oneof![proper, vec(hello(), 1..10)];
    (steps, ending).prop_map(|(steps, ending)| LoginScript { steps, ending })
}

/// The password the client knows for `user`, if any.
fn password_of(user: &str) -> Option<&'static str> {
    match user {
        u if u == support::postgres::MD5_USER => Some(support::postgres::MD5_PASSWORD),
        u if u == TRUST_USER => Some(support::pooler::TRUST_PASSWORD),
        u if u == support::postgres::SCRAM_USER => Some(support::postgres::SCRAM_PASSWORD),
        _ => None,
    }
}

/// The salt of the last md5 challenge (AuthenticationMD5Password) in what the
/// pooler sent, reading messages after the first `skip` bytes (the one-byte
/// answers to SSLRequest and GSSENCRequest).
fn md5_salt(bytes: &[u8], skip: usize) -> Option<[u8; 4]> {
    let mut at = skip;
    let mut salt = None;
    while at + 5 <= bytes.len() {
        let len = i32::from_be_bytes(bytes[at + 1..at + 5].try_into().unwrap());
        if len < 4 || at + 1 + len as usize > bytes.len() {
            break;
        }
        let body = &bytes[at + 5..at + 1 + len as usize];
        if bytes[at] == b'R' && body.len() == 8 && body[..4] == [0, 0, 0, 5] {
            salt = Some(body[4..8].try_into().unwrap());
        }
        at += 1 + len as usize;
    }
    salt
}

fn special_request(code: i32, rest: &[u8]) -> Vec<u8> {
    let mut packet = ((8 + rest.len()) as i32).to_be_bytes().to_vec();
    packet.extend(code.to_be_bytes());
    packet.extend(rest);
    packet
}

/// Run one login script as one client; returns what it received.
async fn run_login_client(port: u16, who: String, script: LoginScript) -> Result<Received, String> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (reader, mut writer) = stream.into_split();
    let (received, mut progress, reading) = spawn_reader(reader);
    let mut user = String::new();
    // The one-byte answers to SSLRequest and GSSENCRequest before the first
    // framed message.
    let mut single_byte_answers = 0;
    let mut framed = false;
    for step in &script.steps {
        let bytes = match step {
            Hello::SslRequest | Hello::GssEncRequest => {
                if !framed {
                    single_byte_answers += 1;
                }
                let code = match step {
                    Hello::SslRequest => SSL_REQUEST_CODE,
                    _ => GSSENC_REQUEST_CODE,
                };
                special_request(code, b"")
            }
            Hello::Cancel { pid, key } => {
                let mut rest = pid.to_be_bytes().to_vec();
                rest.extend(key.to_be_bytes());
                special_request(CANCEL_REQUEST_CODE, &rest)
            }
            Hello::Startup { version, params } => {
                framed = true;
                if let Some((_, u)) = params.iter().find(|(k, _)| k == "user") {
                    user = u.clone();
                }
                let params: Vec<(&str, &str)> = params
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                startup_packet(*version, &params)
            }
            Hello::Password(answer) => {
                let text = match answer {
                    Answer::Right => {
                        let salt = md5_salt(&received.lock().unwrap().bytes, single_byte_answers);
                        match (salt, password_of(&user)) {
                            (Some(salt), Some(password)) => {
                                md5_password_response(&user, password, &salt).into_bytes()
                            }
                            // No challenge came, or no password is known: a
                            // plain guess.
                            _ => b"guess".to_vec(),
                        }
                    }
                    Answer::Wrong => b"md5ffffffffffffffffffffffffffffffff".to_vec(),
                    Answer::Bytes(bytes) => bytes.clone(),
                };
                let mut body = text;
                body.push(0);
                message(b'p', &body)
            }
            Hello::SaslInitial { mechanism, data } => {
                let mut body = Vec::new();
                put_cstr(&mut body, mechanism);
                body.extend((data.len() as i32).to_be_bytes());
                body.extend(data);
                message(b'p', &body)
            }
            Hello::SaslResponse(data) => message(b'p', data),
            Hello::BadLength(len) => len.to_be_bytes().to_vec(),
            Hello::Garbage(bytes) => bytes.clone(),
            Hello::Query(sql) => query_message(*sql, &who),
            Hello::Wait => {
                let seen = progress.borrow_and_update().bytes;
                let more = progress.wait_for(|p| p.bytes > seen);
                let _ = tokio::time::timeout(Duration::from_millis(300), more).await;
                continue;
            }
        };
        let _ = writer.write_all(&bytes).await;
    }
    finish(writer, reading, received, script.ending).await
}

/// After a round of hostile logins: both kinds of password login still work.
async fn check_logins_work(pooler: &Pooler) -> Result<(), String> {
    use support::postgres::{MD5_PASSWORD, MD5_USER, SCRAM_PASSWORD, SCRAM_USER};
    for (user, password) in [(MD5_USER, MD5_PASSWORD), (SCRAM_USER, SCRAM_PASSWORD)] {
        let client = pooler
            .connect(user, TEST_DB, Some(password))
            .await
            .map_err(|e| format!("{user} cannot log in: {}", support::db_message(&e)))?;
        let row = client
            .query_one("SELECT current_user::text", &[])
            .await
            .map_err(|e| format!("{user}'s query failed: {}", support::db_message(&e)))?;
        if row.get::<_, String>(0) != user {
            return Err(format!("{user} was served as {}", row.get::<_, String>(0)));
        }
    }
    Ok(())
}

#[test]
fn hostile_logins() {
    let pg = Postgres::start();
    let mut cfg = PoolerConfig::new(&pg);
    // A login slot leaked by any round soon leaves the checking clients none.
    cfg.set("max_client_conn", "40")
        .set("default_pool_size", "2")
        .set("query_wait_timeout", "60");
    let mut pooler = Pooler::start(&cfg);
    let (mut logged_in, mut refused) = (0, 0);
    let clients = drive_rounds(
        "logins",
        &mut pooler,
        login_script(),
        run_login_client,
        |bytes, _| {
            // AuthenticationOk, and a password refused (28P01).
            logged_in += usize::from(contains(bytes, &[b'R', 0, 0, 0, 8, 0, 0, 0, 0]));
            refused += usize::from(contains(bytes, b"C28P01\0"));
        },
        |runtime, pooler| runtime.block_on(check_logins_work(pooler)),
    );
    assert!(
        logged_in * 4 >= clients && refused * 20 >= clients,
        "of {clients} clients, {logged_in} logged in and {refused} had a password \
         refused: the scripts do not exercise the login"
    );
}
