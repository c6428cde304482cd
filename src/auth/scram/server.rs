//! The pooler's server side of SCRAM, facing a client.

use base64::Engine;

use super::verifier::verifier_from_password;
use super::{
    attribute, check_extensions, decode_base64, hmac_sha256, is_valid_nonce, random_nonce,
    reject_mandatory_extension, sha256, utf8, xor, ScramError, ScramKeys, BASE64, SALT_LEN,
};
use crate::auth::compare::constant_time_eq;
use crate::auth::{ScramVerifier, Secret};

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
    pub(super) verifier: ScramVerifier,
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
    pub(super) fn with_nonce(
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
