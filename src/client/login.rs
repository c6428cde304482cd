//! A client's way in: SSL and cancel requests, the startup packet, the checks
//! PgBouncer makes (client limit, database, startup parameters), authentication,
//! and the welcome (server parameters, key data, ReadyForQuery).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::admission::Admission;
use super::login_wait::LoginWait;
use super::session::Session;
use super::{auth_method, auth_query, console_login};
use super::{cancel, send_fatal};
use crate::auth::client::{authenticate, pam_exchange, AuthError};
use crate::auth::Secret;
use crate::config::{AuthType, Config};
use crate::control::conn_info::ConnInfo;
use crate::net::listener::Accepted;
use crate::net::stream::PeerAddr;
use crate::net::tls::ClientTls;
use crate::net::Stream;
use crate::pool::{AcquireError, PoolKey, PoolSettings};
use crate::protocol::error::sqlstate;
use crate::protocol::io::MessageReader;
use crate::protocol::startup::{StartupPacket, StartupParams};
use crate::server::{ParamSet, ServerError};
use crate::shared::Shared;

/// Why a login was refused: what the client is told and what is logged.
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub(super) fn new(code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

/// What the startup packet asked for.
struct Startup {
    user: String,
    database: String,
    params: ParamSet,
}

/// Where a successful login leads.
///
/// Both carry the bytes the client sent after its last login message without
/// waiting for the answer (a pipelining client): they are its first request.
///
/// Both variants are boxed: the client's task keeps this value for as long as
/// the client stays.
pub enum Login {
    /// A pooled session.
    Pooled(Box<Session>),
    /// The admin console (database `pgbouncer` or `pgsluice`).
    Console(Box<ConsoleLogin>),
}

pub struct ConsoleLogin {
    pub stream: Stream,
    pub role: crate::admin::Role,
    pub user: String,
    pub pipelined: BytesMut,
    /// Its SHOW CLIENTS record, under the `pgbouncer` pseudo-pool.
    pub info: Arc<ConnInfo>,
}

/// Run the login of a new connection; `None` when the connection ends during it
/// (refused, a cancel request, or the client went away).
pub async fn login(shared: &Arc<Shared>, accepted: Accepted, id: u64) -> Option<Login> {
    let Accepted {
        mut stream,
        peer: addr,
        local,
    } = accepted;
    let config = shared.config.load_full();
    let timeout = config.general.client_login_timeout;
    let waits = LoginWait::default();
    let attempt = handshake(shared, &config, &mut stream, &addr, local, id, &waits);
    let result = if timeout.is_zero() {
        attempt.await
    } else {
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Some(Refusal::new(
                sqlstate::PROTOCOL_VIOLATION,
                if waits.on_unreachable_server() {
                    "client_login_timeout (server down)"
                } else {
                    "client_login_timeout"
                },
            ))),
        }
    };
    match result {
        Ok(Granted::Pooled(parts)) => Some(Login::Pooled(Box::new(Session::new(
            shared.clone(),
            id,
            stream,
            *parts,
        )))),
        Ok(Granted::Console {
            role,
            user,
            pipelined,
            info,
        }) => Some(Login::Console(Box::new(ConsoleLogin {
            stream,
            role,
            user,
            pipelined,
            info,
        }))),
        Err(None) => None,
        Err(Some(refusal)) => {
            if config.general.log_pooler_errors {
                log::warn!("C-{id}: {addr} pooler error: {}", refusal.message);
            }
            send_fatal(&mut stream, refusal.code, &refusal.message).await;
            None
        }
    }
}

/// Everything a session starts with.
pub struct LoginParts {
    pub pool: Arc<crate::pool::Pool>,
    pub params: ParamSet,
    pub cancel_key: (i32, i32),
    pub cancel_link: Arc<cancel::CancelLink>,
    pub connected_at: Instant,
    pub info: Arc<ConnInfo>,
    /// Sent after the last login message without waiting (see `Login`).
    pub pipelined: BytesMut,
    /// The client's registration and cancel key, until the session takes them.
    pub admission: Admission,
}

/// What the handshake granted.
enum Granted {
    Pooled(Box<LoginParts>),
    Console {
        role: crate::admin::Role,
        user: String,
        pipelined: BytesMut,
        info: Arc<ConnInfo>,
    },
}

