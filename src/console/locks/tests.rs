//! The console's view of the policy, on a routing table built in code.

use std::sync::Arc;

use super::*;
use crate::access::{Grant, Matcher, PathPattern, Policy, Rule};
use crate::console::api::tests::{console_with, inst};
use crate::registry::Status;

fn policy() -> Policy {
    let rule = |name: &str, matcher: Matcher, grant: Grant| Rule {
        name: name.into(),
        matcher,
        grant,
    };
    Policy {
        rules: vec![
            rule(
                "docs",
                Matcher {
                    paths: vec![PathPattern::parse("/docs").unwrap()],
                    ..Default::default()
                },
                Grant {
                    public: true,
                    ..Default::default()
                },
            ),
            rule(
                "office",
                Matcher {
                    services: vec!["order-service".into()],
                    ..Default::default()
                },
                Grant {
                    clients: vec!["10.0.0.0/8".parse().unwrap()],
                    ..Default::default()
                },
            ),
            rule(
                "devs",
                Matcher::default(),
                Grant {
                    groups: vec!["devs".into()],
                    ..Default::default()
                },
            ),
        ],
        actuator_operators: Some(vec!["ops".into()]),
        login: true,
        basic_realm: None,
        bearer: false,
    }
}

fn ruled() -> Console {
    let mut managed = inst("EVIL", "evil-2", "10.0.0.9", Status::Up);
    managed.health_check_url = Some("http://10.0.0.9:8080/manage/health".into());
    managed.status_page_url = None;
    let mut c = console_with(Some(vec![
        inst("ORDER-SERVICE", "order-1", "10.0.0.1", Status::Up),
        inst("EVIL", "evil-1", "10.0.0.8", Status::Up),
        managed,
    ]));
    c.policy = Arc::new(policy());
    c.access_summary = "3 rules".into();
    c
}

fn explained(c: &Console, query: &str) -> (u16, serde_json::Value) {
    let a = explain(c, query);
    let v = serde_json::from_slice(&a.body).unwrap_or_else(|e| panic!("{query}: {e}"));
    (a.status, v)
}

#[test]
fn explain_answers_with_the_rule_decision_why_and_needs() {
    let c = ruled();
    type Case<'a> = (&'a str, &'a str, &'a str, u16);
    let cases: [Case; 10] = [
        (
            "host=order-service.edge.test&client=10.1.2.3",
            "office",
            "allow",
            200,
        ),
        ("host=order-service.edge.test", "office", "deny", 403),
        (
            "host=order-1-8080.edge.test:8080&client=192.0.2.1",
            "office",
            "deny",
            403,
        ),
        ("host=evil.edge.test&path=/docs/a", "docs", "allow", 200),
        ("host=evil.edge.test&path=/", "devs", "unauthorized", 401),
        (
            "host=evil.edge.test&user=alice&groups=devs,x",
            "devs",
            "allow",
            200,
        ),
        (
            "host=evil.edge.test&user=bob&groups=sales",
            "devs",
            "deny",
            403,
        ),
        (
            "host=evil.edge.test&path=/actuator/health",
            "actuator:health",
            "allow",
            200,
        ),
        // The service reaches evil-2 too, whose actuator is at /manage.
        (
            "host=evil.edge.test&path=/manage/heapdump&user=carol&groups=ops",
            "actuator:heapdump",
            "deny",
            403,
        ),
        (
            "host=evil.edge.test&path=/actuator%3B/env",
            "ambiguous-path",
            "bad_path",
            400,
        ),
    ];
    for (query, rule, decision, status) in cases {
        let (s, v) = explained(&c, query);
        assert_eq!(s, 200, "{query}: {v}");
        assert_eq!(v["rule"], rule, "{query}: {v}");
        assert_eq!(v["decision"], decision, "{query}: {v}");
        assert_eq!(v["status"], status, "{query}: {v}");
        assert!(v["why"].as_str().is_some_and(|w| !w.is_empty()), "{v}");
        assert!(v["needs"].is_array(), "{v}");
    }
    let (_, v) = explained(&c, "host=evil.edge.test&user=bob&groups=sales");
    assert_eq!(v["needs"][1], "being a member of group devs", "{v}");
    // The instance host with a custom base: /actuator there is an ordinary path.
    let (_, v) = explained(&c, "host=evil-2-8080.edge.test&path=/actuator/env");
    assert_eq!(
        (v["rule"].as_str(), v["actuator_bases"].clone()),
        (Some("devs"), serde_json::json!(["/manage"]))
    );
}

