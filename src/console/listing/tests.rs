use std::time::Duration;

use super::*;
use crate::console::api::tests::inst;
use crate::registry::Status;
use crate::routes::{Allowlist, RouteTable};

/// `services` services named svc-NNN, each with `per` instances pod-NNN-K at 10.0.N.K
/// (K = 1 is DOWN).
fn table(services: usize, per: usize) -> Vec<Arc<Service>> {
    let t = RouteTable::new(Allowlist::new(vec!["10.0.0.0/8".parse().unwrap()]));
    let mut all = Vec::new();
    for s in 0..services {
        for k in 0..per {
            let status = if k == 1 { Status::Down } else { Status::Up };
            all.push(inst(
                &format!("SVC-{s:03}"),
                &format!("pod-{s:03}-{k}"),
                &format!("10.{}.{}.{}", s / 256, s % 256, k % 256),
                status,
            ));
        }
    }
    t.apply(all);
    t.services()
}

fn q(query: &str) -> Query {
    Query::parse(query).unwrap()
}

fn names(l: &Listing) -> Vec<String> {
    l.services.iter().map(|s| s.service.label.clone()).collect()
}

#[test]
fn parses_and_names_bad_parameters() {
    let ok = q("q=Order+DOWN&sort=rps&page=3&open=a,b&open=c&service=x&limit=50&token=t");
    assert_eq!(ok.terms, vec!["order", "down"]);
    assert_eq!((ok.sort, ok.page, ok.limit), (Sort::Rps, 3, Some(50)));
    assert_eq!(ok.open.len(), 3);
    assert_eq!(ok.service.as_deref(), Some("x"));
    assert_eq!(q("").page, 1);
    assert_eq!(
        ok.href(),
        "/?q=Order+DOWN&service=x&sort=rps&page=3&open=a%2Cb%2Cc&limit=50&token=t"
    );
    assert_eq!(q("page=1&sort=name").href(), "/", "defaults are left out");
    for (bad, message) in [
        (
            "sort=fast",
            "query parameter 'sort' must be one of name, rps, errors, latency (got 'fast')",
        ),
        (
            "page=0",
            "query parameter 'page' must be a whole number from 1 (got '0')",
        ),
        (
            "page=two",
            "query parameter 'page' must be a whole number from 1 (got 'two')",
        ),
        (
            "limit=9999",
            "query parameter 'limit' may be at most 5000 (got 9999)",
        ),
    ] {
        assert_eq!(Query::parse(bad).unwrap_err().to_string(), message, "{bad}");
    }
}

#[test]
fn query_sizes_are_bounded_with_a_400_naming_the_bound() {
    let terms = |n: usize| format!("q={}", vec!["up"; n].join("+"));
    let labels = |n: usize| {
        format!(
            "open={}",
            (0..n)
                .map(|k| format!("svc-{k}"))
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let long = "x".repeat(MAX_Q_BYTES + 1);
    let label = "a".repeat(crate::names::MAX_LABEL_LEN + 1);
    // At the bounds: fine.
    for good in [
        terms(MAX_TERMS),
        format!("q={}", "x".repeat(MAX_Q_BYTES)),
        labels(MAX_OPEN),
        format!("service={}", "a".repeat(crate::names::MAX_LABEL_LEN)),
    ] {
        assert!(Query::parse(&good).is_ok(), "{good}");
    }
    for (bad, message) in [
        (
            terms(MAX_TERMS + 1),
            format!("query parameter 'q' may have at most {MAX_TERMS} terms (got 17)"),
        ),
        (
            // 20,000 terms: the request that took 2.4 s of CPU at 1,000 instances.
            terms(20_000),
            format!("query parameter 'q' may be at most {MAX_Q_BYTES} bytes (got 59999)"),
        ),
        (
            format!("q={long}"),
            format!("query parameter 'q' may be at most {MAX_Q_BYTES} bytes (got 257)"),
        ),
        (
            labels(MAX_OPEN + 1),
            format!("query parameter 'open' may name at most {MAX_OPEN} services (got 65)"),
        ),
        (
            // Counted over every `open` parameter of the request.
            format!("{}&open=other", labels(MAX_OPEN)),
            format!("query parameter 'open' may name at most {MAX_OPEN} services (got 65)"),
        ),
        (
            format!("open={label}"),
            "query parameter 'open' names labels of at most 63 bytes (got 64)".to_string(),
        ),
        (
            format!("token={}", "t".repeat(MAX_TOKEN_BYTES + 1)),
            format!("query parameter 'token' may be at most {MAX_TOKEN_BYTES} bytes (got 257)"),
        ),
        (
            format!("service={label}"),
            "query parameter 'service' names labels of at most 63 bytes (got 64)".to_string(),
        ),
    ] {
        let shown = &bad[..bad.len().min(40)];
        assert_eq!(
            Query::parse(&bad).unwrap_err().to_string(),
            message,
            "{shown}"
        );
    }
}

#[test]
fn a_small_registry_shows_every_instance() {
    let l = list(&table(3, 4), &Traffic::default(), &q(""));
    assert_eq!(
        (l.matched_services, l.matched_instances, l.pages),
        (3, 12, 1)
    );
    assert!(l.services.iter().all(|s| s.expanded && s.rows.len() == 4));
}

#[test]
fn a_large_registry_pages_services_folded() {
    let services = table(250, 3);
    let l = list(&services, &Traffic::default(), &q("page=3"));
    assert_eq!((l.page, l.pages, l.matched_instances), (3, 3, 750));
    assert_eq!(l.services.len(), 50);
    assert_eq!(l.services[0].service.label, "svc-200");
    assert!(l.services.iter().all(|s| !s.expanded && s.rows.is_empty()));
    assert_eq!(l.services[0].matching, 3, "counts without rows");
    // A page past the end shows the last one.
    assert_eq!(list(&services, &Traffic::default(), &q("page=99")).page, 3);
    // Opened by the user: that one unfolds.
    let l = list(&services, &Traffic::default(), &q("open=svc-001,nothing"));
    let open: Vec<_> = l.services.iter().filter(|s| s.expanded).collect();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].service.label, "svc-001");
    assert_eq!(open[0].rows.len(), 3);
}

