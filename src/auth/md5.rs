//! PostgreSQL's md5 password exchange, in both directions.
//!
//! PostgreSQL stores an md5 secret as `"md5" + hex(md5(password ++ user))`; the same
//! string appears in `userlist.txt`. When a server sends AuthenticationMD5Password with
//! a 4-byte salt, the client answers `"md5" + hex(md5(hex(md5(password ++ user)) ++ salt))`.
//! The inner hash is exactly the stored secret without its prefix, which is why the
//! pooler can both check a client's answer and answer a server's challenge while
//! holding only the md5 secret, never the password.

use md5::{Digest, Md5};

use crate::auth::compare::constant_time_eq;
use crate::auth::Secret;

/// The prefix PostgreSQL puts before the hex digest in md5 secrets and responses.
const MD5_PREFIX: &str = "md5";

/// `"md5"` followed by 32 lowercase hex digits: a secret or a response, built on the
/// stack because a login computes one or two of them.
pub struct Md5Text([u8; 35]);

impl Md5Text {
    fn of(hasher: Md5) -> Md5Text {
        let mut text = [0u8; 35];
        text[..3].copy_from_slice(MD5_PREFIX.as_bytes());
        hex::encode_to_slice(hasher.finalize(), &mut text[3..])
            .expect("16 bytes are 32 hex digits");
        Md5Text(text)
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("ASCII")
    }
}

/// "md5" + hex(md5(password ++ user)) — the form stored in pg_authid and userlist.txt.
pub fn md5_secret(user: &str, password: &str) -> String {
    md5_secret_text(user, password).as_str().to_owned()
}

fn md5_secret_text(user: &str, password: &str) -> Md5Text {
    let mut hasher = Md5::new();
    hasher.update(password.as_bytes());
    hasher.update(user.as_bytes());
    Md5Text::of(hasher)
}

/// The PasswordMessage a client sends for AuthenticationMD5Password(salt):
/// "md5" + hex(md5(hex(md5(password ++ user)) ++ salt)).
///
/// Takes the stored secret (with its "md5" prefix) so that a pooler holding only the
/// md5 secret can answer a server's challenge. A secret given without the prefix is
/// used as the bare hex digest. The hex is lowercased first because the client side
/// (libpq) always hashes the lowercase form, so an uppercase digest in a userlist would
/// otherwise never match.
pub fn md5_response_from_secret(md5_secret: &str, salt: [u8; 4]) -> Md5Text {
    let hex = md5_secret.strip_prefix(MD5_PREFIX).unwrap_or(md5_secret);
    let mut hasher = Md5::new();
    let mut lower = [0u8; 64];
    for chunk in hex.as_bytes().chunks(lower.len()) {
        let lower = &mut lower[..chunk.len()];
        lower.copy_from_slice(chunk);
        lower.make_ascii_lowercase();
        hasher.update(&*lower);
    }
    hasher.update(salt);
    Md5Text::of(hasher)
}

