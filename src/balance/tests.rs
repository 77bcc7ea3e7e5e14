//! The decision, table by table, and its properties.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::instance::Status;

struct M {
    instance: Instance,
    label: String,
    routable: bool,
    weight: Weight,
    health: Health,
}

impl Member for M {
    fn instance(&self) -> &Instance {
        &self.instance
    }
    fn label(&self) -> &str {
        &self.label
    }
    fn routable(&self) -> bool {
        self.routable
    }
    fn weight(&self) -> Weight {
        self.weight
    }
    fn health(&self) -> &Health {
        &self.health
    }
}

/// Instance `id` (label `id-8080`) with metadata pairs.
fn m(id: &str, status: Status, meta: &[(&str, &str)]) -> M {
    let mut instance = Instance::for_test("SVC", id, "10.0.0.1", status);
    instance.metadata = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect::<BTreeMap<_, _>>()
        .into();
    M {
        weight: Policy::default().weight_of(&instance),
        label: format!("{id}-8080"),
        instance,
        routable: true,
        health: Health::default(),
    }
}

fn up(id: &str) -> M {
    m(id, Status::Up, &[])
}

fn weighted(id: &str, w: &str) -> M {
    m(id, Status::Up, &[("weight", w)])
}

fn plan(members: &[M], policy: Policy) -> Plan {
    Plan::build(members, Arc::new(policy))
}

fn ids(members: &[M], plan: &Plan, keys: &Keys<'_>, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| match plan.decide(members, keys, || 1) {
            Decision::Pick { index, .. } => members[index].instance.instance_id.clone(),
            Decision::Refuse(r) => format!("refused: {r}"),
        })
        .collect()
}

fn one(members: &[M], plan: &Plan, keys: &Keys<'_>) -> Decision {
    plan.decide(members, keys, || 1)
}

fn pick(index: usize, via: Via) -> Decision {
    Decision::Pick { index, via }
}

#[test]
fn equal_weights_are_the_plain_round_robin_in_instance_id_order() {
    let ms = [up("a"), up("b"), up("c")];
    let p = plan(&ms, Policy::default());
    assert_eq!(
        ids(&ms, &p, &Keys::default(), 6),
        ["a", "b", "c", "a", "b", "c"]
    );
    // Equal weights above one: still one each in turn.
    let ms = [weighted("a", "3"), weighted("b", "3")];
    let p = plan(&ms, Policy::default());
    assert_eq!(ids(&ms, &p, &Keys::default(), 4), ["a", "b", "a", "b"]);
}

#[test]
fn unequal_weights_follow_nginx_smooth_order() {
    // nginx's own example (ngx_http_upstream_round_robin.c): weights 5, 1, 1.
    let ms = [weighted("a", "5"), up("b"), up("c")];
    let p = plan(&ms, Policy::default());
    assert_eq!(
        ids(&ms, &p, &Keys::default(), 7),
        ["a", "a", "b", "a", "c", "a", "a"]
    );
    // Nacos float weights: 0.5 is half of 1.
    let ms = [weighted("a", "0.5"), weighted("b", "1.0")];
    let p = plan(&ms, Policy::default());
    assert_eq!(ids(&ms, &p, &Keys::default(), 3), ["b", "a", "b"]);
}

#[test]
fn weights_parse_with_problems_shown() {
    let w = |raw| Weight::parse(Some(raw));
    assert_eq!(Weight::parse(None), Weight::DEFAULT);
    assert_eq!(w("2").units, 200);
    assert_eq!(w(" 0.25 ").units, 25);
    assert_eq!(w("0.001").units, 1, "positive is never out of rotation");
    assert_eq!(w("0").units, 0);
    assert_eq!(w("0.0").units, 0);
    assert_eq!(
        w("-1"),
        Weight {
            units: UNIT,
            problem: Some(WeightProblem::Negative)
        }
    );
    assert_eq!(
        w("heavy"),
        Weight {
            units: UNIT,
            problem: Some(WeightProblem::NotANumber)
        }
    );
    assert_eq!(w("NaN").problem, Some(WeightProblem::NotANumber));
    assert_eq!(w("inf").problem, Some(WeightProblem::NotANumber));
    assert_eq!(
        w("1000"),
        Weight {
            units: 100 * UNIT,
            problem: Some(WeightProblem::TooLarge)
        }
    );
    assert_eq!(w("1.5").shares(), 1.5);
}

