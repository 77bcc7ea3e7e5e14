use serde_json::{json, Value};

use super::*;
use crate::access::testkeys::{ec, rsa, RSA1, RSA2};

const NOW: u64 = 1_800_000_000;

fn expect() -> Expect {
    Expect {
        issuer: "https://idp.example".into(),
        audiences: vec!["xipgate".into(), "edge".into()],
        algorithms: vec![Alg::RS256, Alg::ES256, Alg::PS256],
        leeway: 30,
        user_claim: "preferred_username".into(),
        groups_claim: "groups".into(),
    }
}

fn claims() -> Value {
    json!({"iss": "https://idp.example", "aud": "xipgate", "sub": "robot", "exp": NOW + 60})
}

fn with(mut c: Value, key: &str, v: Value) -> Value {
    if v.is_null() {
        c.as_object_mut().unwrap().remove(key);
    } else {
        c[key] = v;
    }
    c
}

/// Parses, verifies against `keys` and reads the identity: the whole check but the fetch.
fn check(token: &str, keys: &[Jwk]) -> Result<Identity, TokenError> {
    let e = expect();
    let p = parse(token, &e.algorithms)?;
    p.verify(keys)?;
    p.identity(&e, NOW)
}

#[test]
fn good_tokens_of_every_allowed_algorithm_give_the_identity() {
    let r = rsa("r1", RSA1);
    let e = ec("e1", false);
    let keys = [r.key(), e.key()];
    for t in [
        r.token("RS256", claims()),
        r.token("PS256", claims()),
        e.token("ES256", claims()),
    ] {
        let who = check(&t, &keys).unwrap();
        assert_eq!(who.user, "robot");
        assert_eq!(who.via, Via::Bearer);
    }
    // The other algorithms, when allowed.
    let p384 = ec("e2", true);
    let all = Alg::ALL.to_vec();
    for (alg, s) in [
        ("RS384", &r),
        ("RS512", &r),
        ("PS384", &r),
        ("PS512", &r),
        ("ES384", &p384),
    ] {
        let t = s.token(alg, claims());
        let p = parse(&t, &all).unwrap();
        p.verify(&[r.key(), p384.key()]).unwrap();
    }
}

#[test]
fn the_user_email_and_groups_come_from_the_claims() {
    let r = rsa("r1", RSA1);
    let keys = [r.key()];
    let c = json!({"iss": "https://idp.example/", "aud": ["other", "edge"], "sub": "u-123",
        "preferred_username": "ann", "email": "ann@example.com", "groups": ["devs", "ops"],
        "exp": NOW + 60, "nbf": NOW - 5});
    let who = check(&r.token("RS256", c.clone()), &keys).unwrap();
    assert_eq!(who.user, "ann");
    assert_eq!(who.email.as_deref(), Some("ann@example.com"));
    assert_eq!(who.groups, ["devs", "ops"]);
    let spaced = with(c, "groups", json!("devs ops,qa"));
    let who = check(&r.token("RS256", spaced), &keys).unwrap();
    assert_eq!(who.groups, ["devs", "ops", "qa"]);
    // Expired, but within the leeway.
    let late = with(claims(), "exp", json!(NOW - 10));
    assert!(check(&r.token("RS256", late), &keys).is_ok());
    // No kid: the key that fits verifies it.
    let t = r.sign(json!({"alg": "RS256"}), claims());
    assert!(check(&t, &keys).is_ok());
    // typ at+jwt (RFC 9068) is an access token too.
    let t = r.sign(
        json!({"alg": "RS256", "kid": "r1", "typ": "at+jwt"}),
        claims(),
    );
    assert!(check(&t, &keys).is_ok());
}

