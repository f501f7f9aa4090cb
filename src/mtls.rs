//! Knowing the caller: mutual TLS from the API server (`serve --client-ca-file`).
//!
//! The handshake asks every client for a certificate and lets one without any through, so
//! that the kubelet's probes (which have none) still reach `/healthz` and `/readyz`. A
//! certificate that is presented must be signed by the key it names (rustls checks the
//! handshake's signature as usual); whether it chains to the client CA is checked once the
//! handshake is done ([`ClientCa::caller_of`]), so that a review from a caller who is not
//! the API server is answered with a refusal the caller can read and that is recorded,
//! rather than with a handshake failure nobody sees. `/validate` and `/authorize` accept
//! only [`Caller::Verified`] when a client CA is set.
//!
//! The CA file is re-read when it changes, like the serving certificate: new connections
//! are judged by the new CA within seconds, and a broken file is refused, logged, and the
//! old CA kept.

use crate::tls::TlsError;
use crate::watch::Changes;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Who is on the other end of a connection, as far as TLS can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No client CA is set: every caller is taken for the API server.
    Unchecked,
    /// A client certificate that chains to the client CA.
    Verified,
    /// No client certificate (a probe, a scraper, or someone who is not the API server).
    NoCertificate,
    /// A client certificate that does not chain to the client CA; the text says why.
    Untrusted(String),
}

impl Caller {
    /// Whether this caller may have reviews decided.
    pub fn may_review(&self) -> bool {
        matches!(self, Caller::Unchecked | Caller::Verified)
    }

    /// Why a review from this caller is refused, in words the person who set it up can
    /// act on; `None` when it is not.
    pub fn refusal(&self) -> Option<String> {
        match self {
            Caller::Unchecked | Caller::Verified => None,
            Caller::NoCertificate => Some(
                "jitgate takes reviews only from the API server: this connection presented no client certificate, and serve --client-ca-file is set".into(),
            ),
            Caller::Untrusted(why) => Some(format!(
                "jitgate takes reviews only from the API server: this connection's client certificate is not accepted by the client CA ({why})"
            )),
        }
    }
}

/// The client CA, re-read from its file when it changes.
pub struct ClientCa {
    path: PathBuf,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    /// The file contents last seen (applied or refused), to act once per change.
    last: Mutex<Vec<u8>>,
}

impl std::fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCa").field("path", &self.path).finish()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn verifier_from(path: &Path, pem: &[u8]) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let bad = |reason: String| TlsError::Pem {
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CA certificate in the file".into()));
    }
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| bad(e.to_string()))
}

impl ClientCa {
    /// Reads the CA file; an error here stops start-up.
    pub fn load(path: &Path) -> Result<Arc<ClientCa>, TlsError> {
        let pem = std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let verifier = verifier_from(path, &pem)?;
        tracing::info!(client_ca = %path.display(), "client CA loaded: reviews are taken only from callers with a certificate it signed");
        Ok(Arc::new(ClientCa {
            path: path.to_path_buf(),
            current: RwLock::new(verifier),
            last: Mutex::new(pem),
        }))
    }

    /// The handshake's half of client authentication: ask for a certificate, accept none,
    /// check the signature of one that is presented.
    pub fn handshake_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        Arc::new(AskForCertificate {
            signatures: provider().signature_verification_algorithms,
        })
    }

    /// Who is calling on this finished handshake.
    pub fn caller_of(&self, tls: &ServerConnection) -> Caller {
        let Some((leaf, intermediates)) = tls.peer_certificates().and_then(|c| c.split_first()) else {
            return Caller::NoCertificate;
        };
        let verifier = self.current.read().unwrap_or_else(|e| e.into_inner()).clone();
        match verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
            Ok(_) => Caller::Verified,
            Err(e) => Caller::Untrusted(e.to_string()),
        }
    }

    /// Re-reads the file; swaps in a changed CA if it is valid. Returns true when a new
    /// CA was applied.
    pub fn reload(&self) -> bool {
        let Ok(pem) = std::fs::read(&self.path) else {
            let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
            if !last.is_empty() {
                tracing::error!(client_ca = %self.path.display(), "client CA unreadable; keeping the current one");
                last.clear();
            }
            return false;
        };
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if *last == pem {
            return false;
        }
        match verifier_from(&self.path, &pem) {
            Ok(verifier) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = verifier;
                tracing::info!(client_ca = %self.path.display(), "client CA changed; new connections are judged by it");
                *last = pem;
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "new client CA refused; keeping the current one");
                *last = pem;
                false
            }
        }
    }

    /// Follows the file until the task is aborted.
    pub fn spawn_reload(self: Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let mut changes = Changes::watch(&[&self.path], every);
        tokio::spawn(async move {
            loop {
                changes.next().await;
                let this = self.clone();
                let _ = tokio::task::spawn_blocking(move || this.reload()).await;
            }
        })
    }
}

/// Asks every client for a certificate and takes any (or none); the chain is judged after
/// the handshake by [`ClientCa::caller_of`]. The handshake signature is still checked, so
/// a certificate that is presented belongs to the client presenting it. It names no CA in
/// its request: a client with one certificate then always sends it, and a wrong one is
/// seen and recorded rather than silently left out.
#[derive(Debug)]
struct AskForCertificate {
    signatures: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AskForCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.signatures)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.signatures)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.supported_schemes()
    }
}
