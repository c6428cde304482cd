//! A minimal PostgreSQL wire-protocol client for what libpq and tokio-postgres
//! cannot send: arbitrary startup parameters such as `TimeZone`, spelled the way
//! JDBC spells it, or reading a result at a pace of its own. It speaks protocol
//! 3.0 over TCP, plain or TLS (rustls), authenticates with trust, cleartext or
//! md5 (not SCRAM), and runs simple queries.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

use super::wire::{md5_password_response, message, put_cstr, startup_packet, PROTOCOL_3_0};

/// What a [`RawClient`] talks over: TCP, or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + fmt::Debug> Io for T {}

/// What a [`RawClient`] call can fail with.
#[derive(Debug, Clone)]
pub enum RawError {
    /// The socket failed or the peer broke the protocol.
    Io(String),
    /// An ErrorResponse.
    Server {
        severity: String,
        code: String,
        message: String,
    },
}

impl RawError {
    /// The SQLSTATE of an ErrorResponse.
    pub fn code(&self) -> Option<&str> {
        match self {
            RawError::Server { code, .. } => Some(code),
            RawError::Io(_) => None,
        }
    }
}

impl fmt::Display for RawError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RawError::Io(e) => write!(f, "I/O or protocol error: {e}"),
            RawError::Server {
                severity,
                code,
                message,
            } => write!(f, "{severity} {code}: {message}"),
        }
    }
}

impl From<std::io::Error> for RawError {
    fn from(e: std::io::Error) -> Self {
        RawError::Io(e.to_string())
    }
}

/// One row of a simple query: text values, `None` for NULL.
pub type Row = Vec<Option<String>>;

/// A logged-in raw protocol connection.
#[derive(Debug)]
pub struct RawClient {
    stream: BufReader<Box<dyn Io>>,
    /// ParameterStatus values the server (or pooler) sent, updated as they arrive.
    pub parameters: HashMap<String, String>,
    /// BackendKeyData (process id, secret key), if sent.
    pub backend_key: Option<(i32, i32)>,
}

