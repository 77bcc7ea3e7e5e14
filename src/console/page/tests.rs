//! The console page rendered from a routing table built in code: no sockets.

use super::*;
use crate::console::api::tests::{console_with, inst};

fn html(console: &Console, query: &str) -> String {
    let a = render(
        console,
        &console.links.for_request(None, false),
        query,
        None,
    );
    assert_eq!(
        (a.status, a.content_type),
        (200, "text/html; charset=utf-8")
    );
    String::from_utf8(a.body.to_vec()).unwrap()
}

fn sample() -> Console {
    let mut odd = inst("ORDER-SERVICE", "order-3", "10.0.0.3", Status::OutOfService);
    odd.instance_id = "<b>order-3</b>".into();
    odd.secure_port = Some(8443);
    console_with(Some(vec![
        inst("ORDER-SERVICE", "order-1", "10.0.0.1", Status::Up),
        inst("ORDER-SERVICE", "order-2", "10.0.0.2", Status::Down),
        odd,
        inst("EVIL", "evil-1", "8.8.8.8", Status::Up),
    ]))
}

#[test]
fn shows_services_instances_links_and_markers() {
    let page = html(&sample(), "");
    for needle in [
        "<title>xipgate · 2 services · 4 instances</title>",
        r#"<a href="http://order-service.edge.test:8080/">order-service.edge.test:8080</a>"#,
        r#"<a href="http://order-1-8080.edge.test:8080/">order-1-8080</a>"#,
        r#"<a href="http://order-1-8080.edge.test:8080/actuator/health">health</a>"#,
        r#"<a href="http://order-1-8080.edge.test:8080/actuator/info">status</a>"#,
        r#"<span class="st down">DOWN</span>"#,
        r#"<span class="st out_of_service">OUT_OF_SERVICE 1</span>"#,
        "Not proxied: address 8.8.8.8 is outside upstream.allow",
        r#"<span class="st blocked">BLOCKED</span>"#,
        "nothing to route to",
        "TLS 8443",
        "zone-a",
        "&#60;b&#62;order-3&#60;/b&#62;",
        "http://127.0.0.1:9/eureka",
    ] {
        assert!(page.contains(needle), "missing {needle}");
    }
    assert!(!page.contains("<b>order-3"), "values are escaped");
    assert!(
        !page.contains("class=\"banner"),
        "no banner for a loaded registry"
    );
    assert!(
        !page.contains("<link") && !page.contains("src="),
        "no external assets"
    );
}