#[test]
fn weight_zero_is_out_of_rotation_and_cannot_be_pinned() {
    let ms = [weighted("a", "0"), up("b")];
    let p = plan(&ms, Policy::default());
    assert_eq!(ids(&ms, &p, &Keys::default(), 3), ["b", "b", "b"]);
    let keys = Keys {
        pin: Some(b"a"),
        ..Keys::default()
    };
    assert!(
        matches!(one(&ms, &p, &keys), Decision::Refuse(Refusal::PinOut { ref why, .. }) if why.contains("weight 0"))
    );
    // Nor reached by a forged sticky cookie.
    let p = plan(&ms, sticky_policy());
    let cookies: &[&[u8]] = &[b"xipgate-instance=a-8080"];
    let keys = Keys {
        cookies,
        ..Keys::default()
    };
    assert_eq!(one(&ms, &p, &keys), pick(1, Via::Rotation));
    // All weights zero: nothing in rotation.
    let ms = [weighted("a", "0")];
    assert!(!plan(&ms, Policy::default()).has_eligible());
}

#[test]
fn a_nacos_instance_has_its_own_weight() {
    let nacos = m("n", Status::Up, &[("nacos.weight", "0.5"), ("weight", "3")]);
    assert_eq!(Policy::default().weight_of(&nacos.instance).units, 50);
    let zero = m("z", Status::Up, &[("nacos.weight", "0")]);
    assert_eq!(Policy::default().weight_of(&zero.instance).units, 0);
}

#[test]
fn a_custom_weight_key() {
    let policy = Policy {
        weight_key: "lb.weight".into(),
        ..Policy::default()
    };
    let mut ms = [
        m("a", Status::Up, &[("lb.weight", "3"), ("weight", "1")]),
        up("b"),
    ];
    for x in &mut ms {
        x.weight = policy.weight_of(&x.instance);
    }
    let p = plan(&ms, policy);
    let picks = ids(&ms, &p, &Keys::default(), 8);
    assert_eq!(picks.iter().filter(|i| *i == "a").count(), 6);
}

#[test]
fn pins_name_a_label_or_an_instance_id_or_are_refused() {
    let ms = [up("a:svc:1"), m("b", Status::Down, &[]), up("c")];
    let p = plan(&ms, Policy::default());
    let pin = |v: &'static [u8]| Keys {
        pin: Some(v),
        ..Keys::default()
    };
    assert_eq!(one(&ms, &p, &pin(b"c")), pick(2, Via::Pin));
    assert_eq!(one(&ms, &p, &pin(b"a:svc:1")), pick(0, Via::Pin));
    assert_eq!(
        one(&ms, &p, &pin(b" C-8080 ")),
        pick(2, Via::Pin),
        "labels in any case"
    );
    assert_eq!(
        one(&ms, &p, &pin(b"nope")),
        Decision::Refuse(Refusal::UnknownPin("nope".into()))
    );
    let Decision::Refuse(r) = one(&ms, &p, &pin(b"b")) else {
        panic!()
    };
    assert_eq!(r.to_string(), "the pinned instance 'b' is DOWN");
    // A control character is shown escaped, never echoed raw.
    let Decision::Refuse(r) = one(&ms, &p, &pin(b"x\x1b[2J")) else {
        panic!()
    };
    assert!(!r.to_string().contains('\x1b'), "{r}");
    // An empty pin is no pin.
    assert!(matches!(
        one(&ms, &p, &pin(b"  ")),
        Decision::Pick {
            via: Via::Rotation,
            ..
        }
    ));
    // With fallback: balanced as if unpinned.
    let p = plan(
        &ms,
        Policy {
            fallback: Fallback::Balance,
            ..Policy::default()
        },
    );
    assert!(matches!(
        one(&ms, &p, &pin(b"b")),
        Decision::Pick {
            via: Via::Rotation,
            ..
        }
    ));
    // Pins off: the header means nothing.
    let p = plan(
        &ms,
        Policy {
            pins: false,
            ..Policy::default()
        },
    );
    assert!(matches!(
        one(&ms, &p, &pin(b"nope")),
        Decision::Pick {
            via: Via::Rotation,
            ..
        }
    ));
}

