//! Why an instance's certificate was refused. Pingora reports a failed verification only
//! as `InvalidCert` (the OpenSSL verify result is not kept), so the answer for it does a
//! second handshake that verifies as Pingora's did and reads OpenSSL's verdict: unknown
//! issuer, a name the certificate does not carry, expired. Verdicts are kept for a while
//! per instance, so a burst of requests to a misconfigured instance costs one handshake.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssl::ssl::{HandshakeError, SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::{X509VerifyResult, X509};

/// How long a verdict is reused for the same instance address and name.
const VERDICT_TTL: Duration = Duration::from_secs(10);
/// Verdicts kept at most; past this the cache starts afresh (only instances whose
/// certificates fail are ever in it).
const MAX_VERDICTS: usize = 1024;

// OpenSSL's X509_V_ERR_* codes (x509_vfy.h) for the verdicts named below.
const UNABLE_TO_GET_ISSUER_CERT: i32 = 2;
const CERT_NOT_YET_VALID: i32 = 9;
const CERT_HAS_EXPIRED: i32 = 10;
const DEPTH_ZERO_SELF_SIGNED_CERT: i32 = 18;
const SELF_SIGNED_CERT_IN_CHAIN: i32 = 19;
const UNABLE_TO_GET_ISSUER_CERT_LOCALLY: i32 = 20;
const UNABLE_TO_VERIFY_LEAF_SIGNATURE: i32 = 21;
const HOSTNAME_MISMATCH: i32 = 62;
const IP_ADDRESS_MISMATCH: i32 = 64;

/// What was wrong with an instance's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertProblem {
    /// Not signed by a CA xipgate trusts (OpenSSL's words follow).
    UnknownIssuer(String),
    /// It does not carry the name verified.
    NameMismatch(String),
    Expired,
    NotYetValid,
    /// Anything else, in OpenSSL's words.
    Other(String),
}

impl CertProblem {
    /// The verdict for an OpenSSL verify result; `name` is the name that was verified.
    pub fn of(code: i32, words: &str, name: &str) -> CertProblem {
        match code {
            UNABLE_TO_GET_ISSUER_CERT
            | UNABLE_TO_GET_ISSUER_CERT_LOCALLY
            | UNABLE_TO_VERIFY_LEAF_SIGNATURE
            | DEPTH_ZERO_SELF_SIGNED_CERT
            | SELF_SIGNED_CERT_IN_CHAIN => CertProblem::UnknownIssuer(words.to_string()),
            HOSTNAME_MISMATCH | IP_ADDRESS_MISMATCH => CertProblem::NameMismatch(name.to_string()),
            CERT_HAS_EXPIRED => CertProblem::Expired,
            CERT_NOT_YET_VALID => CertProblem::NotYetValid,
            _ => CertProblem::Other(words.to_string()),
        }
    }

    /// What failed and the setting that changes it, for the 502's text (after "presented
    /// a certificate that failed verification: ").
    pub fn explain(&self) -> String {
        const ANY: &str = "or xipgate.upstream.tls.verify: false to accept any certificate";
        match self {
            CertProblem::UnknownIssuer(words) => format!(
                "it is not signed by a CA xipgate trusts ({words}): set xipgate.upstream.tls.ca_file to the CA that signed it, {ANY}"
            ),
            CertProblem::NameMismatch(name) => format!(
                "it does not name '{name}', the name verified (the instance's hostName unless xipgate.upstream.tls.server_name is set): set server_name to a name the certificate carries, {ANY}"
            ),
            CertProblem::Expired => {
                format!("it has expired: the instance needs a renewed one, {ANY}")
            }
            CertProblem::NotYetValid => format!(
                "it is not valid yet (is a clock wrong?): the instance needs a current one, {ANY}"
            ),
            CertProblem::Other(words) => format!(
                "{words}: see xipgate.upstream.tls.ca_file and server_name, {ANY}"
            ),
        }
    }
}