#[test]
fn q_filters_on_the_server_and_prefills_the_box() {
    let page = html(&sample(), "q=ORDER+down&token=s3cret-token");
    assert!(page.contains(r#"value="ORDER down""#));
    assert!(page.contains(r#"<input type="hidden" name="token" value="s3cret-token">"#));
    assert!(page.contains("1 of 4 instances match"));
    // Only the matching row is on the page at all, and only its service.
    assert_eq!(page.matches(r#"<tr class="i "#).count(), 1, "{page}");
    assert!(page.contains(r#"<a href="http://order-2-8080.edge.test:8080/">order-2-8080</a>"#));
    assert!(!page.contains("EVIL"));
    // Links keep the view (and the token), changing only what they change.
    assert!(page
        .contains(r#"href="/?q=ORDER+down&#38;sort=rps&#38;token=s3cret-token" data-sort="rps""#));
    assert!(html(&sample(), "q=nothing-like-this").contains("Nothing matches"));
}

#[test]
fn traffic_is_drawn_per_service_and_instance() {
    let console = sample();
    for _ in 0..4 {
        console.traffic.record(
            "order-service",
            Some("order-1-8080"),
            502,
            Some(std::time::Duration::from_millis(30)),
        );
    }
    let page = html(&console, "");
    for cell in [
        r#"data-t="s:order-service" data-m="rps""#,
        r#"data-t="i:order-1-8080" data-m="errors""#,
        r#"data-t="i:order-2-8080" data-m="latency""#,
    ] {
        assert!(page.contains(cell), "{cell}");
    }
    assert!(page.contains(r#"<span class="tv">100.0%</span>"#), "errors");
    assert!(
        page.contains(r#"<td class="t errors bad" data-t="i:order-1-8080""#),
        "a failing instance stands out"
    );
    assert!(page.contains(r#"<td class="t errors" data-t="i:order-2-8080""#));
    let idle = crate::traffic::Traffic::default().view(crate::traffic::Kind::Instance, "x");
    let busy = console
        .traffic
        .view(crate::traffic::Kind::Instance, "order-1-8080");
    assert!(page.contains(&format!(r#"points="{}""#, busy.rps.points)));
    assert!(page.contains(&format!(r#"points="{}""#, idle.rps.points)));
    assert_ne!(busy.rps.points, idle.rps.points);
}

#[test]
fn a_large_registry_is_a_small_page() {
    let instances: Vec<_> = (0..3000)
        .map(|k| {
            inst(
                &format!("SVC-{:03}", k / 10),
                &format!("pod-{k}"),
                &format!("10.0.{}.{}", k / 250, k % 250),
                Status::Up,
            )
        })
        .collect();
    let console = console_with(Some(instances));
    let page = html(&console, "");
    assert_eq!(
        page.matches(r#"<tr class="svc""#).count(),
        100,
        "a page of services"
    );
    assert_eq!(page.matches(r#"<tr class="i "#).count(), 0, "folded");
    assert!(page.contains("Services 1–100 of 300"));
    assert!(page.contains(r#"href="/?page=2" rel="next""#));
    let open = html(&console, "open=svc-007");
    assert_eq!(open.matches(r#"<tr class="i "#).count(), 10);
    let one = html(&console, "service=svc-299");
    assert_eq!(one.matches(r#"<tr class="svc""#).count(), 1);
    assert!(one.contains("all services"));
    let a = render(
        &console,
        &console.links.for_request(None, false),
        "service=nope",
        None,
    );
    assert_eq!(a.status, 404);
    let a = render(
        &console,
        &console.links.for_request(None, false),
        "sort=fast",
        None,
    );
    assert_eq!(a.status, 400);
}

#[test]
fn banners_for_never_loaded_stale_and_empty() {
    assert!(html(&console_with(Some(vec![])), "").contains("No services are registered"));
    let page = html(&console_with(None), "");
    assert!(page.contains("class=\"banner error\"") && page.contains("never been loaded"));
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("<title>⚠ xipgate"));

    let mut s = SyncStatus {
        last_success: Some(SystemTime::now()),
        consecutive_failures: 3,
        ..SyncStatus::default()
    };
    let b = banner(&s, true).unwrap();
    assert_eq!(b.level, "warn");
    assert!(
        b.text.contains("stale") && b.text.contains("3 attempts"),
        "{}",
        b.text
    );
    s.held_since = Some(SystemTime::now());
    s.held_instances = 7;
    let held = banner(&s, true).unwrap().text;
    assert!(
        held.contains("fewer than half") && held.contains("7 missing instances are still routed"),
        "{held}"
    );
    assert!(banner(&SyncStatus::default(), true).is_none());
}

#[test]
fn ages_read_well() {
    let ago = |s| age(SystemTime::now() - std::time::Duration::from_secs(s));
    assert_eq!(
        [ago(5), ago(600), ago(10_800), ago(400_000)],
        ["5s ago", "10m ago", "3h ago", "4d ago"]
    );
}

/// Links repeat the view, but of the unfolded services only those on the page: a long
/// `open` list (or one naming services on other pages) is not copied into every link.
#[test]
fn links_keep_only_the_open_services_on_the_page() {
    // 150 services of 3: folded (more than EXPAND_ALL instances), 100 on page 1.
    let many: Vec<_> = (0..450)
        .map(|k| {
            inst(
                &format!("SVC-{:03}", k / 3),
                &format!("pod-{k:03}"),
                &format!("10.0.{}.{}", k / 250, k % 250),
                Status::Up,
            )
        })
        .collect();
    let console = console_with(Some(many));
    let page = html(&console, "open=svc-001,svc-120,svc-140");
    assert!(
        !page.contains("svc-120") && !page.contains("svc-140"),
        "services on page 2 are not repeated on page 1"
    );
    // svc-001 stays open: its rows are shown, and the links that keep it say so.
    assert!(page.contains(r#"href="http://pod-003-8080.edge.test:8080/""#));
    assert!(
        page.contains(r#"href="/?sort=rps&#38;open=svc-001""#),
        "{page}"
    );
    // The pager's next page does not carry this page's open services.
    assert!(page.contains(r#"<a href="/?page=2" rel="next">"#), "{page}");
}

#[test]
fn the_page_says_open_or_shows_a_lock_per_service_and_instance() {
    let open = html(&sample(), "");
    assert!(
        open.contains("open: no rules, anyone who reaches the edge reaches every pod"),
        "{open}"
    );
    assert!(!open.contains("class=\"lock"), "an open edge has no locks");

    let mut c = sample();
    c.policy = std::sync::Arc::new(crate::access::Policy {
        rules: vec![crate::access::Rule {
            name: "staff-only".into(),
            matcher: Default::default(),
            grant: crate::access::Grant {
                authenticated: true,
                ..Default::default()
            },
        }],
        login: true,
        ..Default::default()
    });
    c.access_summary = "1 rule; login at https://idp.test (cookie _xipgate)".into();
    let page = html(&c, "");
    assert!(page.contains("1 rule; login at https://idp.test"), "{page}");
    // Two services and four instances, each with its lock naming the rule.
    assert_eq!(
        page.matches("<span class=\"lock unauthorized\"").count(),
        6,
        "{page}"
    );
    assert!(page.contains(">staff-only</span>"));
    assert!(page.contains("Needs: an identity shown by a session from the login"));
}
