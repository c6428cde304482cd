//! TLS for clients (`client_tls_*`): what the settings ask for, loaded into a
//! rustls acceptor, and how a session's protocol and cipher are named in logs
//! and SHOW CLIENTS.
//!
//! rustls offers TLS 1.2 and 1.3 with its own choice of cipher suites, so
//! `client_tls_ciphers`, `client_tls13_ciphers`, `client_tls_dheparams` and
//! `client_tls_ecdhcurve` stay unimplemented (warned about when set).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::{ring, CryptoProvider};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CipherSuite, InconsistentKeys, NamedGroup, ProtocolVersion, RootCertStore, ServerConfig,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{ConfigError, General, SslMode};

/// The client side of TLS as the settings in force ask for it.
#[derive(Clone)]
pub struct ClientTls {
    pub mode: SslMode,
    /// `None` when the mode is `disable`.
    acceptor: Option<TlsAcceptor>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("mode", &self.mode)
            .field("offered", &self.acceptor.is_some())
            .finish()
    }
}

impl ClientTls {
    /// No TLS: what a config without `client_tls_sslmode` gets.
    pub fn disabled() -> ClientTls {
        ClientTls {
            mode: SslMode::Disable,
            acceptor: None,
        }
    }

    /// Read the key, certificate and CA files the settings name. Any problem
    /// is an error naming the setting, so a start or a reload stops on it.
    pub fn load(general: &General) -> Result<ClientTls, ConfigError> {
        let mode = general.client_tls_sslmode;
        if mode == SslMode::Disable {
            return Ok(ClientTls::disabled());
        }
        let (Some(key_file), Some(cert_file)) =
            (&general.client_tls_key_file, &general.client_tls_cert_file)
        else {
            return Err(ConfigError::new(
                "to allow TLS connections from clients, client_tls_key_file and \
                 client_tls_cert_file must be set",
            )
            .with_key("client_tls_sslmode"));
        };
        let versions = protocol_versions(&general.client_tls_protocols)
            .map_err(|reason| ConfigError::new(reason).with_key("client_tls_protocols"))?;
        let provider = Arc::new(ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| ConfigError::new(e.to_string()).with_key("client_tls_protocols"))?;
        let builder = if mode >= SslMode::VerifyCa {
            let ca_file = general.client_tls_ca_file.as_deref().ok_or_else(|| {
                ConfigError::new(format!(
                    "client_tls_sslmode = {} needs client_tls_ca_file to check client certificates against",
                    mode.as_str()
                ))
                .with_key("client_tls_ca_file")
            })?;
            let roots = load_roots(ca_file).map_err(|e| e.with_key("client_tls_ca_file"))?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| {
                        ConfigError::new(format!("{}: {e}", ca_file.display()))
                            .with_key("client_tls_ca_file")
                    })?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let certified = load_certified_key(&provider, cert_file, key_file)?;
        let config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        Ok(ClientTls {
            mode,
            acceptor: Some(TlsAcceptor::from(Arc::new(config))),
        })
    }

    /// The acceptor to answer an SSLRequest with, if TLS is offered.
    pub fn acceptor(&self) -> Option<&TlsAcceptor> {
        self.acceptor.as_ref()
    }

    /// Must a TCP client use TLS? (Unix-socket clients never need to.)
    pub fn required(&self) -> bool {
        self.mode >= SslMode::Require
    }
}

/// pgsluice does not speak TLS to servers yet. `allow` and `prefer` (PgBouncer's
/// default) are kept by connecting in the clear, which they permit; a mode that
/// demands TLS would be broken without a word, so it stops the start or reload
/// (or refuses the SET).
pub fn check_server_tls(general: &General) -> Result<(), ConfigError> {
    let mode = general.server_tls_sslmode;
    if mode >= SslMode::Require {
        return Err(ConfigError::new(format!(
            "server_tls_sslmode = {} is not supported: pgsluice does not use TLS to servers yet \
             (disable, allow or prefer connect in the clear)",
            mode.as_str()
        ))
        .with_key("server_tls_sslmode"));
    }
    Ok(())
}

