//! Which cipher suites and key exchange groups a side offers:
//! `client_tls_ciphers` and `server_tls_ciphers` (TLS 1.2, in OpenSSL's
//! cipher-list syntax with PgBouncer's shortcuts), `client_tls13_ciphers` and
//! `server_tls13_ciphers` (TLS 1.3, a list of suite names) and
//! `client_tls_ecdhcurve`, applied to what rustls' ring provider has.
//!
//! rustls has fewer suites than OpenSSL: for TLS 1.2 only the six ECDHE suites
//! with AES-GCM or ChaCha20-Poly1305, so every shortcut (`default`, `secure`,
//! `compat`, `legacy`, `normal`, `fast`, `all`, `insecure`) selects all six,
//! and a list only matters where it names or leaves out some of them. As in
//! OpenSSL, a word that matches nothing is passed over, and a list that selects
//! nothing is an error.

use rustls::crypto::{ring, CryptoProvider, SupportedKxGroup};
use rustls::version::{TLS12, TLS13};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

use super::names;

/// rustls' suites of one version, in its order of preference.
fn offered(version: &SupportedProtocolVersion) -> Vec<SupportedCipherSuite> {
    ring::ALL_CIPHER_SUITES
        .iter()
        .filter(|s| s.version() == version)
        .copied()
        .collect()
}

/// OpenSSL's name for a suite (what a cipher list says).
fn openssl_name(suite: &SupportedCipherSuite) -> &'static str {
    names::openssl_suite_name(suite.suite())
}

/// PgBouncer's shortcuts for a whole cipher list. Each stands for an OpenSSL
/// list (`HIGH+EECDH:…`, `HIGH:!aNULL`, `ALL:!aNULL:!eNULL`, …) that keeps
/// every suite rustls has.
const SHORTCUTS: &[&str] = &[
    "default", "secure", "compat", "legacy", "normal", "fast", "all", "insecure",
];

/// Whether one word of a cipher list (an alias or a suite's name) covers
/// `suite`. A word OpenSSL knows for suites rustls lacks (`RSA`, `DHE`, `3DES`,
/// `SHA256`, …) covers none of them, as does a word nobody knows.
fn covers(word: &str, suite: &SupportedCipherSuite) -> bool {
    // The IANA name says what OpenSSL's aliases test: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256.
    let iana = suite.suite().as_str().unwrap_or_default();
    if word.eq_ignore_ascii_case(openssl_name(suite)) || word.eq_ignore_ascii_case(iana) {
        return true;
    }
    match word.to_ascii_uppercase().as_str() {
        // Every rustls TLS 1.2 suite: ECDHE, AEAD, 128 bits or more, TLS 1.2.
        "ALL" | "DEFAULT" | "HIGH" | "TLSV1.2" | "AEAD" | "ECDHE" | "EECDH" | "KECDHE"
        | "KEECDH" | "ECDH" | "KECDH" => true,
        "ARSA" => iana.contains("_RSA_"),
        "AECDSA" | "ECDSA" => iana.contains("_ECDSA_"),
        "AES" | "AESGCM" => iana.contains("_AES_"),
        "AES128" => iana.contains("_AES_128_"),
        "AES256" => iana.contains("_AES_256_"),
        "CHACHA20" => iana.contains("_CHACHA20_"),
        _ => false,
    }
}

/// The TLS 1.2 suites a `*_tls_ciphers` value selects, in its order.
///
/// OpenSSL's rules, over rustls' suites: words are separated by `:`, `,` or
/// spaces; `A+B` is what both A and B cover; a word adds what it covers to the
/// end of the list, `-word` takes it out, `!word` takes it out for good and
/// `+word` moves it to the end; `@STRENGTH` and `@SECLEVEL=n` change nothing
/// here.
pub fn tls12_ciphers(text: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    let all = offered(&TLS12);
    let trimmed = text.trim();
    // Empty (a SET to '') is taken as the default.
    if trimmed.is_empty() || SHORTCUTS.iter().any(|s| s.eq_ignore_ascii_case(trimmed)) {
        return Ok(all);
    }
    // Indexes into `all`, in the list's order.
    let mut chosen: Vec<usize> = Vec::new();
    let mut banned = vec![false; all.len()];
    for element in trimmed
        .split([':', ',', ' '])
        .filter(|e| !e.is_empty() && !e.starts_with('@'))
    {
        let (op, body) = match element.as_bytes()[0] {
            op @ (b'!' | b'-' | b'+') => (op, &element[1..]),
            _ => (b' ', element),
        };
        let matching = (0..all.len()).filter(|&i| body.split('+').all(|w| covers(w, &all[i])));
        for i in matching {
            match op {
                b'!' => {
                    banned[i] = true;
                    chosen.retain(|&c| c != i);
                }
                b'-' => chosen.retain(|&c| c != i),
                b'+' if chosen.contains(&i) => {
                    chosen.retain(|&c| c != i);
                    chosen.push(i);
                }
                b'+' => {}
                _ if !banned[i] && !chosen.contains(&i) => chosen.push(i),
                _ => {}
            }
        }
    }
    if chosen.is_empty() {
        let names: Vec<&str> = all.iter().map(openssl_name).collect();
        return Err(format!(
            "'{text}' selects none of the TLS 1.2 cipher suites pgsluice offers ({})",
            names.join(", ")
        ));
    }
    Ok(chosen.into_iter().map(|i| all[i]).collect())
}

