//! What the generated hostile clients of `tests/hostile_input.rs` (queries)
//! and `tests/hostile_logins.rs` (logins) share: the rounds of three clients
//! drawn by a seeded proptest runner, the markers that tie each answer to its
//! client, the queries both send, and the reading and ending of a client's
//! connection.
//!
//! A seed fixes the scripts, not their interleaving: the clients of a round
//! run at once, so what the pooler sees also depends on timing. There is no
//! shrinking: the pooler keeps its state from round to round, so a failure
//! reports the round's scripts as they ran.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::support::wire::{message, put_cstr};
use crate::support::{tail, Pooler};

const CLIENTS_PER_ROUND: usize = 3;
const DEFAULT_ROUNDS: u32 = 100;
const DEFAULT_SEED: u64 = 0x5eed_f00d;
/// How long the pooler may take to close a connection its client has left.
const CLOSE_WAIT: Duration = Duration::from_secs(20);

/// The statements of the scripts, as simple queries, in Parse messages, or
/// (in the login scripts) in place of a login. Those that name a client carry
/// its marker.
#[derive(Clone, Copy, Debug)]
pub enum Sql {
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

impl Sql {
    /// The SQL text for client `who`; the marker query names the client.
    pub fn text(self, who: &str) -> String {
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

pub fn sql() -> impl Strategy<Value = Sql> {
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

#[derive(Clone, Copy, Debug)]
pub enum Ending {
    /// Terminate, then close.
    Terminate,
    /// Close without Terminate.
    Close,
    /// Close without Terminate and without reading what is left.
    Abandon,
}

/// How a script ends, any of the three ways.
pub fn ending() -> impl Strategy<Value = Ending> {
    prop_oneof![
        Just(Ending::Terminate),
        Just(Ending::Close),
        Just(Ending::Abandon)
    ]
}

pub fn query_message(sql: Sql, who: &str) -> Vec<u8> {
    let mut body = Vec::new();
    put_cstr(&mut body, &sql.text(who));
    message(b'Q', &body)
}

/// The marker every query of client `index` in round `round` carries. The
/// trailing `|` keeps `1.1` from matching as the start of `1.10`.
pub fn marker(round: u32, index: usize) -> String {
    format!("mk:{round}.{index}|")
}

/// What the pooler sent a client.
#[derive(Default)]
pub struct Received {
    pub bytes: Vec<u8>,
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

/// What a client's reader has seen so far.
#[derive(Clone, Copy, Default)]
pub struct Progress {
    pub bytes: usize,
    /// ReadyForQuery messages, the login's included (meaningless before the
    /// login, where answers to SSLRequest are single bytes).
    pub ready: usize,
}

/// Read everything the pooler sends into `Received`, reporting progress.
pub fn spawn_reader(
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
pub async fn finish(
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

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
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
pub fn drive_rounds<T, S, F>(
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