type LoginResult = Result<Granted, Option<Refusal>>;

async fn handshake(
    shared: &Arc<Shared>,
    config: &Config,
    stream: &mut Stream,
    addr: &PeerAddr,
    local: Option<SocketAddr>,
    id: u64,
    waits: &LoginWait,
) -> LoginResult {
    let connected_at = Instant::now();
    let g = &config.general;
    let mut reader = MessageReader::new();
    let tls = &config.tls.client;
    let requester = || cancel::Requester {
        id,
        peer: addr.clone(),
        local,
    };
    let startup = match read_first_packets(shared, tls, &mut reader, stream, requester).await? {
        Some(params) => params,
        None => return Err(None),
    };
    if tls.required() && matches!(stream, Stream::Tcp(_)) {
        return Err(Some(Refusal::new(
            sqlstate::PROTOCOL_VIOLATION,
            "SSL required",
        )));
    }
    let startup = parse_startup(&startup, &g.ignore_startup_parameters)?;
    let tls_description = stream.tls_description();
    if g.log_connections {
        log::info!(
            "C-{id}: {}/{}@{addr} login attempt: db={} user={} tls={}",
            startup.database,
            startup.user,
            startup.database,
            startup.user,
            tls_description.as_deref().unwrap_or("no")
        );
    }
    if shared.client_count.load(Ordering::Relaxed) > g.max_client_conn as usize {
        return Err(Some(Refusal::new(
            sqlstate::TOO_MANY_CONNECTIONS,
            "no more connections allowed (max_client_conn)",
        )));
    }
    if is_admin_database(&startup.database) {
        let (role, pipelined) = console_login::login(
            shared,
            config,
            stream,
            reader,
            addr,
            (&startup.database, &startup.user),
        )
        .await?;
        let user = startup.user.as_str().into();
        let info = client_info(
            id,
            PoolKey::console(),
            user,
            addr,
            local,
            tls_description,
            &startup.params,
        );
        shared.console_stats.add_console_login();
        return Ok(Granted::Console {
            role,
            user: startup.user,
            pipelined,
            info,
        });
    }
    let Some(def) = config.database(&startup.database) else {
        return Err(Some(Refusal::new(
            sqlstate::INVALID_CATALOG_NAME,
            format!("no such database: {}", startup.database),
        )));
    };
    if shared.switches().disabled.contains(&startup.database) {
        return Err(Some(Refusal::new(
            sqlstate::PROTOCOL_VIOLATION,
            format!("database \"{}\" is disabled", startup.database),
        )));
    }
    let auth_type = auth_method::resolve(config, stream, addr, &startup.database, &startup.user)
        .map_err(Some)?;
    if auth_type == AuthType::Any && def.user.is_none() {
        return Err(Some(Refusal::new(
            sqlstate::INVALID_AUTHORIZATION,
            "auth_type=any requires a forced user (user=) in the database entry",
        )));
    }

    let secrets = shared.secrets.load_full();
    let refused = |e| {
        let who = format_args!("C-{id}: {}/{}@{addr}", startup.database, startup.user);
        auth_refusal(e, &who)
    };
    // `learned`: a secret this login found out (by auth_query, or the password
    // PAM accepted), which the pool logs in to PostgreSQL with from now on.
    let (learned, scram_keys) = if auth_type == AuthType::Pam {
        // The auth file is not read under PAM, as in PgBouncer.
        let password = pam_exchange(stream, &mut reader, &startup.user, &shared.pam, addr.ip())
            .await
            .map_err(refused)?;
        (Some(Secret::Plain(password)), None)
    } else {
        let queried = match secrets.get(&startup.user) {
            Some(_) => None,
            None => auth_query::secret_for_login(
                shared,
                config,
                def,
                auth_type,
                (&startup.database, &startup.user),
                waits,
            )
            .await
            .map_err(Some)?,
        };
        let keys = authenticate(
            stream,
            &mut reader,
            auth_type,
            &startup.user,
            secrets.get(&startup.user).or(queried.as_ref()),
            g.scram_iterations,
        )
        .await
        .map_err(refused)?;
        (queried, keys)
    };
    let secret = match auth_type {
        AuthType::Pam => learned.as_ref(),
        _ => secrets.get(&startup.user).or(learned.as_ref()),
    };

    let server_user = def.user.clone().unwrap_or_else(|| startup.user.clone());
    let key = PoolKey {
        database: startup.database.as_str().into(),
        user: server_user.as_str().into(),
    };
    let paused = shared.switches().is_paused(&startup.database);
    // The pool logs in as the client's user with the secret that let it in;
    // a forced user has its own, from the entry or auth_file.
    let server_secret = if server_user == startup.user {
        secret
    } else {
        secrets.get(&server_user)
    };
    let build = || PoolSettings::build(config, def, &startup.database, &server_user, server_secret);
    let pool = shared.pools.get_or_create(&key, paused, build);
    if let Some(found) = learned.as_ref().filter(|_| server_user == startup.user) {
        // A new password (or the first lookup): log in with it from now on.
        if pool.remember_queried_secret(found) {
            pool.update_settings(build());
        }
    }
    if let Some(keys) = scram_keys {
        if server_user == startup.user {
            pool.set_scram_keys(keys);
        }
    }

    let welcome = match pool.welcome() {
        Some(welcome) => welcome,
        None => {
            // The first client of a pool waits for a server to learn its parameters.
            let server = waits.server(&pool).await.map_err(Some)?;
            pool.release(server);
            pool.welcome().ok_or_else(|| {
                Some(Refusal::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    "server parameters unavailable",
                ))
            })?
        }
    };
    let mut params = startup.params;
    params.fill_from(&welcome.tracked);

    // The login user is usually the pool's: share the name.
    let user = if *pool.key.user == *startup.user {
        pool.key.user.clone()
    } else {
        startup.user.as_str().into()
    };
    let info = client_info(
        id,
        pool.key.clone(),
        user,
        addr,
        local,
        tls_description,
        &params,
    );
    let db_limit = def
        .max_db_client_connections
        .unwrap_or(g.max_db_client_connections);
    let user_limit = config
        .users
        .get(&startup.user)
        .and_then(|u| u.max_user_client_connections)
        .unwrap_or(g.max_user_client_connections);
    let admission = Admission::take(shared, info.clone(), db_limit, user_limit)?;
    pool.stats.add_login();
    let (cancel_key, cancel_link) = shared.cancels.register(g.peer_id);
    let admission = admission.with_cancel_key(cancel_key);
    let mut out = BytesMut::with_capacity(512);
    welcome.encode(&params, cancel_key, &mut out);
    if stream.send(&out).await.is_err() {
        return Err(None);
    }
    Ok(Granted::Pooled(Box::new(LoginParts {
        info,
        pool,
        params,
        cancel_key,
        cancel_link,
        connected_at,
        pipelined: reader.into_leftover(),
        admission,
    })))
}

