use super::*;
use crate::access::{Matcher, PathPattern, Via};

fn rule(name: &str, matcher: Matcher, grant: Grant) -> Rule {
    Rule {
        name: name.into(),
        matcher,
        grant,
    }
}

fn facts<'a>(service: &'a str, path: &'a str, method: &'a str, page_load: bool) -> Facts<'a> {
    static BASES: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["/actuator".to_string()]);
    Facts {
        domain: "example.test",
        service,
        instance: None,
        path,
        method,
        client: "198.51.100.7".parse().unwrap(),
        page_load,
        actuator_bases: &BASES,
    }
}

fn alice(via: Via, groups: &[&str]) -> Presented {
    Presented::Identity(Identity {
        user: "alice".into(),
        email: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
        via,
    })
}

fn policy() -> Policy {
    Policy {
        rules: vec![
            rule(
                "public-docs",
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
                    clients: vec!["198.51.100.0/24".parse().unwrap()],
                    ..Default::default()
                },
            ),
            rule(
                "devs",
                Matcher::default(),
                Grant {
                    groups: vec!["devs".into()],
                    bearer: true,
                    ..Default::default()
                },
            ),
        ],
        actuator_operators: Some(vec!["ops".into()]),
        login: true,
        basic_realm: None,
        bearer: true,
    }
}

fn outcome(d: &Decision) -> String {
    match d {
        Decision::Open => "open".into(),
        Decision::Allow { rule, .. } => format!("allow {}", rule.name()),
        Decision::Deny { rule, .. } => format!("deny {}", rule.name()),
        Decision::BadPath { .. } => "400".into(),
        Decision::SignIn { rule } => format!("login {}", rule.name()),
        Decision::Unauthorized { rule, .. } => format!("401 {}", rule.name()),
    }
}

#[test]
fn the_first_matching_rule_decides() {
    let p = policy();
    let cases: Vec<(Facts, Presented, &str)> = vec![
        (
            facts("orders", "/docs/x", "GET", true),
            Presented::Nothing,
            "allow public-docs",
        ),
        (
            facts("billing", "/", "GET", true),
            Presented::Nothing,
            "allow office",
        ),
        (
            facts("orders", "/", "GET", true),
            Presented::Nothing,
            "login devs",
        ),
        (
            facts("orders", "/", "GET", false),
            Presented::Nothing,
            "401 devs",
        ),
        (
            facts("orders", "/", "GET", true),
            alice(Via::Session, &["devs"]),
            "allow devs",
        ),
        (
            facts("orders", "/", "GET", true),
            alice(Via::Session, &["sales"]),
            "deny devs",
        ),
        (
            facts("orders", "/", "GET", true),
            alice(Via::Basic, &["devs"]),
            "401 devs",
        ),
        (
            facts("orders", "/", "GET", true),
            Presented::Refused("expired".into()),
            "401 devs",
        ),
        (
            facts("orders", "/actuator/health", "GET", false),
            Presented::Nothing,
            "allow actuator:health",
        ),
        (
            facts("orders", "/actuator/heapdump", "GET", false),
            alice(Via::Session, &["ops"]),
            "deny actuator:heapdump",
        ),
        (
            facts("orders", "/actuator/env", "GET", false),
            alice(Via::Session, &["devs"]),
            "deny actuator:env",
        ),
        (
            facts("orders", "/actuator/env", "GET", false),
            alice(Via::Session, &["ops"]),
            "allow actuator:env",
        ),
        (
            facts("orders", "/actuator/%65nv", "POST", false),
            alice(Via::Session, &["ops"]),
            "deny actuator:env",
        ),
        (
            facts("orders", "/actuator;/env", "GET", false),
            Presented::Nothing,
            "400",
        ),
        (
            facts("orders", "//actuator/env", "GET", false),
            Presented::Nothing,
            "400",
        ),
    ];
    for (f, presented, want) in cases {
        let got = decide(&p, &f, || presented.clone());
        assert_eq!(
            outcome(&got),
            want,
            "{} {} {:?}",
            f.method,
            f.path,
            presented
        );
    }
}

