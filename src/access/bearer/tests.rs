//! The refetch rules against a stand-in JWKS endpoint (wiremock: fault injection only).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;
use crate::access::jwt::Alg;
use crate::access::testkeys::{ec, rsa, Signer, RSA1, RSA2};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": "https://idp.example", "aud": "xipgate", "sub": "robot", "exp": now() + 60})
}

fn expect() -> Expect {
    Expect {
        issuer: "https://idp.example".into(),
        audiences: vec!["xipgate".into()],
        algorithms: vec![Alg::RS256, Alg::ES256],
        leeway: 30,
        user_claim: "preferred_username".into(),
        groups_claim: "groups".into(),
    }
}

async fn serve(server: &MockServer, keys: &[&Signer], delay: Duration) {
    server.reset().await;
    let doc = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(doc)
                .set_delay(delay),
        )
        .mount(server)
        .await;
}

async fn fetches(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

fn bearer(server: &MockServer, min_interval: Duration) -> Bearer {
    Bearer::new(
        expect(),
        Some(format!("{}/jwks", server.uri())),
        DEFAULT_JWKS_MAX_AGE,
    )
    .with_min_interval(min_interval)
}

#[tokio::test]
async fn an_unknown_kid_fetches_again_at_most_once_per_interval() {
    let server = MockServer::start().await;
    let (r1, r2, e3) = (rsa("r1", RSA1), rsa("r2", RSA2), ec("e3", false));
    serve(&server, &[&r1], Duration::ZERO).await;
    let b = bearer(&server, Duration::from_millis(300));
    assert_eq!(
        b.check(&r1.token("RS256", claims()), now())
            .await
            .unwrap()
            .user,
        "robot"
    );
    assert_eq!(fetches(&server).await, 1);
    // Cached: no fetch for a known key.
    for _ in 0..10 {
        b.check(&r1.token("RS256", claims()), now()).await.unwrap();
    }
    assert_eq!(fetches(&server).await, 1);
    // The issuer adds a key: a token naming it sends the edge to fetch again.
    tokio::time::sleep(Duration::from_millis(350)).await;
    serve(&server, &[&r1, &r2], Duration::ZERO).await;
    b.check(&r2.token("RS256", claims()), now()).await.unwrap();
    assert_eq!(fetches(&server).await, 1, "after reset: one new fetch");
    // A flood of made-up key ids within the interval: no fetch at all.
    for i in 0..50 {
        let t = r1.sign(json!({"alg": "RS256", "kid": format!("x{i}")}), claims());
        let why = b.check(&t, now()).await.unwrap_err().to_string();
        assert_eq!(
            why,
            format!("unknown key id 'x{i}' (not in the issuer's JWKS)")
        );
    }
    assert_eq!(fetches(&server).await, 1);
    // A key the issuer withdrew stops verifying after the next fetch.
    tokio::time::sleep(Duration::from_millis(350)).await;
    serve(&server, &[&r2, &e3], Duration::ZERO).await;
    b.check(&e3.token("ES256", claims()), now()).await.unwrap();
    let why = b
        .check(&r1.token("RS256", claims()), now())
        .await
        .unwrap_err();
    assert_eq!(
        why.to_string(),
        "unknown key id 'r1' (not in the issuer's JWKS)"
    );
}

#[tokio::test]
async fn concurrent_tokens_with_a_new_kid_cause_one_fetch() {
    let server = MockServer::start().await;
    let r1 = rsa("r1", RSA1);
    serve(&server, &[&r1], Duration::from_millis(200)).await;
    let b = Arc::new(bearer(&server, Duration::from_secs(5)));
    let checks: Vec<_> = (0..20)
        .map(|_| {
            let (b, t) = (b.clone(), r1.token("RS256", claims()));
            tokio::spawn(async move { b.check(&t, now()).await })
        })
        .collect();
    for c in checks {
        assert!(c.await.unwrap().is_ok());
    }
    assert_eq!(fetches(&server).await, 1);
}

#[tokio::test]
async fn an_unreachable_jwks_keeps_known_keys_and_names_the_problem_for_others() {
    let server = MockServer::start().await;
    let (r1, r2) = (rsa("r1", RSA1), rsa("r2", RSA2));
    serve(&server, &[&r1], Duration::ZERO).await;
    // Stale at once: every use tries to fetch again (at most once per interval).
    let b = Bearer::new(
        expect(),
        Some(format!("{}/jwks", server.uri())),
        Duration::ZERO,
    )
    .with_min_interval(Duration::ZERO);
    b.check(&r1.token("RS256", claims()), now()).await.unwrap();
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;
    b.check(&r1.token("RS256", claims()), now()).await.unwrap();
    let why = b
        .check(&r2.token("RS256", claims()), now())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        why.starts_with(
            "unknown key id 'r2' (not in the issuer's JWKS, which could not be fetched: "
        ) && why.contains("answered 503"),
        "{why}"
    );
    drop(server);
    b.check(&r1.token("RS256", claims()), now()).await.unwrap();
}

