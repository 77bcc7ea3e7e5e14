//! The login host over plain HTTP, against a stub provider (wiremock) whose token
//! endpoint answers with an `id_token` the test builds: the redirect to the provider
//! (PKCE, state, nonce), the callback's checks (forged, tampered and replayed state, a
//! foreign redirect target), the session cookie it sets, sign-out, and the login host
//! winning over a service of its label on both engines. The real provider and a real
//! browser are in tests/login_browser.rs.

mod common;

use std::collections::HashMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::{header, parse_response, raw, Backend, Inst, Response, StubEureka, Xipgate, DOMAIN};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use wiremock::matchers::{header as has_header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const SECRET: &str = "s3cret";

struct Setup {
    x: Xipgate,
    idp: MockServer,
    key: EcdsaKeyPair,
    _keys: tempfile::TempDir,
}

/// The stub provider's signing key (ES256: ring makes P-256 keys, not RSA ones).
fn signing_key() -> EcdsaKeyPair {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap()
}

/// A provider that publishes its discovery document and `key` as its JWKS (the token
/// endpoint is mounted per test, once the nonce is known).
async fn stub_idp(key: &EcdsaKeyPair) -> MockServer {
    let idp = MockServer::start().await;
    let uri = idp.uri();
    let point = key.public_key().as_ref();
    Mock::given(method("GET"))
        .and(path("/jwks"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        }]})))
        .mount(&idp)
        .await;
    Mock::given(method("GET"))
        .and(path("/.well-known/openid-configuration"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": uri,
            "authorization_endpoint": format!("{uri}/authorize"),
            "token_endpoint": format!("{uri}/token"),
            "end_session_endpoint": format!("{uri}/logout"),
            "jwks_uri": format!("{uri}/jwks"),
        })))
        .mount(&idp)
        .await;
    idp
}

async fn setup(issuer: Option<&str>, extra: &str) -> (Setup, StubEureka) {
    let key = signing_key();
    let idp = stub_idp(&key).await;
    let keys = tempfile::tempdir().unwrap();
    std::fs::write(keys.path().join("keys"), KEY).unwrap();
    std::fs::write(keys.path().join("secret"), SECRET).unwrap();
    let eureka = StubEureka::start().await;
    eureka.serve(&[]).await;
    let issuer = issuer.map_or_else(|| idp.uri(), str::to_string);
    let d = keys.path().display();
    let x = Xipgate::start(
        &eureka.url(),
        &format!(
            "  access:\n    login:\n      issuer: \"{issuer}\"\n      client_id: xipgate\n      client_secret_file: {d}/secret\n      keys_file: {d}/keys\n      session_ttl: 1h\n{extra}"
        ),
    );
    (
        Setup {
            x,
            idp,
            key,
            _keys: keys,
        },
        eureka,
    )
}

/// The login host as a browser names it (with the proxy's port).
fn login_host(s: &Setup) -> String {
    format!("login.{DOMAIN}:{}", s.x.proxy.port())
}

