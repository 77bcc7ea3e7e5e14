//! Bearer tokens from a real OpenID provider (Spring Authorization Server,
//! `it/auth-server`), judged by the gate xipgate builds from its config and end to end on
//! both engines, the provider's keys rotated and withdrawn while xipgate runs.

mod common;

use std::time::{Duration, SystemTime};

use common::gated::{edge, metric, metrics, Edge};
use common::idp::Idp;
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
    let mut seen = Vec::new();
    for fast in [true, false] {
        seen.push(end_to_end(&idp, fast).await);
    }
    // A token answered from the cache: the same answer and backend request on both engines.
    assert_eq!(seen[0], seen[1], "fast path, then Pingora's engine");
}

/// Signatures verified, answers from the cache of verified tokens, refusals.
fn checks(gate: &Gate) -> [u64; 3] {
    use std::sync::atomic::Ordering::Relaxed;
    let s = gate.bearer_stats().expect("bearer is configured");
    [
        s.verified.load(Relaxed),
        s.cached.load(Relaxed),
        s.refused.load(Relaxed),
    ]
}

fn local(gate: &Gate, token: &str) -> Option<Presented> {
    let auth = format!("Bearer {token}");
    let none: [&[u8]; 0] = [];
    gate.present_local(Some(auth.as_bytes()), none, now())
}

async fn judged_by_the_gate_across_key_rotation(idp: &Idp) {
    // leeway 1 s: the 2 s tokens are refused 3 s after they were made.
    let gate = xipgate_gate(idp, "      leeway: 1s\n");

    let robot = idp.client_credentials("robot", "robot-secret");
    assert!(
        local(&gate, &robot).is_none(),
        "not verified yet: no answer without I/O"
    );
    match present(&gate, &robot).await {
        Presented::Identity(who) => {
            assert_eq!(who.user, "robot");
            assert_eq!(who.groups, ["robots"]);
        }
        other => panic!("robot: {other:?}"),
    }
    // Verified once: answered from the cache from now on, without I/O too.
    match local(&gate, &robot) {
        Some(Presented::Identity(who)) => assert_eq!(who.user, "robot"),
        other => panic!("robot, from the cache: {other:?}"),
    }
    for _ in 0..99 {
        assert_eq!(identity(&gate, &robot).await.as_deref(), Ok("robot"));
    }
    assert_eq!(checks(&gate), [1, 100, 0], "one signature for 101 showings");

    let other = idp.client_credentials("other", "other-secret");
    let why = refused(present(&gate, &other).await);
    assert_eq!(why, "audience 'somebody-else' is not one of 'xipgate'");

    // A token past its expiry.
    let expiring = idp.client_credentials("robot", "robot-secret");
    tokio::time::sleep(Duration::from_millis(4100)).await;
    let why = refused(present(&gate, &expiring).await);
    assert!(why.starts_with("token expired at "), "{why}");
    // The cached robot token expired too: not answered from the cache any more.
    assert!(local(&gate, &robot).is_none());
    let why = refused(present(&gate, &robot).await);
    assert!(why.starts_with("token expired at "), "{why}");
    // Refusals are never cached: each one was judged (other, expiring, robot).
    assert_eq!(checks(&gate), [1, 100, 3]);

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
    // token_a verified before and is cached, but its key left the key set.
    assert!(local(&gate, &token_a).is_none());
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
        Presented::BadSession(why) => Err(format!("a bad session: {why}")),
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

fn bearer_access(idp: &Idp, leeway: &str) -> String {
    format!(
        "    login:\n      issuer: {i}\n      client_id: xipgate\n      keys_file: DIR/keys\n    rules:\n      - name: robots\n        services: [api]\n        bearer: true\n    bearer:\n      issuer: {i}\n      audiences: [xipgate]\n      leeway: {leeway}\n",
        i = idp.issuer()
    )
}

/// What a request answered from the cache got, and what reached the backend.
type Served = (u16, String, Vec<(String, Vec<String>)>);

async fn end_to_end(idp: &Idp, fast: bool) -> Served {
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
    // The same token 99 times more: one signature verification in all.
    let mut g = e.bearer(&robot);
    for _ in 0..98 {
        g = e.bearer(&robot);
    }
    assert_eq!(g.status, 200, "{engine}: {}", g.body);
    let m = metrics(&e);
    let count = |r: &str| {
        metric(
            &m,
            &format!("xipgate_access_bearer_checks_total{{result=\"{r}\"}}"),
        )
    };
    assert_eq!(
        [count("verified"), count("cached"), count("refused")],
        [1, 99, 0],
        "{engine}"
    );
    // The backend verifies the token itself: it gets it as sent, with the identity.
    assert_eq!(
        g.backend_header("authorization"),
        [format!("Bearer {robot}")],
        "{engine}"
    );
    // The fast path served it itself (Pingora's engine adds a Date).
    if fast {
        assert!(
            !g.headers.iter().any(|(k, _)| k == "date"),
            "{engine}: handed to Pingora's engine"
        );
    }
    // Each engine's edge sees a token of its own: the header as sent, then, stands for it.
    let as_sent = |v: String| {
        if v == format!("Bearer {robot}") {
            "as sent".into()
        } else {
            v
        }
    };
    let served: Served = (
        g.status,
        g.body.clone(),
        [
            "authorization",
            "x-forwarded-user",
            "x-forwarded-email",
            "x-forwarded-groups",
        ]
        .iter()
        .map(|h| {
            (
                h.to_string(),
                g.backend_header(h).into_iter().map(as_sent).collect(),
            )
        })
        .collect(),
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
    served
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
