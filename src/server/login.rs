//! Opening a connection to PostgreSQL and logging in: startup packet, the
//! authentication exchange the server asks for, then its parameters and key.

use std::time::Instant;

use bytes::BytesMut;
use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;

use super::{ServerError, ServerParamsReport};
use crate::auth::md5::{md5_response_from_secret, md5_secret};
use crate::auth::scram::{ScramClient, ScramCredentials, ScramKeys};
use crate::net::tls::ServerTls;
use crate::net::tuning::TcpTuning;
use crate::net::Stream;
use crate::protocol::backend::{self, AuthRequest};
use crate::protocol::error::parse_error_fields;
use crate::protocol::io::MessageReader;
use crate::protocol::{frontend, tag};

use super::address::ServerAddress;
use super::dns::{DnsCache, DnsTtl};
use crate::net::stream::PeerAddr;

/// What the pooler knows to answer a server's password request with.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// Nothing: only trust (or SCRAM pass-through keys learned from a client) works.
    #[default]
    None,
    /// A plaintext password: works for cleartext, md5 and SCRAM.
    Password(String),
    /// An md5 secret (`md5…`) from the auth file: works for md5 only.
    Md5Secret(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::None => "None",
            Credentials::Password(_) => "Password(..)",
            Credentials::Md5Secret(_) => "Md5Secret(..)",
        })
    }
}

/// Everything needed to open one server connection for a pool.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginTarget {
    pub addresses: Vec<ServerAddress>,
    pub database: String,
    pub user: String,
    pub credentials: Credentials,
    /// Extra startup parameters from the `[databases]` entry (client_encoding, …).
    pub startup_params: Vec<(String, String)>,
}

/// A freshly logged-in server connection.
pub struct LoggedIn {
    pub stream: Stream,
    pub address: ServerAddress,
    pub backend_pid: i32,
    pub backend_secret: i32,
    pub report: ServerParamsReport,
    pub connected_at: Instant,
}

/// Connect to the first address that answers and log in.
pub async fn login(
    target: &LoginTarget,
    tcp: &TcpTuning,
    dns: (&DnsCache, DnsTtl),
    tls: &ServerTls,
    scram_keys: Option<&ScramKeys>,
    max_packet: usize,
) -> Result<LoggedIn, ServerError> {
    let mut last_err = None;
    for address in &target.addresses {
        match address.connect(tcp, Some(dns)).await {
            Ok(mut stream) => {
                if let ServerAddress::Tcp { host, .. } = address {
                    start_tls(&mut stream, tls, host).await?;
                }
                // The address that answered, not the name: a cancel must reach
                // this very server, whatever DNS says later.
                let reached = match (address, stream.peer_addr()) {
                    (ServerAddress::Tcp { .. }, PeerAddr::Tcp(peer)) => ServerAddress::Tcp {
                        host: peer.ip().to_string(),
                        port: peer.port(),
                    },
                    _ => address.clone(),
                };
                return login_on(stream, reached, target, scram_keys, max_packet).await;
            }
            Err(e) => last_err = Some(ServerError::Connect(address.to_string(), e)),
        }
    }
    Err(last_err.unwrap_or(ServerError::NoAddress))
}

/// Ask a server reached over TCP for TLS, as server_tls_sslmode says, and
/// run the handshake when it agrees. `host` is the name checked against its
/// certificate under verify-full.
async fn start_tls(stream: &mut Stream, tls: &ServerTls, host: &str) -> Result<(), ServerError> {
    let Some(connector) = tls.handshaker() else {
        return Ok(());
    };
    let failed = |why: String| ServerError::Tls(host.to_owned(), why);
    let mut request = BytesMut::with_capacity(8);
    frontend::put_ssl_request(&mut request);
    stream.send(&request).await?;
    // Exactly one byte: anything after it belongs to the TLS handshake.
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await?;
    match answer[0] {
        b'S' => {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| failed(format!("'{host}' is not a host name: {e}")))?;
            stream
                .connect_tls(connector, name)
                .await
                .map_err(|e| failed(format!("handshake failed: {e}")))
        }
        b'N' if !tls.required() => Ok(()),
        b'N' => Err(failed(format!(
            "the server does not accept TLS, and server_tls_sslmode = {} requires it",
            tls.mode.as_str()
        ))),
        other => Err(ServerError::Protocol(format!(
            "unexpected answer {:?} to SSLRequest",
            char::from(other)
        ))),
    }
}