fn get(s: &Setup, host: &str, target: &str, cookies: &[&str]) -> Response {
    let cookie = if cookies.is_empty() {
        String::new()
    } else {
        format!("Cookie: {}\r\n", cookies.join("; "))
    };
    let text = raw(
        s.x.proxy,
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{cookie}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .expect("request through xipgate");
    parse_response(&text)
}

fn set_cookies(h: &[(String, String)]) -> Vec<&str> {
    h.iter()
        .filter(|(k, _)| k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `name=value` of the first Set-Cookie whose name starts with `prefix` and that sets a
/// value.
fn cookie_pair<'a>(h: &'a [(String, String)], prefix: &str) -> &'a str {
    set_cookies(h)
        .into_iter()
        .find(|c| c.starts_with(prefix) && !c.contains("=;"))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no Set-Cookie for {prefix} in {h:?}"))
}

fn query(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .expect("a URL")
        .query_pairs()
        .into_owned()
        .collect()
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An id_token signed with `key` (`kid` names it in the JWKS, or not).
fn id_token(key: &EcdsaKeyPair, kid: &str, issuer: &str, nonce: &str) -> String {
    let part = |v: Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let input = format!(
        "{}.{}",
        part(json!({"alg": "ES256", "kid": kid, "typ": "JWT"})),
        part(json!({"iss": issuer, "aud": "xipgate", "sub": "alice-id",
                    "preferred_username": "alice", "email": "alice@example.test",
                    "groups": ["devs"], "exp": now + 300, "iat": now, "nonce": nonce}))
    );
    let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// Starts a login for `rd`: the provider's authorization URL's parameters and the state
/// cookie (`name=value`).
fn start(s: &Setup, rd: &str) -> (HashMap<String, String>, String) {
    let (status, h, body) = get(
        s,
        &login_host(s),
        &format!("/oauth2/start?rd={}", enc(rd)),
        &[],
    );
    assert_eq!(status, 302, "{body}");
    let location = header(&h, "location").unwrap();
    assert!(
        location.starts_with(&format!("{}/authorize?", s.idp.uri())),
        "{location}"
    );
    (
        query(location),
        cookie_pair(&h, "_xipgate_login_").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_ends_in_the_session_cookie_for_the_domain_and_sign_out_ends_it() {
    let (s, _e) = setup(None, "").await;
    let port = s.x.proxy.port();
    let rd = format!("http://app.{DOMAIN}:{port}/page?x=1");
    let (status, h, _) = get(
        &s,
        &login_host(&s),
        &format!("/oauth2/start?rd={}", enc(&rd)),
        &[],
    );
    assert_eq!(status, 302);
    let q = query(header(&h, "location").unwrap());
    let callback = format!("http://login.{DOMAIN}:{port}/oauth2/callback");
    for (k, v) in [
        ("response_type", "code"),
        ("client_id", "xipgate"),
        ("redirect_uri", callback.as_str()),
        ("scope", "openid profile email"),
        ("code_challenge_method", "S256"),
    ] {
        assert_eq!(q.get(k).map(String::as_str), Some(v), "{k} in {q:?}");
    }
    for k in ["state", "nonce", "code_challenge"] {
        assert_eq!(q[k].len(), 43, "{k}");
    }
    // The state cookie: host-only (no Domain), short-lived.
    let state_cookie = set_cookies(&h)[0];
    assert!(!state_cookie.contains("Domain="), "{state_cookie}");
    for attr in ["Path=/", "HttpOnly", "SameSite=Lax", "Max-Age=600"] {
        assert!(state_cookie.contains(attr), "{attr}: {state_cookie}");
    }
    let state = cookie_pair(&h, "_xipgate_login_").to_string();
    // Named after the login's state, so logins in two tabs do not overwrite each other.
    assert!(
        state.starts_with(&format!("_xipgate_login_{}=", &q["state"][..8])),
        "{state}"
    );

    let token = id_token(&s.key, "k1", &s.idp.uri(), &q["nonce"]);
    let basic = format!("Basic {}", STANDARD.encode(format!("xipgate:{SECRET}")));
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(has_header("authorization", basic.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "at", "token_type": "Bearer", "id_token": token}),
        ))
        .expect(1)
        .mount(&s.idp)
        .await;
    let cb = format!("/oauth2/callback?code=c0de&state={}", q["state"]);
    let (status, h, body) = get(&s, &login_host(&s), &cb, &[&state]);
    assert_eq!(status, 302, "{body}");
    assert_eq!(header(&h, "location"), Some(rd.as_str()));
    let session = set_cookies(&h)
        .into_iter()
        .find(|c| c.starts_with("_xipgate="))
        .expect("the session cookie")
        .to_string();
    for attr in [
        format!("Domain={DOMAIN}"),
        "Path=/".into(),
        "HttpOnly".into(),
        "SameSite=Lax".into(),
        "Max-Age=3600".into(),
    ] {
        assert!(session.contains(&attr), "{attr}: {session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    let value = session.split(';').next().unwrap();
    assert!(value.len() < 1024 + 9, "{} bytes", value.len());
    assert!(
        set_cookies(&h).contains(
            &format!(
                "_xipgate_login_{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
                &q["state"][..8]
            )
            .as_str()
        ),
        "the state cookie is cleared: {h:?}"
    );

    // The code went with its PKCE verifier.
    let token_req = s
        .idp
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == "/token")
        .unwrap();
    let form: HashMap<String, String> = url::form_urlencoded::parse(&token_req.body)
        .into_owned()
        .collect();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "c0de");
    assert_eq!(form["redirect_uri"], callback);
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        form["code_verifier"].as_bytes(),
    ));
    assert_eq!(challenge, q["code_challenge"]);

    // Who is signed in.
    let (status, _, body) = get(&s, &login_host(&s), "/oauth2/userinfo", &[value]);
    assert_eq!(status, 200, "{body}");
    let who: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(who["user"], "alice");
    assert_eq!(who["email"], "alice@example.test");
    assert_eq!(who["groups"], json!(["devs"]));
    let (status, _, _) = get(&s, &login_host(&s), "/oauth2/userinfo", &[]);
    assert_eq!(status, 401);

    // The callback again, its state cookie gone (a replay): refused before the provider.
    let (status, _, body) = get(&s, &login_host(&s), &cb, &[]);
    assert_eq!(status, 400);
    assert!(body.contains("is missing"), "{body}");

    // Sign-out: the session cookie cleared for the domain, then the provider's sign-out
    // with the id_token as hint, coming back to the login host with rd as its state.
    let id_cookie = cookie_pair(&h, "_xipgate_id").to_string();
    let out = format!("/oauth2/sign_out?rd={}", enc(&rd));
    let (status, h, body) = get(&s, &login_host(&s), &out, &[value, &id_cookie]);
    assert_eq!(status, 302, "{body}");
    let cleared = format!("_xipgate=; Domain={DOMAIN}; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    assert!(set_cookies(&h).contains(&cleared.as_str()), "{h:?}");
    let location = header(&h, "location").unwrap();
    assert!(
        location.starts_with(&format!("{}/logout?", s.idp.uri())),
        "{location}"
    );
    let q = query(location);
    assert_eq!(q["client_id"], "xipgate");
    assert_eq!(
        q["post_logout_redirect_uri"],
        format!("http://login.{DOMAIN}:{port}/oauth2/signed_out")
    );
    assert_eq!(q["state"], rd);
    assert_eq!(q["id_token_hint"], token);
    // Back from the provider: on to rd, checked again.
    let (status, h, _) = get(
        &s,
        &login_host(&s),
        &format!("/oauth2/signed_out?state={}", enc(&rd)),
        &[],
    );
    assert_eq!((status, header(&h, "location")), (302, Some(rd.as_str())));
    let (status, h, _) = get(
        &s,
        &login_host(&s),
        "/oauth2/signed_out?state=https%3A%2F%2Fevil.test%2F",
        &[],
    );
    assert_eq!((status, header(&h, "location")), (200, None));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_id_token_the_provider_did_not_sign_is_refused() {
    let (s, _e) = setup(None, "").await;
    let rd = format!("http://app.{DOMAIN}/");
    let other = signing_key();
    for (key, kid, why) in [
        (&other, "k1", "bad signature"),
        (&other, "k9", "unknown key id 'k9'"),
    ] {
        let (q, state) = start(&s, &rd);
        let token = id_token(key, kid, &s.idp.uri(), &q["nonce"]);
        token_answer(&token).up_to_n_times(1).mount(&s.idp).await;
        let cb = format!("/oauth2/callback?code=c0de&state={}", q["state"]);
        let (status, h, body) = get(&s, &login_host(&s), &cb, &[&state]);
        assert_eq!(status, 502, "{body}");
        assert!(body.contains(why), "{body}");
        assert!(
            !set_cookies(&h).iter().any(|c| c.starts_with("_xipgate=v1")),
            "{h:?}"
        );
    }
}

fn token_answer(token: &str) -> Mock {
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "at", "token_type": "Bearer", "id_token": token}),
        ))
}