/// Verify a client's md5 response against the user's auth_file secret.
///
/// `response` is the PasswordMessage payload without its terminating NUL. Plain and
/// Md5 secrets can be checked; a Scram verifier cannot (it holds no md5 of the
/// password), so it returns false. The final comparison is constant time.
pub fn verify_md5_response(secret: &Secret, user: &str, salt: [u8; 4], response: &[u8]) -> bool {
    let expected = match secret {
        Secret::Plain(password) => {
            md5_response_from_secret(md5_secret_text(user, password).as_str(), salt)
        }
        Secret::Md5(stored) => md5_response_from_secret(stored, salt),
        Secret::Scram(_) => return false,
    };
    constant_time_eq(expected.as_str().as_bytes(), response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::ScramVerifier;

    // Expected values below were computed independently with coreutils md5sum, e.g.
    // `printf 'postgrespostgres' | md5sum` and
    // `printf '3175bce1d3201d16594cebf9d7eb3f9d\x01\x02\x03\x04' | md5sum`.
    const POSTGRES_SECRET: &str = "md53175bce1d3201d16594cebf9d7eb3f9d";
    const SALT: [u8; 4] = [1, 2, 3, 4];
    const POSTGRES_RESPONSE: &str = "md568be9ed08db75f318087ab337aaea044";

    #[test]
    fn secret_matches_known_value() {
        assert_eq!(md5_secret("postgres", "postgres"), POSTGRES_SECRET);
        // Password comes first, user second: swapping them changes the digest.
        assert_eq!(
            md5_secret("user", "foo"),
            "md5c7a2cbc1e78ea0af6d8354361c3b0f8a"
        );
        assert_ne!(md5_secret("foo", "user"), md5_secret("user", "foo"));
    }

    #[test]
    fn response_matches_known_value() {
        assert_eq!(
            md5_response_from_secret(POSTGRES_SECRET, SALT).as_str(),
            POSTGRES_RESPONSE
        );
        assert_eq!(
            md5_response_from_secret(POSTGRES_SECRET, [0xde, 0xad, 0xbe, 0xef]).as_str(),
            "md58ee245854025535aedb7b15709315318"
        );
    }

    #[test]
    fn response_tolerates_missing_prefix_and_uppercase_hex() {
        let bare = POSTGRES_SECRET.strip_prefix("md5").unwrap();
        assert_eq!(
            md5_response_from_secret(bare, SALT).as_str(),
            POSTGRES_RESPONSE
        );
        let upper = format!("md5{}", bare.to_ascii_uppercase());
        assert_eq!(
            md5_response_from_secret(&upper, SALT).as_str(),
            POSTGRES_RESPONSE
        );
    }

    #[test]
    fn verify_plain_secret() {
        let secret = Secret::Plain("postgres".into());
        assert!(verify_md5_response(
            &secret,
            "postgres",
            SALT,
            POSTGRES_RESPONSE.as_bytes()
        ));
        // Wrong salt, wrong user, wrong response, truncated or NUL-terminated response.
        assert!(!verify_md5_response(
            &secret,
            "postgres",
            [4, 3, 2, 1],
            POSTGRES_RESPONSE.as_bytes()
        ));
        assert!(!verify_md5_response(
            &secret,
            "other",
            SALT,
            POSTGRES_RESPONSE.as_bytes()
        ));
        assert!(!verify_md5_response(
            &secret,
            "postgres",
            SALT,
            b"md500000000000000000000000000000000"
        ));
        assert!(!verify_md5_response(
            &secret,
            "postgres",
            SALT,
            &POSTGRES_RESPONSE.as_bytes()[..34]
        ));
        assert!(!verify_md5_response(&secret, "postgres", SALT, b""));
        let mut with_nul = POSTGRES_RESPONSE.as_bytes().to_vec();
        with_nul.push(0);
        assert!(!verify_md5_response(&secret, "postgres", SALT, &with_nul));
    }

    #[test]
    fn verify_md5_secret() {
        let secret = Secret::Md5(POSTGRES_SECRET.into());
        assert!(verify_md5_response(
            &secret,
            "postgres",
            SALT,
            POSTGRES_RESPONSE.as_bytes()
        ));
        let wrong = Secret::Md5(md5_secret("postgres", "not-postgres"));
        assert!(!verify_md5_response(
            &wrong,
            "postgres",
            SALT,
            POSTGRES_RESPONSE.as_bytes()
        ));
        // A plaintext password sent where an md5 response belongs is refused.
        assert!(!verify_md5_response(&secret, "postgres", SALT, b"postgres"));
    }

    #[test]
    fn verify_scram_secret_is_refused() {
        let secret = Secret::Scram(ScramVerifier {
            iterations: 4096,
            salt: vec![0; 16],
            stored_key: [0; 32],
            server_key: [0; 32],
        });
        assert!(!verify_md5_response(
            &secret,
            "postgres",
            SALT,
            POSTGRES_RESPONSE.as_bytes()
        ));
    }
}