#[test]
fn every_bad_token_is_refused_naming_the_problem() {
    let r = rsa("r1", RSA1);
    let r2 = rsa("r2", RSA2);
    let e = ec("e1", false);
    let mut pinned = r.key();
    pinned.kid = Some("pinned".into());
    pinned.alg = Some("RS256".into());
    let keys = [r.key(), e.key(), pinned];
    let hs = {
        // The classic: HMAC with the issuer's public key as the secret.
        let head = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","kid":"r1"}"#);
        let body = URL_SAFE_NO_PAD.encode(claims().to_string());
        let n = match &r.key().key {
            Key::Rsa { n, .. } => n.clone(),
            _ => unreachable!(),
        };
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &n);
        let sig = ring::hmac::sign(&k, format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    };
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let tampered = {
        let t = r.token("RS256", claims());
        let parts: Vec<&str> = t.split('.').collect();
        let body = URL_SAFE_NO_PAD.encode(with(claims(), "sub", json!("admin")).to_string());
        format!("{}.{body}.{}", parts[0], parts[2])
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "alg none",
            none,
            "algorithm none is not allowed (allowed: RS256, ES256, PS256)",
        ),
        (
            "HMAC with the public key",
            hs,
            "algorithm HS256 is not allowed",
        ),
        (
            "alg not in the allowlist",
            r.token("RS512", claims()),
            "algorithm RS512 is not allowed",
        ),
        (
            "crit",
            r.sign(
                json!({"alg": "RS256", "kid": "r1", "crit": ["exp"]}),
                claims(),
            ),
            "marks '[\"exp\"]' critical",
        ),
        (
            "typ of a DPoP proof",
            r.sign(
                json!({"alg": "RS256", "kid": "r1", "typ": "dpop+jwt"}),
                claims(),
            ),
            "token type '\"dpop+jwt\"' is not an access token",
        ),
        (
            "unknown kid",
            r2.token("RS256", claims()),
            "unknown key id 'r2' (not in the issuer's JWKS)",
        ),
        (
            "EC alg with an RSA key",
            e.sign(json!({"alg": "ES256", "kid": "r1"}), claims()),
            "key 'r1' is an RSA key for any algorithm, so it cannot verify ES256",
        ),
        (
            "alg other than the JWK's",
            r.sign(json!({"alg": "PS256", "kid": "pinned"}), claims()),
            "key 'pinned' is an RSA key for RS256, so it cannot verify PS256",
        ),
        (
            "signed by another key",
            r2.sign(json!({"alg": "RS256", "kid": "r1"}), claims()),
            "bad signature",
        ),
        ("payload changed", tampered, "bad signature"),
        (
            "no kid, no key verifies",
            r2.sign(json!({"alg": "RS256"}), claims()),
            "bad signature",
        ),
        (
            "issuer",
            r.token(
                "RS256",
                with(claims(), "iss", json!("https://evil.example")),
            ),
            "issuer 'https://evil.example' is not 'https://idp.example'",
        ),
        (
            "no issuer",
            r.token("RS256", with(claims(), "iss", Value::Null)),
            "issuer '' is not",
        ),
        (
            "audience",
            r.token("RS256", with(claims(), "aud", json!("somebody-else"))),
            "audience 'somebody-else' is not one of 'xipgate', 'edge'",
        ),
        (
            "audiences",
            r.token("RS256", with(claims(), "aud", json!(["a", "b"]))),
            "audience 'a', 'b' is not one of",
        ),
        (
            "no audience",
            r.token("RS256", with(claims(), "aud", Value::Null)),
            "audience (none) is not one of",
        ),
        (
            "no exp",
            r.token("RS256", with(claims(), "exp", Value::Null)),
            "the token has no exp",
        ),
        (
            "expired",
            r.token("RS256", with(claims(), "exp", json!(NOW - 31))),
            "token expired at 2027-01-15T07:59:29Z",
        ),
        (
            "exp not a number",
            r.token("RS256", with(claims(), "exp", json!("soon"))),
            "claim 'exp' is not a time",
        ),
        (
            "not yet valid",
            r.token("RS256", with(claims(), "nbf", json!(NOW + 31))),
            "token not valid before 2027-01-15T08:00:31Z",
        ),
        (
            "no user",
            r.token("RS256", with(claims(), "sub", Value::Null)),
            "neither 'preferred_username' nor 'sub'",
        ),
        ("two parts", "a.b".into(), "three parts"),
        ("four parts", "a.b.c.d".into(), "three parts"),
        (
            "header not base64",
            "!!.e30.AA".into(),
            "the header is not base64url",
        ),
        (
            "header not JSON",
            format!("{}.e30.AA", URL_SAFE_NO_PAD.encode("[1]")),
            "the header is not a JSON object",
        ),
        (
            "huge",
            "a".repeat(MAX_TOKEN_BYTES + 1),
            "longer than 16 KiB",
        ),
    ];
    for (name, token, want) in cases {
        let got = check(&token, &keys).map(|i| i.user);
        let why = got.expect_err(name).to_string();
        assert!(why.contains(want), "{name}: got '{why}', want '{want}'");
    }
}

#[test]
fn a_jwks_gives_its_signing_keys_only() {
    let r = rsa("r1", RSA1);
    let e = ec("e1", false);
    let doc = json!({"keys": [
        r.jwk(),
        e.jwk(),
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        with(r.jwk(), "use", json!("enc")),
        {"kty": "EC", "crv": "P-521", "kid": "big", "x": "AA", "y": "AA"},
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
    ]});
    let keys = crate::access::jwks::parse(doc.to_string().as_bytes()).unwrap();
    let kids: Vec<_> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
    assert_eq!(kids, ["r1", "e1"]);
    assert_eq!(keys[0], r.key());
    assert_eq!(keys[1], e.key());
    assert!(crate::access::jwks::parse(b"{}").is_err());
    assert!(crate::access::jwks::parse(b"not json").is_err());
}
