//! TLS with clients (`client_tls_*`) and with servers (`server_tls_*`): what
//! the settings ask for, loaded into a rustls acceptor and connector; how
//! servers' certificates are checked (`verify`); and how a session is named
//! in logs, SHOW CLIENTS and SHOW SERVERS (`names`).
//!
//! The cipher suites and curves a side offers are rustls' (ring's), narrowed
//! by the `*_tls_ciphers`, `*_tls13_ciphers` and `client_tls_ecdhcurve`
//! settings (`suites`). rustls has no DHE suites, so `client_tls_dheparams`
//! stays unimplemented (warned about when set).

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ClientConfig, InconsistentKeys, RootCertStore, ServerConfig, SupportedProtocolVersion,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::{TlsAcceptor, TlsConnector};

mod names;
mod peer;
mod suites;
mod verify;

pub use names::describe;
pub use peer::common_name;
use verify::{CheckedCert, UncheckedCert};

use crate::config::{ConfigError, General, SslMode};

/// TLS as the settings in force ask for it, loaded with the config (see
/// `control::reload::load_quiet`) and kept with it.
#[derive(Clone, Debug)]
pub struct Tls {
    pub client: Arc<ClientTls>,
    pub server: Arc<ServerTls>,
}

impl Default for Tls {
    /// No TLS: what a config gets until its files are loaded.
    fn default() -> Tls {
        Tls {
            client: Arc::new(ClientTls::disabled()),
            server: Arc::new(ServerTls::disabled()),
        }
    }
}

impl Tls {
    /// Read the files the `client_tls_*` and `server_tls_*` settings name.
    pub fn load(general: &General) -> Result<Tls, ConfigError> {
        Ok(Tls {
            client: Arc::new(ClientTls::load(general)?),
            server: Arc::new(ServerTls::load(general)?),
        })
    }
}

/// One side's TLS as the settings in force ask for it: the mode, and what
/// runs the handshake (an acceptor for clients, a connector for servers),
/// absent under `disable`.
pub struct TlsSide<T> {
    pub mode: SslMode,
    handshaker: Option<T>,
}

impl<T> fmt::Debug for TlsSide<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsSide").field("mode", &self.mode).finish()
    }
}

/// The one loaded object, not its settings: a reload makes a new one.
impl<T> PartialEq for TlsSide<T> {
    fn eq(&self, other: &TlsSide<T>) -> bool {
        std::ptr::eq(self, other)
    }
}

impl<T> TlsSide<T> {
    /// No TLS: what a config gets until its files are loaded.
    pub fn disabled() -> TlsSide<T> {
        TlsSide {
            mode: SslMode::Disable,
            handshaker: None,
        }
    }

    /// The acceptor or connector, unless the mode is `disable`.
    pub fn handshaker(&self) -> Option<&T> {
        self.handshaker.as_ref()
    }

    /// Must the peer use TLS? (`require` and stricter; Unix sockets never do.)
    pub fn required(&self) -> bool {
        self.mode >= SslMode::Require
    }
}

/// TLS with clients: an SSLRequest on TCP is answered with a handshake unless
/// the mode is `disable`; `require` and stricter refuse plain TCP, and
/// `verify-ca` and `verify-full` also want a certificate from
/// client_tls_ca_file. Under the other modes a client may show one, if
/// client_tls_ca_file is set.
pub type ClientTls = TlsSide<TlsAcceptor>;

/// TLS with servers: whether an SSLRequest goes to each server reached over
/// TCP, and how its certificate is checked. As PgBouncer: `disable` sends
/// none; `allow` and `prefer` use TLS when the server takes it; `require`
/// insists on TLS; none of these checks the certificate. `verify-ca` checks
/// it against server_tls_ca_file, `verify-full` also checks the host name.
pub type ServerTls = TlsSide<TlsConnector>;

impl ClientTls {
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
        let (provider, versions) = offer(
            "client",
            &general.client_tls_protocols,
            &general.client_tls_ciphers,
            &general.client_tls13_ciphers,
            &general.client_tls_ecdhcurve,
        )?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| ConfigError::new(e.to_string()).with_key("client_tls_protocols"))?;
        // verify-ca and verify-full want a certificate from client_tls_ca_file.
        // Below them, as in PgBouncer and PostgreSQL, a CA file still has
        // clients asked for a certificate, which they may leave out (it is for
        // auth_type = cert); one they do show must chain to the CA.
        let certificate_required = mode >= SslMode::VerifyCa;
        let builder = if certificate_required || general.client_tls_ca_file.is_some() {
            let roots = verification_roots(mode, "client", &general.client_tls_ca_file)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
            let verifier = if certificate_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            let verifier = verifier
                .build()
                .map_err(|e| ConfigError::new(e.to_string()).with_key("client_tls_ca_file"))?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let certified = load_certified_key(&provider, cert_file, key_file, "client")?;
        let config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        Ok(ClientTls {
            mode,
            handshaker: Some(TlsAcceptor::from(Arc::new(config))),
        })
    }
}

