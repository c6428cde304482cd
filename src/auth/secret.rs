//! A user's secret as written in `auth_file` (userlist.txt).
//!
//! PgBouncer accepts three forms in the second field of a userlist line, and which
//! one a user has decides which authentication exchanges are possible for them.

/// The secret for one user, as parsed from the auth file.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// A plaintext password. Works with every auth method and every server login.
    Plain(String),
    /// `md5` followed by 32 lowercase hex digits of md5(password + username).
    /// The stored string keeps the `md5` prefix.
    Md5(String),
    /// A SCRAM-SHA-256 verifier.
    Scram(ScramVerifier),
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramVerifier {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

// Secrets must never reach a log line by accident.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self {
            Secret::Plain(_) => "Plain",
            Secret::Md5(_) => "Md5",
            Secret::Scram(_) => "Scram",
        };
        write!(f, "Secret::{kind}(..)")
    }
}

impl std::fmt::Debug for ScramVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ScramVerifier(iterations={}, ..)", self.iterations)
    }
}
