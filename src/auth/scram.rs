//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, in both directions.
//!
//! [`ScramServer`] is the pooler facing a client; [`ScramClient`] is the pooler logging in
//! to PostgreSQL. The byte strings they take and return are the SASL payloads carried by
//! SASLInitialResponse / AuthenticationSASLContinue / SASLResponse /
//! AuthenticationSASLFinal; framing those messages is the protocol module's job.
//!
//! PostgreSQL's dialect of SCRAM, which both sides follow:
//! - Only the mechanism `SCRAM-SHA-256` is offered. Channel binding (`-PLUS`) would need
//!   the TLS session the client actually terminates on, so a client asking for it
//!   (`p=...`) is refused; `n,,` and `y,,` are accepted (we never advertise `-PLUS`, so
//!   a `y` client has not been downgraded).
//! - The user name in client-first is ignored: the user comes from the startup packet,
//!   and libpq sends `n=`. We send `n=` too.
//! - Nonces are 18 random bytes, base64-encoded, as PostgreSQL makes them.
//! - Passwords are used as given, without SASLprep. PostgreSQL itself falls back to the
//!   raw bytes whenever SASLprep fails (e.g. a non-UTF-8 password), and SASLprep leaves
//!   printable ASCII unchanged, so for the passwords people use the result is the same.
//!   A non-ASCII password that SASLprep would rewrite (such as one containing a
//!   non-ASCII space) gives a different key here than on the server; PgBouncer
//!   normalizes, we do not yet.
//!
//! Pass-through: when a client proves itself against a verifier, the pooler recovers
//! the ClientKey (proof XOR ClientSignature). Together with the verifier's ServerKey,
//! salt and iteration count that is everything needed to log in to a PostgreSQL server
//! holding the same verifier, without ever knowing the password ([`ScramKeys`]).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::auth::compare::constant_time_eq;
use crate::auth::{ScramVerifier, Secret};

/// The SASL mechanism name, as listed in AuthenticationSASL.
pub const MECHANISM: &str = "SCRAM-SHA-256";

/// Random bytes in a nonce; PostgreSQL uses 18 (24 base64 characters).
const NONCE_LEN: usize = 18;
/// Salt length for verifiers we derive ourselves; PostgreSQL's default is 16.
const SALT_LEN: usize = 16;
/// The only GS2 header we send: no channel binding, no authorization identity.
const GS2_HEADER: &str = "n,,";
/// Prefix of a verifier string, as stored in pg_authid and userlist.txt.
const VERIFIER_PREFIX: &str = "SCRAM-SHA-256$";

/// Why a SCRAM exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ScramError {
    /// The message does not follow the SCRAM grammar; the text says which part.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding (`p=...`), which the pooler does not offer.
    #[error("SCRAM channel binding is not supported")]
    ChannelBindingNotSupported,
    /// The nonce does not continue the one this exchange started with.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// The client's proof does not match the verifier: wrong password.
    #[error("SCRAM client proof is invalid")]
    InvalidProof,
    /// The server's signature does not match: it does not hold our verifier.
    #[error("SCRAM server signature does not match")]
    ServerSignatureMismatch,
    /// The user's secret cannot drive SCRAM (an md5 secret holds no SCRAM keys).
    #[error("SCRAM authentication is not possible with an md5 secret")]
    UnsupportedSecret,
    /// Pass-through keys were derived from a verifier whose salt or iteration count
    /// differs from the server's, so the server would reject them.
    #[error(
        "the server's SCRAM salt or iteration count differs from the verifier the client \
         authenticated against; the client's SCRAM keys cannot log in to this server"
    )]
    KeysMismatch,
    /// The server ended the exchange with `e=<text>`.
    #[error("server rejected SCRAM authentication: {0}")]
    Server(String),
    /// A step was called out of order, or again after the exchange ended or failed.
    #[error("SCRAM message out of order")]
    OutOfOrder,
}

/// Keys the pooler learns when a client authenticates with SCRAM against a verifier;
/// they let it log in to PostgreSQL on the client's behalf when the server holds the
/// same verifier.
#[derive(Clone)]
pub struct ScramKeys {
    pub client_key: [u8; 32],
    pub server_key: [u8; 32],
    pub salt: Vec<u8>,
    pub iterations: u32,
}

// The keys are password equivalents for the server: keep them out of logs.
impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramKeys(iterations={}, ..)", self.iterations)
    }
}

/// What the pooler logs in to PostgreSQL with.
#[derive(Clone)]
pub enum ScramCredentials {
    /// A plaintext password (a Plain secret in auth_file, or `password=` in
    /// `[databases]`).
    Password(String),
    /// Keys recovered from the client's own SCRAM login (pass-through).
    Keys(ScramKeys),
}

impl std::fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScramCredentials::Password(_) => write!(f, "ScramCredentials::Password(..)"),
            ScramCredentials::Keys(keys) => write!(f, "ScramCredentials::Keys({keys:?})"),
        }
    }
}

enum ServerState {
    AwaitingClientFirst,
    AwaitingClientFinal {
        /// `n,,` or `y,,`: the client must echo it, base64-encoded, in `c=`.
        gs2_header: String,
        client_first_bare: String,
        server_first: String,
        /// Client nonce followed by ours.
        nonce: String,
    },
    /// Succeeded or failed; nothing more is accepted.
    Finished,
}