/// The versions `client_tls_protocols` allows, in libtls's syntax: a list
/// separated by commas or colons of `tlsv1.0` … `tlsv1.3`, `all`, `legacy`,
/// `secure` or `default`, each one possibly negated with `!` or `-`.
/// rustls speaks only TLS 1.2 and 1.3; a list without either is an error.
pub fn protocol_versions(
    text: &str,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let (mut tls12, mut tls13) = (false, false);
    for word in text
        .split([',', ':'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        let (on, name) = match word.strip_prefix(['!', '-']) {
            Some(rest) => (false, rest),
            None => (true, word),
        };
        let (v12, v13) = match name.to_ascii_lowercase().as_str() {
            "all" | "legacy" | "secure" | "default" => (true, true),
            "tlsv1.2" => (true, false),
            "tlsv1.3" => (false, true),
            // Offered by libtls, not by rustls: allowing them changes nothing.
            "tlsv1.0" | "tlsv1.1" => (false, false),
            _ => return Err(format!("unknown TLS protocol '{name}' in '{text}'")),
        };
        if v12 {
            tls12 = on;
        }
        if v13 {
            tls13 = on;
        }
    }
    let mut versions = Vec::new();
    if tls12 {
        versions.push(&rustls::version::TLS12);
    }
    if tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if versions.is_empty() {
        return Err(format!(
            "'{text}' allows neither TLSv1.2 nor TLSv1.3, the only versions pgsluice offers"
        ));
    }
    Ok(versions)
}

/// The server certificate chain and its key.
///
/// rustls' `with_single_cert` would refuse a version 1 certificate (what
/// `openssl x509 -req` makes without an extensions file), which OpenSSL, and
/// so PgBouncer, serves; the TLS handshake does not need rustls to parse it.
/// So the key is checked against the certificate here only when the
/// certificate parses, and a pair that certainly does not match is an error.
fn load_certified_key(
    provider: &CryptoProvider,
    cert_file: &Path,
    key_file: &Path,
) -> Result<CertifiedKey, ConfigError> {
    let certs = load_certs(cert_file).map_err(|e| e.with_key("client_tls_cert_file"))?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        ConfigError::new(format!("{}: {}", key_file.display(), pem_error(e)))
            .with_key("client_tls_key_file")
    })?;
    let key = provider.key_provider.load_private_key(key).map_err(|e| {
        ConfigError::new(format!("{}: {e}", key_file.display())).with_key("client_tls_key_file")
    })?;
    let certified = CertifiedKey::new(certs, key);
    if let Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) =
        certified.keys_match()
    {
        return Err(ConfigError::new(format!(
            "the key in {} does not belong to the certificate in {}",
            key_file.display(),
            cert_file.display()
        ))
        .with_key("client_tls_key_file"));
    }
    Ok(certified)
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ConfigError::new(format!("{}: {}", path.display(), pem_error(e))))?;
    if certs.is_empty() {
        return Err(ConfigError::new(format!(
            "{}: no PEM certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_roots(path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| ConfigError::new(format!("{}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// rustls-pki-types' PEM errors, in words an operator can act on.
fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the right kind".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

/// A TLS session as PgBouncer (built with OpenSSL) describes it in SHOW
/// CLIENTS and in its login line: `TLSv1.3/TLS_AES_256_GCM_SHA384`, or for
/// TLS 1.2 `TLSv1.2/ECDHE-RSA-AES256-GCM-SHA384/ECDH=X25519`. Names are
/// OpenSSL's, since that is what tools reading the column have seen.
pub fn describe(conn: &ServerConnection) -> String {
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(ProtocolVersion::TLSv1_2) => "TLSv1.2",
        _ => "TLS",
    };
    let suite = conn
        .negotiated_cipher_suite()
        .map(|s| openssl_suite_name(s.suite()))
        .unwrap_or("unknown");
    match conn.negotiated_key_exchange_group() {
        Some(group) if version == "TLSv1.2" => {
            format!(
                "{version}/{suite}/ECDH={}",
                openssl_group_name(group.name())
            )
        }
        _ => format!("{version}/{suite}"),
    }
}

/// OpenSSL's names for the suites rustls offers with the ring provider.
fn openssl_suite_name(suite: CipherSuite) -> &'static str {
    match suite {
        CipherSuite::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        CipherSuite::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        CipherSuite::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => {
            "ECDHE-ECDSA-CHACHA20-POLY1305"
        }
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => other.as_str().unwrap_or("unknown"),
    }
}

fn openssl_group_name(group: NamedGroup) -> &'static str {
    match group {
        NamedGroup::X25519 => "X25519",
        NamedGroup::secp256r1 => "prime256v1",
        NamedGroup::secp384r1 => "secp384r1",
        other => other.as_str().unwrap_or("unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(text: &str) -> Result<Vec<ProtocolVersion>, String> {
        protocol_versions(text).map(|v| v.iter().map(|v| v.version).collect())
    }

    #[test]
    fn protocols_follow_libtls_syntax() {
        use ProtocolVersion::{TLSv1_2, TLSv1_3};
        assert_eq!(versions("secure").unwrap(), [TLSv1_2, TLSv1_3]);
        assert_eq!(versions("all").unwrap(), [TLSv1_2, TLSv1_3]);
        assert_eq!(versions("tlsv1.3").unwrap(), [TLSv1_3]);
        assert_eq!(versions("TLSv1.2:tlsv1.1").unwrap(), [TLSv1_2]);
        assert_eq!(versions("all,!tlsv1.2").unwrap(), [TLSv1_3]);
        assert_eq!(versions("secure,-tlsv1.3").unwrap(), [TLSv1_2]);
        assert!(versions("tlsv1.0,tlsv1.1")
            .unwrap_err()
            .contains("neither TLSv1.2 nor TLSv1.3"));
        assert!(versions("sslv3")
            .unwrap_err()
            .contains("unknown TLS protocol 'sslv3'"));
    }

    #[test]
    fn disabled_needs_no_files_and_other_modes_need_key_and_cert() {
        let mut general = General::default();
        assert!(ClientTls::load(&general).unwrap().acceptor().is_none());
        general.client_tls_sslmode = SslMode::Require;
        let err = ClientTls::load(&general).unwrap_err();
        assert!(err
            .reason
            .contains("client_tls_key_file and client_tls_cert_file"));
    }

    #[test]
    fn server_tls_that_demands_tls_is_refused() {
        let mut general = General::default();
        for (mode, accepted) in [
            (SslMode::Disable, true),
            (SslMode::Allow, true),
            (SslMode::Prefer, true),
            (SslMode::Require, false),
            (SslMode::VerifyCa, false),
            (SslMode::VerifyFull, false),
        ] {
            general.server_tls_sslmode = mode;
            assert_eq!(check_server_tls(&general).is_ok(), accepted, "{mode:?}");
        }
    }

    #[test]
    fn suite_names_are_openssls() {
        assert_eq!(
            openssl_suite_name(CipherSuite::TLS13_AES_256_GCM_SHA384),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(
            openssl_suite_name(CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256),
            "ECDHE-RSA-CHACHA20-POLY1305"
        );
        assert_eq!(openssl_group_name(NamedGroup::secp256r1), "prime256v1");
    }
}
