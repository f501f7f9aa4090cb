//! TLS: the serving configuration (rustls, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`), and
//! certificate generation for development (ECDSA P-256: a handshake costs less than half
//! of an RSA-2048 one).

use crate::watch::Changes;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

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
    if dir.join("tls.crt").exists() && dir.join("tls.key").exists() {
        return Ok(false);
    }
    write_pair(dir, &DEV_NAMES, 365, true)?;
    Ok(true)
}

/// Makes a CA and a serving certificate for `names` and writes `ca.crt`, `tls.crt` and
/// `tls.key` (mode 0600) into `dir`. Refuses to replace an existing key unless told to.
pub fn write_pair(dir: &Path, names: &[&str], days: u32, overwrite: bool) -> Result<Generated, TlsError> {
    let (cert, key, ca) = (dir.join("tls.crt"), dir.join("tls.key"), dir.join("ca.crt"));
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| TlsError::Write { path, source }
    };
    if !overwrite && key.exists() {
        return Err(TlsError::Write {
            path: key,
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists; pass --force to replace it",
            ),
        });
    }
    let g = generate(names, days)?;
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    write_private(&key, &g.key_pem).map_err(write_err(&key))?;
    std::fs::write(&cert, &g.cert_pem).map_err(write_err(&cert))?;
    std::fs::write(&ca, &g.ca_pem).map_err(write_err(&ca))?;
    Ok(g)
}

/// The names a Service's serving certificate needs.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ]
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

/// Reads a certificate chain and its key, checks that they belong together, and builds a
/// serving configuration that keeps this pair (for servers that never rotate).
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    Ok(ServingCert::load(cert, key)?.config())
}

/// A certificate and key read from files, checked to belong together.
struct Loaded {
    key: Arc<CertifiedKey>,
    not_after: Option<i64>,
    /// See [`ServingCert::secret_for`].
    secret: [u8; 32],
}

fn load_pair(cert: &Path, key: &Path, cert_pem: &[u8], key_pem: &[u8]) -> Result<Loaded, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert.to_path_buf(),
            reason: e.to_string(),
        })?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::Pem {
            path: cert.to_path_buf(),
            reason: "no certificate in the file".into(),
        });
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp());
    let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
        path: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    let secret = ring::digest::digest(&ring::digest::SHA256, private.secret_der());
    let secret = secret.as_ref().try_into().unwrap_or([0; 32]);
    let certified = CertifiedKey::from_der(chain, private, &provider()).map_err(|e| TlsError::Config {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
        secret,
    })
}

