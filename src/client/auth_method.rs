//! Which authentication a login goes through: `auth_type`, or with
//! `auth_type = hba` the method of the first matching line of auth_hba_file.
//! The methods that need no password (`peer`, `cert`) are decided here.

use super::login::Refusal;
use crate::auth::hba::{Connection, Method};
use crate::auth::ident::IdentMaps;
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
            AuthType::Cert => by_certificate(stream, addr, user, &SameName),
            other => Ok(other),
        };
    };
    let conn = Connection {
        addr: addr.ip(),
        tls: matches!(stream, Stream::Tls(_)),
        database,
        user,
    };
    let verdict = rules.verdict_for(&conn);
    let names: &dyn SystemUsers = match verdict.map {
        Some(map) => &Mapped {
            map,
            maps: config.ident.as_deref(),
        },
        None => &SameName,
    };
    match verdict.method {
        Method::Trust => Ok(AuthType::Trust),
        Method::Password => Ok(AuthType::Plain),
        Method::Md5 => Ok(AuthType::Md5),
        Method::ScramSha256 => Ok(AuthType::ScramSha256),
        // PgBouncer's words, for a reject line and for no line at all.
        Method::Reject => Err(Refusal::new(
            sqlstate::INVALID_AUTHORIZATION,
            "login rejected",
        )),
        Method::Peer => by_peer(stream, addr, user, names),
        Method::Cert => by_certificate(stream, addr, user, names),
    }
}

/// Whom a system user (a certificate's common name, a Unix peer's OS user)
/// may log in as.
trait SystemUsers {
    /// `Err`: why not, for the log.
    fn check(&self, system_user: &str, user: &str) -> Result<(), String>;
}

/// Without `map=`: only as the user of the same name.
struct SameName;

impl SystemUsers for SameName {
    fn check(&self, system_user: &str, user: &str) -> Result<(), String> {
        if system_user == user {
            Ok(())
        } else {
            Err(format!("\"{system_user}\" is not user \"{user}\""))
        }
    }
}

/// With `map=NAME`: as the users auth_ident_file's map NAME lists for it.
struct Mapped<'a> {
    map: &'a str,
    maps: Option<&'a IdentMaps>,
}

impl SystemUsers for Mapped<'_> {
    fn check(&self, system_user: &str, user: &str) -> Result<(), String> {
        let map = self.map;
        match self.maps {
            Some(maps) if maps.allows(map, system_user, user) => Ok(()),
            Some(_) => Err(format!(
                "ident map \"{map}\" does not let \"{system_user}\" log in as \"{user}\""
            )),
            None => Err(format!(
                "ident map \"{map}\" is used, but auth_ident_file is not set"
            )),
        }
    }
}

/// `peer`: the OS user on the other end of the Unix socket logs in as
/// itself (or as its map says). PgBouncer's words to the client; the log says
/// why.
fn by_peer(
    stream: &Stream,
    addr: &PeerAddr,
    user: &str,
    names: &dyn SystemUsers,
) -> Result<AuthType, Refusal> {
    let checked = match peer_user(stream) {
        Some(os_user) => names.check(&os_user, user),
        None => Err("not a Unix socket, or its peer's user is unknown".to_owned()),
    };
    checked.map(|()| AuthType::Trust).map_err(|why| {
        log::warn!("{addr} peer authentication failed: {why}");
        Refusal::new(sqlstate::PROTOCOL_VIOLATION, "unix socket login rejected")
    })
}

/// `cert`: the client's certificate, which the TLS handshake checked against
/// client_tls_ca_file, must name `user` as its common name (or a name its map
/// lets log in as `user`); then no password is asked for. As PgBouncer does,
/// the client only hears that certificate authentication failed, and the log
/// says why.
fn by_certificate(
    stream: &Stream,
    addr: &PeerAddr,
    user: &str,
    names: &dyn SystemUsers,
) -> Result<AuthType, Refusal> {
    let checked = if !matches!(stream, Stream::Tls(_)) {
        Err("TLS connection required".to_owned())
    } else {
        match stream.peer_certificate().map(common_name) {
            None => Err("TLS client certificate required".to_owned()),
            Some(None) => Err("the TLS client certificate has no common name".to_owned()),
            Some(Some(cn)) => names
                .check(&cn, user)
                .map_err(|why| format!("TLS certificate name mismatch: common name {why}")),
        }
    };
    checked.map(|()| AuthType::Trust).map_err(|why| {
        log::warn!("{addr} certificate authentication failed: {why}");
        Refusal::new(
            sqlstate::PROTOCOL_VIOLATION,
            "certificate authentication failed",
        )
    })
}

/// The OS user on the other end of a Unix socket.
fn peer_user(stream: &Stream) -> Option<String> {
    let uid = nix::unistd::Uid::from_raw(stream.peer_uid()?);
    Some(nix::unistd::User::from_uid(uid).ok()??.name)
}
