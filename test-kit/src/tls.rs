//! Certificates made in the test (rcgen) and TLS clients of the gateway.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::{net::SocketAddr, path::Path};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// The name the gateway's test certificates are issued for, and clients ask for.
pub const SERVER_NAME: &str = "localhost";

/// A certificate authority of the test's own.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM.
    pub pem: String,
}

/// A certificate and its key, PEM.
pub struct Leaf {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

impl Authority {
    /// A new self-signed authority called `name`.
    pub fn new(name: &str) -> Authority {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA certificate");
        Authority {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) with common name `cn`.
    pub fn issue(&self, cn: &str, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().expect("leaf key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// A server certificate for the gateway on loopback.
    pub fn server(&self) -> Leaf {
        self.issue("kafka-gateway", &[SERVER_NAME, "127.0.0.1"])
    }
}

impl Leaf {
    /// Writes the certificate and key to `cert` and `key`, replacing what is there
    /// at once (a rename), as a secret mount would.
    pub fn write(&self, cert: &Path, key: &Path) {
        replace(cert, self.cert.as_bytes());
        replace(key, self.key.as_bytes());
    }
}

/// Replaces the file at `path` with `bytes` in one rename.
pub fn replace(path: &Path, bytes: &[u8]) {
    let next = path.with_extension("next");
    std::fs::write(&next, bytes).expect("write the new file");
    std::fs::rename(&next, path).expect("replace the file");
}

/// The endpoint of a TLS gateway at `addr`, trusting `ca` and presenting
/// `identity` if given.
pub fn tls_endpoint(addr: SocketAddr, ca: &Authority, identity: Option<&Leaf>) -> Endpoint {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&ca.pem))
        .domain_name(SERVER_NAME);
    if let Some(leaf) = identity {
        tls = tls.identity(Identity::from_pem(&leaf.cert, &leaf.key));
    }
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)
        .expect("client TLS config")
}
