//! The pooler's client side of SCRAM, logging in to PostgreSQL.

use base64::Engine;

use super::verifier::salted_password;
use super::{
    attribute, check_extensions, decode_base64, hmac_sha256, is_valid_nonce, parse_iterations,
    random_nonce, reject_mandatory_extension, sha256, utf8, xor, ScramCredentials, ScramError,
    BASE64, GS2_HEADER,
};
use crate::auth::compare::constant_time_eq;

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
    pub(super) fn with_nonce(
        credentials: ScramCredentials,
        username: String,
        nonce: String,
    ) -> Self {
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