/// The pooler's server side of SCRAM, facing a client.
pub struct ScramServer {
    verifier: ScramVerifier,
    server_nonce: String,
    state: ServerState,
}

impl std::fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramServer({:?}, ..)", self.verifier)
    }
}

impl ScramServer {
    /// From the user's auth_file secret.
    ///
    /// Plain: derive a verifier with a fresh random salt and `iterations` (the
    /// scram_iterations setting). This runs PBKDF2 with that many rounds, so it costs
    /// CPU time proportional to `iterations`. The keys such an exchange yields can log
    /// in to a server only if its verifier has the same salt, which it will not: use the
    /// password itself for the server login instead. Scram: use the verifier.
    /// Md5: [`ScramError::UnsupportedSecret`].
    pub fn new(secret: &Secret, iterations: u32) -> Result<Self, ScramError> {
        Self::with_nonce(secret, iterations, random_nonce())
    }

    /// `new` with a chosen server nonce, so that tests can replay RFC 7677.
    fn with_nonce(
        secret: &Secret,
        iterations: u32,
        server_nonce: String,
    ) -> Result<Self, ScramError> {
        let verifier = match secret {
            Secret::Scram(verifier) => verifier.clone(),
            Secret::Plain(password) => {
                let salt: [u8; SALT_LEN] = rand::random();
                // Zero rounds is not PBKDF2 and clients refuse `i=0`; a misconfigured
                // scram_iterations must not lock every plain-password user out.
                verifier_from_password(password, &salt, iterations.max(1))
            }
            Secret::Md5(_) => return Err(ScramError::UnsupportedSecret),
        };
        Ok(ScramServer {
            verifier,
            server_nonce,
            state: ServerState::AwaitingClientFirst,
        })
    }

    /// client-first-message (the SASLInitialResponse data) -> server-first-message.
    pub fn handle_client_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        // Taking the state out means any error below leaves the exchange finished.
        let ServerState::AwaitingClientFirst =
            std::mem::replace(&mut self.state, ServerState::Finished)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let message = utf8(data)?;

        let (flag, rest) = message
            .split_once(',')
            .ok_or(ScramError::Malformed("missing GS2 header"))?;
        match flag {
            "n" | "y" => {}
            _ if flag.starts_with("p=") => return Err(ScramError::ChannelBindingNotSupported),
            _ => return Err(ScramError::Malformed("invalid channel binding flag")),
        }
        let (authzid, client_first_bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("missing GS2 header"))?;
        if !authzid.is_empty() {
            return Err(ScramError::Malformed(
                "authorization identity is not supported",
            ));
        }

        let mut parts = client_first_bare.split(',');
        let first = parts.next();
        reject_mandatory_extension(first)?;
        // The user name is ignored, as PostgreSQL does: the startup packet names the user.
        attribute(first, "n=", "expected user name attribute n=")?;
        let client_nonce = attribute(parts.next(), "r=", "expected nonce attribute r=")?;
        if !is_valid_nonce(client_nonce) {
            return Err(ScramError::Malformed("invalid client nonce"));
        }
        check_extensions(parts)?;

        let nonce = format!("{client_nonce}{}", self.server_nonce);
        let server_first = format!(
            "r={nonce},s={},i={}",
            BASE64.encode(&self.verifier.salt),
            self.verifier.iterations
        );
        let reply = server_first.clone().into_bytes();
        self.state = ServerState::AwaitingClientFinal {
            gs2_header: format!("{flag},,"),
            client_first_bare: client_first_bare.to_owned(),
            server_first,
            nonce,
        };
        Ok(reply)
    }

    /// client-final-message -> (server-final-message `v=...`, keys).
    ///
    /// Verifies the proof: ClientKey = proof XOR ClientSignature, and H(ClientKey) must
    /// equal StoredKey (compared in constant time).
    pub fn handle_client_final(&mut self, data: &[u8]) -> Result<(Vec<u8>, ScramKeys), ScramError> {
        let ServerState::AwaitingClientFinal {
            gs2_header,
            client_first_bare,
            server_first,
            nonce,
        } = std::mem::replace(&mut self.state, ServerState::Finished)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let message = utf8(data)?;

        // The proof is the last attribute, and the AuthMessage covers everything before it.
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("expected proof attribute p="))?;
        if proof.contains(',') {
            return Err(ScramError::Malformed("proof must be the last attribute"));
        }
        let proof: [u8; 32] = decode_base64(proof, "proof is not valid base64")?
            .try_into()
            .map_err(|_| ScramError::Malformed("proof has the wrong length"))?;

        let mut parts = without_proof.split(',');
        let binding = attribute(parts.next(), "c=", "expected channel binding attribute c=")?;
        let binding = decode_base64(binding, "channel binding is not valid base64")?;
        if binding != gs2_header.as_bytes() {
            if binding.starts_with(b"p=") {
                return Err(ScramError::ChannelBindingNotSupported);
            }
            return Err(ScramError::Malformed(
                "channel binding does not match the GS2 header",
            ));
        }
        let final_nonce = attribute(parts.next(), "r=", "expected nonce attribute r=")?;
        if final_nonce != nonce {
            return Err(ScramError::NonceMismatch);
        }
        check_extensions(parts)?;

        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let client_signature = hmac_sha256(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key = xor(&proof, &client_signature);
        if !constant_time_eq(&sha256(&client_key), &self.verifier.stored_key) {
            return Err(ScramError::InvalidProof);
        }
        let server_signature = hmac_sha256(&self.verifier.server_key, auth_message.as_bytes());
        let keys = ScramKeys {
            client_key,
            server_key: self.verifier.server_key,
            salt: self.verifier.salt.clone(),
            iterations: self.verifier.iterations,
        };
        Ok((
            format!("v={}", BASE64.encode(server_signature)).into_bytes(),
            keys,
        ))
    }
}