async fn login_on(
    mut stream: Stream,
    address: ServerAddress,
    target: &LoginTarget,
    scram_keys: Option<&ScramKeys>,
    max_packet: usize,
) -> Result<LoggedIn, ServerError> {
    let connected_at = Instant::now();
    let mut out = BytesMut::with_capacity(256);
    let mut params: Vec<(&str, &str)> = vec![
        ("user", target.user.as_str()),
        ("database", target.database.as_str()),
    ];
    params.extend(
        target
            .startup_params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    frontend::put_startup(&mut out, &params);
    stream.send(&out).await?;

    let mut buf = BytesMut::with_capacity(512);
    // The server sends its whole greeting at once: read it in one go.
    let mut reader = MessageReader::new();
    let mut scram: Option<ScramClient> = None;
    // Authentication.
    loop {
        let message_tag = reader
            .read_message(&mut stream, &mut buf, max_packet)
            .await?;
        match message_tag {
            tag::AUTHENTICATION => {}
            tag::ERROR_RESPONSE => return Err(ServerError::Refused(parse_error_fields(&buf))),
            tag::NOTICE_RESPONSE => continue,
            other => {
                return Err(ServerError::Protocol(format!(
                    "unexpected message '{}' during login",
                    char::from(other)
                )))
            }
        }
        out.clear();
        match backend::parse_auth_request(&buf)? {
            AuthRequest::Ok => break,
            AuthRequest::Cleartext => match &target.credentials {
                Credentials::Password(p) => frontend::put_password(&mut out, p),
                _ => return Err(ServerError::NoPassword("cleartext")),
            },
            AuthRequest::Md5(salt) => {
                let secret = match &target.credentials {
                    Credentials::Password(p) => md5_secret(&target.user, p),
                    Credentials::Md5Secret(s) => s.clone(),
                    Credentials::None => return Err(ServerError::NoPassword("md5")),
                };
                frontend::put_password(&mut out, md5_response_from_secret(&secret, salt).as_str());
            }
            AuthRequest::Sasl(mechanisms) => {
                if !mechanisms.contains(&"SCRAM-SHA-256") {
                    return Err(ServerError::Protocol(format!(
                        "server offers no supported SASL mechanism: {mechanisms:?}"
                    )));
                }
                let credentials = match (&target.credentials, scram_keys) {
                    (Credentials::Password(p), _) => ScramCredentials::Password(p.clone()),
                    (_, Some(keys)) => ScramCredentials::Keys(keys.clone()),
                    _ => return Err(ServerError::NoPassword("SCRAM-SHA-256")),
                };
                let mut client = ScramClient::new(credentials);
                let first = client.client_first();
                frontend::put_sasl_initial_response(&mut out, "SCRAM-SHA-256", &first);
                scram = Some(client);
            }
            AuthRequest::SaslContinue(data) => {
                let client = scram
                    .as_mut()
                    .ok_or_else(|| ServerError::Protocol("SASLContinue without SASL".into()))?;
                let reply = client.handle_server_first(data)?;
                frontend::put_sasl_response(&mut out, &reply);
            }
            AuthRequest::SaslFinal(data) => {
                let client = scram
                    .as_mut()
                    .ok_or_else(|| ServerError::Protocol("SASLFinal without SASL".into()))?;
                client.handle_server_final(data)?;
                continue;
            }
            AuthRequest::Other(code) => {
                return Err(ServerError::Protocol(format!(
                    "unsupported authentication method {code} requested by server"
                )))
            }
        }
        stream.send(&out).await?;
    }

    // Parameters and key, up to the first ReadyForQuery.
    let mut report = ServerParamsReport::default();
    let (mut backend_pid, mut backend_secret) = (0, 0);
    loop {
        match reader
            .read_message(&mut stream, &mut buf, max_packet)
            .await?
        {
            tag::PARAMETER_STATUS => {
                let (name, value) = backend::parse_parameter_status(&buf)?;
                report.set(name, value);
            }
            tag::BACKEND_KEY_DATA => {
                (backend_pid, backend_secret) = backend::parse_backend_key_data(&buf)?;
            }
            tag::READY_FOR_QUERY => break,
            tag::ERROR_RESPONSE => return Err(ServerError::Refused(parse_error_fields(&buf))),
            tag::NOTICE_RESPONSE => {}
            other => {
                return Err(ServerError::Protocol(format!(
                    "unexpected message '{}' after login",
                    char::from(other)
                )))
            }
        }
    }
    if reader.has_leftover() {
        // Nothing is due after ReadyForQuery; whatever came cannot be handed on.
        return Err(ServerError::Protocol(
            "unexpected data after ReadyForQuery at login".into(),
        ));
    }
    Ok(LoggedIn {
        stream,
        address,
        backend_pid,
        backend_secret,
        report,
        connected_at,
    })
}
