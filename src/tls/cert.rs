//! One certificate as the TLS listener serves it: the leaf, its chain and its key, read
//! from PEM files, with the names it covers and its validity.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use pingora_core::tls::nid::Nid;
use pingora_core::tls::pkey::{PKey, Private};
use pingora_core::tls::ssl::SslContext;
use pingora_core::tls::x509::X509;

/// Why a certificate or key file was not usable.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} is not a PEM private key ({reason})")]
    BadKey { path: PathBuf, reason: String },
    #[error("the key in {key} does not belong to the certificate in {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("the certificate in {path} names no DNS name (no subjectAltName, no CN)")]
    NoNames { path: PathBuf },
}

/// A loaded certificate, ready to hand to a handshake.
pub struct CertKey {
    pub leaf: X509,
    /// Intermediates, in the order the file lists them after the leaf.
    pub chain: Vec<X509>,
    pub key: PKey<Private>,
    /// DNS names from subjectAltName (or the CN when there is none), lower-case.
    pub names: Vec<String>,
    pub not_before: SystemTime,
    pub not_after: SystemTime,
    /// The context a handshake switches to when it serves this certificate, built at its
    /// first handshake (`tls::SniCallbacks`); a reload makes a new `CertKey`, so a new one.
    pub(super) context: OnceLock<SslContext>,
}

impl std::fmt::Debug for CertKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertKey")
            .field("names", &self.names)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| CertError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Seconds since the epoch of an ASN.1 time, through its distance from the epoch.
fn system_time(t: &Asn1TimeRef) -> Option<SystemTime> {
    let epoch = Asn1Time::from_unix(0).ok()?;
    let d = epoch.diff(t).ok()?;
    let secs = i64::from(d.days) * 86_400 + i64::from(d.secs);
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

impl CertKey {
    /// Reads a PEM chain (leaf first) and its PEM key, and checks they belong together.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let chain_pem = read(cert)?;
        let key_pem = read(key)?;
        Self::from_pem(&chain_pem, &key_pem, cert, key)
    }

    /// [`CertKey::load`] on bytes already read; the paths are only for messages.
    pub fn from_pem(
        chain_pem: &[u8],
        key_pem: &[u8],
        cert: &Path,
        key: &Path,
    ) -> Result<Self, CertError> {
        let mut certs = X509::stack_from_pem(chain_pem)
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| CertError::NoCertificate {
                path: cert.to_path_buf(),
            })?
            .into_iter();
        let leaf = certs.next().ok_or_else(|| CertError::NoCertificate {
            path: cert.to_path_buf(),
        })?;
        let pkey = PKey::private_key_from_pem(key_pem).map_err(|e| CertError::BadKey {
            path: key.to_path_buf(),
            reason: e
                .errors()
                .first()
                .and_then(|e| e.reason())
                .unwrap_or("unreadable")
                .to_string(),
        })?;
        let matches = leaf
            .public_key()
            .map(|p| p.public_eq(&pkey))
            .unwrap_or(false);
        if !matches {
            return Err(CertError::KeyMismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            });
        }
        let names = names_of(&leaf);
        if names.is_empty() {
            return Err(CertError::NoNames {
                path: cert.to_path_buf(),
            });
        }
        let not_before = system_time(leaf.not_before()).unwrap_or(UNIX_EPOCH);
        let not_after = system_time(leaf.not_after()).unwrap_or(UNIX_EPOCH);
        Ok(CertKey {
            leaf,
            chain: certs.collect(),
            key: pkey,
            names,
            not_before,
            not_after,
            context: OnceLock::new(),
        })
    }

    /// Seconds until it expires (negative once expired).
    pub fn seconds_left(&self, now: SystemTime) -> i64 {
        match self.not_after.duration_since(now) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }

    /// When two thirds of its lifetime have passed: when ACME renews it.
    pub fn renew_at(&self) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        self.not_before + life * 2 / 3
    }
}

fn names_of(leaf: &X509) -> Vec<String> {
    let mut names: Vec<String> = leaf
        .subject_alt_names()
        .map(|sans| {
            sans.iter()
                .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(
            leaf.subject_name()
                .entries_by_nid(Nid::COMMONNAME)
                .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase())),
        );
    }
    names.sort();
    names.dedup();
    names
}
