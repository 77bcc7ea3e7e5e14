//! Bearer tokens and basic credentials: tokens from a real OpenID provider (Spring
//! Authorization Server, `it/auth-server`) judged by the gate xipgate builds from its
//! config and end to end on both engines, the provider's keys rotated and withdrawn while
//! xipgate runs; basic credentials from an htpasswd file made here.

mod common;

use std::time::{Duration, SystemTime};

use common::idp::Idp;
use common::wire::Recorder;
use common::{parse_response, raw, Inst, StubEureka, Xipgate, DOMAIN};
use xipgate::access::{Gate, Presented};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn gate(yaml: &str) -> Gate {
    let parsed = xipgate::config::parse(yaml, "test.yaml").expect("parse");
    let cfg = xipgate::config::validate(parsed, "test.yaml").expect("valid");
    cfg.access.gate().expect("gate")
}

async fn present(gate: &Gate, token: &str) -> Presented {
    let auth = format!("Bearer {token}");
    let none: [&[u8]; 0] = [];
    gate.present(Some(auth.as_bytes()), none, now()).await
}

fn refused(p: Presented) -> String {
    match p {
        Presented::Refused(why) => why,
        other => panic!("not refused: {other:?}"),
    }
}

/// One provider for the whole file (its JVM takes seconds to start): the gate first, then
/// end to end on both engines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_of_a_real_provider() {
    // The login client needs a redirect URI; no login happens here. Tokens live 2 s.
    let idp = Idp::start(
        &["http://127.0.0.1:1/oauth2/callback".into()],
        Duration::from_secs(2),
    );
    judged_by_the_gate_across_key_rotation(&idp).await;
    for fast in [true, false] {
        end_to_end(&idp, fast).await;
    }
}

async fn judged_by_the_gate_across_key_rotation(idp: &Idp) {
    // leeway 1 s: the 2 s tokens are refused 3 s after they were made.
    let gate = xipgate_gate(idp, "      leeway: 1s\n");

    let robot = idp.client_credentials("robot", "robot-secret");
    match present(&gate, &robot).await {
        Presented::Identity(who) => {
            assert_eq!(who.user, "robot");
            assert_eq!(who.groups, ["robots"]);
        }
        other => panic!("robot: {other:?}"),
    }

    let other = idp.client_credentials("other", "other-secret");
    let why = refused(present(&gate, &other).await);
    assert_eq!(why, "audience 'somebody-else' is not one of 'xipgate'");

    // A token past its expiry.
    let expiring = idp.client_credentials("robot", "robot-secret");
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let why = refused(present(&gate, &expiring).await);
    assert!(why.starts_with("token expired at "), "{why}");

    // Key rotation, judged by a gate with the default settings but a long leeway (the
    // provider's tokens live 2 s here).
    let gate = xipgate_gate(idp, "      leeway: 1h\n");
    let token_a = idp.client_credentials("robot", "robot-secret");
    assert!(identity(&gate, &token_a).await.is_ok());

    // A new key signs: its kid is unknown to the edge, which fetches the JWKS again (at
    // most once per 5 s, so it may take that long after the last fetch).
    let kid_b = idp.rotate_key();
    let token_b = idp.client_credentials("robot", "robot-secret");
    let why = until_ok(&gate, &token_b).await;
    assert!(
        why.is_empty() || why == format!("unknown key id '{kid_b}' (not in the issuer's JWKS)"),
        "{why}"
    );
    assert!(
        identity(&gate, &token_a).await.is_ok(),
        "the old key is still published"
    );

    // The old key withdrawn: after the edge's next fetch (here for a third key's token),
    // tokens it signed are refused.
    let dropped = idp.drop_old_keys();
    assert!(
        !dropped.is_empty() && !dropped.contains(&kid_b),
        "{dropped:?}"
    );
    idp.rotate_key();
    let token_c = idp.client_credentials("robot", "robot-secret");
    until_ok(&gate, &token_c).await;
    let why = identity(&gate, &token_a).await.unwrap_err();
    assert!(
        dropped
            .iter()
            .any(|kid| why == format!("unknown key id '{kid}' (not in the issuer's JWKS)")),
        "{why}"
    );
    assert!(identity(&gate, &token_b).await.is_ok());
}

fn xipgate_gate(idp: &Idp, extra: &str) -> Gate {
    gate(&format!(
        "xipgate:\n  access:\n    rules: [{{name: robots, bearer: true}}]\n    bearer:\n      issuer: {}\n      audiences: [xipgate]\n{extra}",
        idp.issuer()
    ))
}