impl ServerTls {
    /// Read the CA file and the client certificate the settings name.
    pub fn load(general: &General) -> Result<ServerTls, ConfigError> {
        let mode = general.server_tls_sslmode;
        if mode == SslMode::Disable {
            return Ok(ServerTls::disabled());
        }
        // PgBouncer has no server_tls_ecdhcurve: servers are offered every curve.
        let (provider, versions) = offer(
            "server",
            &general.server_tls_protocols,
            &general.server_tls_ciphers,
            &general.server_tls13_ciphers,
            "auto",
        )?;
        let verifier: Arc<dyn ServerCertVerifier> = if mode >= SslMode::VerifyCa {
            let roots = verification_roots(mode, "server", &general.server_tls_ca_file)?;
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| ConfigError::new(e.to_string()).with_key("server_tls_ca_file"))?;
            Arc::new(CheckedCert {
                webpki,
                check_name: mode == SslMode::VerifyFull,
            })
        } else {
            Arc::new(UncheckedCert(provider.clone()))
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions)
            .map_err(|e| ConfigError::new(e.to_string()).with_key("server_tls_protocols"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&general.server_tls_cert_file, &general.server_tls_key_file) {
            (Some(cert_file), Some(key_file)) => {
                let certified = load_certified_key(&provider, cert_file, key_file, "server")?;
                builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(ConfigError::new(
                    "server_tls_cert_file and server_tls_key_file go together",
                )
                .with_key("server_tls_cert_file"))
            }
        };
        Ok(ServerTls {
            mode,
            handshaker: Some(TlsConnector::from(Arc::new(config))),
        })
    }
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

/// A certificate chain and its key: the one shown to clients, or the one
/// shown to servers (`side` names the settings).
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
    side: &str,
) -> Result<CertifiedKey, ConfigError> {
    let (cert_key, key_key) = (
        format!("{side}_tls_cert_file"),
        format!("{side}_tls_key_file"),
    );
    let certs = load_certs(cert_file).map_err(|e| e.with_key(cert_key))?;
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
        ConfigError::new(format!("{}: {}", key_file.display(), pem_error(e)))
            .with_key(key_key.clone())
    })?;
    let key = provider.key_provider.load_private_key(key).map_err(|e| {
        ConfigError::new(format!("{}: {e}", key_file.display())).with_key(key_key.clone())
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
        .with_key(key_key));
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

/// What one side (`client` or `server`) offers: the protocol versions its
/// settings allow, and ring's provider narrowed to the cipher suites and curves
/// they allow. TLS 1.3 left without suites is left off, as OpenSSL does; a
/// side left with no version at all is an error.
fn offer(
    side: &str,
    protocols: &str,
    tls12_ciphers: &str,
    tls13_ciphers: &str,
    curves: &str,
) -> Result<(Arc<CryptoProvider>, Vec<&'static SupportedProtocolVersion>), ConfigError> {
    let key = |name: &str| format!("{side}_{name}");
    let invalid = |name: &str| {
        let key = key(name);
        move |reason: String| ConfigError::new(reason).with_key(key)
    };
    let mut versions = protocol_versions(protocols).map_err(invalid("tls_protocols"))?;
    let tls12 = suites::tls12_ciphers(tls12_ciphers).map_err(invalid("tls_ciphers"))?;
    let tls13 = suites::tls13_ciphers(tls13_ciphers).map_err(invalid("tls13_ciphers"))?;
    let groups = suites::ecdh_groups(curves).map_err(invalid("tls_ecdhcurve"))?;
    if tls13.is_empty() {
        versions.retain(|v| v.version != rustls::ProtocolVersion::TLSv1_3);
        if versions.is_empty() {
            return Err(invalid("tls13_ciphers")(format!(
                "'{tls13_ciphers}' leaves TLS 1.3 without a cipher suite pgsluice offers, \
                 and {} allows no other version",
                key("tls_protocols")
            )));
        }
    }
    let provider = suites::provider(tls13.into_iter().chain(tls12).collect(), groups);
    Ok((Arc::new(provider), versions))
}

/// What verify-ca and verify-full check a peer's certificate against: the
/// CA file of `side` (`client` or `server`), which they cannot do without.
fn verification_roots(
    mode: SslMode,
    side: &str,
    ca_file: &Option<std::path::PathBuf>,
) -> Result<Arc<RootCertStore>, ConfigError> {
    let key = format!("{side}_tls_ca_file");
    let Some(ca_file) = ca_file else {
        return Err(ConfigError::new(format!(
            "{side}_tls_sslmode = {} needs {key} to check {side} certificates against",
            mode.as_str()
        ))
        .with_key(key));
    };
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca_file).map_err(|e| e.with_key(key.clone()))? {
        roots.add(cert).map_err(|e| {
            ConfigError::new(format!("{}: {e}", ca_file.display())).with_key(key.clone())
        })?;
    }
    Ok(Arc::new(roots))
}

/// rustls-pki-types' PEM errors, in words an operator can act on.
fn pem_error(e: rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item of the right kind".into(),
        other => format!("not valid PEM: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::ProtocolVersion;

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
        assert!(ClientTls::load(&general).unwrap().handshaker().is_none());
        general.client_tls_sslmode = SslMode::Require;
        let err = ClientTls::load(&general).unwrap_err();
        assert!(err
            .reason
            .contains("client_tls_key_file and client_tls_cert_file"));
    }
}