/// A logged-in client's record for SHOW CLIENTS, KILL_CLIENT and the logs.
/// What a failed authentication tells the client (nothing, when it left), and
/// logs it after `who` (`C-1: db/user@addr`, or `console login:`).
pub(super) fn auth_refusal(e: AuthError, who: &dyn std::fmt::Display) -> Option<Refusal> {
    let (code, logged) = match &e {
        AuthError::Protocol(crate::protocol::ProtocolError::Eof) => return None,
        AuthError::Failed(_) => (sqlstate::INVALID_PASSWORD, format!("{e}")),
        // PAM's reason goes to the log only.
        AuthError::Pam(why) => (sqlstate::INVALID_PASSWORD, format!("{e}: {why}")),
        _ => (
            sqlstate::PROTOCOL_VIOLATION,
            format!("authentication error: {e}"),
        ),
    };
    log::warn!("{who} {logged}");
    Some(Refusal::new(code, e.to_string()))
}

fn client_info(
    id: u64,
    pool: PoolKey,
    user: Arc<str>,
    addr: &PeerAddr,
    local: Option<SocketAddr>,
    tls: Option<String>,
    params: &ParamSet,
) -> Arc<ConnInfo> {
    let mut info = ConnInfo::new(id, pool, user, addr.clone(), local);
    info.tls = tls.map(String::into_boxed_str);
    if let Some(app) = params.get("application_name") {
        info.set_application_name(app);
    }
    Arc::new(info)
}

pub fn is_admin_database(name: &str) -> bool {
    name == "pgbouncer" || name == "pgsluice"
}

