//! Table tests of the routing table: labels, diffs, rotation, refusals.

use super::*;

fn inst(app: &str, id: &str, ip: &str, status: Status) -> Instance {
    Instance {
        last_renewal_ms: Some(1).into(),
        ..Instance::for_test(app, id, ip, status)
    }
}

fn table() -> RouteTable {
    RouteTable::new(Allowlist::new(vec!["10.0.0.0/8".parse().unwrap()]))
}

#[test]
fn colliding_labels_become_unique_and_stable() {
    let t = table();
    // "pod:a:8080" and "pod:8080" both make the label "pod-8080".
    t.apply(vec![
        inst("A", "pod:a:8080", "10.0.0.1", Status::Up),
        inst("A", "pod:8080", "10.0.0.2", Status::Up),
    ]);
    let labels: Vec<String> = t.instances().iter().map(|x| x.label.clone()).collect();
    assert_ne!(labels[0], labels[1]);
    assert!(
        labels
            .iter()
            .all(|l| l.starts_with("pod-8080-") && l.len() <= 63),
        "{labels:?}"
    );
    // The same registry in the other order gives the same labels.
    let t2 = table();
    t2.apply(vec![
        inst("A", "pod:8080", "10.0.0.2", Status::Up),
        inst("A", "pod:a:8080", "10.0.0.1", Status::Up),
    ]);
    let labels2: Vec<String> = t2.instances().iter().map(|x| x.label.clone()).collect();
    assert_eq!(labels, labels2);
}

#[test]
fn apply_touches_only_what_changed() {
    let t = table();
    let r = t.apply(vec![
        inst("A", "a1", "10.0.0.1", Status::Up),
        inst("A", "a2", "10.0.0.2", Status::Up),
    ]);
    assert_eq!((r.added, r.removed, r.changed), (2, 0, 0));
    let Some(Route::Instance(before)) = t.lookup("a1") else {
        panic!("a1 routes")
    };

    // A lease renewal alone keeps the entry (same Arc) and updates the timestamp.
    let mut renewed = inst("A", "a1", "10.0.0.1", Status::Up);
    renewed.last_renewal_ms = Some(99).into();
    let r = t.apply(vec![renewed, inst("A", "a2", "10.0.0.2", Status::Down)]);
    assert_eq!((r.added, r.removed, r.changed), (0, 0, 1));
    assert_eq!(
        r.status_changes,
        vec![("a2".to_string(), Status::Up, Status::Down)]
    );
    let Some(Route::Instance(after)) = t.lookup("a1") else {
        panic!("a1 routes")
    };
    assert!(Arc::ptr_eq(&before, &after));
    assert_eq!(after.last_renewal_ms.load(Ordering::Relaxed), 99);

    let r = t.apply(vec![inst("A", "a2", "10.0.0.2", Status::Down)]);
    assert_eq!((r.added, r.removed), (0, 1));
    assert!(t.lookup("a1").is_none());
    let Some(Route::Service(s)) = t.lookup("a") else {
        panic!("service routes")
    };
    assert!(!s.has_eligible(), "a DOWN instance is not in rotation");
}

#[test]
fn weights_interleave_in_rotation() {
    let t = table();
    let mut heavy = inst("S", "h", "10.0.0.1", Status::Up);
    heavy.metadata.insert("weight".into(), "3".into());
    t.apply(vec![heavy, inst("S", "l", "10.0.0.2", Status::Up)]);
    let Some(Route::Service(s)) = t.lookup("s") else {
        panic!()
    };
    let picks: Vec<String> = (0..8)
        .map(|_| s.next().unwrap().instance.instance_id.clone())
        .collect();
    assert_eq!(picks.iter().filter(|p| *p == "h").count(), 6, "{picks:?}");
    assert!(
        picks.windows(4).all(|w| w.iter().any(|p| p == "l")),
        "never starved: {picks:?}"
    );
}

#[test]
fn refused_addresses_are_kept_but_not_routed() {
    let t = table();
    t.apply(vec![
        inst("S", "x", "8.8.8.8", Status::Up),
        inst("S", "y", "not-an-ip", Status::Up),
    ]);
    let Some(Route::Instance(x)) = t.lookup("x") else {
        panic!()
    };
    assert!(matches!(x.upstream, Err(Refusal::NotAllowed(_))));
    let Some(Route::Instance(y)) = t.lookup("y") else {
        panic!()
    };
    assert!(matches!(y.upstream, Err(Refusal::NotAnIp(_))));
    let Some(Route::Service(s)) = t.lookup("s") else {
        panic!()
    };
    assert!(!s.has_eligible());
}

/// Which instanceId a host label reaches: `i:<id>` for an instance, `s:<app>` for a
/// service, `-` for nothing.
fn reaches(t: &RouteTable, label: &str) -> String {
    match t.lookup(label) {
        Some(Route::Instance(x)) => format!("i:{}", x.instance.instance_id),
        Some(Route::Service(s)) => format!("s:{}", s.app),
        None => "-".to_string(),
    }
}

