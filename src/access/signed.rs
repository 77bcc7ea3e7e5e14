//! The identity as a short-lived JWT the edge signs (ES256), so a backend can verify that
//! the edge sent it rather than trust a header anyone on the network could set. The keys
//! are P-256 PKCS#8 PEM blocks in one file: the first signs, every one is published in the
//! edge's JWKS (so a new key can be published before it signs, and an old one kept while
//! tokens it signed may still be in flight).

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::Identity;

/// The `iss` of every identity token the edge signs.
pub const ISSUER: &str = "xipgate";

#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no PEM 'PRIVATE KEY' block (make one with: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)")]
    NoKey { path: String },
    #[error("{path}: key {index} is not a P-256 PKCS#8 key: {why}")]
    BadKey {
        path: String,
        index: usize,
        why: String,
    },
}

pub struct Signer {
    /// The signing key and its kid (the RFC 7638 thumbprint).
    key: EcdsaKeyPair,
    kid: String,
    /// Every key's public JWK, the signing one first.
    jwks: String,
    ttl: u64,
    rng: SystemRandom,
}

/// The PKCS#8 DER of each `PRIVATE KEY` block.
fn pem_keys(text: &str) -> Vec<Result<Vec<u8>, base64::DecodeError>> {
    let mut out = Vec::new();
    let mut body: Option<String> = None;
    for line in text.lines().map(str::trim) {
        match (&mut body, line) {
            (None, "-----BEGIN PRIVATE KEY-----") => body = Some(String::new()),
            (Some(b), "-----END PRIVATE KEY-----") => {
                out.push(STANDARD.decode(b.as_bytes()));
                body = None;
            }
            (Some(b), l) => b.push_str(l),
            (None, _) => {}
        }
    }
    out
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// The public JWK of a P-256 key and its RFC 7638 thumbprint.
fn jwk(pair: &EcdsaKeyPair) -> (String, Value) {
    let p = pair.public_key().as_ref();
    let (x, y) = (b64(&p[1..33]), b64(&p[33..65]));
    // The thumbprint hashes the required members in lexicographic order, no whitespace.
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let kid = b64(digest::digest(&digest::SHA256, canonical.as_bytes()).as_ref());
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"});
    (kid, jwk)
}

impl Signer {
    /// Reads the key file; tokens live `ttl` seconds.
    pub fn from_file(path: &Path, ttl: u64) -> Result<Signer, SignerError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SignerError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::from_pem(&text, ttl).map_err(|e| match e {
            SignerError::NoKey { .. } => SignerError::NoKey { path: shown },
            SignerError::BadKey { index, why, .. } => SignerError::BadKey {
                path: shown,
                index,
                why,
            },
            other => other,
        })
    }

    pub fn from_pem(text: &str, ttl: u64) -> Result<Signer, SignerError> {
        let rng = SystemRandom::new();
        let bad = |index: usize, why: String| SignerError::BadKey {
            path: String::new(),
            index,
            why,
        };
        let mut pairs = Vec::new();
        for (i, der) in pem_keys(text).into_iter().enumerate() {
            let der = der.map_err(|e| bad(i + 1, e.to_string()))?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
                .map_err(|e| bad(i + 1, e.to_string()))?;
            pairs.push(pair);
        }
        let mut pairs = pairs.into_iter();
        let key = pairs.next().ok_or(SignerError::NoKey {
            path: String::new(),
        })?;
        let (kid, first) = jwk(&key);
        let keys: Vec<Value> = std::iter::once(first)
            .chain(pairs.map(|p| jwk(&p).1))
            .collect();
        Ok(Signer {
            key,
            kid,
            jwks: json!({ "keys": keys }).to_string(),
            ttl,
            rng,
        })
    }

    /// The edge's JWKS document, for backends to verify with.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// A token saying `who` asked for `host`, valid for the configured ttl from `now`.
    pub fn sign(&self, who: &Identity, host: &str, now: u64) -> Option<String> {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let claims = json!({
            "iss": ISSUER,
            "aud": host,
            "sub": who.user,
            "email": who.email,
            "groups": who.groups,
            "via": match who.via {
                super::Via::Session => "session",
                super::Via::Bearer => "bearer",
                super::Via::Basic => "basic",
            },
            "iat": now,
            "exp": now + self.ttl,
        });
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.key.sign(&self.rng, input.as_bytes()).ok()?;
        Some(format!("{input}.{}", b64(sig.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::jwt::{self, Alg, Expect};
    use crate::access::Via;

    fn pem(n: usize) -> String {
        let rng = SystemRandom::new();
        (0..n)
            .map(|_| {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .expect("key");
                format!(
                    "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                    STANDARD.encode(doc.as_ref())
                )
            })
            .collect()
    }

    #[test]
    fn a_backend_verifies_the_edges_token_with_the_published_jwks() {
        let s = Signer::from_pem(&pem(2), 60).unwrap();
        let who = Identity {
            user: "ann".into(),
            email: Some("ann@example.com".into()),
            groups: vec!["devs".into()],
            via: Via::Session,
        };
        let token = s.sign(&who, "orders.example.test", 1_000).unwrap();
        // Verified as any backend would: the JWKS, iss, aud, exp.
        let keys = crate::access::jwks::parse(s.jwks().as_bytes()).unwrap();
        assert_eq!(keys.len(), 2);
        let expect = Expect {
            issuer: ISSUER.into(),
            audiences: vec!["orders.example.test".into()],
            algorithms: vec![Alg::ES256],
            leeway: 0,
            user_claim: "sub".into(),
            groups_claim: "groups".into(),
        };
        let p = jwt::parse(&token, &expect.algorithms).unwrap();
        p.verify(&keys).unwrap();
        let got = p.identity(&expect, 1_030).unwrap();
        assert_eq!(
            (got.user.as_str(), got.email, got.groups),
            ("ann", who.email.clone(), who.groups.clone())
        );
        assert!(p.identity(&expect, 1_060).is_err(), "expired after the ttl");
        // Another service's backend refuses it (aud).
        let other = Expect {
            audiences: vec!["billing.example.test".into()],
            ..expect
        };
        assert!(p.identity(&other, 1_030).is_err());
        // The kid is the key's RFC 7638 thumbprint: 43 base64url characters.
        assert_eq!(p.kid.as_deref().map(str::len), Some(43));
    }

    #[test]
    fn a_key_file_without_a_p256_key_is_refused() {
        assert!(matches!(
            Signer::from_pem("", 60),
            Err(SignerError::NoKey { .. })
        ));
        let rsa = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            STANDARD.encode(crate::access::testkeys::RSA1)
        );
        let e = Signer::from_pem(&rsa, 60).err().unwrap().to_string();
        assert!(e.contains("key 1 is not a P-256 PKCS#8 key"), "{e}");
        let garbage = "-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----\n";
        assert!(Signer::from_pem(garbage, 60).is_err());
    }
}
