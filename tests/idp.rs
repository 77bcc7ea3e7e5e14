//! The OpenID provider the access tests log in against (`it/auth-server`, Spring
//! Authorization Server), checked on its own: what the login and bearer-token tests
//! rely on it for.

mod common;

use std::time::Duration;

use common::idp::{jwt_parts, pkce_challenge, random_b64, verifies, Idp, Session};
use serde_json::{json, Value};

const CALLBACK: &str = "http://login.127-0-0-1.sslip.io:4180/oauth2/callback";

fn aud(claims: &Value) -> Vec<Value> {
    // A single audience is serialised as a string, several as an array (both are JWT).
    match &claims["aud"] {
        Value::Array(a) => a.clone(),
        other => vec![other.clone()],
    }
}

/// One provider for the whole file: its JVM takes seconds to start.
#[test]
fn provider() {
    let idp = Idp::start(
        &[
            CALLBACK.to_string(),
            "http://localhost:4181/oauth2/callback".to_string(),
        ],
        Duration::from_secs(300),
    );

    // Discovery names the loopback issuer and every endpoint the gate uses.
    let d = idp.discovery();
    assert_eq!(d["issuer"], json!(idp.issuer()));
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "end_session_endpoint",
    ] {
        let url = d[endpoint].as_str().unwrap_or_default();
        assert!(url.starts_with(&idp.issuer()), "{endpoint}: {url}");
    }

    robots(&idp);
    key_rotation(&idp);
    login(&idp);
    redirect_uris(&idp);
}

fn robots(idp: &Idp) {
    let token = idp.client_credentials("robot", "robot-secret");
    let (header, claims) = jwt_parts(&token);
    assert_eq!(header["alg"], "RS256");
    assert!(
        idp.kids().iter().any(|k| header["kid"] == json!(k)),
        "kid {} not in JWKS",
        header["kid"]
    );
    assert!(verifies(&token, &idp.jwks()), "robot's token verifies");
    assert_eq!(aud(&claims), vec![json!("xipgate")]);
    assert_eq!(claims["sub"], "robot");
    assert_eq!(claims["iss"], json!(idp.issuer()));
    assert_eq!(claims["groups"], json!(["robots"]));
    let ttl = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    assert_eq!(ttl, 300, "the access-token TTL given at start");

    let other = idp.client_credentials("other", "other-secret");
    let (_, claims) = jwt_parts(&other);
    assert_eq!(aud(&claims), vec![json!("somebody-else")]);
    assert_eq!(claims["sub"], "other");

    // Several audiences come as a JSON array.
    let fleet = idp.client_credentials("fleet", "fleet-secret");
    let (_, claims) = jwt_parts(&fleet);
    assert_eq!(claims["aud"], json!(["somebody-else", "xipgate"]));
    assert_eq!(claims["groups"], json!(["robots", "fleet"]));

    let (status, body) = idp.token(
        "robot",
        "wrong-secret",
        &[("grant_type", "client_credentials")],
    );
    assert_eq!(status, 401, "a wrong secret: {body}");
}

fn key_rotation(idp: &Idp) {
    let before = idp.client_credentials("robot", "robot-secret");
    let old_kid = jwt_parts(&before).0["kid"].clone();
    let new_kid = idp.rotate_key();
    assert_ne!(json!(new_kid), old_kid);
    let kids = idp.kids();
    assert!(kids.contains(&new_kid), "{kids:?}");
    assert!(
        kids.iter().any(|k| json!(k) == old_kid),
        "old kid kept: {kids:?}"
    );

    // New tokens are signed by the new key; old ones still verify.
    let after = idp.client_credentials("robot", "robot-secret");
    assert_eq!(jwt_parts(&after).0["kid"], json!(new_kid));
    assert!(verifies(&before, &idp.jwks()));
    assert!(verifies(&after, &idp.jwks()));

    let dropped = idp.drop_old_keys();
    assert!(dropped.iter().any(|k| json!(k) == old_kid), "{dropped:?}");
    assert_eq!(idp.kids(), vec![new_kid]);
    assert!(
        !verifies(&before, &idp.jwks()),
        "the old key's token no longer verifies"
    );
    assert!(verifies(&after, &idp.jwks()));
}