/// The TLS 1.3 suites a `*_tls13_ciphers` value selects, in its order: names
/// separated by `:` (or `,`), as OpenSSL's TLS 1.3 list. Empty means all of
/// them. The CCM suites are known but not offered, so a list of only those
/// selects none, which leaves TLS 1.3 off (as in OpenSSL).
pub fn tls13_ciphers(text: &str) -> Result<Vec<SupportedCipherSuite>, String> {
    let all = offered(&TLS13);
    let words: Vec<&str> = text
        .split([':', ','])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return Ok(all);
    }
    let mut chosen = Vec::new();
    for word in words {
        if let Some(suite) = all
            .iter()
            .find(|s| openssl_name(s).eq_ignore_ascii_case(word))
        {
            if !chosen.contains(suite) {
                chosen.push(*suite);
            }
        } else if !["TLS_AES_128_CCM_SHA256", "TLS_AES_128_CCM_8_SHA256"]
            .iter()
            .any(|ccm| ccm.eq_ignore_ascii_case(word))
        {
            return Err(format!("unknown TLS 1.3 cipher suite '{word}' in '{text}'"));
        }
    }
    Ok(chosen)
}

/// The key exchange groups `client_tls_ecdhcurve` allows: `auto` (X25519,
/// P-256 and P-384), or curve names separated by `,` or `:` in OpenSSL's or
/// NIST's spelling. `none` is refused: every suite rustls has needs ECDHE.
pub fn ecdh_groups(text: &str) -> Result<Vec<&'static dyn SupportedKxGroup>, String> {
    use ring::kx_group;
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("auto") {
        return Ok(ring::ALL_KX_GROUPS.to_vec());
    }
    if trimmed.eq_ignore_ascii_case("none") {
        return Err(
            "'none' would leave no key exchange: every cipher suite pgsluice offers uses ECDHE"
                .into(),
        );
    }
    let mut groups: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for word in trimmed
        .split([',', ':'])
        .map(str::trim)
        .filter(|w| !w.is_empty())
    {
        let group = match word.to_ascii_lowercase().as_str() {
            "x25519" => kx_group::X25519,
            "p-256" | "prime256v1" | "secp256r1" => kx_group::SECP256R1,
            "p-384" | "secp384r1" => kx_group::SECP384R1,
            _ => {
                return Err(format!(
                    "unknown or unsupported curve '{word}' (pgsluice offers X25519, P-256 \
                     and P-384)"
                ))
            }
        };
        if !groups.iter().any(|g| g.name() == group.name()) {
            groups.push(group);
        }
    }
    Ok(groups)
}

/// The ring provider narrowed to `suites` and `groups`.
pub fn provider(
    suites: Vec<SupportedCipherSuite>,
    groups: Vec<&'static dyn SupportedKxGroup>,
) -> CryptoProvider {
    CryptoProvider {
        cipher_suites: suites,
        kx_groups: groups,
        ..ring::default_provider()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<String> {
        tls12_ciphers(text)
            .unwrap()
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect()
    }

    #[test]
    fn shortcuts_keep_every_suite_in_rustls_order() {
        let all = names("default");
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384");
        for shortcut in [
            "secure", "Compat", "legacy", "normal", "fast", "ALL", "insecure",
        ] {
            assert_eq!(names(shortcut), all, "{shortcut}");
        }
        // libtls's own default list, spelled out, selects the same.
        assert_eq!(names("TLSv1.2+AEAD+ECDHE:TLSv1.2+AEAD+DHE"), all);
        assert_eq!(names(""), all);
    }

    #[test]
    fn a_list_selects_in_its_own_order() {
        assert_eq!(
            names("ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:DHE-RSA-AES256-SHA"),
            [
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
            ]
        );
        assert_eq!(
            names("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"),
            ["TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384"]
        );
    }

    #[test]
    fn aliases_intersect_and_exclusions_hold() {
        assert_eq!(
            names("aECDSA+AES256"),
            ["TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]
        );
        // `!` removes for good; `-` only until something adds it back.
        assert_eq!(names("HIGH:!aRSA:!CHACHA20:aRSA").len(), 2);
        assert_eq!(names("HIGH:-aRSA:-CHACHA20:aRSA").len(), 5);
        // `+` moves to the end.
        assert_eq!(
            names("AES256:CHACHA20:+AES256"),
            [
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            ]
        );
        assert_eq!(names("HIGH:!aNULL:!MD5:@STRENGTH").len(), 6);
    }

    #[test]
    fn a_list_that_selects_nothing_is_refused() {
        let err = tls12_ciphers("DHE-RSA-AES256-GCM-SHA384:3DES").unwrap_err();
        assert!(err.contains("selects none"), "{err}");
        assert!(err.contains("ECDHE-RSA-AES128-GCM-SHA256"), "{err}");
        assert!(tls12_ciphers("HIGH:!ECDHE").is_err());
    }

    #[test]
    fn tls13_lists() {
        assert_eq!(tls13_ciphers("").unwrap().len(), 3);
        let one = tls13_ciphers("TLS_CHACHA20_POLY1305_SHA256").unwrap();
        assert_eq!(
            format!("{:?}", one[0].suite()),
            "TLS13_CHACHA20_POLY1305_SHA256"
        );
        assert_eq!(one.len(), 1);
        assert_eq!(
            tls13_ciphers("TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384")
                .unwrap()
                .len(),
            2
        );
        assert!(tls13_ciphers("TLS_AES_128_CCM_SHA256").unwrap().is_empty());
        let err = tls13_ciphers("TLS_AES_512_GCM").unwrap_err();
        assert!(err.contains("TLS_AES_512_GCM"), "{err}");
    }

    #[test]
    fn curves() {
        assert_eq!(ecdh_groups("auto").unwrap().len(), 3);
        let named: Vec<_> = ecdh_groups("prime256v1, secp384r1:P-256")
            .unwrap()
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        assert_eq!(named, ["secp256r1", "secp384r1"]);
        assert!(ecdh_groups("none").unwrap_err().contains("ECDHE"));
        assert!(ecdh_groups("brainpoolP256r1").is_err());
    }
}
