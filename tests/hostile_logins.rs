//! Generated hostile logins: the rounds of `tests/hostile_input.rs` from the
//! first byte on, with md5 auth. Startup packets of any version and
//! parameters, SSL and GSSENC requests, cancel requests, right, wrong and
//! random passwords (the right md5 answer is computed from the challenge),
//! random SASL messages, garbage, and queries after the login or in place of
//! it, each script ended one of three ways.
//!
//! After every round, whatever the scripts did:
//! - the pooler is still running and has logged no panic;
//! - every client's connection was closed by the pooler once the client said
//!   goodbye;
//! - no client received an answer tagged for another client;
//! - an md5 and a SCRAM user still log in and are served as themselves, with
//!   `max_client_conn = 40`, so that login slots leaked by earlier rounds would
//!   soon refuse them.
//!
//! `PGSLUICE_HOSTILE_SEED` and `PGSLUICE_HOSTILE_ROUNDS` choose other runs (see
//! `hostile/mod.rs`).

mod hostile;
mod support;

use std::time::Duration;

use hostile::{
    contains, drive_rounds, ending, finish, query_message, spawn_reader, sql, Ending, Received, Sql,
};
use proptest::collection::vec;
use proptest::prelude::*;
use support::postgres::{TEST_DB, TRUST_USER};
use support::wire::{
    md5_password_response, message, put_cstr, special_request, startup_packet, CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE, PROTOCOL_3_0, SSL_REQUEST_CODE,
};
use support::{Pooler, PoolerConfig, Postgres};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

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
    (steps, ending()).prop_map(|(steps, ending)| LoginScript { steps, ending })
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
