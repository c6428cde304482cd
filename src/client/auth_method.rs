//! Which authentication a login goes through: `auth_type`, or with
//! `auth_type = hba` the method of the first matching line of auth_hba_file.

use super::login::Refusal;
use crate::auth::hba::{Connection, Method};
use crate::config::{AuthType, Config};
use crate::net::stream::PeerAddr;
use crate::net::Stream;
use crate::protocol::error::sqlstate;

/// The method for a login of `user` to `database` over `stream` from `addr`,
/// or the refusal an hba `reject` line (or no line) means.
pub(super) fn resolve(
    config: &Config,
    stream: &Stream,
    addr: &PeerAddr,
    database: &str,
    user: &str,
) -> Result<AuthType, Refusal> {
    let auth_type = config.general.auth_type;
    let Some(rules) = config.hba.as_ref().filter(|_| auth_type == AuthType::Hba) else {
        return Ok(auth_type);
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
        Method::Cert => Err(refuse(
            "cert authentication is not supported by pgsluice".into(),
        )),
    }
}

/// The OS user on the other end of a Unix socket.
fn peer_user(stream: &Stream) -> Option<String> {
    let uid = nix::unistd::Uid::from_raw(stream.peer_uid()?);
    Some(nix::unistd::User::from_uid(uid).ok()??.name)
}
