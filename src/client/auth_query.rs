//! Users missing from auth_file, looked up in PostgreSQL with auth_query, as
//! PgBouncer's auth_user does: the query runs on a server of auth_user's pool
//! for the auth database, with the user name as its one parameter, and returns
//! the user's name and secret (md5, SCRAM verifier or plaintext).

use std::sync::Arc;

use super::login::Refusal;
use super::login_wait::LoginWait;
use crate::auth::Secret;
use crate::config::userlist::parse_secret;
use crate::config::{AuthLookup, AuthType, Config, DatabaseDef};
use crate::pool::{PoolKey, PoolSettings};
use crate::protocol::error::sqlstate;
use crate::server::{close_reason, ServerError};
use crate::shared::Shared;

/// What auth_query said about a user.
#[derive(Debug, PartialEq, Eq)]
enum Lookup {
    /// No row: there is no such (login) role.
    NoSuchUser,
    /// The role exists; its secret, or `None` when it has no usable password
    /// (NULL, as the default query returns for an expired one, or empty).
    Found(Option<Secret>),
}

/// What a client is told when the lookup itself is misconfigured, as PgBouncer
/// words it; the log line says what went wrong.
fn config_error() -> Refusal {
    Refusal::new(sqlstate::PROTOCOL_VIOLATION, "bouncer config error")
}

/// The secret to check a login of `user` (missing from auth_file) to the
/// database `client_db` by `auth_type` with, when its entry `def` has an
/// auth_user (else `None`, as when the user has no password). The login
/// waits for a server of the auth pool through `waits`.
pub(super) async fn secret_for_login(
    shared: &Arc<Shared>,
    config: &Config,
    def: &DatabaseDef,
    auth_type: AuthType,
    (client_db, user): (&str, &str),
    waits: &LoginWait,
) -> Result<Option<Secret>, Refusal> {
    // auth_type=any logs in as the forced user: nothing to look up.
    let Some(lookup) = config
        .auth_lookup(def)
        .filter(|_| auth_type != AuthType::Any)
    else {
        return Ok(None);
    };
    let found = look_up(shared, config, client_db, lookup, user, waits).await?;
    match found {
        // Without a password exchange there is nothing else to refuse with.
        Lookup::NoSuchUser if auth_type == AuthType::Trust => Err(Refusal::new(
            sqlstate::INVALID_AUTHORIZATION,
            "no such user",
        )),
        // The exchange runs anyway and fails, so that an unknown user cannot
        // be told from a wrong password.
        Lookup::NoSuchUser => Ok(None),
        Lookup::Found(secret) => Ok(secret),
    }
}

/// Look `user` up for a login to the database `client_db`.
async fn look_up(
    shared: &Arc<Shared>,
    config: &Config,
    client_db: &str,
    lookup: AuthLookup<'_>,
    user: &str,
    waits: &LoginWait,
) -> Result<Lookup, Refusal> {
    let auth_db = lookup.database.unwrap_or(client_db);
    let Some(def) = config.database(auth_db) else {
        log::warn!("authentication database \"{auth_db}\" is not configured");
        return Err(config_error());
    };
    let key = PoolKey {
        database: auth_db.into(),
        user: lookup.user.into(),
    };
    let paused = shared.switches().is_paused(auth_db);
    let pool = shared.pools.get_or_create(&key, paused, || {
        let secrets = shared.secrets.load();
        PoolSettings::build(config, def, auth_db, lookup.user, secrets.get(lookup.user))
    });
    let mut server = waits.server(&pool).await?;
    let max_packet = config.general.max_packet_size as usize;
    let answer = server.query_rows(lookup.query, &[user], max_packet).await;
    match answer {
        // The server answered in full and is idle again: fit for reuse.
        Ok(_) | Err(ServerError::Query(_)) => pool.release(server),
        // Its state is unknown.
        Err(_) => server.close(close_reason::UNCLEAN),
    }
    let rows = answer.map_err(|e| {
        let reason = match e {
            ServerError::Query(fields) => {
                format!("error response from auth_query: {}", fields.message)
            }
            other => format!("auth_query failed: {other}"),
        };
        log::warn!("{}/{}: {reason}", key.database, key.user);
        config_error()
    })?;
    read_rows(rows).map_err(|reason| {
        log::warn!("{}/{}: {reason}", key.database, key.user);
        config_error()
    })
}

/// The first row decides; PgBouncer also takes a query that returns more.
fn read_rows(rows: Vec<Vec<Option<String>>>) -> Result<Lookup, String> {
    let Some(row) = rows.into_iter().next() else {
        return Ok(Lookup::NoSuchUser);
    };
    let [_name, secret] = <[Option<String>; 2]>::try_from(row)
        .map_err(|row| format!("expected 2 columns from auth_query, not {}", row.len()))?;
    Ok(Lookup::Found(
        secret
            .filter(|text| !text.is_empty())
            .map(|text| parse_secret(&text).0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(values: &[Option<&str>]) -> Vec<Option<String>> {
        values.iter().map(|v| v.map(str::to_owned)).collect()
    }

    #[test]
    fn no_row_is_no_such_user() {
        assert_eq!(read_rows(vec![]), Ok(Lookup::NoSuchUser));
    }

    #[test]
    fn the_second_column_is_the_secret_in_any_auth_file_form() {
        let md5 = "md5".to_owned() + &"ab".repeat(16);
        assert_eq!(
            read_rows(vec![row(&[Some("u"), Some(&md5)])]),
            Ok(Lookup::Found(Some(Secret::Md5(md5.clone()))))
        );
        assert_eq!(
            read_rows(vec![row(&[Some("u"), Some("hunter2")])]),
            Ok(Lookup::Found(Some(Secret::Plain("hunter2".into()))))
        );
        // The first row decides.
        assert_eq!(
            read_rows(vec![
                row(&[Some("u"), Some("first")]),
                row(&[Some("u"), Some("second")])
            ]),
            Ok(Lookup::Found(Some(Secret::Plain("first".into()))))
        );
    }

    #[test]
    fn a_null_or_empty_secret_is_a_user_without_password() {
        assert_eq!(
            read_rows(vec![row(&[Some("u"), None])]),
            Ok(Lookup::Found(None))
        );
        assert_eq!(
            read_rows(vec![row(&[Some("u"), Some("")])]),
            Ok(Lookup::Found(None))
        );
    }

    #[test]
    fn another_number_of_columns_is_refused_with_the_count() {
        assert_eq!(
            read_rows(vec![row(&[Some("u"), Some("x"), Some("1")])]),
            Err("expected 2 columns from auth_query, not 3".to_owned())
        );
        assert_eq!(
            read_rows(vec![row(&[Some("u")])]),
            Err("expected 2 columns from auth_query, not 1".to_owned())
        );
    }
}