enum ClientState {
    Initial,
    AwaitingServerFirst { client_first_bare: String },
    AwaitingServerFinal { server_signature: [u8; 32] },
    Finished,
}

/// The pooler's client side of SCRAM, logging in to PostgreSQL.
pub struct ScramClient {
    credentials: ScramCredentials,
    /// Empty in real use (PostgreSQL ignores it); tests set it to replay RFC 7677.
    username: String,
    nonce: String,
    state: ClientState,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramClient({:?}, ..)", self.credentials)
    }
}

impl ScramClient {
    pub fn new(credentials: ScramCredentials) -> Self {
        Self::with_nonce(credentials, String::new(), random_nonce())
    }

    /// `new` with a chosen user name and nonce, so that tests can replay RFC 7677. The
    /// user name is sent as is: it must not contain `,` or `=`.
    fn with_nonce(credentials: ScramCredentials, username: String, nonce: String) -> Self {
        ScramClient {
            credentials,
            username,
            nonce,
            state: ClientState::Initial,
        }
    }

    /// SASLInitialResponse data: `n,,n=,r=<nonce>`.
    pub fn client_first(&mut self) -> Vec<u8> {
        let client_first_bare = format!("n={},r={}", self.username, self.nonce);
        let message = format!("{GS2_HEADER}{client_first_bare}");
        self.state = ClientState::AwaitingServerFirst { client_first_bare };
        message.into_bytes()
    }

    /// server-first (AuthenticationSASLContinue data) -> client-final (SASLResponse data).
    ///
    /// With a password this runs PBKDF2 with the server's iteration count. With keys,
    /// the server's salt and iteration count must be the keys' own, or
    /// [`ScramError::KeysMismatch`] is returned before anything is sent: the server
    /// would refuse the proof anyway, and this error says why.
    pub fn handle_server_first(&mut self, data: &[u8]) -> Result<Vec<u8>, ScramError> {
        let ClientState::AwaitingServerFirst { client_first_bare } =
            std::mem::replace(&mut self.state, ClientState::Finished)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let message = utf8(data)?;

        let mut parts = message.split(',');
        let first = parts.next();
        reject_mandatory_extension(first)?;
        let nonce = attribute(first, "r=", "expected nonce attribute r=")?;
        // The server must extend our nonce, not replace it, or this could be a replay.
        if nonce.len() <= self.nonce.len() || !nonce.starts_with(&self.nonce) {
            return Err(ScramError::NonceMismatch);
        }
        if !is_valid_nonce(nonce) {
            return Err(ScramError::Malformed("invalid server nonce"));
        }
        let salt = attribute(parts.next(), "s=", "expected salt attribute s=")?;
        let salt = decode_base64(salt, "salt is not valid base64")?;
        if salt.is_empty() {
            return Err(ScramError::Malformed("empty salt"));
        }
        let iterations = attribute(parts.next(), "i=", "expected iteration count i=")?;
        let iterations =
            parse_iterations(iterations).ok_or(ScramError::Malformed("invalid iteration count"))?;
        check_extensions(parts)?;

        let (client_key, server_key) = match &self.credentials {
            ScramCredentials::Password(password) => {
                let salted = salted_password(password, &salt, iterations);
                (
                    hmac_sha256(&salted, b"Client Key"),
                    hmac_sha256(&salted, b"Server Key"),
                )
            }
            ScramCredentials::Keys(keys) => {
                if keys.salt != salt || keys.iterations != iterations {
                    return Err(ScramError::KeysMismatch);
                }
                (keys.client_key, keys.server_key)
            }
        };

        let without_proof = format!("c={},r={nonce}", BASE64.encode(GS2_HEADER));
        let auth_message = format!("{client_first_bare},{message},{without_proof}");
        let stored_key = sha256(&client_key);
        let client_signature = hmac_sha256(&stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        self.state = ClientState::AwaitingServerFinal {
            server_signature: hmac_sha256(&server_key, auth_message.as_bytes()),
        };
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)).into_bytes())
    }

    /// server-final (AuthenticationSASLFinal data): `v=...` is checked against the
    /// expected ServerSignature in constant time; `e=...` becomes
    /// [`ScramError::Server`] with the server's text.
    pub fn handle_server_final(&mut self, data: &[u8]) -> Result<(), ScramError> {
        let ClientState::AwaitingServerFinal { server_signature } =
            std::mem::replace(&mut self.state, ClientState::Finished)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let message = utf8(data)?;
        let first = message.split(',').next();
        if let Some(error) = first.and_then(|part| part.strip_prefix("e=")) {
            return Err(ScramError::Server(error.to_owned()));
        }
        let signature = attribute(first, "v=", "expected verifier attribute v=")?;
        let signature = decode_base64(signature, "server signature is not valid base64")?;
        if !constant_time_eq(&signature, &server_signature) {
            return Err(ScramError::ServerSignatureMismatch);
        }
        Ok(())
    }
}