impl RawClient {
    /// Connect to 127.0.0.1:`port` and log in with these startup parameters
    /// (`user` and `database` must be among them). `password` answers a
    /// cleartext or md5 request.
    ///
    /// The returned future owns copies of its arguments.
    pub fn connect(
        port: u16,
        startup: &[(&str, &str)],
        password: Option<&str>,
    ) -> impl Future<Output = Result<RawClient, RawError>> + Send + 'static {
        let startup: Vec<(String, String)> = startup
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let password = password.map(str::to_string);
        Self::login(port, startup, password)
    }

    /// Like [`RawClient::connect`], over TLS: an SSLRequest, then a handshake
    /// that trusts the CA certificate in `ca_file` and checks the name
    /// `localhost`. The socket's receive buffer is `recv_buffer` bytes, so
    /// that a slow reader (see [`RawClient::simple_query_paced`]) makes the
    /// pooler wait on a full socket.
    pub async fn connect_tls(
        port: u16,
        startup: &[(&str, &str)],
        password: Option<&str>,
        ca_file: &Path,
        recv_buffer: u32,
    ) -> Result<RawClient, RawError> {
        let socket = TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(recv_buffer)?;
        let mut tcp = socket.connect(([127, 0, 0, 1], port).into()).await?;
        tcp.write_all(&super::wire::ssl_request()).await?;
        if tcp.read_u8().await? != b'S' {
            return Err(RawError::Io("TLS refused by the pooler".into()));
        }
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_file_iter(ca_file)
            .map_err(|e| RawError::Io(format!("{e:?}")))?
        {
            let cert = cert.map_err(|e| RawError::Io(format!("{e:?}")))?;
            roots.add(cert).map_err(|e| RawError::Io(e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RawError::Io(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("localhost").expect("a DNS name");
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await?;
        let startup = startup
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Self::login_over(Box::new(tls), startup, password).await
    }

    async fn login(
        port: u16,
        startup: Vec<(String, String)>,
        password: Option<String>,
    ) -> Result<RawClient, RawError> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let _ = stream.set_nodelay(true);
        Self::login_over(Box::new(stream), startup, password.as_deref()).await
    }

    async fn login_over(
        stream: Box<dyn Io>,
        startup: Vec<(String, String)>,
        password: Option<&str>,
    ) -> Result<RawClient, RawError> {
        let user = startup
            .iter()
            .find(|(k, _)| k == "user")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| RawError::Io("startup parameters need a user".into()))?;
        let mut client = RawClient {
            stream: BufReader::new(stream),
            parameters: HashMap::new(),
            backend_key: None,
        };

        let params: Vec<(&str, &str)> = startup
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let packet = startup_packet(PROTOCOL_3_0, &params);
        client.stream.get_mut().write_all(&packet).await?;

        loop {
            let (tag, body) = client.read_message().await?;
            match tag {
                b'R' => {
                    let code = be_i32(&body, 0)?;
                    match code {
                        0 => {}
                        3 => {
                            let password = password.ok_or_else(|| {
                                RawError::Io("cleartext password requested, none given".into())
                            })?;
                            client.send_password(password).await?;
                        }
                        5 => {
                            let password = password.ok_or_else(|| {
                                RawError::Io("md5 password requested, none given".into())
                            })?;
                            let salt = body
                                .get(4..8)
                                .ok_or_else(|| RawError::Io("short md5 request".into()))?;
                            let response = md5_password_response(&user, password, salt);
                            client.send_password(&response).await?;
                        }
                        other => {
                            return Err(RawError::Io(format!(
                                "authentication method {other} is not supported by RawClient"
                            )))
                        }
                    }
                }
                b'S' => client.note_parameter(&body)?,
                b'K' => client.backend_key = Some((be_i32(&body, 0)?, be_i32(&body, 4)?)),
                b'N' => {}
                b'E' => return Err(parse_error(&body)),
                b'Z' => return Ok(client),
                other => {
                    return Err(RawError::Io(format!(
                        "unexpected message {:?} during login",
                        other as char
                    )))
                }
            }
        }
    }

    /// Run one simple Query; all rows of all result sets, or the first error.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, RawError> {
        self.simple_query_paced(sql, Duration::ZERO).await
    }

    /// [`RawClient::simple_query`], pausing for `pause` after every 64 KiB of
    /// the answer: a client that reads slower than the pooler writes.
    pub async fn simple_query_paced(
        &mut self,
        sql: &str,
        pause: Duration,
    ) -> Result<Vec<Row>, RawError> {
        let mut body = Vec::new();
        put_cstr(&mut body, sql);
        self.send(b'Q', &body).await?;
        let mut rows = Vec::new();
        let mut error = None;
        let mut unpaused = 0;
        loop {
            let (tag, body) = self.read_message().await?;
            unpaused += body.len() + 5;
            if !pause.is_zero() && unpaused >= 64 * 1024 {
                tokio::time::sleep(pause).await;
                unpaused = 0;
            }
            match tag {
                b'T' | b'C' | b'I' | b'N' | b'n' | b's' => {}
                b'D' => rows.push(parse_data_row(&body)?),
                b'S' => self.note_parameter(&body)?,
                b'E' => {
                    if error.is_none() {
                        error = Some(parse_error(&body));
                    }
                }
                b'Z' => {
                    return match error {
                        Some(e) => Err(e),
                        None => Ok(rows),
                    }
                }
                b'G' | b'H' | b'W' => {
                    return Err(RawError::Io("COPY is not supported by RawClient".into()))
                }
                other => {
                    return Err(RawError::Io(format!(
                        "unexpected message {:?} in a query response",
                        other as char
                    )))
                }
            }
        }
    }

    /// The first column of the first row of a simple query.
    pub async fn query_value(&mut self, sql: &str) -> Result<Option<String>, RawError> {
        let rows = self.simple_query(sql).await?;
        let row = rows
            .into_iter()
            .next()
            .ok_or_else(|| RawError::Io(format!("no row from {sql:?}")))?;
        Ok(row.into_iter().next().flatten())
    }

    /// Send Terminate and close.
    pub async fn terminate(mut self) {
        let _ = self.send(b'X', &[]).await;
        let _ = self.stream.get_mut().shutdown().await;
    }

    /// Send these messages (type, body) in one write: a pipeline.
    pub async fn send_messages(&mut self, messages: &[(u8, Vec<u8>)]) -> Result<(), RawError> {
        let out: Vec<u8> = messages
            .iter()
            .flat_map(|(tag, body)| message(*tag, body))
            .collect();
        self.stream.get_mut().write_all(&out).await?;
        Ok(())
    }

    /// The next message, in short: its type letter, with `:` and the SQLSTATE
    /// for an ErrorResponse, the values joined by `,` for a DataRow, the
    /// status for ReadyForQuery. ParameterStatus and notices are noted and
    /// skipped.
    pub async fn next_answer(&mut self) -> Result<String, RawError> {
        loop {
            let (tag, body) = self.read_message().await?;
            return Ok(match tag {
                b'S' => {
                    self.note_parameter(&body)?;
                    continue;
                }
                b'N' => continue,
                b'E' => format!("E:{}", parse_error(&body).code().unwrap_or_default()),
                b'D' => {
                    let values: Vec<String> = parse_data_row(&body)?
                        .into_iter()
                        .map(|v| v.unwrap_or_else(|| "NULL".into()))
                        .collect();
                    format!("D:{}", values.join(","))
                }
                b'Z' => format!("Z:{}", body.first().map(|&b| b as char).unwrap_or('?')),
                other => (other as char).to_string(),
            });
        }
    }

    async fn send_password(&mut self, password: &str) -> Result<(), RawError> {
        let mut body = Vec::new();
        put_cstr(&mut body, password);
        self.send(b'p', &body).await
    }

    async fn send(&mut self, tag: u8, body: &[u8]) -> Result<(), RawError> {
        self.stream.get_mut().write_all(&message(tag, body)).await?;
        Ok(())
    }

    async fn read_message(&mut self) -> Result<(u8, Vec<u8>), RawError> {
        let tag = self.stream.read_u8().await?;
        let len = self.stream.read_i32().await?;
        if !(4..=64 * 1024 * 1024).contains(&len) {
            return Err(RawError::Io(format!("bad message length {len}")));
        }
        let mut body = vec![0; len as usize - 4];
        self.stream.read_exact(&mut body).await?;
        Ok((tag, body))
    }

    fn note_parameter(&mut self, body: &[u8]) -> Result<(), RawError> {
        let mut parts = body.split(|b| *b == 0);
        let name = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        self.parameters.insert(
            String::from_utf8_lossy(name).into_owned(),
            String::from_utf8_lossy(value).into_owned(),
        );
        Ok(())
    }
}

