//! TLS on the gRPC listener, with certificates reloaded while the gateway runs.
//!
//! The certificate, key and client CA files are read again every
//! `--tls-reload-interval` and compared with what was loaded; a change that makes
//! a usable setup replaces it for new connections (open connections keep theirs),
//! and a change that does not is logged once and changes nothing. Polling rather
//! than file-change events: Kubernetes and Vault agents replace mounted secrets
//! by swapping a symlink, which inotify watches on the files themselves miss, and
//! reading three small files every few seconds costs nothing.

mod files;

pub use files::TlsError;

use crate::config::TlsConfig;
use arc_swap::ArcSwap;
use files::Contents;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// The listener's TLS setup as it is now.
pub struct Tls {
    config: TlsConfig,
    current: ArcSwap<rustls::ServerConfig>,
    /// The files `current` was made from, when it was loaded at start.
    loaded: Contents,
}

impl Tls {
    /// Loads the setup `config` names, or `None` when the listener is plaintext.
    /// A setup that cannot be used is an error, so the gateway does not start.
    pub fn load(config: &TlsConfig) -> Result<Option<Arc<Tls>>, TlsError> {
        if !config.enabled() {
            return Ok(None);
        }
        let loaded = Contents::read(config)?;
        let server = loaded.server_config(config)?;
        Ok(Some(Arc::new(Tls {
            config: config.clone(),
            current: ArcSwap::new(server),
            loaded,
        })))
    }

    /// An acceptor with the setup in effect now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Whether clients are asked for certificates.
    pub fn asks_for_client_certificates(&self) -> bool {
        self.config.client_auth() != crate::config::ClientAuth::None
    }

    /// Checks the files for changes until `shutdown` fires.
    pub async fn watch(self: Arc<Tls>, shutdown: CancellationToken) {
        // What was loaded, and the last change that could not be used (logged once).
        let mut loaded = self.loaded.clone();
        let mut refused: Option<Result<Contents, TlsError>> = None;
        let mut ticker = tokio::time::interval(self.config.tls_reload_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let read = Contents::read(&self.config);
            if read.as_ref() == Ok(&loaded) || refused.as_ref() == Some(&read) {
                continue;
            }
            let refusal = |err: &TlsError| {
                error!(%err, "TLS certificate files changed but cannot be used; keeping the ones loaded before");
            };
            match read {
                Ok(contents) => match contents.server_config(&self.config) {
                    Ok(server) => {
                        self.current.store(server);
                        loaded = contents;
                        refused = None;
                        info!("TLS certificate files changed; new connections use the new ones");
                    }
                    Err(err) => {
                        refusal(&err);
                        refused = Some(Ok(contents));
                    }
                },
                Err(err) => {
                    refusal(&err);
                    refused = Some(Err(err));
                }
            }
        }
    }
}