#[test]
fn the_first_holder_of_a_name_keeps_it_over_time() {
    // a and b both make the label pod-8080; app's service label is pod-8080 too.
    let a = || inst("A", "pod:a:8080", "10.0.0.1", Status::Up);
    let b = || inst("B", "pod:8080", "10.0.0.2", Status::Up);
    let app = || inst("POD-8080", "x1", "10.0.0.3", Status::Up);
    // Each case: registry copies applied one after the other, then what `pod-8080` reaches.
    let cases: Vec<(&str, Vec<Vec<Instance>>, &str)> = vec![
        ("a alone", vec![vec![a()]], "i:pod:a:8080"),
        ("a, then b", vec![vec![a()], vec![a(), b()]], "i:pod:a:8080"),
        (
            "a, then b listed first",
            vec![vec![a()], vec![b(), a()]],
            "i:pod:a:8080",
        ),
        ("b, then a", vec![vec![b()], vec![a(), b()]], "i:pod:8080"),
        (
            "a, then b, a stays over refreshes",
            vec![vec![a()], vec![a(), b()], vec![b(), a()]],
            "i:pod:a:8080",
        ),
        (
            "a gone: b takes the name",
            vec![vec![a()], vec![a(), b()], vec![b()]],
            "i:pod:8080",
        ),
        (
            "an instance, then an app named like it",
            vec![vec![a()], vec![a(), app()]],
            "i:pod:a:8080",
        ),
        (
            "an app, then an instance named like it",
            vec![vec![app()], vec![app(), a()]],
            "s:POD-8080",
        ),
        (
            "both at once: the service",
            vec![vec![a(), app()]],
            "s:POD-8080",
        ),
    ];
    for (what, copies, want) in cases {
        let t = table();
        for copy in copies {
            t.apply(copy);
        }
        assert_eq!(reaches(&t, "pod-8080"), want, "{what}");
    }
}

#[test]
fn a_newcomer_that_cannot_have_its_name_is_still_reachable() {
    let t = table();
    t.apply(vec![inst("A", "pod:a:8080", "10.0.0.1", Status::Up)]);
    t.apply(vec![
        inst("A", "pod:a:8080", "10.0.0.1", Status::Up),
        inst("B", "pod:8080", "10.0.0.2", Status::Up),
        inst("POD-8080", "x1", "10.0.0.3", Status::Up),
    ]);
    let labels: HashMap<String, String> = t
        .instances()
        .iter()
        .map(|x| (x.instance.instance_id.clone(), x.label.clone()))
        .collect();
    assert_eq!(labels["pod:a:8080"], "pod-8080");
    let b = &labels["pod:8080"];
    assert!(b.starts_with("pod-8080-"), "{b}");
    assert_eq!(reaches(&t, b), "i:pod:8080");
    // The app named like the instance gets a unique service label of its own.
    let s = t
        .services()
        .into_iter()
        .find(|s| s.app == "POD-8080")
        .expect("the service is listed");
    assert_ne!(s.label, "pod-8080");
    assert!(s.label.starts_with("pod-8080-"), "{}", s.label);
    assert_eq!(reaches(&t, &s.label), "s:POD-8080");
}

#[test]
fn routes_list_the_actuator_bases_of_the_instances_they_reach() {
    let t = table();
    let mut custom = inst("A", "a1", "10.0.0.1", Status::Up);
    custom.health_check_url = Some("http://10.0.0.1:8080/manage/health".into());
    custom.status_page_url = Some("http://10.0.0.1:8080/manage/info".into());
    let plain = inst("A", "a2", "10.0.0.2", Status::Up);
    let mut nacos = inst("B", "b1", "10.0.0.3", Status::Up);
    nacos
        .metadata
        .insert("management.endpoints.web.base-path".into(), "/ops".into());
    t.apply(vec![custom.clone(), plain.clone(), nacos]);
    let bases = |label: &str| t.lookup(label).map(|r| r.actuator_bases().to_vec());
    assert_eq!(bases("a1"), Some(vec!["/manage".to_string()]));
    assert_eq!(bases("a2"), Some(vec!["/actuator".to_string()]));
    assert_eq!(bases("b1"), Some(vec!["/ops".to_string()]));
    // The service host may reach either instance of A: both bases.
    assert_eq!(
        bases("a"),
        Some(vec!["/actuator".to_string(), "/manage".to_string()])
    );

    // A re-registration with another base is a changed route.
    custom.health_check_url = Some("http://10.0.0.1:8080/admin/health".into());
    custom.status_page_url = None;
    let r = t.apply(vec![custom, plain]);
    assert_eq!(r.changed, 1);
    assert_eq!(bases("a1"), Some(vec!["/admin".to_string()]));
    assert_eq!(
        bases("a"),
        Some(vec!["/actuator".to_string(), "/admin".to_string()])
    );
}

/// The pool sweep's address set is every instance's upstream, as `instances()` gives them.
#[test]
fn upstream_addrs_are_the_instances_upstreams() {
    let t = table();
    t.apply(vec![
        inst("order", "o1", "10.0.0.1", Status::Up),
        inst("order", "o2", "10.0.0.2", Status::Down),
        inst("user", "u1", "10.0.0.3", Status::Up),
    ]);
    let from_instances: HashSet<SocketAddr> = t
        .instances()
        .iter()
        .filter_map(|i| i.upstream.as_ref().ok().copied())
        .collect();
    assert_eq!(from_instances.len(), 3);
    assert_eq!(t.upstream_addrs(), from_instances);
}