#[tokio::test(flavor = "multi_thread")]
async fn two_logins_at_once_both_come_back_and_pending_ones_are_bounded() {
    let (s, _e) = setup(None, "").await;
    let rd = |p: &str| format!("http://app.{DOMAIN}/{p}");
    let (q1, c1) = start(&s, &rd("one"));
    let (q2, c2) = start(&s, &rd("two"));
    // The second tab finishes first, then the first: the browser sends both cookies.
    for (q, page) in [(&q2, "two"), (&q1, "one")] {
        let token = id_token(&s.key, "k1", &s.idp.uri(), &q["nonce"]);
        token_answer(&token).up_to_n_times(1).mount(&s.idp).await;
        let cb = format!("/oauth2/callback?code=c0de&state={}", q["state"]);
        let (status, h, body) = get(&s, &login_host(&s), &cb, &[&c1, &c2]);
        assert_eq!(status, 302, "{page}: {body}");
        assert_eq!(header(&h, "location"), Some(rd(page).as_str()));
    }
    // A browser with MAX_PENDING logins pending: the next one clears them.
    let (_, h, _) = get(
        &s,
        &login_host(&s),
        "/oauth2/start",
        &[
            "_xipgate_login_aaaaaaaa=x",
            "_xipgate_login_bbbbbbbb=x",
            "_xipgate_login_cccccccc=x",
            "_xipgate_login_dddddddd=x",
        ],
    );
    let cleared = set_cookies(&h)
        .iter()
        .filter(|c| c.starts_with("_xipgate_login_") && c.contains("Max-Age=0"))
        .count();
    assert_eq!(cleared, 4, "{h:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn forged_tampered_and_crossed_state_is_refused_before_the_provider() {
    let (s, _e) = setup(None, "").await;
    let rd = format!("http://app.{DOMAIN}/");
    let (q, state) = start(&s, &rd);
    let cb = |st: &str| format!("/oauth2/callback?code=c0de&state={st}");
    // A state parameter that is not this browser's.
    // Its cookie is found by the first characters: the rest is compared too.
    let crossed = format!("{}{}", &q["state"][..8], "A".repeat(35));
    let (status, _, body) = get(&s, &login_host(&s), &cb(&crossed), &[&state]);
    assert_eq!(status, 400);
    assert!(
        body.contains("'state' parameter is not this browser's login"),
        "{body}"
    );
    // A tampered cookie.
    let mut bytes = state.clone().into_bytes();
    let i = bytes.len() - 3;
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    let (status, _, body) = get(&s, &login_host(&s), &cb(&q["state"]), &[&tampered]);
    assert_eq!(status, 400);
    assert!(body.contains("not sealed by this edge"), "{body}");
    // A forged one, and a session cookie's value passed off as the state cookie.
    let (status, _, _) = get(
        &s,
        &login_host(&s),
        &cb(&q["state"]),
        &[&format!("_xipgate_login_{}=v1.Zm9yZ2Vk", &q["state"][..8])],
    );
    assert_eq!(status, 400);
    // No state cookie at all, another login's, and a state naming none.
    for (st, cookies) in [
        (q["state"].as_str(), vec![]),
        (
            "BBBBBBBB-another-login-s-state-0123456789ab",
            vec![state.as_str()],
        ),
        ("short", vec![state.as_str()]),
    ] {
        let (status, _, body) = get(&s, &login_host(&s), &cb(st), &cookies);
        assert_eq!(status, 400);
        assert!(body.contains("missing"), "{body}");
    }
    // The provider's own refusal is named.
    let (status, _, body) = get(
        &s,
        &login_host(&s),
        &format!("/oauth2/callback?error=access_denied&state={}", q["state"]),
        &[&state],
    );
    assert_eq!(status, 403);
    assert!(body.contains("access_denied"), "{body}");
    // Nothing of it reached the token endpoint.
    let reqs = s.idp.received_requests().await.unwrap();
    assert!(reqs.iter().all(|r| r.url.path() != "/token"), "{reqs:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_targets_outside_the_domain_are_refused() {
    let (s, _e) = setup(None, "").await;
    let port = s.x.proxy.port();
    for rd in [
        "https://evil.test/".to_string(),
        "//evil.test/".into(),
        "/\\evil.test/".into(),
        format!("https://app.{DOMAIN}\t.evil.test/"),
        format!("https://evil-{DOMAIN}/"),
        format!("https://{DOMAIN}.evil.test/"),
        format!("https://app.{DOMAIN}:1/"),
        format!("https://user@app.{DOMAIN}/"),
        format!("javascript://app.{DOMAIN}/%0aalert(1)"),
    ] {
        let (status, h, body) = get(
            &s,
            &login_host(&s),
            &format!("/oauth2/start?rd={}", enc(&rd)),
            &[],
        );
        assert_eq!(status, 400, "{rd}: {body}");
        assert!(body.contains("redirect target rd"), "{rd}: {body}");
        assert!(header(&h, "location").is_none());
        let (status, _, _) = get(
            &s,
            &login_host(&s),
            &format!("/oauth2/sign_out?rd={}", enc(&rd)),
            &[],
        );
        assert_eq!(status, 400, "sign_out {rd}");
    }
    // The access log names the login host for its own answers.
    let login = format!("login.{DOMAIN}");
    common::eventually(
        std::time::Duration::from_secs(5),
        "a record of the login host",
        || {
            s.x.access()
                .iter()
                .any(|r| r["host"] == login.as_str() && r["status"] == 400)
        },
    );
    // The edge's own port, and none, are fine.
    start(&s, &format!("http://app.{DOMAIN}:{port}/"));
    start(&s, &format!("https://{DOMAIN}/"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_provider_is_a_503_naming_it() {
    let issuer = format!("http://127.0.0.1:{}", common::free_port());
    let (s, _e) = setup(Some(&issuer), "").await;
    let (status, h, body) = get(&s, &login_host(&s), "/oauth2/start", &[]);
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains(&format!("identity provider {issuer} cannot be reached")),
        "{body}"
    );
    assert!(header(&h, "retry-after").is_some());
    // The browser on that page asks again by itself.
    assert_eq!(header(&h, "refresh"), Some("5"), "{h:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_login_host_wins_over_a_service_of_its_label_on_both_engines() {
    for fast in [true, false] {
        let backend = Backend::start("login-service").await;
        let (s, e) = setup(None, &format!("  downstream:\n    fast_path: {fast}\n")).await;
        let inst = Inst::up("LOGIN", "pod", backend.addr);
        let label = inst.label();
        e.serve(&[inst]).await;
        common::eventually(
            std::time::Duration::from_secs(10),
            "the instance is routed",
            || get(&s, &format!("{label}.{DOMAIN}"), "/", &[]).0 == 200,
        );
        let (status, _, body) = get(&s, &login_host(&s), "/", &[]);
        assert_eq!(status, 200);
        assert!(body.contains("Not signed in"), "fast_path {fast}: {body}");
        assert_eq!(
            backend.hits(),
            1,
            "fast_path {fast}: only the instance host reached it"
        );
    }
}

/// `xipgate -t` reads the session keys and the client secret file: a missing one is found
/// before a start would fail on it.
#[test]
fn the_config_test_finds_a_missing_key_or_secret_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("x.yaml");
    std::fs::write(
        &config,
        format!(
            "xipgate:\n  listen: [\"127.0.0.1:0\"]\n  domains: [\"{DOMAIN}\"]\n  registry:\n    eureka:\n      urls: [\"http://127.0.0.1:9/eureka\"]\n  access:\n    login:\n      issuer: http://127.0.0.1:9/\n      client_id: x\n      keys_file: {d}/no-keys\n      client_secret_file: {d}/no-secret\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xipgate"))
        .arg("-t")
        .arg("-c")
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("xipgate.access.login.keys_file: cannot read the session key file"),
        "{err}"
    );
    assert!(err.contains("no-keys"), "{err}");
    assert!(
        err.contains("xipgate.access.login.client_secret_file: cannot read"),
        "{err}"
    );
}
