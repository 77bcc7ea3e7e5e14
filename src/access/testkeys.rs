//! Test keys and tokens: RSA keys from fixtures (ring cannot generate RSA keys; these were
//! made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -outform DER`, then `openssl pkey -traditional`: PKCS#1),
//! for tests only), EC keys generated per run.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents};
use serde_json::{json, Value};

use super::jwt::{Jwk, Key};

pub const RSA1: &[u8] = include_bytes!("testkeys/rsa1.der");
pub const RSA2: &[u8] = include_bytes!("testkeys/rsa2.der");

pub enum Pair {
    Rsa(RsaKeyPair),
    P256(EcdsaKeyPair),
    P384(EcdsaKeyPair),
}

pub struct Signer {
    pub kid: String,
    pub pair: Pair,
}

pub fn rsa(kid: &str, der: &[u8]) -> Signer {
    Signer {
        kid: kid.into(),
        pair: Pair::Rsa(RsaKeyPair::from_der(der).expect("test RSA key")),
    }
}

pub fn ec(kid: &str, p384: bool) -> Signer {
    let rng = SystemRandom::new();
    let alg = if p384 {
        &signature::ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING
    };
    let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("EC key");
    let pair = EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).expect("EC key");
    Signer {
        kid: kid.into(),
        pair: if p384 {
            Pair::P384(pair)
        } else {
            Pair::P256(pair)
        },
    }
}

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

impl Signer {
    /// The public JWK, as an issuer publishes it.
    pub fn jwk(&self) -> Value {
        match &self.pair {
            Pair::Rsa(k) => {
                let c: RsaPublicKeyComponents<Vec<u8>> = k.public().into();
                json!({"kty": "RSA", "kid": self.kid, "use": "sig", "n": b64(&c.n), "e": b64(&c.e)})
            }
            Pair::P256(k) | Pair::P384(k) => {
                let p = k.public_key().as_ref();
                let half = (p.len() - 1) / 2;
                let crv = if half == 32 { "P-256" } else { "P-384" };
                json!({"kty": "EC", "kid": self.kid, "crv": crv,
                       "x": b64(&p[1..1 + half]), "y": b64(&p[1 + half..])})
            }
        }
    }

    pub fn key(&self) -> Jwk {
        let key = match &self.pair {
            Pair::Rsa(k) => {
                let c: RsaPublicKeyComponents<Vec<u8>> = k.public().into();
                Key::Rsa { n: c.n, e: c.e }
            }
            Pair::P256(k) => Key::P256(k.public_key().as_ref().to_vec()),
            Pair::P384(k) => Key::P384(k.public_key().as_ref().to_vec()),
        };
        Jwk {
            kid: Some(self.kid.clone()),
            alg: None,
            key,
        }
    }

    /// A token with `header` (alg, kid, ... as given) and `claims`, signed per `alg`
    /// (an alg this key cannot make is signed with the key's own algorithm).
    pub fn sign(&self, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let alg = header["alg"].as_str().unwrap_or("");
        let sig = match &self.pair {
            Pair::Rsa(k) => {
                let padding: &dyn signature::RsaEncoding = match alg {
                    "RS384" => &signature::RSA_PKCS1_SHA384,
                    "RS512" => &signature::RSA_PKCS1_SHA512,
                    "PS256" => &signature::RSA_PSS_SHA256,
                    "PS384" => &signature::RSA_PSS_SHA384,
                    "PS512" => &signature::RSA_PSS_SHA512,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(padding, &rng, input.as_bytes(), &mut sig)
                    .expect("sign");
                sig
            }
            Pair::P256(k) | Pair::P384(k) => k
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }

    /// A token for `claims` with this key's usual algorithm and its kid.
    pub fn token(&self, alg: &str, claims: Value) -> String {
        self.sign(json!({"alg": alg, "kid": self.kid, "typ": "JWT"}), claims)
    }
}