#[test]
fn explain_names_the_parameter_it_cannot_use() {
    let c = ruled();
    let long = "a".repeat(MAX_PATH_BYTES);
    let many: Vec<String> = (0..=MAX_GROUPS).map(|i| format!("g{i}")).collect();
    let cases = [
        ("path=/", 400, "'host'"),
        ("host=", 400, "'host'"),
        ("host=a.b.other.test", 400, "'host'"),
        (
            "host=nobody.edge.test",
            404,
            "no service or instance is called 'nobody'",
        ),
        (
            "host=evil.edge.test&path=docs",
            400,
            "'path' must start with /",
        ),
        (
            &format!("host=evil.edge.test&path=/{long}"),
            400,
            "'path' may be at most 2048 bytes",
        ),
        ("host=evil.edge.test&method=GE%20T", 400, "'method'"),
        ("host=evil.edge.test&client=10.0.0", 400, "'client'"),
        (
            &format!("host=evil.edge.test&user=u&groups={}", many.join(",")),
            400,
            "'groups' may name at most 32",
        ),
        (
            "host=evil.edge.test&groups=devs",
            400,
            "'groups' is given without 'user'",
        ),
        ("host=evil.edge.test&via=cookie", 400, "'via'"),
        (
            "host=evil.edge.test&grups=devs",
            400,
            "unknown query parameter 'grups'",
        ),
    ];
    for (query, status, words) in cases {
        let (s, v) = explained(&c, query);
        assert_eq!(s, status, "{query}: {v}");
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(words), "{query}: '{msg}' should name {words}");
    }
}

#[test]
fn an_open_edge_says_so_and_has_no_locks() {
    let c = console_with(Some(vec![inst(
        "ORDER-SERVICE",
        "order-1",
        "10.0.0.1",
        Status::Up,
    )]));
    let v = summary_json(&c, None);
    assert_eq!(v["open"], true);
    assert!(v["summary"]
        .as_str()
        .unwrap()
        .contains("anyone who reaches the edge"));
    let (_, e) = explained(&c, "host=order-service.edge.test&path=/actuator/heapdump");
    assert_eq!(
        (e["decision"].as_str(), e["rule"].is_null()),
        (Some("open"), true)
    );
}

#[test]
fn every_service_and_instance_has_the_lock_of_get_slash() {
    let c = ruled();
    let services = c.table.services();
    let order = services
        .iter()
        .find(|s| s.label == "order-service")
        .unwrap();
    // Worked out for a neutral client: the office's address rule refuses it.
    let lock = service_lock(&c, order);
    assert_eq!(
        (lock.rule.as_deref(), lock.decision),
        (Some("office"), "deny")
    );
    let evil = services.iter().find(|s| s.label == "evil").unwrap();
    let lock = service_lock(&c, evil);
    assert_eq!(
        (lock.rule.as_deref(), lock.decision),
        (Some("devs"), "unauthorized")
    );
    let lock = instance_lock(&c, &order.instances[0]);
    assert_eq!(lock.rule.as_deref(), Some("office"));
    assert_eq!(
        summary_json(&c, None)["rules"],
        serde_json::json!(["docs", "office", "devs"])
    );
}

/// A console under the domain receives the login's cookie: the page and
/// `/api/v1/access` say who it signs in.
#[tokio::test]
async fn the_console_says_who_is_signed_in() {
    use crate::access::session::{unix_now, Sealer, Session};
    const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
    let mut c = ruled();
    let mut p = policy();
    p.login = true;
    c.policy = Arc::new(p.clone());
    let gate = crate::access::Gate::new(
        p,
        Vec::new(),
        [
            "X-Forwarded-User",
            "X-Forwarded-Email",
            "X-Forwarded-Groups",
        ],
        Some(crate::access::SessionCookie {
            name: "_xipgate".into(),
            sealer: Sealer::from_text(KEY, "test").unwrap(),
        }),
    );
    c.gate.set(Arc::new(gate)).ok().unwrap();
    let alice = Session {
        user: "alice".into(),
        email: Some("alice@example.test".into()),
        groups: vec!["devs".into()],
        expires: unix_now() + 600,
    };
    let sealed = Sealer::from_text(KEY, "test")
        .unwrap()
        .seal("_xipgate", &alice)
        .unwrap();
    let ask = |path: &str, cookie: Option<&str>| {
        let mut req = pingora_http::RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        if let Some(v) = cookie {
            req.insert_header("cookie", v).unwrap();
        }
        req
    };
    let body = |a: crate::answer::Answer| String::from_utf8_lossy(&a.body).into_owned();

    let with = format!("theme=dark; _xipgate={sealed}");
    let page = body(c.handle(&ask("/", Some(&with)), None, None, false).await);
    assert!(page.contains("Signed in <b>alice (devs)</b>"), "{page}");
    let v: serde_json::Value = serde_json::from_str(&body(
        c.handle(&ask("/api/v1/access", Some(&with)), None, None, false)
            .await,
    ))
    .unwrap();
    assert_eq!(v["signed_in"]["user"], "alice", "{v}");
    assert_eq!(v["signed_in"]["groups"], serde_json::json!(["devs"]), "{v}");

    // No cookie, or one that does not open: nobody.
    for cookie in [None, Some("_xipgate=forged")] {
        let page = body(c.handle(&ask("/", cookie), None, None, false).await);
        assert!(page.contains("Signed in <b>nobody</b>"), "{cookie:?}");
        let v: serde_json::Value = serde_json::from_str(&body(
            c.handle(&ask("/api/v1/access", cookie), None, None, false)
                .await,
        ))
        .unwrap();
        assert!(v["signed_in"].is_null(), "{cookie:?}: {v}");
    }
}
