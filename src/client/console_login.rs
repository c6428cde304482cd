//! The admin console's login (databases `pgbouncer` and `pgsluice`).

use std::sync::Arc;

use bytes::BytesMut;

use super::auth_method;
use super::login::{auth_refusal, Refusal};
use crate::auth::client::{authenticate, pam_exchange};
use crate::config::{AuthType, Config};
use crate::net::stream::PeerAddr;
use crate::net::Stream;
use crate::protocol::backend;
use crate::protocol::error::sqlstate;
use crate::protocol::io::MessageReader;
use crate::shared::Shared;

/// The admin console's login: users in admin_users or stats_users, checked
/// like anyone else (by auth_type, or the hba file's line, against the auth
/// file); and the daemon's own OS user,
/// connecting over the Unix socket as `pgbouncer`, without a password (peer
/// check), as PgBouncer allows.
pub(super) async fn login(
    shared: &Arc<Shared>,
    config: &Config,
    stream: &mut Stream,
    mut reader: MessageReader,
    addr: &PeerAddr,
    (database, user): (&str, &str),
) -> Result<(crate::admin::Role, BytesMut), Option<Refusal>> {
    let g = &config.general;
    let peer_is_self = stream.peer_uid() == Some(nix::unistd::geteuid().as_raw());
    let role = if peer_is_self && user == "pgbouncer" {
        crate::admin::Role::Admin
    } else {
        let role = crate::admin::role_of(config, user)
            .ok_or_else(|| Some(Refusal::new(sqlstate::INVALID_AUTHORIZATION, "not allowed")))?;
        let auth_type = auth_method::resolve(config, stream, addr, database, user).map_err(Some)?;
        let checked = if auth_type == AuthType::Pam {
            pam_exchange(stream, &mut reader, user, &shared.pam, addr.ip())
                .await
                .map(drop)
        } else {
            let secrets = shared.secrets.load_full();
            authenticate(
                stream,
                &mut reader,
                auth_type,
                user,
                secrets.get(user),
                g.scram_iterations,
            )
            .await
            .map(drop)
        };
        checked.map_err(|e| auth_refusal(e, &"console login:"))?;
        role
    };
    let mut out = BytesMut::with_capacity(256);
    backend::put_auth_ok(&mut out);
    let version = format!("{}/bouncer", env!("CARGO_PKG_VERSION"));
    for (name, value) in [
        ("server_version", version.as_str()),
        ("client_encoding", "UTF8"),
        ("server_encoding", "UTF8"),
        ("DateStyle", "ISO"),
        ("TimeZone", "UTC"),
        ("standard_conforming_strings", "on"),
        ("integer_datetimes", "on"),
        ("is_superuser", "on"),
    ] {
        backend::put_parameter_status(&mut out, name, value);
    }
    let (pid, secret) = (rand::random::<i32>() & 0x7fff_ffff, rand::random::<i32>());
    backend::put_backend_key_data(&mut out, pid, secret);
    backend::put_ready_for_query(&mut out, b'I');
    stream.send(&out).await.map_err(|_| None)?;
    Ok((role, reader.into_leftover()))
}
