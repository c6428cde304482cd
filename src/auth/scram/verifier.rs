//! SCRAM verifiers as PostgreSQL stores them (`SCRAM-SHA-256$...`): made from a
//! password, and read from auth_file or pg_authid.

use base64::Engine;
use sha2::Sha256;

use super::{hmac_sha256, parse_iterations, sha256, BASE64, VERIFIER_PREFIX};
use crate::auth::ScramVerifier;

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

pub(super) fn verifier_from_password(
    password: &str,
    salt: &[u8],
    iterations: u32,
) -> ScramVerifier {
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
pub(super) fn salted_password(password: &str, salt: &[u8], iterations: u32) -> [u8; 32] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, iterations)
}
