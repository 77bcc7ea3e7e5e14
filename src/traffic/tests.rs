use super::*;

#[test]
fn a_request_counts_for_its_service_and_its_instance() {
    let t = Traffic::default();
    t.record(
        "orders",
        Some("orders-1"),
        200,
        Some(Duration::from_millis(3)),
    );
    t.record("orders", Some("orders-2"), 503, None);
    t.record("orders", None, 503, None); // nothing to route to
    let s = t.summary(Kind::Service, "orders");
    assert_eq!((s.requests, s.errors), (3, 2));
    let one = t.summary(Kind::Instance, "orders-1");
    assert_eq!((one.requests, one.errors), (1, 0));
    assert!(one.p50_ms.is_some_and(|ms| (2.0..4.0).contains(&ms)));
    assert_eq!(t.summary(Kind::Instance, "orders-2").errors, 1);
    assert_eq!(t.summary(Kind::Instance, "unknown"), Summary::default());
    assert_eq!(t.series_count(), (1, 2));
}

#[test]
fn a_full_store_counts_what_it_cannot_keep() {
    let t = Traffic::with_limits(10, 2);
    for i in 0..5 {
        t.record("svc", Some(&format!("i-{i}")), 200, None);
    }
    // Every series has recent traffic: none is swept, three requests go untracked.
    assert_eq!(t.series_count(), (1, 2));
    assert_eq!(t.untracked(), 3);
    assert_eq!(t.summary(Kind::Service, "svc").requests, 5);
}

#[test]
fn views_have_a_point_per_step_even_without_traffic() {
    let t = Traffic::default();
    let v = t.view(Kind::Instance, "nobody");
    assert_eq!(v.rps.points.split(' ').count(), POINTS);
    assert_eq!(v.text.rps, "–");
    t.record("svc", Some("a"), 200, Some(Duration::from_millis(20)));
    let v = t.view(Kind::Instance, "a");
    assert_eq!(v.summary.requests, 1);
    assert!(v.rps.max > 0.0);
    assert!(v.text.latency.contains("ms"), "{}", v.text.latency);
}
