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