#[tokio::test]
async fn the_keys_are_found_through_the_issuers_discovery_document() {
    let server = MockServer::start().await;
    let r1 = rsa("r1", RSA1);
    serve(&server, &[&r1], Duration::ZERO).await;
    let issuer = server.uri();
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})),
        )
        .mount(&server)
        .await;
    let e = Expect {
        issuer: issuer.clone(),
        ..expect()
    };
    let b = Bearer::new(e.clone(), None, DEFAULT_JWKS_MAX_AGE);
    let c = json!({"iss": issuer, "aud": "xipgate", "sub": "robot", "exp": now() + 60});
    b.check(&r1.token("RS256", c.clone()), now()).await.unwrap();
    // A discovery document of another issuer is not believed.
    Mock::given(method("GET"))
        .and(path("/other/.well-known/openid-configuration"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})),
        )
        .mount(&server)
        .await;
    let other_issuer = format!("{issuer}/other");
    let other = Bearer::new(
        Expect {
            issuer: other_issuer.clone(),
            ..e
        },
        None,
        DEFAULT_JWKS_MAX_AGE,
    );
    let c = json!({"iss": other_issuer, "aud": "xipgate", "sub": "robot", "exp": now() + 60});
    let why = other
        .check(&r1.token("RS256", c), now())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        why.contains(&format!(
            "the discovery document's issuer '{issuer}' is not '{other_issuer}'"
        )),
        "{why}"
    );
}

fn counts(b: &Bearer) -> [u64; 3] {
    use std::sync::atomic::Ordering::Relaxed;
    let s = &b.stats;
    [
        s.verified.load(Relaxed),
        s.cached.load(Relaxed),
        s.refused.load(Relaxed),
    ]
}

#[tokio::test]
async fn a_token_that_verified_is_answered_from_the_cache_until_it_expires() {
    let server = MockServer::start().await;
    let r1 = rsa("r1", RSA1);
    serve(&server, &[&r1], Duration::ZERO).await;
    let b = bearer(&server, Duration::from_secs(5));
    let t0 = now();
    let token = r1.token(
        "RS256",
        json!({"iss": "https://idp.example", "aud": "xipgate", "sub": "robot", "exp": t0 + 60}),
    );
    assert_eq!(b.cached(&token, t0), None, "not verified yet");
    for _ in 0..100 {
        assert_eq!(b.check(&token, t0).await.unwrap().user, "robot");
    }
    assert_eq!(
        counts(&b),
        [1, 99, 0],
        "one signature check for 100 showings"
    );
    assert_eq!(b.cached(&token, t0).map(|w| w.user), Some("robot".into()));
    // exp 60 s ahead + leeway 30 s: served until then, refused from then on, as uncached.
    assert!(b.cached(&token, t0 + 89).is_some());
    assert_eq!(b.cached(&token, t0 + 90), None);
    let why = b.check(&token, t0 + 90).await.unwrap_err().to_string();
    assert!(why.starts_with("token expired at "), "{why}");
    assert_eq!(counts(&b), [1, 101, 1]);
}

