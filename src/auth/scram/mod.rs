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
//!
//! Layout: [`server`] and [`client`] are the two sides, [`verifier`] reads and makes
//! the verifiers PostgreSQL stores; this file holds what both sides share.

mod client;
mod server;
#[cfg(test)]
mod tests;
mod verifier;

pub use client::ScramClient;
pub use server::ScramServer;
pub use verifier::{parse_scram_verifier, scram_verifier};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

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