#[test]
fn an_unroutable_instance_cannot_be_pinned() {
    let mut ms = [up("a"), up("b")];
    ms[0].routable = false;
    let p = plan(&ms, Policy::default());
    let keys = Keys {
        pin: Some(b"a"),
        ..Keys::default()
    };
    assert!(matches!(
        one(&ms, &p, &keys),
        Decision::Refuse(Refusal::PinOut { .. })
    ));
}

#[test]
fn hints_choose_a_group_by_metadata() {
    let ms = [
        m("a", Status::Up, &[("hint", "blue")]),
        m("b", Status::Up, &[("hint", "green")]),
        m("c", Status::Up, &[("hint", "blue")]),
        m("d", Status::Down, &[("hint", "red")]),
    ];
    let p = plan(&ms, Policy::default());
    let hint = |v: &'static [u8]| Keys {
        hint: Some(v),
        ..Keys::default()
    };
    assert_eq!(ids(&ms, &p, &hint(b"blue"), 4), ["a", "c", "a", "c"]);
    assert_eq!(ids(&ms, &p, &hint(b"green"), 1), ["b"]);
    assert_eq!(
        one(&ms, &p, &hint(b"red")),
        Decision::Refuse(Refusal::NoHint("red".into()))
    );
    assert_eq!(
        one(&ms, &p, &hint(b"x")),
        Decision::Refuse(Refusal::NoHint("x".into()))
    );
}

fn sticky_policy() -> Policy {
    Policy {
        sticky_cookie: Some(DEFAULT_STICKY_COOKIE.into()),
        ..Policy::default()
    }
}

#[test]
fn a_sticky_cookie_keeps_its_instance_while_in_rotation() {
    let ms = [up("a"), up("b"), m("c", Status::Down, &[])];
    let p = plan(&ms, sticky_policy());
    let with = |c: &'static [u8]| -> Decision {
        let cookies = [c];
        one(
            &ms,
            &p,
            &Keys {
                cookies: &cookies,
                ..Keys::default()
            },
        )
    };
    for _ in 0..3 {
        assert_eq!(with(b"x=1; xipgate-instance=b-8080"), pick(1, Via::Sticky));
    }
    // DOWN, gone, malformed or forged: chosen anew (and the cookie replaced).
    for c in [
        &b"xipgate-instance=c-8080"[..],
        b"xipgate-instance=gone-8080",
        b"xipgate-instance=B-8080",
        b"xipgate-instance=b 8080",
        b"xipgate-instance=b-8080\\",
        b"xipgate-instance=",
        b"\xff\xfe",
    ] {
        assert!(
            matches!(
                with(c),
                Decision::Pick {
                    via: Via::Rotation,
                    ..
                }
            ),
            "{c:?}"
        );
    }
    // The instanceId is not what the edge's cookie holds (labels only).
    assert!(matches!(
        with(b"xipgate-instance=b"),
        Decision::Pick {
            via: Via::Sticky,
            index: 1
        }
    ));
}

