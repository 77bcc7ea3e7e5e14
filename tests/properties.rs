//! Property tests: label making, Host parsing, the Eureka parser and the access decision.

use proptest::prelude::*;
use serde_json::{json, Value};
use xipgate::names;
use xipgate::registry::parse::parse_apps;

fn is_dns_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// Four 1-3 digit groups joined by `-`, anywhere: what sslip.io/nip.io read as an address.
fn has_dashed_ipv4(l: &str) -> bool {
    let groups: Vec<&str> = l.split('-').collect();
    groups.windows(4).any(|w| {
        w.iter()
            .all(|g| (1..=3).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// instanceIds as real registries have them, and worse.
fn instance_ids() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,40}:[a-z-]{1,20}:[0-9]{2,5}",
        "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}:[a-z]{1,10}:[0-9]{1,5}",
        "[a-z0-9]{1,10}(-[0-9]{1,3}){3,6}(-[a-z0-9]{1,5})?",
        ".{1,120}",
        "[A-Za-z0-9_:.-]{60,200}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn instance_labels_are_valid_deterministic_idempotent(id in instance_ids(), app in "[A-Za-z-]{0,20}") {
        let label = names::instance_label(&id, &app);
        prop_assume!(!label.is_empty()); // an id without a single [a-z0-9] gives nothing
        prop_assert!(is_dns_label(&label), "{id:?} -> {label:?}");
        prop_assert!(!has_dashed_ipv4(&label), "{id:?} -> {label:?}");
        prop_assert_eq!(&label, &names::instance_label(&id, &app));
        prop_assert_eq!(&label, &names::instance_label(&label, &app));
        let normalised = names::normalize_request_label(&label);
        prop_assert_eq!(normalised.as_deref(), Some(label.as_str()));
    }

    #[test]
    fn service_and_full_labels_are_valid(s in ".{1,150}") {
        for label in [names::service_label(&s), names::full_instance_label(&s)] {
            if !label.is_empty() {
                prop_assert!(is_dns_label(&label), "{s:?} -> {label:?}");
                prop_assert!(!has_dashed_ipv4(&label));
            }
        }
    }

    #[test]
    fn disambiguated_labels_stay_valid(id in instance_ids(), other in instance_ids()) {
        let label = names::instance_label(&id, "");
        prop_assume!(!label.is_empty());
        let a = names::disambiguate(&label, &id);
        prop_assert!(is_dns_label(&a) && !has_dashed_ipv4(&a), "{a:?}");
        if id != other {
            // Different ids almost never share a suffix; equal ones always do.
            prop_assert_eq!(&a, &names::disambiguate(&label, &id));
        }
    }

    #[test]
    fn host_parsing_never_panics_and_normalises(raw in ".{0,300}") {
        if let Ok(host) = names::normalize_host(&raw) {
            prop_assert!(host.len() <= 253);
            prop_assert!(!host.ends_with('.') && !host.contains(':'));
            prop_assert_eq!(host.to_ascii_lowercase(), host.clone());
            prop_assert!(host.split('.').all(|l| !l.is_empty() && l.len() <= 63));
            let domains = vec!["127-0-0-1.sslip.io".to_string()];
            if let Ok((label, _)) = names::split_host(&host, &domains) {
                prop_assert!(!label.contains('.') && !label.is_empty());
            }
        }
    }

    #[test]
    fn hosts_built_from_labels_parse_back(id in instance_ids(), port in proptest::option::of(1u16..)) {
        let label = names::instance_label(&id, "");
        prop_assume!(!label.is_empty());
        let raw = match port { Some(p) => format!("{}.127-0-0-1.SSLIP.io.:{p}", label.to_uppercase()), None => format!("{label}.127-0-0-1.sslip.io") };
        let host = names::normalize_host(&raw).unwrap();
        let (got, _) = names::split_host(&host, &["127-0-0-1.sslip.io".to_string()]).unwrap();
        prop_assert_eq!(got, label.as_str());
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("instanceId".to_string()),
                        Just("port".to_string()),
                        Just("status".to_string()),
                        Just("$".to_string()),
                        Just("@enabled".to_string()),
                        Just("metadata".to_string()),
                        Just("instance".to_string()),
                        Just("application".to_string()),
                        "[a-z@$]{1,8}"
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn good_instance(n: usize) -> Value {
    json!({"instanceId": format!("pod-{n}:app:8080"), "app": "APP", "ipAddr": "10.0.0.1", "status": "UP",
           "port": {"$": 8080, "@enabled": "true"}})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn parser_never_panics_on_arbitrary_json(v in arb_json()) {
        let _ = parse_apps(v.to_string().as_bytes());
        let wrapped = json!({"applications": {"application": [{"name": "X", "instance": [v.clone()]}]}});
        let _ = parse_apps(wrapped.to_string().as_bytes());
        let _ = parse_apps(json!({"applications": v}).to_string().as_bytes());
    }

    #[test]
    fn parser_never_panics_on_arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_apps(&b);
    }

    #[test]
    fn one_bad_instance_never_drops_the_others(n in 1usize..20, bad in arb_json(), at in 0usize..20) {
        let mut instances: Vec<Value> = (0..n).map(good_instance).collect();
        // Anything that is not an object with usable fields, at any position.
        let bad = match bad { Value::Object(_) => json!([bad]), other => other };
        instances.insert(at.min(n), bad);
        let doc = json!({"applications": {"application": [{"name": "APP", "instance": instances}]}});
        let snap = parse_apps(doc.to_string().as_bytes()).unwrap();
        prop_assert_eq!(snap.instances.len(), n);
    }
}

/// The input proptest found on 2026-11-24: a 63-character cut that ended in digit groups.
#[test]
fn regression_cut_label_next_to_suffix() {
    let id = "k-C--c_A-72_cN_CBL3BfPCoa9Ob0d.b-eeHab8N1C-h_HPFi_5-_1-2dg50rGaEehid.5Bh32_k_I-3B-f_-a0_08_2jv._bjc1-c-eC_--j0c0_A-0";
    let label = names::instance_label(id, "");
    let d = names::disambiguate(&label, id);
    assert!(is_dns_label(&label) && !has_dashed_ipv4(&label), "{label}");
    assert!(is_dns_label(&d) && !has_dashed_ipv4(&d), "{d}");
}

mod access_decision {
    //! The access decision (`xipgate::access::decide`) over generated policies and requests.

    use proptest::prelude::*;
    use xipgate::access::{
        decide, Decision, Facts, Grant, Identity, Matcher, PathPattern, Policy, Presented, Rule,
        RuleRef, Via,
    };

    const SERVICES: [&str; 3] = ["orders", "billing", "users"];

    fn grant() -> impl Strategy<Value = Grant> {
        prop_oneof![
            Just(Grant {
                public: true,
                ..Default::default()
            }),
            Just(Grant {
                deny: true,
                ..Default::default()
            }),
            Just(Grant {
                clients: vec!["10.0.0.0/8".parse().expect("cidr")],
                ..Default::default()
            }),
            Just(Grant {
                authenticated: true,
                ..Default::default()
            }),
            Just(Grant {
                groups: vec!["devs".into()],
                ..Default::default()
            }),
        ]
    }

    /// Rules that name only `orders` and `billing`: `users` is matched by none.
    fn rule() -> impl Strategy<Value = Rule> {
        (
            prop::sample::select(&SERVICES[..2]),
            prop::option::of(prop::sample::select(
                &["/api", "/admin", "/actuator/env"][..],
            )),
            grant(),
            "[a-z]{1,8}",
        )
            .prop_map(|(service, path, grant, name)| Rule {
                name,
                matcher: Matcher {
                    services: vec![service.to_string()],
                    paths: path
                        .map(|p| PathPattern::parse(p).expect("pattern"))
                        .into_iter()
                        .collect(),
                    ..Default::default()
                },
                grant,
            })
    }

    fn path() -> impl Strategy<Value = String> {
        prop_oneof![
            "/[a-z]{0,6}(/[a-z]{1,6}){0,2}",
            prop::sample::select(
                &[
                    "/actuator/health",
                    "/actuator/env",
                    "/actuator/heapdump",
                    "/actuator",
                    "/actuator;/env",
                    "//actuator/env",
                    "/actuator/%65nv",
                    "/x/..;/actuator/env",
                    "/api/%2e%2e/admin",
                    "/api\\x",
                ][..]
            )
            .prop_map(String::from),
            "/[ -~]{0,20}",
        ]
    }

    fn shown() -> impl Strategy<Value = Presented> {
        prop_oneof![
            Just(Presented::Nothing),
            Just(Presented::Refused("tampered".into())),
            prop::collection::vec(prop::sample::select(&["devs", "operators", "x"][..]), 0..3)
                .prop_map(|groups| Presented::Identity(Identity {
                    user: "u".into(),
                    email: None,
                    groups: groups.into_iter().map(String::from).collect(),
                    via: Via::Session,
                })),
        ]
    }

    fn policy(rules: Vec<Rule>) -> Policy {
        Policy {
            rules,
            actuator_operators: Some(vec!["operators".into()]),
            login: true,
            basic_realm: None,
            bearer: false,
        }
    }

    fn facts<'a>(
        service: &'a str,
        path: &'a str,
        method: &'a str,
        bases: &'a [String],
    ) -> Facts<'a> {
        Facts {
            domain: "xip.test",
            service,
            instance: None,
            path,
            method,
            client: "192.0.2.1".parse().expect("ip"),
            page_load: false,
            actuator_bases: bases,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// A request no rule matches is refused, unless the built-in actuator policy
        /// (which only ever allows its own endpoints) takes it.
        #[test]
        fn what_no_rule_matches_is_never_allowed_but_by_the_actuator_policy(
            rules in prop::collection::vec(rule(), 1..5),
            path in path(),
            method in prop::sample::select(&["GET", "POST"][..]),
            presented in shown(),
        ) {
            let bases = vec!["/actuator".to_string()];
            let p = policy(rules);
            let d = decide(&p, &facts("users", &path, method, &bases), || presented);
            if let Decision::Allow { rule, .. } = &d {
                prop_assert!(matches!(rule, RuleRef::Actuator(_)), "{path}: {d:?}");
            }
            prop_assert!(!matches!(d, Decision::Open));
        }

        /// A deny rule first, for every path, denies everything (an ambiguous path gets
        /// its 400 first), whatever follows it and whoever asks.
        #[test]
        fn a_deny_rule_first_denies_everything(
            rules in prop::collection::vec(rule(), 0..5),
            service in prop::sample::select(&SERVICES[..]),
            path in path(),
            method in prop::sample::select(&["GET", "POST", "DELETE"][..]),
            presented in shown(),
        ) {
            let deny = Rule {
                name: "nobody".into(),
                matcher: Matcher {
                    paths: vec![PathPattern::parse("/").expect("pattern")],
                    ..Default::default()
                },
                grant: Grant { deny: true, ..Default::default() },
            };
            let p = policy(std::iter::once(deny).chain(rules).collect());
            let bases = vec!["/actuator".to_string()];
            let d = decide(&p, &facts(service, &path, method, &bases), || presented);
            prop_assert!(
                matches!(d, Decision::Deny { .. } | Decision::BadPath { .. }),
                "{service} {path}: {d:?}"
            );
        }

        /// An ambiguous path is never allowed where rules exist.
        #[test]
        fn an_ambiguous_path_is_never_allowed(
            rules in prop::collection::vec(rule(), 1..5),
            service in prop::sample::select(&SERVICES[..]),
            path in prop::sample::select(&["/a;b", "//a", "/a/../b", "/a/%2f", "/a\\b", "/./a"][..]),
            presented in shown(),
        ) {
            let bases = vec!["/actuator".to_string()];
            let p = policy(rules);
            let d = decide(&p, &facts(service, path, "GET", &bases), || presented);
            prop_assert!(matches!(d, Decision::BadPath { .. }), "{path}: {d:?}");
        }
    }
}
