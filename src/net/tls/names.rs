//! How a TLS session is named in logs, SHOW CLIENTS and SHOW SERVERS: the
//! way PgBouncer, built with OpenSSL, names it, with OpenSSL's names for the
//! suites and groups rustls negotiates.

use rustls::{CipherSuite, CommonState, NamedGroup, ProtocolVersion};

/// A TLS session as PgBouncer (built with OpenSSL) describes it in SHOW
/// CLIENTS, SHOW SERVERS and its log: `TLSv1.3/TLS_AES_256_GCM_SHA384`. The
/// key exchange group is added (`/ECDH=X25519`) for TLS 1.2, and, where
/// pgsluice is the TLS client (servers), for TLS 1.3 too, as PgBouncer shows
/// them. Names are OpenSSL's, since that is what tools reading the column
/// have seen.
pub fn describe(conn: &CommonState, we_are_client: bool) -> String {
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
        Some(group) if we_are_client || version == "TLSv1.2" => {
            format!(
                "{version}/{suite}/ECDH={}",
                openssl_group_name(group.name())
            )
        }
        _ => format!("{version}/{suite}"),
    }
}

/// OpenSSL's names for the suites rustls offers with the ring provider.
pub(super) fn openssl_suite_name(suite: CipherSuite) -> &'static str {
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