fn be_i32(body: &[u8], at: usize) -> Result<i32, RawError> {
    body.get(at..at + 4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| RawError::Io("message too short".into()))
}

fn parse_error(body: &[u8]) -> RawError {
    let mut severity = String::new();
    let mut code = String::new();
    let mut message = String::new();
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            break;
        }
        let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
        let value = String::from_utf8_lossy(&tail[..end]).into_owned();
        match field {
            b'S' => severity = value,
            b'C' => code = value,
            b'M' => message = value,
            _ => {}
        }
        rest = tail.get(end + 1..).unwrap_or(&[]);
    }
    RawError::Server {
        severity,
        code,
        message,
    }
}

fn parse_data_row(body: &[u8]) -> Result<Row, RawError> {
    let short = || RawError::Io("short DataRow".into());
    let count = i16::from_be_bytes([
        *body.first().ok_or_else(short)?,
        *body.get(1).ok_or_else(short)?,
    ]);
    let mut at = 2;
    let mut row = Vec::with_capacity(count.max(0) as usize);
    for _ in 0..count {
        let len = be_i32(body, at)?;
        at += 4;
        if len < 0 {
            row.push(None);
        } else {
            let end = at + len as usize;
            let value = body.get(at..end).ok_or_else(short)?;
            row.push(Some(String::from_utf8_lossy(value).into_owned()));
            at = end;
        }
    }
    Ok(row)
}