#[tokio::test]
async fn a_cached_token_whose_key_was_withdrawn_is_refused_after_the_refetch() {
    let server = MockServer::start().await;
    let (r1, r2) = (rsa("r1", RSA1), rsa("r2", RSA2));
    serve(&server, &[&r1], Duration::ZERO).await;
    let b = bearer(&server, Duration::from_millis(100));
    let token = r1.token("RS256", claims());
    b.check(&token, now()).await.unwrap();
    b.check(&token, now()).await.unwrap();
    assert_eq!(counts(&b), [1, 1, 0]);
    // The issuer replaces r1 by r2; a token of r2 makes the edge fetch again.
    tokio::time::sleep(Duration::from_millis(150)).await;
    serve(&server, &[&r2], Duration::ZERO).await;
    b.check(&r2.token("RS256", claims()), now()).await.unwrap();
    assert_eq!(b.cached(&token, now()), None);
    let why = b.check(&token, now()).await.unwrap_err().to_string();
    assert_eq!(why, "unknown key id 'r1' (not in the issuer's JWKS)");
    assert_eq!(counts(&b), [2, 1, 1]);
}

#[tokio::test]
async fn refusals_and_tokens_not_yet_valid_are_not_cached() {
    let server = MockServer::start().await;
    let r1 = rsa("r1", RSA1);
    serve(&server, &[&r1], Duration::ZERO).await;
    let b = bearer(&server, Duration::from_secs(5));
    let t0 = now();
    let wrong_audience = r1.token(
        "RS256",
        json!({"iss": "https://idp.example", "aud": "other", "sub": "robot", "exp": t0 + 60}),
    );
    for _ in 0..3 {
        assert!(b.check(&wrong_audience, t0).await.is_err());
    }
    // A bad signature on a well-formed token.
    let good = r1.token("RS256", claims());
    let forged = format!("{}AAAA", &good[..good.len() - 4]);
    for _ in 0..3 {
        assert!(b.check(&forged, t0).await.is_err());
    }
    assert_eq!(counts(&b), [0, 0, 6]);
    // nbf 10 s ahead, within the 30 s leeway: taken, but checked each time.
    let early = r1.token(
        "RS256",
        json!({"iss": "https://idp.example", "aud": "xipgate", "sub": "robot", "exp": t0 + 60, "nbf": t0 + 10}),
    );
    for _ in 0..3 {
        b.check(&early, t0).await.unwrap();
    }
    assert_eq!(counts(&b), [3, 0, 6]);
    assert_eq!(b.verified.len(), 0);
}

#[test]
fn a_full_cache_is_emptied() {
    use crate::access::jwt::{Jwk, Key};
    use crate::access::{Identity, Via};
    let c = cache::Verified::new();
    let key = Jwk {
        kid: Some("k".into()),
        alg: None,
        key: Key::P256(vec![4; 65]),
    };
    let who = Identity {
        user: "u".into(),
        email: None,
        groups: Vec::new(),
        via: Via::Bearer,
    };
    let claims = json!({"exp": 100}).as_object().unwrap().clone();
    for i in 0..CACHE_MAX_ENTRIES {
        c.put(&format!("t{i}"), &claims, 0, 0, &key, &who);
    }
    assert_eq!(c.len(), CACHE_MAX_ENTRIES);
    assert!(c.get("t0", 99, std::slice::from_ref(&key)).is_some());
    c.put("one more", &claims, 0, 0, &key, &who);
    assert_eq!(c.len(), 1);
    // Expired: not served, and forgotten.
    c.put("expired", &claims, 0, 0, &key, &who);
    assert!(c.get("expired", 100, std::slice::from_ref(&key)).is_none());
    assert_eq!(c.len(), 1);
    // Another key under the same kid (a reused kid): not served.
    let other = Jwk {
        key: Key::P256(vec![5; 65]),
        ..key.clone()
    };
    assert!(c.get("one more", 0, &[other]).is_none());
    assert!(c.get("one more", 0, &[key]).is_some());
}
