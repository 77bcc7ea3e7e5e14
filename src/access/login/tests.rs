//! The login host's own checks, without a provider.
use super::*;

const K: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn login() -> Login {
    let settings = LoginSettings {
        // Nothing listens there: the provider is unreachable.
        issuer: "http://127.0.0.1:1".into(),
        client_id: "xipgate".into(),
        client_secret: None,
        scopes: vec!["openid".into()],
        host_label: "login".into(),
        cookie: "_xipgate".into(),
        session_ttl: Duration::from_secs(60),
        user_claim: "preferred_username".into(),
        groups_claim: "groups".into(),
        domains: vec!["example.test".into()],
        ports: vec![8443],
    };
    let sealer = Sealer::from_text(K, "k").unwrap();
    Login::new(settings, Arc::new(sealer)).unwrap()
}

fn request<'a>(path: &'a str, query: &'a str, tls: bool) -> LoginRequest<'a> {
    LoginRequest {
        method: "GET",
        host: "login.example.test",
        port: Some(8443),
        path,
        query,
        tls,
        cookies: Vec::new(),
    }
}

#[tokio::test]
async fn over_tls_cookies_are_secure_and_the_login_host_s_own_are_host_prefixed() {
    let l = login();
    let r = l
        .handle(&request(
            "/oauth2/sign_out",
            "rd=https%3A%2F%2Fa.example.test%3A8443%2F",
            true,
        ))
        .await;
    assert_eq!(r.status, 302);
    let location = r.headers.iter().find(|(k, _)| *k == "location").unwrap();
    // No end-session endpoint known (the provider is away): straight to rd.
    assert_eq!(location.1, "https://a.example.test:8443/");
    let cookies: Vec<&str> = r
        .headers
        .iter()
        .filter(|(k, _)| *k == "set-cookie")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(
        cookies,
        [
            "_xipgate=; Domain=example.test; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure",
            "__Host-_xipgate_id=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Secure",
        ]
    );
    let r = l
        .handle(&request(
            "/oauth2/callback",
            "code=c&state=0123456789abcdef",
            true,
        ))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.body.contains("__Host-_xipgate_login_01234567 is missing"),
        "{}",
        r.body
    );
    // Plain HTTP: no prefix (browsers refuse __Host- cookies without Secure).
    let r = l
        .handle(&request(
            "/oauth2/callback",
            "code=c&state=0123456789abcdef",
            false,
        ))
        .await;
    assert!(
        r.body.contains(" _xipgate_login_01234567 is missing"),
        "{}",
        r.body
    );
    // The login host of another domain, or another method: not served.
    let mut other = request("/", "", false);
    other.host = "login.other.test";
    assert_eq!(l.handle(&other).await.status, 404);
    let mut post = request("/oauth2/start", "", false);
    post.method = "POST";
    assert_eq!(l.handle(&post).await.status, 405);
}

#[test]
fn the_state_cookie_round_trips_and_opens_as_nothing_else() {
    let sealer = Sealer::from_text(K, "k").unwrap();
    let kept = LoginState {
        state: "s".into(),
        nonce: "n".into(),
        verifier: "v".into(),
        rd: format!("https://a.example.test/{}", "p".repeat(400)),
        expires: 10,
    };
    let v = sealer
        .seal_value("_xipgate_login", &kept, MAX_STATE)
        .unwrap();
    let back: LoginState = sealer.open_value("_xipgate_login", &v, MAX_STATE).unwrap();
    assert_eq!(back, kept);
    // Not a session, and not under another cookie's name.
    assert!(sealer.open("_xipgate", &v, 0).is_err());
    assert!(sealer
        .open_value::<LoginState>("__Host-_xipgate_login", &v, MAX_STATE)
        .is_err());
    let long = LoginState {
        rd: "x".repeat(MAX_STATE),
        ..kept
    };
    assert!(matches!(
        sealer.seal_value("_xipgate_login", &long, MAX_STATE),
        Err(SessionError::TooLarge(_))
    ));
}