fn provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Hands every new TLS connection the current certificate.
#[derive(Debug)]
struct Resolver(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The serving certificate, re-read from its files when they change: new connections get
/// a new certificate within seconds, and a broken or mismatched pair is refused, logged,
/// and the old one kept.
pub struct ServingCert {
    cert: PathBuf,
    key: PathBuf,
    resolver: Arc<Resolver>,
    /// The file contents last seen (applied or refused), to act once per change.
    last: Mutex<(Vec<u8>, Vec<u8>)>,
    not_after: AtomicI64,
    /// A digest of the serving key in force.
    secret: RwLock<[u8; 32]>,
}

/// Unix time when nothing is known.
const UNKNOWN: i64 = i64::MIN;

impl ServingCert {
    /// Loads the pair; an error here stops start-up.
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServingCert>, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        let loaded = load_pair(cert, key, &cert_pem, &key_pem)?;
        let serving = ServingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            resolver: Arc::new(Resolver(RwLock::new(loaded.key))),
            last: Mutex::new((cert_pem, key_pem)),
            not_after: AtomicI64::new(loaded.not_after.unwrap_or(UNKNOWN)),
            secret: RwLock::new(loaded.secret),
        };
        serving.log_expiry("serving certificate loaded");
        Ok(Arc::new(serving))
    }

    /// A secret for `purpose` that every replica serving with the same key derives alike
    /// and nobody without the key can: an HMAC key, from the serving key in force (it
    /// changes when the key is rotated). jitgate keys its Events' names with it.
    pub fn secret_for(&self, purpose: &str) -> ring::hmac::Key {
        let secret = *self.secret.read().unwrap_or_else(|e| e.into_inner());
        let derived = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret),
            purpose.as_bytes(),
        );
        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, derived.as_ref())
    }

    /// A serving configuration (TLS 1.2 and 1.3, ALPN h2 and http/1.1) that always hands
    /// out the current certificate.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config_asking(None)
    }

    /// The same, asking clients for a certificate with `client_auth` (see
    /// [`crate::mtls`]) when given.
    pub fn config_asking(
        &self,
        client_auth: Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>,
    ) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(Arc::new(provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("ring supports TLS 1.2 and 1.3");
        let builder = match client_auth {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.resolver.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// Seconds until the current certificate expires (negative once it has), when known.
    pub fn seconds_left(&self) -> Option<i64> {
        let not_after = self.not_after.load(Ordering::Relaxed);
        (not_after != UNKNOWN).then(|| not_after - jiff::Timestamp::now().as_second())
    }

    /// Days until the current certificate expires, when known.
    pub fn days_left(&self) -> Option<i64> {
        self.seconds_left().map(|s| s.div_euclid(86_400))
    }

    fn log_expiry(&self, what: &str) {
        let cert = self.cert.display().to_string();
        match self.days_left() {
            Some(days) if days < 0 => tracing::error!(cert, days_left = days, "{what}: it has EXPIRED"),
            Some(days) if days < 30 => tracing::warn!(cert, days_left = days, "{what}: it expires soon"),
            Some(days) => tracing::info!(cert, days_left = days, "{what}"),
            None => tracing::warn!(cert, "{what}: its expiry could not be read"),
        }
    }

    /// Re-reads the files; swaps in a changed pair if it is valid. Returns true when a new
    /// certificate was applied.
    pub fn reload(&self) -> bool {
        let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read(&self.cert), std::fs::read(&self.key)) else {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if !last.0.is_empty() {
                tracing::error!(cert = %self.cert.display(), key = %self.key.display(),
                    "serving certificate or key unreadable; keeping the current one");
                *last = (Vec::new(), Vec::new());
            }
            return false;
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.0 == cert_pem && last.1 == key_pem {
            return false;
        }
        *last = (cert_pem, key_pem);
        match load_pair(&self.cert, &self.key, &last.0, &last.1) {
            Ok(loaded) => {
                *self.resolver.0.write().unwrap_or_else(|e| e.into_inner()) = loaded.key;
                *self.secret.write().unwrap_or_else(|e| e.into_inner()) = loaded.secret;
                self.not_after
                    .store(loaded.not_after.unwrap_or(UNKNOWN), Ordering::Relaxed);
                self.log_expiry("serving certificate rotated");
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "new serving certificate refused; keeping the current one");
                false
            }
        }
    }

    /// Follows the files until the task is aborted.
    pub fn spawn_rotation(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let mut changes = Changes::watch(&[&self.cert, &self.key], every);
        tokio::spawn(async move {
            loop {
                changes.next().await;
                let this = self.clone();
                let _ = tokio::task::spawn_blocking(move || this.reload()).await;
            }
        })
    }
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
    fn a_rotated_pair_is_applied_and_a_broken_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = (dir.path().join("c"), dir.path().join("k"));
        let first = generate(&["localhost"], 10).unwrap();
        std::fs::write(&c, &first.cert_pem).unwrap();
        std::fs::write(&k, &first.key_pem).unwrap();
        let serving = ServingCert::load(&c, &k).unwrap();
        let tag = |s: &ServingCert, purpose: &str| {
            ring::hmac::sign(&s.secret_for(purpose), b"news")
                .as_ref()
                .to_vec()
        };
        // Alike for every replica loading the same key, apart by purpose.
        let before = tag(&serving, "names");
        assert_eq!(before, tag(&ServingCert::load(&c, &k).unwrap(), "names"));
        assert_ne!(before, tag(&serving, "other"));
        // Valid for 10 days from now, to the second: 10 whole days left, or 9 once a
        // second has passed.
        assert!(
            matches!(serving.days_left(), Some(9 | 10)),
            "{:?}",
            serving.days_left()
        );
        assert!(!serving.reload(), "unchanged files change nothing");
        let second = generate(&["localhost"], 40).unwrap();
        std::fs::write(&c, &second.cert_pem).unwrap();
        std::fs::write(&k, &second.key_pem).unwrap();
        assert!(serving.reload());
        let rotated = serving.days_left();
        assert!(matches!(rotated, Some(39 | 40)), "{rotated:?}");
        let after = tag(&serving, "names");
        assert_ne!(before, after, "the secret follows the key");
        std::fs::write(&k, &first.key_pem).unwrap();
        assert!(!serving.reload(), "a mismatched pair is refused");
        assert_eq!(serving.days_left(), rotated, "the current one stays");
        assert_eq!(tag(&serving, "names"), after, "and its secret");
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
