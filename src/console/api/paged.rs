//! The API's lists, a page at a time: `?limit=` (default [`API_LIMIT`], at most
//! [`API_LIMIT_MAX`]), `?page=` (from 1), `?q=` (the console's filter) and `?sort=`
//! (`name`, `rps`, `errors`, `latency`). Every list answer says `total`, `page`, `pages`
//! and `next` (the next page's URL, or null), and sends the next page as a `Link:
//! <…>; rel="next"` header too. What a page holds comes from [`listing`], as on the
//! console page.

use serde_json::{json, Map, Value};

use super::{instance_json, json_answer, service_json};
use crate::answer::Answer;
use crate::console::listing::{self, Query, API_LIMIT, API_LIMIT_MAX};
use crate::console::{Console, Links};
use crate::routes::Service;
use crate::traffic::Kind;

const _: () = assert!(API_LIMIT <= API_LIMIT_MAX);

/// The paging fields, and the answer with its `Link` header.
fn paged(path: &str, query: &Query, total: usize, mut body: Value) -> Answer {
    let limit = query.limit.unwrap_or(API_LIMIT);
    let pages = total.div_ceil(limit).max(1);
    let page = query.page.min(pages);
    let next = (page < pages).then(|| {
        let mut q = query.clone();
        q.page = page + 1;
        q.limit = Some(limit);
        // Which services are unfolded changes no list answer: not repeated.
        q.open.clear();
        format!("{path}?{}", q.query_string())
    });
    body["total"] = json!(total);
    body["page"] = json!(page);
    body["pages"] = json!(pages);
    body["limit"] = json!(limit);
    body["next"] = json!(next);
    let answer = json_answer(200, &body);
    match next.and_then(|n| http::HeaderValue::from_str(&format!("<{n}>; rel=\"next\"")).ok()) {
        Some(link) => answer.header("link", link),
        None => answer,
    }
}

fn with_limit(query: &Query) -> Query {
    let mut q = query.clone();
    q.limit = Some(query.limit.unwrap_or(API_LIMIT));
    q
}

/// `/api/v1/services`: services (without their instances), with their traffic summary.
pub fn services(console: &Console, links: &Links, query: &Query) -> Answer {
    let q = with_limit(query);
    let table = console.table.services();
    let l = listing::list(&table, &console.traffic, &q);
    let services: Vec<Value> = l
        .services
        .iter()
        .map(|s| {
            let mut v = service_json(console, &s.service, links);
            if !q.terms.is_empty() {
                v["instances_matching"] = json!(s.matching);
            }
            v["traffic"] = json!(s.summary);
            v
        })
        .collect();
    paged(
        "/api/v1/services",
        &q,
        l.matched_services,
        json!({ "services": services }),
    )
}

/// `/api/v1/services/{name}`: the service and a page of its instances.
pub fn service(console: &Console, links: &Links, s: &Service, query: &Query) -> Answer {
    let mut q = with_limit(query);
    q.service = Some(s.label.clone());
    let table = console.table.services();
    let l = listing::list(&table, &console.traffic, &q);
    let mut body = service_json(console, s, links);
    body["traffic"] = json!(console.traffic.summary(Kind::Service, &s.label));
    let listed = l.services.first();
    body["instances"] = Value::Array(
        listed
            .map(|l| {
                l.rows
                    .iter()
                    .map(|t| instance_json(console, t, links))
                    .collect()
            })
            .unwrap_or_default(),
    );
    let path = format!("/api/v1/services/{}", s.label);
    // The service is in the path; the query string need not say it again.
    q.service = None;
    paged(&path, &q, l.matched_instances, body)
}

/// `/api/v1/instances`: instances across services.
pub fn instances(console: &Console, links: &Links, query: &Query) -> Answer {
    let q = with_limit(query);
    let table = console.table.services();
    let (rows, total) = listing::instances(&table, &console.traffic, &q);
    let instances: Vec<Value> = rows
        .iter()
        .map(|t| {
            let mut v = instance_json(console, t, links);
            v["traffic"] = json!(console.traffic.summary(Kind::Instance, &t.label));
            v
        })
        .collect();
    paged(
        "/api/v1/instances",
        &q,
        total,
        json!({ "instances": instances }),
    )
}

/// `/api/v1/traffic`: the charts of exactly the rows the console page shows for the same
/// parameters, keyed `s:<service label>` and `i:<instance label>`.
pub fn traffic(console: &Console, query: &Query) -> Answer {
    let table = console.table.services();
    let l = listing::list(&table, &console.traffic, query);
    let mut series = Map::new();
    for s in &l.services {
        let view = console.traffic.view(Kind::Service, &s.service.label);
        series.insert(format!("s:{}", s.service.label), json!(view));
        for t in &s.rows {
            let view = console.traffic.view(Kind::Instance, &t.label);
            series.insert(format!("i:{}", t.label), json!(view));
        }
    }
    let (services, instances) = console.traffic.series_count();
    json_answer(
        200,
        &json!({
            "step_seconds": crate::traffic::STEP_SECS,
            "points": crate::traffic::POINTS,
            "series": series,
            "kept": { "services": services, "instances": instances },
            "untracked_requests": console.traffic.untracked(),
        }),
    )
}