#[test]
fn an_edge_without_rules_is_open() {
    let p = Policy::default();
    let d = decide(
        &p,
        &facts("orders", "/actuator/heapdump", "GET", false),
        || Presented::Nothing,
    );
    assert_eq!(d, Decision::Open);
}

#[test]
fn a_client_outside_the_rules_clients_is_refused() {
    let mut p = policy();
    p.rules.truncate(2);
    let mut f = facts("billing", "/", "GET", true);
    f.client = "203.0.113.1".parse().unwrap();
    assert_eq!(
        outcome(&decide(&p, &f, || Presented::Nothing)),
        "deny office"
    );
}

#[test]
fn the_actuator_policy_holds_at_each_instance_s_own_base() {
    let p = policy();
    let manage = vec!["/manage".to_string()];
    let root = vec![String::new()];
    let at = |bases: &'static str, path: &'static str| {
        let mut f = facts("orders", path, "GET", false);
        f.actuator_bases = match bases {
            "manage" => &manage,
            _ => &root,
        };
        outcome(&decide(&p, &f, || alice(Via::Session, &["devs"])))
    };
    // A custom base is protected; /actuator there is an ordinary path for the rules.
    assert_eq!(at("manage", "/manage/health"), "allow actuator:health");
    assert_eq!(at("manage", "/manage/heapdump"), "deny actuator:heapdump");
    assert_eq!(at("manage", "/manage/env"), "deny actuator:env");
    assert_eq!(at("manage", "/actuator/heapdump"), "allow devs");
    // An actuator at the root: its endpoint ids are, the application's paths are not.
    assert_eq!(at("root", "/shutdown"), "deny actuator:shutdown");
    assert_eq!(at("root", "/orders"), "allow devs");
}

/// A session cannot satisfy a rule that takes only tokens or basic credentials, so a
/// browser is answered 401 there rather than sent to a login that could not help.
#[test]
fn rules_only_for_programs_never_send_a_browser_to_the_login() {
    let only = |name: &str, service: &str, grant: Grant| {
        rule(
            name,
            Matcher {
                services: vec![service.into()],
                ..Default::default()
            },
            grant,
        )
    };
    let p = Policy {
        rules: vec![
            only(
                "robots",
                "api",
                Grant {
                    bearer: true,
                    ..Default::default()
                },
            ),
            only(
                "ci",
                "builds",
                Grant {
                    basic: true,
                    ..Default::default()
                },
            ),
            only(
                "team",
                "wiki",
                Grant {
                    authenticated: true,
                    basic: true,
                    ..Default::default()
                },
            ),
        ],
        actuator_operators: None,
        login: true,
        basic_realm: Some("builds".into()),
        bearer: true,
    };
    for (service, want) in [
        ("api", "401 robots"),
        ("builds", "401 ci"),
        ("wiki", "login team"),
    ] {
        let got = decide(&p, &facts(service, "/", "GET", true), || Presented::Nothing);
        assert_eq!(outcome(&got), want, "{service}");
    }
    // The 401 challenges what the rule takes.
    match decide(&p, &facts("api", "/", "GET", true), || Presented::Nothing) {
        Decision::Unauthorized {
            bearer,
            basic_realm,
            ..
        } => assert!(bearer && basic_realm.is_none()),
        d => panic!("{d:?}"),
    }
    match decide(&p, &facts("builds", "/", "GET", true), || {
        Presented::Nothing
    }) {
        Decision::Unauthorized {
            bearer,
            basic_realm,
            ..
        } => {
            assert!(!bearer);
            assert_eq!(basic_realm.as_deref(), Some("builds"));
        }
        d => panic!("{d:?}"),
    }
}

#[test]
fn a_session_that_does_not_open_sends_a_browser_to_the_login_and_others_get_401() {
    let p = policy();
    let bad = || Presented::BadSession("the session cookie was not sealed by this edge".into());
    let page = decide(&p, &facts("orders", "/", "GET", true), bad);
    assert_eq!(outcome(&page), "login devs");
    let api = decide(&p, &facts("orders", "/", "GET", false), bad);
    match api {
        Decision::Unauthorized { why, .. } => assert!(why.contains("not sealed"), "{why}"),
        other => panic!("{other:?}"),
    }
}
