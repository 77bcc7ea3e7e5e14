use super::*;
use crate::access::{Matcher, PathPattern, Rule};

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
                    services: vec!["billing".into()],
                    ..Default::default()
                },
                Grant {
                    clients: vec!["10.0.0.0/8".parse().unwrap()],
                    ..Default::default()
                },
            ),
            rule(
                "legacy",
                Matcher {
                    services: vec!["legacy".into()],
                    ..Default::default()
                },
                Grant {
                    deny: true,
                    ..Default::default()
                },
            ),
            rule(
                "scripts",
                Matcher {
                    services: vec!["batch".into()],
                    ..Default::default()
                },
                Grant {
                    basic: true,
                    ..Default::default()
                },
            ),
            rule(
                "devs",
                Matcher {
                    services: vec!["orders".into()],
                    ..Default::default()
                },
                Grant {
                    groups: vec!["devs".into()],
                    ..Default::default()
                },
            ),
        ],
        actuator_operators: Some(vec!["ops".into()]),
        login: true,
        basic_realm: Some("x".into()),
        bearer: true,
    }
}

const BASES: &[String] = &[];

fn facts<'a>(service: &'a str, path: &'a str, method: &'a str) -> Facts<'a> {
    static ACTUATOR: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["/actuator".to_string()]);
    Facts {
        domain: "example.test",
        service,
        instance: None,
        path,
        method,
        client: "10.1.2.3".parse().unwrap(),
        page_load: false,
        actuator_bases: if service == "nobase" {
            BASES
        } else {
            &ACTUATOR
        },
    }
}

fn user(name: &str, groups: &[&str]) -> Simulated {
    Simulated {
        user: Some(name.into()),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        via: None,
    }
}

#[test]
fn each_decision_is_explained_with_its_rule_and_what_it_needs() {
    let p = policy();
    let nobody = Simulated::default();
    type Case<'a> = (Facts<'a>, Simulated, Option<&'a str>, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            facts("orders", "/docs/a", "GET"),
            nobody.clone(),
            Some("docs"),
            "allow",
            200,
            "",
        ),
        (
            facts("billing", "/", "GET"),
            nobody.clone(),
            Some("office"),
            "allow",
            200,
            "a client address in 10.0.0.0/8",
        ),
        (
            facts("legacy", "/", "GET"),
            nobody.clone(),
            Some("legacy"),
            "deny",
            403,
            "nothing passes",
        ),
        (
            facts("orders", "/", "GET"),
            nobody.clone(),
            Some("devs"),
            "unauthorized",
            401,
            "being a member of group devs",
        ),
        (
            facts("orders", "/", "GET"),
            user("alice", &["devs"]),
            Some("devs"),
            "allow",
            200,
            "a session from the login or a bearer token",
        ),
        (
            facts("orders", "/", "GET"),
            user("bob", &["sales"]),
            Some("devs"),
            "deny",
            403,
            "being a member of group devs",
        ),
        (
            facts("batch", "/", "GET"),
            user("carol", &[]),
            Some("scripts"),
            "allow",
            200,
            "an identity shown by basic credentials",
        ),
        (
            facts("other", "/", "GET"),
            nobody.clone(),
            Some("no-rule"),
            "deny",
            403,
            "a rule in xipgate.access.rules that matches it",
        ),
        (
            facts("orders", "/actuator/health", "GET"),
            nobody.clone(),
            Some("actuator:health"),
            "allow",
            200,
            "",
        ),
        (
            facts("orders", "/actuator/env", "GET"),
            user("dave", &["ops"]),
            Some("actuator:env"),
            "allow",
            200,
            "being a member of group ops",
        ),
        (
            facts("orders", "/actuator/heapdump", "GET"),
            user("dave", &["ops"]),
            Some("actuator:heapdump"),
            "deny",
            403,
            "whose paths name this endpoint",
        ),
        (
            facts("orders", "/actuator;/env", "GET"),
            nobody.clone(),
            Some("ambiguous-path"),
            "bad_path",
            400,
            "a path without",
        ),
    ];
    for (f, who, rule, decision, status, need) in cases {
        let e = explain(&p, &f, &who);
        let what = format!("{} {} {:?}: {e:?}", f.method, f.path, who.user);
        assert_eq!(e.rule.as_deref(), rule, "{what}");
        assert_eq!((e.decision, e.status), (decision, status), "{what}");
        assert!(!e.why.is_empty(), "{what}");
        if need.is_empty() {
            assert!(e.needs.is_empty(), "{what}");
        } else {
            assert!(e.needs.iter().any(|n| n.contains(need)), "{what}");
        }
    }
}

#[test]
fn a_simulated_identity_is_shown_the_way_asked() {
    let p = policy();
    let f = facts("batch", "/", "GET");
    // The scripts rule takes basic credentials only: a session is refused.
    let mut who = user("carol", &[]);
    who.via = Some(Via::Session);
    let e = explain(&p, &f, &who);
    assert_eq!(e.decision, "unauthorized");
    assert!(e.why.contains("does not take a session"), "{e:?}");
}

#[test]
fn the_lock_is_what_a_neutral_client_without_credentials_gets() {
    let p = policy();
    // The office's clients do not include the neutral address: its lock says so.
    let e = lock(&p, &facts("billing", "/", "GET"));
    assert_eq!((e.rule.as_deref(), e.decision), (Some("office"), "deny"));
    assert_eq!(e.needs, ["a client address in 10.0.0.0/8"]);
    let e = lock(&p, &facts("orders", "/", "GET"));
    assert_eq!(
        (e.rule.as_deref(), e.decision),
        (Some("devs"), "unauthorized")
    );
    let open = lock(&Policy::default(), &facts("orders", "/", "GET"));
    assert_eq!((open.rule, open.decision), (None, "open"));
    assert!(open.why.contains("anyone who reaches the edge"));
}
