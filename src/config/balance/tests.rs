//! `xipgate.balance`: defaults, per-service overrides, and problems named by key.

use std::time::Duration;

use crate::balance::{Fallback, DEFAULT_CONSECUTIVE_FAILURES};
use crate::config::{parse, validate, Config, ConfigErrors};

fn check(balance: &str) -> Result<Config, ConfigErrors> {
    let yaml = format!("xipgate:\n  balance:\n{balance}");
    validate(parse(&yaml, "t.yaml")?, "t.yaml")
}

fn problems(balance: &str) -> String {
    match check(balance) {
        Ok(_) => panic!("accepted: {balance}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn nothing_configured_is_the_plain_round_robin_with_pins() {
    let cfg = validate(parse("", "t.yaml").unwrap(), "t.yaml").unwrap();
    let b = &cfg.balance;
    assert_eq!(b.pin_header.as_deref(), Some("x-xipgate-instance"));
    assert_eq!(b.hint_header.as_deref(), Some("x-sc-lb-hint"));
    assert_eq!(b.canary_header, None, "no canary rule: not looked for");
    assert_eq!(b.sticky_cookie, None);
    assert!(!b.reads_cookies);
    let p = b.policy("any");
    assert!(p.sticky_cookie.is_none() && p.canary.is_none() && p.passive.is_none());
    assert_eq!(p.zone, None);
    assert_eq!(p.fallback, Fallback::Answer);
}

#[test]
fn services_override_the_defaults_key_by_key() {
    let cfg = check(
        "    zone: eu-1\n    passive:\n      consecutive_failures: 3\n    services:\n      ORDER_SERVICE:\n        sticky: true\n        spring_cookie: true\n        pin_fallback: balance\n        prefer_zone: false\n        passive:\n          count_5xx: true\n        canary:\n          metadata: {version: canary}\n          share: 5\n      quiet:\n        passive: {enabled: false}\n",
    )
    .unwrap();
    let b = &cfg.balance;
    let order = b.policy("order-service");
    assert_eq!(order.sticky_cookie.as_deref(), Some("xipgate-instance"));
    assert!(order.spring_cookie);
    assert_eq!(order.fallback, Fallback::Balance);
    assert_eq!(order.zone, None);
    let passive = order.passive.as_ref().unwrap();
    assert_eq!((passive.consecutive_failures, passive.count_5xx), (3, true));
    assert_eq!(order.canary.as_ref().unwrap().share, 500);
    assert_eq!(
        order.canary.as_ref().unwrap().values,
        vec!["true".to_string()]
    );
    assert_eq!(b.canary_header.as_deref(), Some("x-xipgate-canary"));
    assert_eq!(b.sticky_cookie.as_deref(), Some("xipgate-instance"));
    assert!(b.reads_cookies);
    let other = b.policy("other");
    assert_eq!(other.zone.as_deref(), Some("eu-1"));
    let p = other.passive.as_ref().unwrap();
    assert_eq!(p.consecutive_failures, 3);
    assert_eq!(p.ejection, Duration::from_secs(30));
    assert!(b.policy("quiet").passive.is_none());
    let _ = DEFAULT_CONSECUTIVE_FAILURES;
}

#[test]
fn headers_can_be_turned_off() {
    let cfg = check("    pin_header: \"\"\n    hint_header: \"\"\n").unwrap();
    assert_eq!(cfg.balance.pin_header, None);
    assert_eq!(cfg.balance.hint_header, None);
    assert!(!cfg.balance.policy("x").pins);
}

#[test]
fn problems_name_their_key() {
    for (yaml, key) in [
        (
            "    pin_header: \"bad header\"\n",
            "xipgate.balance.pin_header",
        ),
        (
            "    sticky_cookie: \"a;b\"\n",
            "xipgate.balance.sticky_cookie",
        ),
        (
            "    pin_fallback: elsewhere\n",
            "xipgate.balance.pin_fallback",
        ),
        ("    weight_key: \" \"\n", "xipgate.balance.weight_key"),
        ("    zone: \"\"\n", "xipgate.balance.zone"),
        (
            "    services:\n      a:\n        canary: {share: 5}\n",
            "xipgate.balance.services.a.canary.metadata",
        ),
        (
            "    canary: {metadata: {v: c}, share: 120}\n",
            "xipgate.balance.canary.share",
        ),
        (
            "    passive: {consecutive_failures: 0}\n",
            "xipgate.balance.passive.consecutive_failures",
        ),
        (
            "    passive: {max_ejected_percent: 101}\n",
            "xipgate.balance.passive.max_ejected_percent",
        ),
        (
            "    passive: {ejection: 1m, max_ejection: 10s}\n",
            "xipgate.balance.passive.max_ejection",
        ),
        (
            "    services:\n      a: {}\n      A: {}\n",
            "xipgate.balance.services.",
        ),
    ] {
        let p = problems(yaml);
        assert!(p.contains(key), "{yaml}: {p}");
    }
    // Unknown keys are refused, at every level.
    for yaml in [
        "    stickyy: true\n",
        "    services:\n      a: {stickyy: true}\n",
        "    passive: {enable: true}\n",
        "    canary: {metadata: {v: c}, sahre: 5}\n",
    ] {
        assert!(check(yaml).is_err(), "{yaml}");
    }
}
