//! TLS at the edge: the certificates served by SNI ([`CertStore`]), the Pingora listener
//! settings that use them (HTTP/2 by ALPN), and their reload when files change.
//!
//! Built on Pingora's OpenSSL backend (Cargo.toml says why): OpenSSL pauses the handshake
//! in its certificate callback, Pingora runs [`SniCallbacks::certificate_callback`], which
//! sets the certificate chosen for the client's SNI, and the handshake resumes.

mod cert;
mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::listeners::tls::TlsSettings;
use pingora_core::listeners::TlsAccept;
use pingora_core::protocols::tls::TlsRef;
use pingora_core::server::ShutdownWatch;
use pingora_core::services::background::BackgroundService;
use pingora_core::tls::ext;
use pingora_core::tls::ssl::NameType;
use pingora_core::tls::x509::X509;

pub use cert::{CertError, CertKey};
pub use store::{pick, CertSource, CertStatus, CertStore, Origin};

/// Why the TLS listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS settings: {0}")]
    Settings(String),
    #[error("cannot read the CA bundle {path}: {reason}")]
    CaBundle { path: String, reason: String },
}

/// Sets the certificate for each handshake from the store.
pub struct SniCallbacks(pub Arc<CertStore>);

#[async_trait]
impl TlsAccept for SniCallbacks {
    async fn certificate_callback(&self, ssl: &mut TlsRef) -> () {
        let sni = ssl.servername(NameType::HOST_NAME).map(str::to_string);
        // No certificate set: OpenSSL ends the handshake with an alert.
        let Some(ck) = self.0.lookup(sni.as_deref()) else {
            return;
        };
        let set = ext::ssl_use_certificate(ssl, &ck.leaf)
            .and_then(|_| ext::ssl_use_private_key(ssl, &ck.key))
            .and_then(|_| {
                ck.chain
                    .iter()
                    .try_for_each(|c| ext::ssl_add_chain_cert(ssl, c))
            });
        if let Err(e) = set {
            log::warn!("tls: cannot use the certificate for {sni:?}: {e}");
        }
    }
}

/// Pingora listener settings: certificates by SNI, TLS 1.2 and 1.3 (Mozilla's
/// intermediate profile, Pingora's default), and HTTP/2 offered by ALPN when `h2`.
pub fn listener_settings(store: Arc<CertStore>, h2: bool) -> Result<TlsSettings, TlsError> {
    let mut settings = TlsSettings::with_callbacks(Box::new(SniCallbacks(store)))
        .map_err(|e| TlsError::Settings(e.to_string()))?;
    if h2 {
        settings.enable_h2();
    }
    Ok(settings)
}

/// A PEM bundle of CA certificates, to verify upstream instances with.
pub fn load_ca_bundle(path: &Path) -> Result<Arc<Box<[X509]>>, TlsError> {
    let err = |reason: String| TlsError::CaBundle {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in it".into()));
    }
    Ok(Arc::new(certs.into_boxed_slice()))
}

/// Looks at the certificate files every `interval` and loads the ones that changed.
pub struct Reloader {
    pub store: Arc<CertStore>,
    pub interval: Duration,
}

#[async_trait]
impl BackgroundService for Reloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
            let store = self.store.clone();
            // stat and PEM parsing are blocking file work: off the runtime's threads.
            let _ = tokio::task::spawn_blocking(move || store.refresh()).await;
        }
    }
}
