//! The SQL admin console: what a client gets when it connects to the database
//! `pgbouncer` (or `pgsluice`) as a user named in `admin_users` or
//! `stats_users`. It reproduces PgBouncer 1.26's console — commands, column
//! names, order and types, error wording — because exporters, dashboards and
//! runbooks depend on it (see `shared/compat/admin-console.md`).
//!
//! The console is a front door only: every command is carried out by
//! [`crate::control`], and every SHOW renders one of its snapshots.
//!
//! - [`command`]: statements → [`command::Command`] (PgBouncer's grammar);
//! - [`exec`]: permissions, argument checks, the control call, the reply;
//! - [`show`], [`mem`], [`params`]: the rows of each SHOW;
//! - [`columns`]: every SHOW's column names and types;
//! - [`result`], [`wire`]: encoding rows and the console's messages;
//! - [`session`]: the message loop of one connection.

pub mod columns;
pub mod command;
pub mod exec;
pub mod mem;
pub mod params;
pub mod result;
pub mod session;
pub mod show;
pub mod wire;

use std::sync::Arc;

use bytes::BytesMut;

use crate::config::Config;
use crate::net::Stream;
use crate::protocol::io::MessageReader;
use crate::shared::Shared;

/// What a console user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// In `admin_users`: every command.
    Admin,
    /// In `stats_users`: SHOW (except SHOW FDS) and the no-op SETs.
    Stats,
}

/// Whether `user` may open the console: `Admin` if listed in `admin_users`,
/// else `Stats` if listed in `stats_users`, else `None` (the caller refuses the
/// login; PgBouncer's words are "not allowed"). Names compare exactly, as in
/// PgBouncer.
pub fn role_of(config: &Config, user: &str) -> Option<Role> {
    if config.general.admin_users.iter().any(|u| u == user) {
        Some(Role::Admin)
    } else if config.general.stats_users.iter().any(|u| u == user) {
        Some(Role::Stats)
    } else {
        None
    }
}

/// Serve an authenticated console session on `stream` until the client leaves
/// (Terminate or EOF), the connection fails, or an immediate SHUTDOWN; then
/// return, and the caller closes the stream. The caller has sent the login
/// (AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery); nothing
/// is sent before the client's first message. `user` is the login user name,
/// for the log; `pipelined`, what the client sent after logging in without
/// waiting for the answer.
pub async fn serve(
    shared: Arc<Shared>,
    stream: &mut Stream,
    role: Role,
    user: &str,
    pipelined: BytesMut,
) {
    let console = exec::Console {
        shared,
        role,
        user: user.to_string(),
    };
    session::run(&console, stream, MessageReader::with_leftover(pipelined)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn roles_come_from_the_user_lists() {
        let config = Config::from_text(
            Path::new("/tmp/pgsluice-admin-test.ini"),
            "[pgbouncer]\nadmin_users = root, ops\nstats_users = ops, monitor\n",
        )
        .unwrap();
        assert_eq!(role_of(&config, "root"), Some(Role::Admin));
        // Listed in both: admin wins.
        assert_eq!(role_of(&config, "ops"), Some(Role::Admin));
        assert_eq!(role_of(&config, "monitor"), Some(Role::Stats));
        assert_eq!(role_of(&config, "Monitor"), None);
        assert_eq!(role_of(&config, "app"), None);
    }
}