#[test]
fn spring_cookie_holds_an_instance_id() {
    let ms = [up("svc:10.0.0.1:8080"), up("svc:10.0.0.2:8080")];
    let p = plan(
        &ms,
        Policy {
            spring_cookie: true,
            ..Policy::default()
        },
    );
    let cookies: &[&[u8]] = &[b"sc-lb-instance-id=svc:10.0.0.2:8080"];
    let keys = Keys {
        cookies,
        ..Keys::default()
    };
    assert_eq!(one(&ms, &p, &keys), pick(1, Via::SpringCookie));
    let p = plan(&ms, Policy::default());
    assert!(matches!(
        one(&ms, &p, &keys),
        Decision::Pick {
            via: Via::Rotation,
            ..
        }
    ));
}

fn canary_policy(share_percent: u32) -> Policy {
    Policy {
        canary: Some(Canary {
            metadata: vec![("version".into(), "canary".into())],
            share: share_percent * SHARE_SCALE / 100,
            values: vec!["true".into()],
        }),
        canary_cookie: Some(DEFAULT_CANARY_COOKIE.into()),
        ..Policy::default()
    }
}

#[test]
fn a_canary_share_is_exact_and_spread() {
    let ms = [
        up("a"),
        up("b"),
        m("c", Status::Up, &[("version", "canary")]),
    ];
    let p = plan(&ms, canary_policy(25));
    assert_eq!(p.canaries(), &[2]);
    let picks = ids(&ms, &p, &Keys::default(), 100);
    assert_eq!(picks.iter().filter(|i| *i == "c").count(), 25);
    assert!(
        picks
            .chunks(4)
            .all(|c| c.iter().filter(|i| *i == "c").count() == 1),
        "{picks:?}"
    );
    // No share: canaries get only what asks for them.
    let p = plan(&ms, canary_policy(0));
    assert!(!ids(&ms, &p, &Keys::default(), 50).contains(&"c".to_string()));
    let keys = Keys {
        canary: Some(b" true"),
        ..Keys::default()
    };
    assert_eq!(ids(&ms, &p, &keys, 3), ["c", "c", "c"]);
    let cookies: &[&[u8]] = &[b"xipgate-canary=true"];
    assert_eq!(
        ids(
            &ms,
            &p,
            &Keys {
                cookies,
                ..Keys::default()
            },
            2
        ),
        ["c", "c"]
    );
    let keys = Keys {
        canary: Some(b"false"),
        ..Keys::default()
    };
    assert!(!ids(&ms, &p, &keys, 6).contains(&"c".to_string()));
}

#[test]
fn a_canary_without_instances_or_a_stable_group_without_any_falls_back() {
    let ms = [up("a"), m("c", Status::Down, &[("version", "canary")])];
    let p = plan(&ms, canary_policy(100));
    assert_eq!(ids(&ms, &p, &Keys::default(), 2), ["a", "a"]);
    let ms = [m("c", Status::Up, &[("version", "canary")])];
    let p = plan(&ms, canary_policy(0));
    assert_eq!(ids(&ms, &p, &Keys::default(), 2), ["c", "c"]);
}

#[test]
fn the_edge_zone_is_preferred_while_it_has_an_instance() {
    let policy = Policy {
        zone: Some("z1".into()),
        ..Policy::default()
    };
    let ms = [
        m("a", Status::Up, &[("zone", "z2")]),
        m("b", Status::Up, &[("zone", "z1")]),
        m("c", Status::Up, &[("zone", "z1")]),
    ];
    let p = plan(&ms, policy.clone());
    assert_eq!(ids(&ms, &p, &Keys::default(), 4), ["b", "c", "b", "c"]);
    let ms = [
        m("a", Status::Up, &[("zone", "z2")]),
        m("b", Status::Down, &[("zone", "z1")]),
    ];
    let p = plan(&ms, policy);
    assert_eq!(ids(&ms, &p, &Keys::default(), 2), ["a", "a"]);
}

fn passive_policy(failures: u32) -> Policy {
    Policy {
        passive: Some(Passive {
            consecutive_failures: failures,
            ..Passive::default()
        }),
        ..Policy::default()
    }
}