/// What a client is told when no server could be had for it.
pub fn server_refusal(e: AcquireError) -> Refusal {
    match e {
        AcquireError::WaitTimeout => {
            Refusal::new(sqlstate::PROTOCOL_VIOLATION, "query_wait_timeout")
        }
        AcquireError::Server(err) => match &*err {
            // The server's own refusal (wrong password, no such role…) is the
            // most useful thing to pass on.
            ServerError::Refused(fields) => Refusal {
                code: static_code(&fields.code),
                message: fields.message.clone(),
            },
            other => Refusal::new(
                sqlstate::PROTOCOL_VIOLATION,
                format!("server connection failed: {other}"),
            ),
        },
        AcquireError::LoginFailing(_) => Refusal::new(
            sqlstate::PROTOCOL_VIOLATION,
            "server login has been failing, try again later (server_login_retry)",
        ),
        AcquireError::Closed => Refusal::new(
            sqlstate::PROTOCOL_VIOLATION,
            "database removed or pooler shutting down",
        ),
    }
}

/// SQLSTATEs from a server are passed on when they are ones the pooler knows;
/// others become a generic connection failure.
fn static_code(code: &str) -> &'static str {
    [
        sqlstate::INVALID_PASSWORD,
        sqlstate::INVALID_AUTHORIZATION,
        sqlstate::INVALID_CATALOG_NAME,
        sqlstate::TOO_MANY_CONNECTIONS,
        sqlstate::ADMIN_SHUTDOWN,
    ]
    .into_iter()
    .find(|known| *known == code)
    .unwrap_or(sqlstate::CONNECTION_FAILURE)
}

/// Read packets until a StartupMessage: answer an SSLRequest on TCP by
/// starting TLS when client_tls_sslmode offers it, other SSL and GSS requests
/// with 'N', and serve cancel requests. `Ok(None)`: the connection was a
/// cancel request or ended.
async fn read_first_packets(
    shared: &Arc<Shared>,
    tls: &ClientTls,
    reader: &mut MessageReader,
    stream: &mut Stream,
    requester: impl FnOnce() -> cancel::Requester,
) -> Result<Option<StartupParams>, Option<Refusal>> {
    // SSLRequest then GSSENCRequest (or the reverse) is the most a client sends.
    for _ in 0..3 {
        match reader.read_startup(stream).await {
            Ok(StartupPacket::Startup(params)) => return Ok(Some(params)),
            Ok(StartupPacket::SslRequest) if matches!(stream, Stream::Tcp(_)) => {
                if let Some(acceptor) = tls.handshaker() {
                    start_tls(reader, stream, acceptor).await?;
                } else if stream.send(b"N").await.is_err() {
                    return Ok(None);
                }
            }
            Ok(StartupPacket::SslRequest | StartupPacket::GssEncRequest) => {
                if stream.send(b"N").await.is_err() {
                    return Ok(None);
                }
            }
            Ok(StartupPacket::Cancel { pid, secret }) => {
                cancel::handle_request(shared, requester(), (pid, secret)).await;
                return Ok(None);
            }
            Err(crate::protocol::ProtocolError::Eof) => return Ok(None),
            Err(e) => {
                return Err(Some(Refusal::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("bad startup packet: {e}"),
                )))
            }
        }
    }
    Err(Some(Refusal::new(
        sqlstate::PROTOCOL_VIOLATION,
        "bad startup packet: too many requests",
    )))
}

/// Answer an SSLRequest with 'S' and run the TLS handshake; the packets that
/// follow come through TLS. `Err(None)`: the handshake failed (logged).
async fn start_tls(
    reader: &MessageReader,
    stream: &mut Stream,
    acceptor: &tokio_rustls::TlsAcceptor,
) -> Result<(), Option<Refusal>> {
    // Bytes sent after the SSLRequest, before the handshake, were not
    // encrypted: someone in the middle may have put them there.
    if reader.has_leftover() {
        return Err(Some(Refusal::new(
            sqlstate::PROTOCOL_VIOLATION,
            "received unencrypted data after SSL request",
        )));
    }
    stream.accept_tls(acceptor).await.map_err(|e| {
        log::warn!("TLS handshake error: {e}");
        None
    })
}