#[test]
fn the_filter_matches_services_or_single_instances() {
    let services = table(250, 3);
    let traffic = Traffic::default();
    // One instance, by its address.
    let l = list(&services, &traffic, &q("q=10.0.123.2:8080"));
    assert_eq!((l.matched_services, l.matched_instances), (1, 1));
    assert_eq!(l.services[0].rows[0].label, "pod-123-2-8080");
    // Every term must occur: a service's name and an instance's status.
    let l = list(&services, &traffic, &q("q=svc-12+down"));
    assert_eq!(l.matched_instances, 10, "svc-120..129, one DOWN each");
    assert!(l.services.iter().all(|s| s.rows.len() == 1 && s.expanded));
    // A service name matches all of its instances.
    let l = list(&services, &traffic, &q("q=SVC-007"));
    assert_eq!((l.matched_services, l.matched_instances), (1, 3));
    assert!(list(&services, &traffic, &q("q=nothing-like-this"))
        .services
        .is_empty());
}

#[test]
fn rows_under_a_service_are_capped_and_its_own_view_pages_them() {
    let services = table(1, ROWS_PER_SERVICE + PAGE_INSTANCES + 10);
    let traffic = Traffic::default();
    let l = list(&services, &traffic, &q("q=svc"));
    let s = &l.services[0];
    assert_eq!(
        (s.rows.len(), s.more),
        (ROWS_PER_SERVICE, PAGE_INSTANCES + 10)
    );
    let own = list(&services, &traffic, &q("service=svc-000&page=2"));
    assert_eq!((own.page, own.pages), (2, 2));
    assert_eq!(own.services[0].rows.len(), ROWS_PER_SERVICE + 10);
    assert!(list(&services, &traffic, &q("service=elsewhere"))
        .services
        .is_empty());
}

#[test]
fn sorts_by_traffic_busiest_failing_slowest_first() {
    let services = table(4, 2);
    let traffic = Traffic::default();
    let hit = |svc: &str, pod: &str, n: usize, status: u16, ms: u64| {
        for _ in 0..n {
            traffic.record(svc, Some(pod), status, Some(Duration::from_millis(ms)));
        }
    };
    hit("svc-001", "pod-001-0-8080", 30, 200, 1);
    hit("svc-002", "pod-002-0-8080", 5, 503, 2);
    hit("svc-003", "pod-003-0-8080", 10, 200, 400);
    hit("svc-003", "pod-003-1-8080", 30, 200, 1);
    let order = |sort: &str| names(&list(&services, &traffic, &q(&format!("sort={sort}"))));
    assert_eq!(order("name"), ["svc-000", "svc-001", "svc-002", "svc-003"]);
    assert_eq!(order("rps"), ["svc-003", "svc-001", "svc-002", "svc-000"]);
    assert_eq!(
        order("errors"),
        ["svc-002", "svc-000", "svc-001", "svc-003"]
    );
    assert_eq!(
        order("latency"),
        ["svc-003", "svc-002", "svc-001", "svc-000"]
    );
    // Instances under a service follow the same order.
    let l = list(&services, &traffic, &q("sort=rps&service=svc-003"));
    let rows: Vec<_> = l.services[0]
        .rows
        .iter()
        .map(|t| t.label.as_str())
        .collect();
    assert_eq!(rows, ["pod-003-1-8080", "pod-003-0-8080"]);
}

proptest::proptest! {
    /// The field-by-field filter answers as a search of the whole row's text would: every
    /// term in "service-key label instanceId ip:port status zone source".
    #[test]
    fn the_filter_is_a_search_of_the_row_text(
        picks in proptest::collection::vec((0usize..12, 0usize..80, 1usize..12), 1..3),
        noise in "[a-z0-9.:-]{1,4}",
    ) {
        let services = table(3, 4);
        for s in &services {
            let key = service_key(s);
            for t in &s.instances {
                let i = &t.instance;
                let text = format!(
                    "{key} {} {} {}:{} {} {} {}",
                    t.label, i.instance_id, i.ip_addr, i.port.unwrap_or(0), i.status,
                    i.zone().unwrap_or(""), i.source
                )
                .to_lowercase();
                let mut terms: Vec<String> = picks
                    .iter()
                    .filter_map(|&(_, at, len)| {
                        let at = at % text.len();
                        text.get(at..(at + len).min(text.len()))
                            .map(|w| w.split(' ').next().unwrap_or("").to_string())
                            .filter(|w| !w.is_empty())
                    })
                    .collect();
                terms.push(noise.clone());
                let model = terms.iter().all(|w| text.contains(w.as_str()));
                proptest::prop_assert_eq!(
                    instance_matches(&terms, &key, t), model, "{:?} in {}", terms, text
                );
            }
        }
    }
}