#[test]
fn passive_health_ejects_returns_and_never_empties_a_service() {
    let ms = [up("a"), up("b"), up("c"), up("d")];
    let p = plan(&ms, passive_policy(2));
    let fail = |i: usize, now: u64| p.observe(&ms, i, Outcome::ConnectFailed, now);
    assert!(!fail(0, 1000));
    assert!(fail(0, 1000), "two in a row");
    let at = |now: u64| -> Vec<String> {
        (0..6)
            .map(|_| match p.decide(&ms, &Keys::default(), || now) {
                Decision::Pick { index, .. } => ms[index].instance.instance_id.clone(),
                d => panic!("{d:?}"),
            })
            .collect()
    };
    assert!(!at(2000).contains(&"a".to_string()));
    // 50% at most: b goes too, c cannot.
    assert!(!fail(1, 1000) && fail(1, 1000));
    assert!(
        !fail(2, 1000) && !fail(2, 1000),
        "half of the service is out already"
    );
    let picks = at(2000);
    assert!(picks.iter().all(|i| i == "c" || i == "d"), "{picks:?}");
    // A pin to an ejected instance is refused, naming why.
    let keys = Keys {
        pin: Some(b"a"),
        ..Keys::default()
    };
    assert!(
        matches!(p.decide(&ms, &keys, || 2000), Decision::Refuse(Refusal::PinOut { ref why, .. }) if why.contains("ejected"))
    );
    // Thirty seconds later both are back.
    let later = 1000 + Duration::from_secs(30).as_millis() as u64;
    let picks = at(later);
    assert!(
        picks.contains(&"a".to_string()) && picks.contains(&"b".to_string()),
        "{picks:?}"
    );
    // A one-instance service never ejects its instance.
    let single = [up("x")];
    let p1 = plan(&single, passive_policy(1));
    assert!(!p1.observe(&single, 0, Outcome::ConnectFailed, 5));
}

