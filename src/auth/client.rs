//! The pooler as the server side of authentication: asking a client for its
//! password by the configured `auth_type` and checking it against `auth_file`.

use bytes::BytesMut;
use rand::RngCore;

use super::md5::{md5_secret, verify_md5_response};
use super::pam::{PamError, PamThread};
use super::scram::{ScramClient, ScramCredentials, ScramError, ScramKeys, ScramServer};
use super::{compare::constant_time_eq, Secret};
use crate::config::AuthType;
use crate::net::Stream;
use crate::protocol::io::MessageReader;
use crate::protocol::{backend, frontend, tag, ProtocolError};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong password, unknown user, or a secret that cannot serve this method.
    #[error("password authentication failed for user \"{0}\"")]
    Failed(String),
    #[error("auth_type {0} is not supported")]
    Unsupported(AuthType),
    #[error("SCRAM: {0}")]
    Scram(#[from] ScramError),
    /// PAM said no, or could not make the check: PgBouncer's words for the
    /// client; PAM's reason is for the log.
    #[error("PAM authentication failed")]
    Pam(PamError),
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

/// Run the exchange `auth_type` asks for. On success, returns the SCRAM keys the
/// client proved (when it used SCRAM against a verifier), for logging in to the
/// server on its behalf.
pub async fn authenticate(
    stream: &mut Stream,
    reader: &mut MessageReader,
    auth_type: AuthType,
    user: &str,
    secret: Option<&Secret>,
    scram_iterations: u32,
) -> Result<Option<ScramKeys>, AuthError> {
    let failed = || AuthError::Failed(user.to_owned());
    match auth_type {
        AuthType::Trust | AuthType::Any => Ok(None),
        AuthType::Plain => {
            let password = ask_cleartext(stream, reader).await?;
            match secret {
                Some(secret) if password_matches(secret, user, &password) => Ok(None),
                _ => Err(failed()),
            }
        }
        AuthType::Md5 => match secret {
            // A verifier cannot check an md5 response; PgBouncer switches to SCRAM.
            Some(secret @ Secret::Scram(_)) => {
                scram_exchange(stream, reader, secret, scram_iterations)
                    .await
                    .map(Some)
            }
            Some(secret) => md5_exchange(stream, reader, user, secret)
                .await
                .map(|()| None),
            None => {
                // Ask anyway, so an unknown user cannot be told from a wrong password.
                let _ = md5_exchange(stream, reader, user, &Secret::Plain(String::new())).await;
                Err(failed())
            }
        },
        AuthType::ScramSha256 => match secret {
            Some(secret @ (Secret::Scram(_) | Secret::Plain(_))) => {
                scram_exchange(stream, reader, secret, scram_iterations)
                    .await
                    .map(|keys| matches!(secret, Secret::Scram(_)).then_some(keys))
            }
            _ => Err(failed()),
        },
        other => Err(AuthError::Unsupported(other)),
    }
    .map_err(|e| match e {
        AuthError::Scram(ScramError::InvalidProof) => failed(),
        other => other,
    })
}

/// Does a cleartext password match the secret (of any of the three forms)?
fn password_matches(secret: &Secret, user: &str, password: &str) -> bool {
    match secret {
        Secret::Plain(p) => constant_time_eq(p.as_bytes(), password.as_bytes()),
        Secret::Md5(s) => constant_time_eq(s.as_bytes(), md5_secret(user, password).as_bytes()),
        Secret::Scram(_) => scram_accepts_password(secret, password),
    }
}

/// Check a plaintext password against a SCRAM verifier by running both sides of
/// the exchange in memory: the same derivation SCRAM uses, without a second copy
/// of it here.
fn scram_accepts_password(secret: &Secret, password: &str) -> bool {
    let Ok(mut server) = ScramServer::new(secret, 4096) else {
        return false;
    };
    let mut client = ScramClient::new(ScramCredentials::Password(password.to_owned()));
    let first = client.client_first();
    let Ok(server_first) = server.handle_client_first(&first) else {
        return false;
    };
    let Ok(client_final) = client.handle_server_first(&server_first) else {
        return false;
    };
    server.handle_client_final(&client_final).is_ok()
}

async fn send(stream: &mut Stream, buf: &BytesMut) -> Result<(), AuthError> {
    stream
        .send(buf)
        .await
        .map_err(|e| AuthError::Protocol(e.into()))
}

/// Read the client's next password-family message ('p').
async fn read_password_message(
    stream: &mut Stream,
    reader: &mut MessageReader,
    buf: &mut BytesMut,
) -> Result<(), AuthError> {
    // Password messages are small; 8 KiB leaves room for long SCRAM messages.
    match reader.read_message(stream, buf, 8192).await? {
        tag::PASSWORD => Ok(()),
        other => Err(ProtocolError::Unexpected {
            tag: other,
            phase: "authentication",
        }
        .into()),
    }
}

/// `auth_type = pam`: ask for the password in the clear and have PAM check it.
/// Returns the password, which the pool then logs in to PostgreSQL with.
pub async fn pam_exchange(
    stream: &mut Stream,
    reader: &mut MessageReader,
    user: &str,
    pam: &PamThread,
    remote: Option<std::net::IpAddr>,
) -> Result<String, AuthError> {
    let password = ask_cleartext(stream, reader).await?;
    pam.check(user, &password, remote)
        .await
        .map(|()| password)
        .map_err(AuthError::Pam)
}

async fn ask_cleartext(
    stream: &mut Stream,
    reader: &mut MessageReader,
) -> Result<String, AuthError> {
    let mut buf = BytesMut::with_capacity(64);
    backend::put_auth_cleartext(&mut buf);
    send(stream, &buf).await?;
    read_password_message(stream, reader, &mut buf).await?;
    let password = frontend::parse_password(&buf)?;
    Ok(String::from_utf8_lossy(password).into_owned())
}

async fn md5_exchange(
    stream: &mut Stream,
    reader: &mut MessageReader,
    user: &str,
    secret: &Secret,
) -> Result<(), AuthError> {
    let mut salt = [0u8; 4];
    rand::thread_rng().fill_bytes(&mut salt);
    let mut buf = BytesMut::with_capacity(64);
    backend::put_auth_md5(&mut buf, salt);
    send(stream, &buf).await?;
    read_password_message(stream, reader, &mut buf).await?;
    let response = frontend::parse_password(&buf)?;
    if verify_md5_response(secret, user, salt, response) {
        Ok(())
    } else {
        Err(AuthError::Failed(user.to_owned()))
    }
}

async fn scram_exchange(
    stream: &mut Stream,
    reader: &mut MessageReader,
    secret: &Secret,
    iterations: u32,
) -> Result<ScramKeys, AuthError> {
    let mut server = ScramServer::new(secret, iterations)?;
    let mut buf = BytesMut::with_capacity(256);
    backend::put_auth_sasl(&mut buf);
    send(stream, &buf).await?;

    read_password_message(stream, reader, &mut buf).await?;
    let (mechanism, data) = frontend::parse_sasl_initial_response(&buf)?;
    if mechanism != "SCRAM-SHA-256" {
        return Err(ProtocolError::Malformed {
            what: "SASLInitialResponse (unsupported mechanism)",
        }
        .into());
    }
    let server_first = server.handle_client_first(data)?;
    let mut out = BytesMut::with_capacity(256);
    backend::put_auth_sasl_continue(&mut out, &server_first);
    send(stream, &out).await?;

    read_password_message(stream, reader, &mut buf).await?;
    let (server_final, keys) = server.handle_client_final(&buf)?;
    out.clear();
    backend::put_auth_sasl_final(&mut out, &server_final);
    send(stream, &out).await?;
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::scram::{parse_scram_verifier, scram_verifier};

    #[test]
    fn cleartext_matches_every_secret_form() {
        let plain = Secret::Plain("pw".into());
        let md5 = Secret::Md5(md5_secret("alice", "pw"));
        let scram =
            Secret::Scram(parse_scram_verifier(&scram_verifier("pw", b"salt1234", 4096)).unwrap());
        for secret in [&plain, &md5, &scram] {
            assert!(password_matches(secret, "alice", "pw"), "{secret:?}");
            assert!(!password_matches(secret, "alice", "wrong"), "{secret:?}");
        }
        // md5 secrets are salted with the user name.
        assert!(!password_matches(&md5, "bob", "pw"));
    }
}