/// Build a verifier string `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
/// from a password, as PostgreSQL stores it (used by tests and tools).
pub fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let verifier = verifier_from_password(password, salt, iterations);
    format!(
        "{VERIFIER_PREFIX}{}:{}${}:{}",
        verifier.iterations,
        BASE64.encode(&verifier.salt),
        BASE64.encode(verifier.stored_key),
        BASE64.encode(verifier.server_key)
    )
}

/// Parse `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 fields).
/// None unless every part is present and well formed: a positive iteration count, a
/// non-empty salt and two 32-byte keys.
pub fn parse_scram_verifier(s: &str) -> Option<ScramVerifier> {
    let rest = s.strip_prefix(VERIFIER_PREFIX)?;
    let (iterations_salt, keys) = rest.split_once('$')?;
    let (iterations, salt) = iterations_salt.split_once(':')?;
    let (stored_key, server_key) = keys.split_once(':')?;
    let salt = BASE64.decode(salt).ok().filter(|salt| !salt.is_empty())?;
    Some(ScramVerifier {
        iterations: parse_iterations(iterations)?,
        salt,
        stored_key: BASE64.decode(stored_key).ok()?.try_into().ok()?,
        server_key: BASE64.decode(server_key).ok()?.try_into().ok()?,
    })
}

fn verifier_from_password(password: &str, salt: &[u8], iterations: u32) -> ScramVerifier {
    let salted = salted_password(password, salt, iterations);
    ScramVerifier {
        iterations,
        salt: salt.to_vec(),
        stored_key: sha256(&hmac_sha256(&salted, b"Client Key")),
        server_key: hmac_sha256(&salted, b"Server Key"),
    }
}

/// SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, i). No SASLprep: see the
/// module documentation.
fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations)
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

fn xor(a: &[u8; 32], b: &[u8; 32]) -> [u8; 32] {
    std::array::from_fn(|i| a[i] ^ b[i])
}

fn random_nonce() -> String {
    BASE64.encode(rand::random::<[u8; NONCE_LEN]>())
}

fn utf8(data: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(data).map_err(|_| ScramError::Malformed("not valid UTF-8"))
}

fn decode_base64(value: &str, what: &'static str) -> Result<Vec<u8>, ScramError> {
    BASE64
        .decode(value)
        .map_err(|_| ScramError::Malformed(what))
}

/// The value of `part` if it is the attribute `name` (given with its `=`).
fn attribute<'a>(
    part: Option<&'a str>,
    name: &str,
    what: &'static str,
) -> Result<&'a str, ScramError> {
    part.and_then(|part| part.strip_prefix(name))
        .ok_or(ScramError::Malformed(what))
}

/// RFC 5802 lets a peer mark an extension as mandatory with `m=`; we know none.
fn reject_mandatory_extension(first: Option<&str>) -> Result<(), ScramError> {
    match first {
        Some(part) if part.starts_with("m=") => Err(ScramError::Malformed(
            "mandatory extensions are not supported",
        )),
        _ => Ok(()),
    }
}

/// Optional extensions may follow the known attributes and are ignored, but they must
/// still look like `<letter>=<value>`.
fn check_extensions<'a>(parts: impl Iterator<Item = &'a str>) -> Result<(), ScramError> {
    for part in parts {
        let bytes = part.as_bytes();
        if bytes.len() < 2 || !bytes[0].is_ascii_alphabetic() || bytes[1] != b'=' {
            return Err(ScramError::Malformed("invalid attribute"));
        }
    }
    Ok(())
}

