//! Who a client's certificate says it is, for `auth_type = cert`.

use x509_parser::prelude::{FromDer, X509Certificate};

/// The common name (CN) in the subject of a DER certificate: `None` when the
/// certificate has none, or one that is not a string, or cannot be read.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subject_common_name() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["db.example".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "alice");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(common_name(cert.der()).as_deref(), Some("alice"));

        let mut params = rcgen::CertificateParams::new(vec!["db.example".to_string()]).unwrap();
        // rcgen puts a CN of its own in an empty subject.
        params.distinguished_name = rcgen::DistinguishedName::new();
        let nameless = params.self_signed(&key).unwrap();
        assert_eq!(common_name(nameless.der()), None);
        assert_eq!(common_name(b"not a certificate"), None);
    }
}
