//! TLS on the gRPC listener: the server's certificate and, optionally, which
//! client certificates it asks for.

use clap::{Args, ValueEnum};
use std::{path::PathBuf, time::Duration};

/// TLS settings of the gRPC listener. Without `--tls-cert` the listener speaks
/// plaintext (for a sidecar on loopback).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "TLS")]
pub struct TlsConfig {
    /// PEM certificate chain the gateway presents, its own certificate first. With
    /// it (and `--tls-key`) the listener speaks TLS 1.2 and 1.3 only, ALPN h2.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "KAFKA_GATEWAY_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// PEM certificates of the authorities whose client certificates are accepted.
    #[arg(long, env = "KAFKA_GATEWAY_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,

    /// Whether clients must present a certificate from `--tls-client-ca`: `required`
    /// (the default with a client CA), `optional` (one is checked if sent), or
    /// `none`.
    #[arg(
        long,
        env = "KAFKA_GATEWAY_TLS_CLIENT_AUTH",
        value_enum,
        value_name = "MODE"
    )]
    pub tls_client_auth: Option<ClientAuth>,

    /// How often the certificate, key and client CA files are checked for changes.
    /// New connections get the new ones; open connections keep theirs; a broken new
    /// file keeps the old ones and is logged.
    #[arg(long, env = "KAFKA_GATEWAY_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration, value_name = "DURATION")]
    pub tls_reload_interval: Duration,
}

/// Which client certificates the listener asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientAuth {
    /// None are asked for.
    None,
    /// One is checked if the client sends it; clients without one are let in.
    Optional,
    /// Every client must present one from the client CA.
    Required,
}

impl TlsConfig {
    /// Whether the listener speaks TLS.
    pub fn enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The client certificate mode in effect.
    pub fn client_auth(&self) -> ClientAuth {
        match (self.tls_client_auth, &self.tls_client_ca) {
            (Some(mode), _) => mode,
            (None, Some(_)) => ClientAuth::Required,
            (None, None) => ClientAuth::None,
        }
    }

    /// Adds a line to `problems` for every setting that cannot be used.
    pub(super) fn check(&self, problems: &mut Vec<String>) {
        if self.tls_client_ca.is_some() && !self.enabled() {
            problems.push("--tls-client-ca needs --tls-cert and --tls-key: client certificates are checked only over TLS".into());
        }
        match (self.client_auth(), &self.tls_client_ca) {
            (ClientAuth::Optional | ClientAuth::Required, None) => problems.push(
                "--tls-client-auth optional or required needs --tls-client-ca, the authorities whose client certificates are accepted".into(),
            ),
            (ClientAuth::None, Some(_)) if self.tls_client_auth.is_some() => problems.push(
                "--tls-client-auth none ignores --tls-client-ca: drop one of them".into(),
            ),
            _ => {}
        }
        super::check_positive(
            problems,
            [("--tls-reload-interval", self.tls_reload_interval)],
        );
    }
}
