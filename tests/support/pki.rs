//! Certificates for the TLS tests, made by rcgen for each test: a CA, and
//! certificates and keys it signed, as PEM files in a test's directory.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA, and PEM files it signed, written into the pooler's directory.
pub struct Pki {
    ca: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let pki = Pki {
            ca: Issuer::new(params, key),
            dir: dir.to_path_buf(),
        };
        super::write_pg_file(&pki.path(&format!("{name}-ca.crt")), &cert.pem(), 0o644);
        pki
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// `<name>.crt` and `<name>.key` for the pooler, for `names` (the first
    /// is the CN).
    pub fn issue(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue_for(name, names, true)
    }

    /// The same for psql: libpq wants a client key owned by whoever runs it.
    pub fn issue_client(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.issue_for(name, names, false)
    }

    fn issue_for(&self, name: &str, names: &[&str], pooler: bool) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (crt, pem) = (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        );
        if pooler {
            super::write_pg_file(&crt, &cert.pem(), 0o644);
            super::write_pg_file(&pem, &key.serialize_pem(), 0o600);
        } else {
            std::fs::write(&crt, cert.pem()).unwrap();
            std::fs::write(&pem, key.serialize_pem()).unwrap();
            std::fs::set_permissions(&pem, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        (crt, pem)
    }
}