/// Sort the startup parameters into user, database and tracked settings;
/// refuse the ones PgBouncer refuses.
fn parse_startup(raw: &StartupParams, ignored: &[String]) -> Result<Startup, Option<Refusal>> {
    let mut user = None;
    let mut database = None;
    let mut params = ParamSet::default();
    for (name, value) in raw.iter() {
        match name {
            "user" => user = Some(value),
            "database" => database = Some(value),
            "options" => parse_options(value, &mut params, ignored)?,
            _ if params.set(name, value) => {}
            _ if ignored.iter().any(|i| i.eq_ignore_ascii_case(name)) => {}
            _ => {
                return Err(Some(Refusal::new(
                    sqlstate::PROTOCOL_VIOLATION,
                    format!("unsupported startup parameter: {name}"),
                )))
            }
        }
    }
    let user = user.filter(|u| !u.is_empty()).ok_or_else(|| {
        Some(Refusal::new(
            sqlstate::PROTOCOL_VIOLATION,
            "no username supplied",
        ))
    })?;
    let database = database.filter(|d| !d.is_empty()).unwrap_or(user);
    Ok(Startup {
        user: user.to_owned(),
        database: database.to_owned(),
        params,
    })
}

/// `options` may carry `-c name=value` for tracked settings; anything else is
/// refused unless `options` is in ignore_startup_parameters.
fn parse_options(
    value: &str,
    params: &mut ParamSet,
    ignored: &[String],
) -> Result<(), Option<Refusal>> {
    if ignored.iter().any(|i| i.eq_ignore_ascii_case("options")) {
        return Ok(());
    }
    let unsupported = || {
        Some(Refusal::new(
            sqlstate::PROTOCOL_VIOLATION,
            format!("unsupported options startup parameter: {value}"),
        ))
    };
    let mut words = value.split_whitespace();
    while let Some(word) = words.next() {
        let setting = if word == "-c" {
            words.next().ok_or_else(unsupported)?
        } else if let Some(rest) = word.strip_prefix("-c").or_else(|| word.strip_prefix("--")) {
            rest
        } else {
            return Err(unsupported());
        };
        let (name, val) = setting.split_once('=').ok_or_else(unsupported)?;
        if !params.set(&name.replace('-', "_"), val) {
            return Err(unsupported());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(pairs: &[(&str, &str)]) -> StartupParams {
        StartupParams::from_pairs(pairs)
    }

    #[test]
    fn startup_sorts_parameters() {
        let s = parse_startup(
            &raw(&[
                ("user", "u"),
                ("TimeZone", "UTC"),
                ("application_name", "app"),
            ]),
            &[],
        )
        .ok()
        .unwrap();
        assert_eq!(s.database, "u", "database defaults to the user name");
        assert_eq!(s.params.get("timezone"), Some("UTC"));
        assert_eq!(s.params.get("application_name"), Some("app"));
    }

    #[test]
    fn unknown_parameters_are_refused_unless_ignored() {
        let err = parse_startup(&raw(&[("user", "u"), ("extra_float_digits", "3")]), &[])
            .err()
            .unwrap()
            .unwrap();
        assert_eq!(
            err.message,
            "unsupported startup parameter: extra_float_digits"
        );
        assert!(parse_startup(
            &raw(&[("user", "u"), ("extra_float_digits", "3")]),
            &["extra_float_digits".to_string()]
        )
        .is_ok());
        assert!(parse_startup(&raw(&[("database", "d")]), &[]).is_err());
    }

    #[test]
    fn options_carry_tracked_settings_only() {
        let s = parse_startup(
            &raw(&[
                ("user", "u"),
                ("options", "-c TimeZone=Asia/Tokyo --datestyle=German"),
            ]),
            &[],
        )
        .ok()
        .unwrap();
        assert_eq!(s.params.get("TimeZone"), Some("Asia/Tokyo"));
        assert_eq!(s.params.get("DateStyle"), Some("German"));
        assert!(
            parse_startup(&raw(&[("user", "u"), ("options", "-c work_mem=1MB")]), &[]).is_err()
        );
        assert!(parse_startup(
            &raw(&[("user", "u"), ("options", "-c work_mem=1MB")]),
            &["options".to_string()]
        )
        .is_ok());
    }
}