/// How one instance's certificate is verified: as Pingora's peer for it does.
pub struct Check<'a> {
    pub addr: SocketAddr,
    /// SNI and the name verified.
    pub name: &'a str,
    /// Replaces the system's CAs when set.
    pub ca: Option<&'a Arc<Box<[X509]>>>,
    pub timeout: Duration,
}

/// A verdict (None: the check could not tell) and when it was found, by instance
/// address and name.
type Seen = HashMap<(SocketAddr, String), (Instant, Option<CertProblem>)>;

/// Verdicts of recent checks.
#[derive(Debug, Default)]
pub struct Verdicts(Mutex<Seen>);

impl Verdicts {
    /// Why `check`'s instance's certificate is refused, or None when the second handshake
    /// could not tell (it did not connect, or verification passed this time).
    pub async fn diagnose(&self, check: Check<'_>) -> Option<CertProblem> {
        let key = (check.addr, check.name.to_string());
        let recent = self
            .lock()
            .get(&key)
            .filter(|(at, _)| at.elapsed() < VERDICT_TTL)
            .map(|(_, v)| v.clone());
        if let Some(v) = recent {
            return v;
        }
        let (addr, name, timeout) = (check.addr, key.1.clone(), check.timeout);
        let ca = check.ca.cloned();
        let verdict = tokio::task::spawn_blocking(move || handshake(addr, &name, ca, timeout))
            .await
            .ok()
            .flatten();
        let mut seen = self.lock();
        if seen.len() >= MAX_VERDICTS {
            seen.clear();
        }
        seen.insert(key, (Instant::now(), verdict.clone()));
        verdict
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A blocking handshake that verifies the chain and the name, for OpenSSL's verdict.
fn handshake(
    addr: SocketAddr,
    name: &str,
    ca: Option<Arc<Box<[X509]>>>,
    timeout: Duration,
) -> Option<CertProblem> {
    let mut builder = SslConnector::builder(SslMethod::tls_client()).ok()?;
    builder.set_verify(SslVerifyMode::PEER);
    if let Some(ca) = ca {
        let mut store = X509StoreBuilder::new().ok()?;
        for cert in ca.iter() {
            store.add_cert(cert.clone()).ok()?;
        }
        builder.set_cert_store(store.build());
    }
    let tcp = TcpStream::connect_timeout(&addr, timeout).ok()?;
    tcp.set_read_timeout(Some(timeout)).ok()?;
    tcp.set_write_timeout(Some(timeout)).ok()?;
    let config = builder.build().configure().ok()?.verify_hostname(true);
    match config.connect(name, tcp) {
        Ok(_) => None,
        Err(HandshakeError::Failure(mid)) => {
            let result: X509VerifyResult = mid.ssl().verify_result();
            (result != X509VerifyResult::OK)
                .then(|| CertProblem::of(result.as_raw(), result.error_string(), name))
        }
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_results_become_verdicts_naming_the_setting() {
        // (OpenSSL code, verdict, words the explanation must have)
        let cases = [
            (
                UNABLE_TO_GET_ISSUER_CERT_LOCALLY,
                CertProblem::UnknownIssuer("w".into()),
                "xipgate.upstream.tls.ca_file",
            ),
            (
                DEPTH_ZERO_SELF_SIGNED_CERT,
                CertProblem::UnknownIssuer("w".into()),
                "not signed by a CA xipgate trusts",
            ),
            (
                HOSTNAME_MISMATCH,
                CertProblem::NameMismatch("pod-1".into()),
                "server_name",
            ),
            (CERT_HAS_EXPIRED, CertProblem::Expired, "expired"),
            (
                CERT_NOT_YET_VALID,
                CertProblem::NotYetValid,
                "not valid yet",
            ),
            (50, CertProblem::Other("w".into()), "w: see"),
        ];
        for (code, verdict, words) in cases {
            let got = CertProblem::of(code, "w", "pod-1");
            assert_eq!(got, verdict, "{code}");
            let text = got.explain();
            assert!(text.contains(words), "{code}: {text}");
            assert!(text.contains("verify: false"), "{code}: {text}");
        }
    }
}
