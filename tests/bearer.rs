//! Bearer tokens and basic credentials: tokens from a real OpenID provider (Spring
//! Authorization Server, `it/auth-server`) judged by the gate xipgate builds from its
//! config, its keys rotated and withdrawn while the gate runs; basic credentials from an
//! htpasswd file made here.

mod common;

use std::time::{Duration, SystemTime};

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

/// One provider for the whole sequence: its JVM takes seconds to start.
#[tokio::test]
async fn tokens_of_a_real_provider_are_judged_across_key_rotation() {
    // The login client needs a redirect URI; no login happens here.
    let idp = Idp::start(
        &["http://127.0.0.1:1/oauth2/callback".into()],
        Duration::from_secs(2),
    );
    // leeway 1 s: the 2 s tokens are refused 3 s after they were made.
    let gate = xipgate_gate(&idp, "      leeway: 1s\n");

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
    let gate = xipgate_gate(&idp, "      leeway: 1h\n");
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
