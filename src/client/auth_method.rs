//! Which authentication a login goes through: `auth_type`, or with
//! `auth_type = hba` the method of the first matching line of auth_hba_file.

use super::login::Refusal;
use crate::auth::hba::{Connection, Method};
use crate::config::{AuthType, Config};
use crate::net::stream::PeerAddr;
use crate::net::tls::common_name;
use crate::net::Stream;
use crate::protocol::error::sqlstate;

/// The method for a login of `user` to `database` over `stream` from `addr`,
/// or the refusal an hba `reject` line (or no line), a failed peer check or a
/// failed certificate check means. Peer and certificate logins that pass
/// need nothing more from the client: they come back as `Trust`.
pub(super) fn resolve(
    config: &Config,
    stream: &Stream,
    addr: &PeerAddr,
    database: &str,
    user: &str,
) -> Result<AuthType, Refusal> {
    let auth_type = config.general.auth_type;
    let Some(rules) = config.hba.as_ref().filter(|_| auth_type == AuthType::Hba) else {
        return match auth_type {
            AuthType::Cert => by_certificate(stream, addr, user),
            other => Ok(other),
        };
    };
    let conn = Connection {
        addr: match addr {
            PeerAddr::Tcp(a) => Some(a.ip()),
            PeerAddr::Unix { .. } => None,
        },
        tls: matches!(stream, Stream::Tls(_)),
        database,
        user,
    };
    let refuse = |message: String| Refusal::new(sqlstate::INVALID_AUTHORIZATION, message);
    match rules.method_for(&conn) {
        Method::Trust => Ok(AuthType::Trust),
        Method::Password => Ok(AuthType::Plain),
        Method::Md5 => Ok(AuthType::Md5),
        Method::ScramSha256 => Ok(AuthType::ScramSha256),
        // PgBouncer's words, for a reject line and for no line at all.
        Method::Reject => Err(refuse("login rejected".into())),
        Method::Peer if peer_user(stream).as_deref() == Some(user) => Ok(AuthType::Trust),
        Method::Peer => Err(refuse(format!(
            "peer authentication failed for user \"{user}\""
        ))),
        Method::Cert => by_certificate(stream, addr, user),
    }
}

/// `cert`: the client's certificate, which the TLS handshake checked against
/// client_tls_ca_file, must name `user` as its common name; then no password
/// is asked for. As PgBouncer does, the client only hears that certificate
/// authentication failed, and the log says why.
fn by_certificate(stream: &Stream, addr: &PeerAddr, user: &str) -> Result<AuthType, Refusal> {
    let why = if !matches!(stream, Stream::Tls(_)) {
        "TLS connection required".to_owned()
    } else {
        match stream.peer_certificate().map(common_name) {
            None => "TLS client certificate required".to_owned(),
            Some(None) => "the TLS client certificate has no common name".to_owned(),
            Some(Some(cn)) if cn == user => return Ok(AuthType::Trust),
            Some(Some(cn)) => {
                format!("TLS certificate name mismatch: CN \"{cn}\", user \"{user}\"")
            }
        }
    };
    log::warn!("{addr} certificate authentication failed: {why}");
    Err(Refusal::new(
        sqlstate::PROTOCOL_VIOLATION,
        "certificate authentication failed",
    ))
}

/// The OS user on the other end of a Unix socket.
fn peer_user(stream: &Stream) -> Option<String> {
    let uid = nix::unistd::Uid::from_raw(stream.peer_uid()?);
    Some(nix::unistd::User::from_uid(uid).ok()??.name)
}
