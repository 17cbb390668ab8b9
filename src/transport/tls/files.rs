//! Reading the PEM files of a TLS setup into a rustls server configuration.

use crate::config::{ClientAuth, TlsConfig};
use rustls::{
    crypto::ring,
    server::WebPkiClientVerifier,
    version::{TLS12, TLS13},
    RootCertStore, ServerConfig,
};
use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use std::{path::Path, sync::Arc};

/// Why a TLS setup cannot be used; the message names the file and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// The bytes of the files a TLS setup is made of, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl Contents {
    /// Reads the files `config` names.
    pub(super) fn read(config: &TlsConfig) -> Result<Contents, TlsError> {
        let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
            return Err(TlsError("TLS needs both --tls-cert and --tls-key".into()));
        };
        Ok(Contents {
            cert: read(cert, "--tls-cert")?,
            key: read(key, "--tls-key")?,
            client_ca: config
                .tls_client_ca
                .as_deref()
                .map(|ca| read(ca, "--tls-client-ca"))
                .transpose()?,
        })
    }

    /// The rustls configuration these files make: TLS 1.2 and 1.3, ALPN h2, and
    /// client certificates checked as `client_auth` says.
    pub(super) fn server_config(&self, config: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(ring::default_provider());
        let chain = certificates(&self.cert, "--tls-cert")?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| {
            TlsError(format!(
                "--tls-key: no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
            ))
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&TLS13, &TLS12])
            .map_err(|e| TlsError(format!("TLS versions: {e}")))?;
        let builder = match (config.client_auth(), &self.client_ca) {
            (ClientAuth::None, _) | (_, None) => builder.with_no_client_auth(),
            (mode, Some(ca)) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(ca, "--tls-client-ca")? {
                    roots.add(cert).map_err(|e| {
                        TlsError(format!(
                            "--tls-client-ca: a certificate cannot be a trust anchor: {e}"
                        ))
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if mode == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .map_err(|e| TlsError(format!("--tls-client-ca: {e}")))?,
                )
            }
        };
        let mut server = builder.with_single_cert(chain, key).map_err(|e| {
            TlsError(format!(
                "--tls-cert and --tls-key do not make a usable certificate: {e}"
            ))
        })?;
        server.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(server))
    }
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("{flag} {}: {e}", path.display())))
}

fn certificates(pem: &[u8], flag: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{flag}: not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{flag}: the file holds no PEM certificate"
        )));
    }
    Ok(certs)
}