/// RFC 5802 `printable`: visible ASCII except `,`.
fn is_valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// A positive decimal count; `str::parse` alone would also accept `+4096`.
fn parse_iterations(value: &str) -> Option<u32> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|&iterations| iterations > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 section 3, user "user", password "pencil".
    const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    // Computed independently with Python's hashlib/hmac from the RFC's password, salt
    // and iteration count.
    const RFC_VERIFIER: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$\
                                WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:\
                                wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
    const RFC_CLIENT_KEY: &str = "pg/JI9Z+hkSpLRa5btpe9GVrDHJcSEN0viVTVXaZbos=";

    // Few rounds keep the round-trip tests fast in debug builds; the RFC vector
    // covers the real count.
    const ITERATIONS: u32 = 64;

    fn rfc_salt() -> Vec<u8> {
        BASE64.decode(RFC_SALT).unwrap()
    }

    fn scram_secret(password: &str, salt: &[u8], iterations: u32) -> Secret {
        Secret::Scram(parse_scram_verifier(&scram_verifier(password, salt, iterations)).unwrap())
    }

    /// Runs a whole exchange; returns the keys the server learned.
    fn exchange(
        client: &mut ScramClient,
        server: &mut ScramServer,
    ) -> Result<ScramKeys, ScramError> {
        let server_first = server.handle_client_first(&client.client_first())?;
        let client_final = client.handle_server_first(&server_first)?;
        let (server_final, keys) = server.handle_client_final(&client_final)?;
        client.handle_server_final(&server_final)?;
        Ok(keys)
    }

    fn password_client(password: &str) -> ScramClient {
        ScramClient::new(ScramCredentials::Password(password.into()))
    }

    /// The server-first and client-final of a fresh exchange, for tampering tests.
    fn started(password: &str) -> (ScramServer, String, String) {
        let mut server =
            ScramServer::new(&scram_secret("secret", b"0123456789abcdef", ITERATIONS), 0).unwrap();
        let mut client = password_client(password);
        let server_first = server.handle_client_first(&client.client_first()).unwrap();
        let client_final = client.handle_server_first(&server_first).unwrap();
        (
            server,
            String::from_utf8(server_first).unwrap(),
            String::from_utf8(client_final).unwrap(),
        )
    }

    #[test]
    fn verifier_matches_independent_computation() {
        assert_eq!(scram_verifier("pencil", &rfc_salt(), 4096), RFC_VERIFIER);
    }

    #[test]
    fn rfc7677_client_side() {
        let mut client = ScramClient::with_nonce(
            ScramCredentials::Password("pencil".into()),
            "user".into(),
            RFC_CLIENT_NONCE.into(),
        );
        assert_eq!(client.client_first(), RFC_CLIENT_FIRST.as_bytes());
        let client_final = client
            .handle_server_first(RFC_SERVER_FIRST.as_bytes())
            .unwrap();
        assert_eq!(String::from_utf8(client_final).unwrap(), RFC_CLIENT_FINAL);
        client
            .handle_server_final(RFC_SERVER_FINAL.as_bytes())
            .unwrap();
    }

    #[test]
    fn rfc7677_server_side() {
        let secret = Secret::Scram(parse_scram_verifier(RFC_VERIFIER).unwrap());
        let mut server = ScramServer::with_nonce(&secret, 0, RFC_SERVER_NONCE.into()).unwrap();
        let server_first = server
            .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
            .unwrap();
        assert_eq!(String::from_utf8(server_first).unwrap(), RFC_SERVER_FIRST);
        let (server_final, keys) = server
            .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
            .unwrap();
        assert_eq!(String::from_utf8(server_final).unwrap(), RFC_SERVER_FINAL);
        assert_eq!(BASE64.encode(keys.client_key), RFC_CLIENT_KEY);
        assert_eq!(keys.salt, rfc_salt());
        assert_eq!(keys.iterations, 4096);
    }

    #[test]
    fn rfc7677_keys_client_reproduces_password_client() {
        let secret = Secret::Scram(parse_scram_verifier(RFC_VERIFIER).unwrap());
        let mut server = ScramServer::with_nonce(&secret, 0, RFC_SERVER_NONCE.into()).unwrap();
        server
            .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
            .unwrap();
        let (_, keys) = server
            .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
            .unwrap();
        // Keys alone must produce the very proof the password produced.
        let mut client = ScramClient::with_nonce(
            ScramCredentials::Keys(keys),
            "user".into(),
            RFC_CLIENT_NONCE.into(),
        );
        client.client_first();
        let client_final = client
            .handle_server_first(RFC_SERVER_FIRST.as_bytes())
            .unwrap();
        assert_eq!(String::from_utf8(client_final).unwrap(), RFC_CLIENT_FINAL);
        client
            .handle_server_final(RFC_SERVER_FINAL.as_bytes())
            .unwrap();
    }

    #[test]
    fn client_first_sends_empty_user_and_fresh_nonce() {
        let first = String::from_utf8(password_client("x").client_first()).unwrap();
        let nonce = first.strip_prefix("n,,n=,r=").unwrap();
        assert_eq!(BASE64.decode(nonce).unwrap().len(), NONCE_LEN);
        let other = String::from_utf8(password_client("x").client_first()).unwrap();
        assert_ne!(first, other);
    }

    #[test]
    fn round_trip_against_plain_secret() {
        let mut server = ScramServer::new(&Secret::Plain("s3cret".into()), ITERATIONS).unwrap();
        let keys = exchange(&mut password_client("s3cret"), &mut server).unwrap();
        assert_eq!(keys.iterations, ITERATIONS);
        assert_eq!(keys.salt.len(), SALT_LEN);
    }

    #[test]
    fn plain_secret_gets_fresh_salt_each_time() {
        let secret = Secret::Plain("s3cret".into());
        let a = ScramServer::new(&secret, ITERATIONS).unwrap();
        let b = ScramServer::new(&secret, ITERATIONS).unwrap();
        assert_ne!(a.verifier.salt, b.verifier.salt);
    }

    #[test]
    fn zero_iterations_setting_still_works() {
        let mut server = ScramServer::new(&Secret::Plain("s3cret".into()), 0).unwrap();
        let keys = exchange(&mut password_client("s3cret"), &mut server).unwrap();
        assert_eq!(keys.iterations, 1);
    }

    #[test]
    fn round_trip_against_scram_verifier() {
        let secret = scram_secret("s3cret", b"some salt", ITERATIONS);
        let mut server = ScramServer::new(&secret, 4096).unwrap();
        let keys = exchange(&mut password_client("s3cret"), &mut server).unwrap();
        // The verifier's parameters win over the scram_iterations setting.
        assert_eq!(keys.iterations, ITERATIONS);
        assert_eq!(keys.salt, b"some salt");
    }

    #[test]
    fn pass_through_keys_log_in_to_a_server_with_the_same_verifier() {
        let secret = scram_secret("s3cret", b"shared salt", ITERATIONS);
        let mut pooler = ScramServer::new(&secret, 0).unwrap();
        let keys = exchange(&mut password_client("s3cret"), &mut pooler).unwrap();

        let mut postgres = ScramServer::new(&secret, 0).unwrap();
        let mut login = ScramClient::new(ScramCredentials::Keys(keys.clone()));
        exchange(&mut login, &mut postgres).unwrap();

        // The same user with a different verifier on the server: refused early.
        let mut postgres =
            ScramServer::new(&scram_secret("s3cret", b"other salt", ITERATIONS), 0).unwrap();
        let mut login = ScramClient::new(ScramCredentials::Keys(keys.clone()));
        assert!(matches!(
            exchange(&mut login, &mut postgres),
            Err(ScramError::KeysMismatch)
        ));
        let mut postgres =
            ScramServer::new(&scram_secret("s3cret", b"shared salt", ITERATIONS + 1), 0).unwrap();
        let mut login = ScramClient::new(ScramCredentials::Keys(keys));
        assert!(matches!(
            exchange(&mut login, &mut postgres),
            Err(ScramError::KeysMismatch)
        ));
    }

    #[test]
    fn keys_from_plain_secret_do_not_fit_a_real_verifier() {
        let mut pooler = ScramServer::new(&Secret::Plain("s3cret".into()), ITERATIONS).unwrap();
        let keys = exchange(&mut password_client("s3cret"), &mut pooler).unwrap();
        let mut postgres =
            ScramServer::new(&scram_secret("s3cret", b"pg salt", ITERATIONS), 0).unwrap();
        let mut login = ScramClient::new(ScramCredentials::Keys(keys));
        assert!(matches!(
            exchange(&mut login, &mut postgres),
            Err(ScramError::KeysMismatch)
        ));
    }

    #[test]
    fn wrong_password_is_an_invalid_proof() {
        let (mut server, _, client_final) = started("wrong");
        assert!(matches!(
            server.handle_client_final(client_final.as_bytes()),
            Err(ScramError::InvalidProof)
        ));
        let mut server = ScramServer::new(&Secret::Plain("right".into()), ITERATIONS).unwrap();
        assert!(matches!(
            exchange(&mut password_client("wrong"), &mut server),
            Err(ScramError::InvalidProof)
        ));
    }

    #[test]
    fn tampered_proof_is_invalid() {
        let (mut server, _, client_final) = started("secret");
        let (head, proof) = client_final.rsplit_once(",p=").unwrap();
        let mut proof = BASE64.decode(proof).unwrap();
        proof[0] ^= 1;
        let tampered = format!("{head},p={}", BASE64.encode(proof));
        assert!(matches!(
            server.handle_client_final(tampered.as_bytes()),
            Err(ScramError::InvalidProof)
        ));
    }

    #[test]
    fn server_rejects_tampered_nonce() {
        let (mut server, _, client_final) = started("secret");
        let tampered = client_final.replacen(",r=", ",r=X", 1);
        assert!(matches!(
            server.handle_client_final(tampered.as_bytes()),
            Err(ScramError::NonceMismatch)
        ));
    }

    #[test]
    fn client_rejects_server_nonce_that_does_not_extend_its_own() {
        for server_first in [
            "r=someoneelse,s=c2FsdA==,i=4096",
            "r=NONCE,s=c2FsdA==,i=4096",
        ] {
            let mut client = ScramClient::with_nonce(
                ScramCredentials::Password("x".into()),
                String::new(),
                "NONCE".into(),
            );
            client.client_first();
            assert!(matches!(
                client.handle_server_first(server_first.as_bytes()),
                Err(ScramError::NonceMismatch)
            ));
        }
    }

    #[test]
    fn channel_binding_is_refused() {
        let mut server = ScramServer::new(&Secret::Plain("x".into()), 1).unwrap();
        assert!(matches!(
            server.handle_client_first(b"p=tls-server-end-point,,n=,r=abc"),
            Err(ScramError::ChannelBindingNotSupported)
        ));
        // Claiming channel binding only in client-final is refused as well.
        let (mut server, _, client_final) = started("secret");
        let cbind = BASE64.encode("p=tls-server-end-point,,");
        let tampered = client_final.replacen("c=biws", &format!("c={cbind}"), 1);
        assert!(matches!(
            server.handle_client_final(tampered.as_bytes()),
            Err(ScramError::ChannelBindingNotSupported)
        ));
    }

    #[test]
    fn client_supporting_channel_binding_is_accepted_without_it() {
        let mut server = ScramServer::new(&Secret::Plain("x".into()), 1).unwrap();
        server.handle_client_first(b"y,,n=,r=abc").unwrap();
        // A `y` client must echo `y,,` in c=; echoing `n,,` is a mismatch.
        assert!(matches!(
            server.handle_client_final(b"c=biws,r=abc,p=AAAA"),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn server_reports_error_text() {
        let mut client = password_client("x");
        let first = String::from_utf8(client.client_first()).unwrap();
        let nonce = first.strip_prefix("n,,n=,r=").unwrap();
        client
            .handle_server_first(format!("r={nonce}srv,s=c2FsdA==,i=1").as_bytes())
            .unwrap();
        match client.handle_server_final(b"e=invalid-proof") {
            Err(ScramError::Server(text)) => assert_eq!(text, "invalid-proof"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn wrong_server_signature_is_refused() {
        let mut server = ScramServer::new(&scram_secret("secret", b"salt", ITERATIONS), 0).unwrap();
        let mut client = password_client("secret");
        let server_first = server.handle_client_first(&client.client_first()).unwrap();
        let client_final = client.handle_server_first(&server_first).unwrap();
        server.handle_client_final(&client_final).unwrap();
        let forged = format!("v={}", BASE64.encode([7u8; 32]));
        assert!(matches!(
            client.handle_server_final(forged.as_bytes()),
            Err(ScramError::ServerSignatureMismatch)
        ));
    }

    #[test]
    fn md5_secret_is_unsupported() {
        let secret = Secret::Md5("md53175bce1d3201d16594cebf9d7eb3f9d".into());
        assert!(matches!(
            ScramServer::new(&secret, 4096),
            Err(ScramError::UnsupportedSecret)
        ));
    }

    #[test]
    fn steps_out_of_order_are_refused() {
        let mut server = ScramServer::new(&Secret::Plain("x".into()), 1).unwrap();
        assert!(matches!(
            server.handle_client_final(b"c=biws,r=a,p=AAAA"),
            Err(ScramError::OutOfOrder)
        ));
        let mut client = password_client("x");
        assert!(matches!(
            client.handle_server_first(b"r=a,s=c2FsdA==,i=1"),
            Err(ScramError::OutOfOrder)
        ));
        assert!(matches!(
            client.handle_server_final(b"v=AAAA"),
            Err(ScramError::OutOfOrder)
        ));

        // A failed step ends the exchange: no second guess on the same nonce.
        let (mut server, _, client_final) = started("wrong");
        assert!(server.handle_client_final(client_final.as_bytes()).is_err());
        assert!(matches!(
            server.handle_client_final(client_final.as_bytes()),
            Err(ScramError::OutOfOrder)
        ));
    }

    #[test]
    fn server_rejects_malformed_client_first() {
        let cases: &[&[u8]] = &[
            b"",
            b"garbage",
            b"\xff\xfe\x00",
            b"n,,",
            b"n,",
            b"x,,n=,r=abc",
            b"n,a=admin,n=,r=abc",
            b"n,,m=ext,n=,r=abc",
            b"n,,n=,r=",
            b"n,,n=",
            b"n,,r=abc",
            b"n,,n=,r=ab\x7fc",
            b"n,,n=,r=abc,bogus",
        ];
        for &case in cases {
            let mut server = ScramServer::new(&Secret::Plain("x".into()), 1).unwrap();
            assert!(
                matches!(
                    server.handle_client_first(case),
                    Err(ScramError::Malformed(_))
                ),
                "accepted {case:?}"
            );
        }
        // Extensions after the nonce are allowed and ignored.
        let mut server = ScramServer::new(&Secret::Plain("x".into()), 1).unwrap();
        server
            .handle_client_first(b"n,,n=ignored,r=abc,x=ext")
            .unwrap();
    }

    #[test]
    fn server_rejects_malformed_client_final() {
        let proof = BASE64.encode([0u8; 32]);
        let short_proof = BASE64.encode([0u8; 31]);
        // NONCE stands for the nonce of each fresh exchange.
        let cases: Vec<Vec<u8>> = vec![
            b"".to_vec(),
            b"garbage".to_vec(),
            b"\xff\xfe".to_vec(),
            b"c=biws,r=NONCE".to_vec(),
            b"c=biws,r=NONCE,p=".to_vec(),
            b"c=biws,r=NONCE,p=!!!".to_vec(),
            format!("c=biws,r=NONCE,p={short_proof}").into_bytes(),
            format!("c=biws,r=NONCE,p={proof},x=after").into_bytes(),
            format!("r=NONCE,p={proof}").into_bytes(),
            format!("c=***,r=NONCE,p={proof}").into_bytes(),
            format!("c=biws,p={proof}").into_bytes(),
            format!("c=biws,r=NONCE,bogus,p={proof}").into_bytes(),
        ];
        for case in cases {
            let (mut server, server_first, _) = started("secret");
            let nonce = server_first
                .split(',')
                .next()
                .unwrap()
                .strip_prefix("r=")
                .unwrap();
            let case = match String::from_utf8(case) {
                Ok(text) => text.replace("NONCE", nonce).into_bytes(),
                Err(not_utf8) => not_utf8.into_bytes(),
            };
            let result = server.handle_client_final(&case);
            assert!(
                matches!(result, Err(ScramError::Malformed(_))),
                "{case:?}: {result:?}"
            );
        }
    }

    #[test]
    fn client_rejects_malformed_server_first() {
        let cases: &[&str] = &[
            "",
            "garbage",
            "m=ext,r=NONCEsrv,s=c2FsdA==,i=1",
            "r=NONCEsrv",
            "r=NONCEsrv,s=c2FsdA==",
            "r=NONCEsrv,s=***,i=1",
            "r=NONCEsrv,s=,i=1",
            "r=NONCEsrv,s=c2FsdA==,i=0",
            "r=NONCEsrv,s=c2FsdA==,i=+1",
            "r=NONCEsrv,s=c2FsdA==,i=-1",
            "r=NONCEsrv,s=c2FsdA==,i=99999999999",
            "r=NONCEsrv,s=c2FsdA==,i=abc",
            "r=NONCEsrv,i=1,s=c2FsdA==",
            "r=NONCEsrv,s=c2FsdA==,i=1,bogus",
            "r=NONCE\u{7f},s=c2FsdA==,i=1",
        ];
        for case in cases.iter().map(|c| c.as_bytes()).chain([&b"\xff\xfe"[..]]) {
            let mut client = ScramClient::with_nonce(
                ScramCredentials::Password("x".into()),
                String::new(),
                "NONCE".into(),
            );
            client.client_first();
            let result = client.handle_server_first(case);
            assert!(
                matches!(result, Err(ScramError::Malformed(_))),
                "{case:?}: {result:?}"
            );
        }
    }

    #[test]
    fn client_rejects_malformed_server_final() {
        for case in [&b""[..], b"garbage", b"\xff\xfe", b"v=***", b"x=1"] {
            let mut client = password_client("x");
            let first = String::from_utf8(client.client_first()).unwrap();
            let nonce = first.strip_prefix("n,,n=,r=").unwrap();
            client
                .handle_server_first(format!("r={nonce}srv,s=c2FsdA==,i=1").as_bytes())
                .unwrap();
            let result = client.handle_server_final(case);
            assert!(
                matches!(result, Err(ScramError::Malformed(_))),
                "{case:?}: {result:?}"
            );
        }
    }

    #[test]
    fn truncated_and_corrupted_messages_never_panic() {
        let secret = Secret::Scram(parse_scram_verifier(RFC_VERIFIER).unwrap());
        let messages = [
            RFC_CLIENT_FIRST,
            RFC_SERVER_FIRST,
            RFC_CLIENT_FINAL,
            RFC_SERVER_FINAL,
        ];
        for message in messages {
            let bytes = message.as_bytes();
            let mut variants: Vec<Vec<u8>> =
                (0..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            for i in 0..bytes.len() {
                for replacement in [b',', b'=', 0, 0xff] {
                    let mut corrupted = bytes.to_vec();
                    corrupted[i] = replacement;
                    variants.push(corrupted);
                }
            }
            for variant in variants {
                let mut server =
                    ScramServer::with_nonce(&secret, 0, RFC_SERVER_NONCE.into()).unwrap();
                let _ = server.handle_client_first(&variant);
                let mut server =
                    ScramServer::with_nonce(&secret, 0, RFC_SERVER_NONCE.into()).unwrap();
                server
                    .handle_client_first(RFC_CLIENT_FIRST.as_bytes())
                    .unwrap();
                let _ = server.handle_client_final(&variant);
                // Keys mode skips PBKDF2, so this stays fast.
                let keys = ScramKeys {
                    client_key: [1; 32],
                    server_key: [2; 32],
                    salt: rfc_salt(),
                    iterations: 4096,
                };
                let mut client = ScramClient::with_nonce(
                    ScramCredentials::Keys(keys),
                    "user".into(),
                    RFC_CLIENT_NONCE.into(),
                );
                client.client_first();
                let _ = client.handle_server_first(&variant);
                let _ = client.handle_server_final(&variant);
            }
        }
    }

    #[test]
    fn parse_verifier_round_trips() {
        let verifier = parse_scram_verifier(RFC_VERIFIER).unwrap();
        assert_eq!(verifier.iterations, 4096);
        assert_eq!(verifier.salt, rfc_salt());
        let expected = verifier_from_password("pencil", &rfc_salt(), 4096);
        assert_eq!(verifier, expected);
    }

    #[test]
    fn parse_verifier_rejects_malformed() {
        let key = BASE64.encode([0u8; 32]);
        let short = BASE64.encode([0u8; 31]);
        let cases = [
            String::new(),
            "md53175bce1d3201d16594cebf9d7eb3f9d".into(),
            "plain password".into(),
            format!("SCRAM-SHA-1$4096:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$x:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$:c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$4096:${key}:{key}"),
            format!("SCRAM-SHA-256$4096:***${key}:{key}"),
            format!("SCRAM-SHA-256$4096c2FsdA==${key}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${short}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{short}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}:{key}"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}$x"),
            format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key} "),
        ];
        for case in cases {
            assert!(parse_scram_verifier(&case).is_none(), "accepted {case:?}");
        }
        assert!(
            parse_scram_verifier(&format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}")).is_some()
        );
    }

    #[test]
    fn debug_output_hides_keys() {
        let keys = ScramKeys {
            client_key: [0xab; 32],
            server_key: [0xcd; 32],
            salt: b"salt".to_vec(),
            iterations: 4096,
        };
        let printed = format!("{keys:?} {:?}", ScramCredentials::Keys(keys.clone()));
        assert!(printed.contains("4096"));
        for needle in ["171", "205", "ab", "cd", "salt"] {
            assert!(!printed.contains(needle), "{printed}");
        }
        let printed = format!("{:?}", ScramCredentials::Password("hunter2".into()));
        assert!(!printed.contains("hunter2"));
        let printed = format!(
            "{:?}",
            ScramClient::new(ScramCredentials::Password("hunter2".into()))
        );
        assert!(!printed.contains("hunter2"));
    }
}