fn login(idp: &Idp) {
    let nonce = random_b64(16);
    let mut browser = Session::default();
    let tokens = idp.login_in(&mut browser, "alice", "alice-pw", CALLBACK, &nonce);
    let id_token = tokens["id_token"].as_str().expect("an id_token");
    assert!(verifies(id_token, &idp.jwks()), "id_token verifies");
    let (_, id) = jwt_parts(id_token);
    assert_eq!(id["iss"], json!(idp.issuer()));
    assert_eq!(id["sub"], "alice");
    assert_eq!(aud(&id), vec![json!("xipgate")]);
    assert_eq!(id["nonce"], json!(nonce));
    assert_eq!(id["groups"], json!(["devs"]));
    assert_eq!(id["preferred_username"], "alice");
    assert_eq!(id["email"], "alice@example.test");
    assert!(tokens["refresh_token"].is_string(), "{tokens}");

    let access = tokens["access_token"].as_str().expect("an access_token");
    let (_, at) = jwt_parts(access);
    assert_eq!(at["groups"], json!(["devs"]));
    assert_eq!(at["preferred_username"], "alice");

    // Userinfo answers the same claims for the access token.
    let (status, _, body) = common::raw(
        idp.addr(),
        format!(
            "GET /userinfo HTTP/1.0\r\nAuthorization: Bearer {access}\r\nHost: {}\r\n\r\n",
            idp.addr()
        )
        .as_bytes(),
    )
    .map(|t| common::parse_response(&t))
    .expect("userinfo");
    assert_eq!(status, 200, "userinfo: {body}");
    let info: Value = serde_json::from_str(&body).expect("userinfo JSON");
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["groups"], json!(["devs"]));
    assert_eq!(info["email"], "alice@example.test");

    // Refresh works for the login client.
    let refresh = tokens["refresh_token"].as_str().unwrap_or_default();
    let (status, body) = idp.token(
        "xipgate",
        "xipgate-secret",
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    );
    assert_eq!(status, 200, "refresh: {body}");

    // Single sign-on: the same browser gets a second code without the form (a wrong
    // password proves the form was not used).
    let again = idp.login_in(&mut browser, "alice", "not-the-password", CALLBACK, "n3");
    let again = again["id_token"].as_str().unwrap_or_default();
    assert_eq!(jwt_parts(again).1["sub"], "alice");

    // RP-initiated logout ends the provider's session and returns to the client. (The
    // hint must be the newest id token of its authorization: a refresh replaces it.)
    let post_logout = "http://login.127-0-0-1.sslip.io:4180/";
    let (status, headers, body) = idp.logout(&mut browser, again, post_logout, "bye");
    assert_eq!(status, 302, "logout: {body}");
    let to = common::header(&headers, "location").unwrap_or_default();
    assert_eq!(to, format!("{post_logout}?state=bye"));
    let url = idp.authorize_url(CALLBACK, "n", "s", &pkce_challenge(&random_b64(32)));
    let (status, headers, _) = browser.get(idp.addr(), &url);
    assert_eq!(status, 302);
    let to = common::header(&headers, "location").unwrap_or_default();
    assert_eq!(
        to,
        format!("{}/login", idp.issuer()),
        "logged out: the form again"
    );

    // Bob gets his own groups.
    let bob = idp.login("bob", "bob-pw", CALLBACK, "n2");
    let (_, id) = jwt_parts(bob["id_token"].as_str().expect("an id_token"));
    assert_eq!(id["groups"], json!(["ops"]));
    assert_eq!(id["email"], "bob@example.test");
}

/// Which redirect URIs the provider takes: the registered ones exactly (`localhost` and
/// sslip.io hosts over http included), any port for 127.x.x.x, nothing else; and PKCE is
/// required.
fn redirect_uris(idp: &Idp) {
    let mut session = Session::default();
    let challenge = pkce_challenge(&random_b64(32));
    let mut status_for = |redirect: &str, challenge: &str| {
        let url = idp.authorize_url(redirect, "n", "s", challenge);
        session.get(idp.addr(), &url).0
    };
    // 302 to the login form: accepted. 400: refused.
    assert_eq!(status_for(CALLBACK, &challenge), 302);
    assert_eq!(
        status_for("http://localhost:4181/oauth2/callback", &challenge),
        302
    );
    assert_eq!(
        status_for(
            "http://login.127-0-0-1.sslip.io:9999/oauth2/callback",
            &challenge
        ),
        400,
        "another port of a registered host name"
    );
    assert_eq!(
        status_for("http://evil.test/oauth2/callback", &challenge),
        400
    );
    let url = idp.authorize_url(CALLBACK, "n", "s", &challenge);
    let without_pkce = url.replace("code_challenge", "x");
    let (status, headers, _) = session.get(idp.addr(), &without_pkce);
    // Refused back to the client with an error (it is a registered redirect URI).
    assert_eq!(status, 302);
    let to = common::header(&headers, "location").unwrap_or_default();
    assert!(
        to.starts_with(CALLBACK) && to.contains("error=invalid_request"),
        "{to}"
    );
}