#[test]
fn retries_go_round_from_the_failed_instance() {
    let ms = [
        up("a"),
        m("b", Status::Down, &[]),
        up("c"),
        weighted("d", "0"),
        up("e"),
    ];
    let p = plan(&ms, Policy::default());
    assert_eq!(p.retry(&ms, Some(0), |i| i == 0), Some(2));
    assert_eq!(p.retry(&ms, Some(2), |i| i == 0 || i == 2), Some(4));
    assert_eq!(
        p.retry(&ms, Some(4), |_| true),
        Some(0),
        "all tried: any in rotation"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Over any number of picks, each instance's count stays within one pick per
    /// instance of its weight's share (nginx's smooth order is that even), plus what
    /// fitting a long rotation into MAX_ROTATION moves.
    #[test]
    fn weights_converge_to_their_shares(
        units in proptest::collection::vec(0u32..=10_000, 1..8),
        n in 1usize..3000,
    ) {
        let ms: Vec<M> = units
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let mut x = up(&format!("i{i}"));
                x.weight = Weight { units: *u, problem: None };
                x
            })
            .collect();
        let p = plan(&ms, Policy::default());
        let total: u64 = units.iter().map(|&u| u64::from(u)).sum();
        prop_assume!(total > 0);
        let mut counts = vec![0usize; ms.len()];
        for _ in 0..n {
            match p.decide(&ms, &Keys::default(), || 1) {
                Decision::Pick { index, .. } => counts[index] += 1,
                d => prop_assert!(false, "{d:?}"),
            }
        }
        let k = ms.len() as f64;
        for (i, &u) in units.iter().enumerate() {
            let expected = n as f64 * u as f64 / total as f64;
            let tolerance = k + n as f64 * k / f64::from(MAX_ROTATION);
            prop_assert!(
                (counts[i] as f64 - expected).abs() <= tolerance,
                "instance {i}: {} picks, {expected:.1} expected (weights {units:?}, {n} picks)", counts[i]
            );
            if u == 0 {
                prop_assert_eq!(counts[i], 0);
            }
        }
    }

    /// With equal weights the order is the plain round robin's: instances in rotation,
    /// in instanceId order, one each in turn.
    #[test]
    fn equal_weights_keep_the_plain_order(
        statuses in proptest::collection::vec(proptest::bool::ANY, 1..10),
        w in 1u32..=100,
    ) {
        let ms: Vec<M> = statuses
            .iter()
            .enumerate()
            .map(|(i, &u)| {
                let mut x = m(&format!("i{i:02}"), if u { Status::Up } else { Status::Down }, &[]);
                x.weight = Weight { units: w * UNIT, problem: None };
                x
            })
            .collect();
        let p = plan(&ms, Policy::default());
        let order: Vec<usize> = (0..ms.len()).filter(|&i| statuses[i]).collect();
        for round in 0..3 * ms.len() {
            match p.decide(&ms, &Keys::default(), || 1) {
                Decision::Pick { index, .. } => prop_assert_eq!(index, order[round % order.len()]),
                Decision::Refuse(_) => prop_assert!(order.is_empty()),
            }
        }
    }

    /// A sticky cookie naming an instance in rotation (UP, routable, weight above zero,
    /// not ejected) always goes there, whatever else the request carries.
    #[test]
    fn sticky_never_leaves_a_healthy_instance(
        states in proptest::collection::vec((0u8..4, 0u32..3), 1..8),
        chosen in 0usize..8,
        canary in proptest::bool::ANY,
    ) {
        let ms: Vec<M> = states
            .iter()
            .enumerate()
            .map(|(i, &(s, w))| {
                let status = if s == 0 { Status::Down } else { Status::Up };
                let mut x = m(&format!("i{i}"), status, &[("version", if i % 2 == 0 { "canary" } else { "stable" })]);
                x.weight = Weight { units: w * UNIT, problem: None };
                x
            })
            .collect();
        let chosen = chosen % ms.len();
        let policy = Policy { sticky_cookie: Some("s".into()), ..canary_policy(50) };
        let p = plan(&ms, policy);
        let cookie = format!("s={}", ms[chosen].label);
        let cookies = [cookie.as_bytes()];
        let keys = Keys { cookies: &cookies, canary: canary.then_some(&b"true"[..]), ..Keys::default() };
        let d = p.decide(&ms, &keys, || 1);
        if p.in_rotation(chosen) {
            prop_assert_eq!(d, pick(chosen, Via::Sticky));
        } else {
            let sticky = matches!(d, Decision::Pick { via: Via::Sticky, .. });
            prop_assert!(!sticky, "{:?}", d);
        }
    }

    /// Whatever fails, passive health leaves at least one instance (and at most the
    /// configured share out), so a service with instances in rotation always answers.
    #[test]
    fn ejection_never_leaves_a_service_empty(
        n in 1usize..8,
        failures in proptest::collection::vec((0usize..8, 0u64..200_000), 0..200),
        percent in 0u32..=100,
    ) {
        let ms: Vec<M> = (0..n).map(|i| up(&format!("i{i}"))).collect();
        let policy = Policy {
            passive: Some(Passive { consecutive_failures: 1, max_ejected_percent: percent, ..Passive::default() }),
            ..Policy::default()
        };
        let p = plan(&ms, policy.clone());
        let passive = policy.passive.unwrap();
        let mut now = 1;
        for (i, dt) in failures {
            now += dt;
            p.observe(&ms, i % n, Outcome::ConnectFailed, now);
            let out = ms.iter().filter(|x| x.health.ejected(now)).count();
            prop_assert!(out <= passive.max_ejected(n) && out < n);
            match p.decide(&ms, &Keys::default(), || now) {
                Decision::Pick { index, .. } => prop_assert!(!ms[index].health.ejected(now)),
                d => prop_assert!(false, "{d:?}"),
            }
        }
    }
}
