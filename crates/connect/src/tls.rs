//! CA files, root stores and the server-certificate checks both engines use.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};

use crate::error::{ConnectError, Engine};

/// Where trusted CAs come from.
#[derive(Debug, Clone)]
pub(crate) enum Roots {
    /// The CA certificates of a PEM file, as read.
    File { pem: Vec<u8>, store: RootCertStore },
    /// The public web PKI (the Mozilla root set).
    Public,
}

impl Roots {
    pub(crate) fn from_file(engine: Engine, path: &Path) -> Result<Self, ConnectError> {
        let failed = |reason: String| {
            ConnectError::CaFile {
                engine,
                path: path.to_owned(),
                reason,
            }
            .counted()
        };
        let pem = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
        let mut store = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| failed(format!("not PEM certificates: {e}")))?;
            store
                .add(cert)
                .map_err(|e| failed(format!("not a usable CA certificate: {e}")))?;
        }
        if store.is_empty() {
            return Err(failed("holds no certificate".into()));
        }
        Ok(Roots::File { pem, store })
    }

    fn store(&self) -> RootCertStore {
        match self {
            Roots::File { store, .. } => store.clone(),
            Roots::Public => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        }
    }
}

/// How much of the server's certificate is checked. The handshake's
/// signatures are always checked, so the server holds the key of the
/// certificate it shows, whatever the level.
#[derive(Debug, Clone)]
pub(crate) enum Check {
    /// Nothing: encryption against eavesdropping only (libpq's `require`
    /// without a root certificate).
    Nothing,
    /// The chain up to a trusted CA, not the name (`verify-ca`).
    Chain(Roots),
    /// The chain and that the certificate names the host (`verify-full`,
    /// `rediss://`).
    Full(Roots),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client configuration that checks the server as `check` says and
/// counts each certificate it refuses.
pub(crate) fn client_config(engine: Engine, check: &Check) -> Result<ClientConfig, ConnectError> {
    let provider = provider();
    let failed = |e: rustls::Error| {
        ConnectError::Tls {
            engine,
            reason: e.to_string(),
        }
        .counted()
    };
    let webpki = |roots: &Roots| {
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots.store()), provider.clone())
            .build()
            .map_err(|e| {
                ConnectError::Tls {
                    engine,
                    reason: e.to_string(),
                }
                .counted()
            })
    };
    let verifier = Verifier {
        engine,
        names_checked: matches!(check, Check::Full(_)),
        chain: match check {
            Check::Nothing => None,
            Check::Chain(roots) | Check::Full(roots) => Some(webpki(roots)?),
        },
        algorithms: provider.signature_verification_algorithms,
    };
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(failed)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

#[derive(Debug)]
struct Verifier {
    engine: Engine,
    chain: Option<Arc<WebPkiServerVerifier>>,
    names_checked: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        let verified = chain
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .or_else(|err| match err {
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) if !self.names_checked => Ok(ServerCertVerified::assertion()),
                other => Err(other),
            });
        if verified.is_err() {
            metrics::counter!(
                "skyhose_connect_rejected_certificates_total",
                "engine" => self.engine.label()
            )
            .increment(1);
        }
        verified
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
