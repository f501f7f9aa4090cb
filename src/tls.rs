//! TLS: the serving configuration (rustls, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`), and
//! certificate generation for development (ECDSA P-256: a handshake costs less than half
//! of an RSA-2048 one).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where `serve` looks for, and on first run writes, development certificates.
pub const DEV_DIR: &str = "certs-dev";
pub const DEV_CERT: &str = "certs-dev/tls.crt";
pub const DEV_KEY: &str = "certs-dev/tls.key";
pub const DEV_CA: &str = "certs-dev/ca.crt";

/// The names a development serving certificate covers: loopback, and the in-cluster
/// Service names of the default install.
pub const DEV_NAMES: [&str; 5] = [
    "localhost",
    "127.0.0.1",
    "::1",
    "jitgate.jitgate-system.svc",
    "jitgate.jitgate-system.svc.cluster.local",
];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("certificate {cert} and key {key} cannot serve: {reason}")]
    Config {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
    #[error("cannot generate certificates: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A CA and a serving certificate it signed, PEM encoded.
pub struct Generated {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a CA and a serving certificate for `names` (DNS names or IP addresses), valid
/// from an hour ago (clock skew) for `days` days.
pub fn generate(names: &[&str], days: u32) -> Result<Generated, TlsError> {
    let now = time::OffsetDateTime::now_utc();
    let validity = |params: &mut CertificateParams| {
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(i64::from(days));
    };
    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name = dn("jitgate CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut leaf = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())?;
    leaf.distinguished_name = dn(names.first().copied().unwrap_or("jitgate"));
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    validity(&mut leaf);
    let cert = leaf.signed_by(&key, &issuer)?;
    Ok(Generated {
        ca_pem: ca_cert.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

/// Writes development certificates into `dir` unless a serving pair is already there.
/// Returns true when it generated them. The CA key is not kept: nothing else can be
/// signed with it.
pub fn ensure_dev_certs(dir: &Path) -> Result<bool, TlsError> {
    let (cert, key, ca) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
    if cert.exists() && key.exists() {
        return Ok(false);
    }
    let g = generate(&DEV_NAMES, 365)?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    write_private(&key, &g.key_pem).map_err(write_err(&key))?;
    std::fs::write(&cert, &g.cert_pem).map_err(write_err(&cert))?;
    std::fs::write(&ca, &g.ca_pem).map_err(write_err(&ca))?;
    Ok(true)
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

/// Reads a certificate chain and its key, checks that they belong together, and builds
/// the serving configuration.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::Pem {
            path: cert.to_path_buf(),
            reason: "no certificate in the file".into(),
        });
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|e| TlsError::Config {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            reason: e.to_string(),
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificates_are_written_once_and_serve() {
        let dir = tempfile::tempdir().unwrap();
        assert!(ensure_dev_certs(dir.path()).unwrap());
        assert!(!ensure_dev_certs(dir.path()).unwrap(), "an existing pair is kept");
        server_config(&dir.path().join("tls.crt"), &dir.path().join("tls.key")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("tls.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_key_that_does_not_match_the_certificate_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (
            generate(&["localhost"], 1).unwrap(),
            generate(&["localhost"], 1).unwrap(),
        );
        std::fs::write(dir.path().join("c"), a.cert_pem).unwrap();
        std::fs::write(dir.path().join("k"), b.key_pem).unwrap();
        let err = server_config(&dir.path().join("c"), &dir.path().join("k")).unwrap_err();
        assert!(matches!(err, TlsError::Config { .. }), "{err}");
    }

    #[test]
    fn garbage_is_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c"), "not a certificate").unwrap();
        std::fs::write(dir.path().join("k"), "not a key").unwrap();
        let err = server_config(&dir.path().join("c"), &dir.path().join("k")).unwrap_err();
        assert!(err.to_string().contains('c'), "{err}");
    }
}