async fn identity(gate: &Gate, token: &str) -> Result<String, String> {
    match present(gate, token).await {
        Presented::Identity(who) => Ok(who.user),
        Presented::Refused(why) => Err(why),
        Presented::Nothing => Err("nothing".into()),
    }
}

/// Presents `token` until it is taken (the JWKS refetch waits out its interval); the
/// refusal seen before, if any.
async fn until_ok(gate: &Gate, token: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut first = String::new();
    loop {
        match identity(gate, token).await {
            Ok(_) => return first,
            Err(why) if std::time::Instant::now() < deadline => {
                if first.is_empty() {
                    first = why;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(why) => panic!("still refused after 15 s: {why}"),
        }
    }
}

/// An edge in front of `api` (a recording backend) whose one rule takes bearer tokens, with
/// a login configured too (so a browser would be sent to it where a session could help).
struct Edge {
    x: Xipgate,
    backend: Recorder,
    label: String,
    engine: &'static str,
    _eureka: StubEureka,
    _dir: tempfile::TempDir,
}

async fn edge(fast: bool, access: &str) -> Edge {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("keys"),
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n",
    )
    .expect("keys");
    let backend = Recorder::start(Vec::new());
    let inst = Inst::up("api", &format!("api-{fast}"), backend.addr);
    let label = inst.label();
    let eureka = StubEureka::start().await;
    eureka.serve(&[inst]).await;
    let access = access.replace("DIR", &dir.path().display().to_string());
    let x = Xipgate::start(
        &eureka.url(),
        &format!("  downstream:\n    fast_path: {fast}\n  access:\n{access}"),
    );
    Edge {
        x,
        backend,
        label,
        engine: if fast { "fast path" } else { "pingora" },
        _eureka: eureka,
        _dir: dir,
    }
}

/// What one request got: status, headers, body, and the requests the backend saw.
struct Got {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
    seen: Vec<common::wire::Received>,
}

impl Got {
    fn backend_header(&self, name: &str) -> Vec<String> {
        self.seen
            .iter()
            .flat_map(|r| r.headers.iter())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn challenges(&self) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

impl Edge {
    /// GET / with `headers` (each ending in CRLF).
    fn get(&self, headers: &str) -> Got {
        self.backend.take();
        let request = format!(
            "GET /x HTTP/1.1\r\nHost: {}.{DOMAIN}:{}\r\nConnection: close\r\n{headers}\r\n",
            self.label,
            self.x.proxy.port()
        );
        let (status, headers, body) =
            parse_response(&raw(self.x.proxy, request.as_bytes()).expect("request"));
        Got {
            status,
            headers,
            body,
            seen: self.backend.take(),
        }
    }

    fn bearer(&self, token: &str) -> Got {
        self.get(&format!("Authorization: Bearer {token}\r\n"))
    }
}

fn bearer_access(idp: &Idp, leeway: &str) -> String {
    format!(
        "    login:\n      issuer: {i}\n      client_id: xipgate\n      keys_file: DIR/keys\n    rules:\n      - name: robots\n        services: [api]\n        bearer: true\n    bearer:\n      issuer: {i}\n      audiences: [xipgate]\n      leeway: {leeway}\n",
        i = idp.issuer()
    )
}

async fn end_to_end(idp: &Idp, fast: bool) {
    // leeway 1 s: a 2 s token is refused 3 s after it was made.
    let e = edge(fast, &bearer_access(idp, "1s")).await;
    let engine = e.engine;

    let robot = idp.client_credentials("robot", "robot-secret");
    let g = e.bearer(&robot);
    assert_eq!(g.status, 200, "{engine}: {}", g.body);
    assert_eq!(g.backend_header("x-forwarded-user"), ["robot"], "{engine}");
    assert_eq!(
        g.backend_header("x-forwarded-groups"),
        ["robots"],
        "{engine}"
    );

    // No token: 401 with a Bearer challenge, even for a browser's page load (a session
    // could not satisfy this rule, so the login would not help).
    for accept in ["application/json", "text/html,application/xhtml+xml"] {
        let g = e.get(&format!("Accept: {accept}\r\n"));
        assert_eq!(g.status, 401, "{engine} {accept}: {:?}", g.headers);
        assert!(
            g.challenges().iter().any(|c| c.starts_with("Bearer")),
            "{engine}: {:?}",
            g.headers
        );
        assert!(g.seen.is_empty(), "{engine}");
    }

    let other = idp.client_credentials("other", "other-secret");
    let g = e.bearer(&other);
    assert_eq!(g.status, 401, "{engine}");
    assert!(
        g.body
            .contains("audience 'somebody-else' is not one of 'xipgate'"),
        "{engine}: {}",
        g.body
    );
    assert!(g.seen.is_empty(), "{engine}");

    for bad in ["not-a-jwt", "a.b.c"] {
        let g = e.bearer(bad);
        assert_eq!(g.status, 401, "{engine}");
        assert!(g.body.contains("not a JWT"), "{engine}: {}", g.body);
    }

    let expiring = idp.client_credentials("robot", "robot-secret");
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let g = e.bearer(&expiring);
    assert_eq!(g.status, 401, "{engine}");
    assert!(g.body.contains("token expired at "), "{engine}: {}", g.body);
    drop(e);

    // Rotation, with a long leeway so that the provider's 2 s tokens outlive the refetch
    // interval. A token of a new key works without restarting xipgate.
    let e = edge(fast, &bearer_access(idp, "1h")).await;
    let token_a = idp.client_credentials("robot", "robot-secret");
    assert_eq!(e.bearer(&token_a).status, 200, "{engine}");
    idp.rotate_key();
    let token_b = idp.client_credentials("robot", "robot-secret");
    until_status(&e, &token_b, 200);
    // The old key withdrawn: refused once the edge fetched again (a third key's token).
    idp.drop_old_keys();
    idp.rotate_key();
    let token_c = idp.client_credentials("robot", "robot-secret");
    until_status(&e, &token_c, 200);
    let g = e.bearer(&token_a);
    assert_eq!(g.status, 401, "{engine}");
    assert!(g.body.contains("unknown key id"), "{engine}: {}", g.body);
    assert!(g.seen.is_empty(), "{engine}");
}

/// Sends `token` until it gets `status` (the JWKS refetch waits out its 5 s interval).
fn until_status(e: &Edge, token: &str, status: u16) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let g = e.bearer(token);
        if g.status == status {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}: still {}: {}",
            e.engine,
            g.status,
            g.body
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_credentials_from_an_htpasswd_file() {
    for fast in [true, false] {
        let access = "    basic:\n      htpasswd: DIR/htpasswd\n      realm: builds\n    rules:\n      - name: ci\n        services: [api]\n        basic: true\n";
        // The file must exist before xipgate starts: written into the edge's dir first.
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("htpasswd");
        std::fs::write(
            &file,
            format!("ci:{}\n", bcrypt::hash("s3cret", 5).expect("hash")),
        )
        .expect("write");
        let e = edge(
            fast,
            &access.replace("DIR", &dir.path().display().to_string()),
        )
        .await;
        let engine = e.engine;
        let basic = |user: &str, pw: &str| {
            use base64::Engine;
            let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pw}"));
            e.get(&format!("Authorization: Basic {b}\r\n"))
        };
        let g = basic("ci", "s3cret");
        assert_eq!(g.status, 200, "{engine}: {}", g.body);
        assert_eq!(g.backend_header("x-forwarded-user"), ["ci"], "{engine}");
        // bcrypt is paid once for the same credentials: 100 requests, one bcrypt.
        for _ in 1..100 {
            assert_eq!(basic("ci", "s3cret").status, 200, "{engine}");
        }
        let m = metrics(&e);
        assert_eq!(
            metric(&m, "xipgate_access_basic_checks_total{result=\"bcrypt\"}"),
            1,
            "{engine}"
        );
        assert_eq!(
            metric(&m, "xipgate_access_basic_checks_total{result=\"cached\"}"),
            99,
            "{engine}"
        );
        for (user, pw) in [("ci", "wrong"), ("nobody", "s3cret")] {
            let g = basic(user, pw);
            assert_eq!(g.status, 401, "{engine}");
            assert_eq!(g.challenges(), ["Basic realm=\"builds\""], "{engine}");
            assert!(
                g.body.contains("wrong user or password"),
                "{engine}: {}",
                g.body
            );
            assert!(g.seen.is_empty(), "{engine}");
        }
        // A wrong password is never remembered: each one costs a bcrypt, as does an
        // unknown user (the answer's time does not tell which users exist).
        let m = metrics(&e);
        assert_eq!(
            metric(&m, "xipgate_access_basic_checks_total{result=\"bcrypt\"}"),
            3,
            "{engine}"
        );
        assert_eq!(
            metric(&m, "xipgate_access_basic_checks_total{result=\"refused\"}"),
            2,
            "{engine}"
        );
        let g = e.get("");
        assert_eq!(g.status, 401, "{engine}");
        assert_eq!(g.challenges(), ["Basic realm=\"builds\""], "{engine}");

        // The password changed in the file: the old one is refused within a second or so
        // (the file is looked at once a second; the remembered check is forgotten).
        std::fs::write(
            &file,
            format!("ci:{}\n", bcrypt::hash("n3w", 5).expect("hash")),
        )
        .expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while basic("ci", "s3cret").status != 401 {
            assert!(
                std::time::Instant::now() < deadline,
                "{engine}: the old password still works"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(basic("ci", "n3w").status, 200, "{engine}");
    }
}

fn metrics(e: &Edge) -> String {
    common::http_get(e.x.console, "localhost", "/metrics")
        .expect("metrics")
        .2
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

/// `xipgate.access.identity.jwt`: the backend gets the identity as an ES256 JWT the edge
/// signed (a client's own copy of the header never reaches it), verifiable with the JWKS
/// the console publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_edge_signs_the_identity_for_backends() {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("identity.pem");
    // As docs/access.md says to make one.
    let made = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
        ])
        .arg(&key)
        .status()
        .expect("openssl");
    assert!(made.success());
    std::fs::write(
        dir.path().join("htpasswd"),
        format!("ci:{}\n", bcrypt::hash("pw", 4).expect("hash")),
    )
    .expect("write");
    let access = format!(
        "    login:\n      issuer: http://127.0.0.1:9/issuer\n      client_id: xipgate\n      keys_file: DIR/keys\n    basic:\n      htpasswd: {d}/htpasswd\n    identity:\n      jwt:\n        key_file: {d}/identity.pem\n        ttl: 60s\n    rules:\n      - name: ci\n        services: [api]\n        basic: true\n",
        d = dir.path().display()
    );
    for fast in [true, false] {
        let e = edge(fast, &access).await;
        let engine = e.engine;
        let creds = STANDARD.encode("ci:pw");
        let g = e.get(&format!(
            "Authorization: Basic {creds}\r\nX-Xipgate-Identity: forged\r\nX_Xipgate_Identity: forged\r\n"
        ));
        assert_eq!(g.status, 200, "{engine}: {}", g.body);
        let tokens = g.backend_header("x-xipgate-identity");
        assert_eq!(tokens.len(), 1, "{engine}: {tokens:?}");
        assert!(
            g.backend_header("x_xipgate_identity").is_empty(),
            "{engine}"
        );
        let token = &tokens[0];

        let (status, _, jwks) =
            common::http_get(e.x.console, "localhost", "/api/v1/access/jwks.json").expect("jwks");
        assert_eq!(status, 200, "{engine}: {jwks}");
        let jwks: serde_json::Value = serde_json::from_str(&jwks).expect("json");
        // The same keys on the login host, which backends may reach where the console is
        // kept private.
        let (status, _, on_login) = common::http_get(
            e.x.proxy,
            &format!("login.{DOMAIN}:{}", e.x.proxy.port()),
            "/.well-known/jwks.json",
        )
        .expect("login jwks");
        assert_eq!(status, 200, "{engine}: {on_login}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&on_login).expect("json"),
            jwks,
            "{engine}"
        );
        let (header, claims) = common::idp::jwt_parts(token);
        assert_eq!(header["alg"], "ES256", "{engine}");
        let jwk = jwks["keys"]
            .as_array()
            .and_then(|ks| ks.iter().find(|k| k["kid"] == header["kid"]))
            .expect("the token's kid is published");
        let b = |v: &serde_json::Value| {
            URL_SAFE_NO_PAD
                .decode(v.as_str().unwrap_or_default())
                .expect("b64")
        };
        let point = [vec![4u8], b(&jwk["x"]), b(&jwk["y"])].concat();
        let (signed, sig) = token.rsplit_once('.').expect("three parts");
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, &point)
            .verify(
                signed.as_bytes(),
                &URL_SAFE_NO_PAD.decode(sig).expect("b64"),
            )
            .expect("the edge's signature verifies");
        assert_eq!(claims["iss"], "xipgate", "{engine}");
        assert_eq!(claims["sub"], "ci", "{engine}");
        assert_eq!(claims["via"], "basic", "{engine}");
        assert_eq!(claims["aud"], format!("{}.{DOMAIN}", e.label), "{engine}");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60,
            "{engine}"
        );
    }
}
