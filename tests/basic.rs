//! Basic credentials from an htpasswd file made here, and the identity as a JWT the edge
//! signs for backends, end to end on both engines.

mod common;

use std::time::Duration;

use common::gated::{edge, metric, metrics};
use common::DOMAIN;

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
        // The password was for the edge: it does not travel on to the backend.
        assert!(
            g.backend_header("authorization").is_empty(),
            "{engine}: {:?}",
            g.backend_header("authorization")
        );
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
