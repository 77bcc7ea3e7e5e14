//! Which services and instances one view shows: filtered, sorted and paged on the
//! server, so the page and the answers stay small at any registry size. The page, the
//! JSON API and the page's live traffic all ask this one function, so they cannot
//! disagree on what a filter matches or what a page holds.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::names::MAX_LABEL_LEN;
use crate::routes::{Service, Target};
use crate::traffic::{Kind, Summary, Traffic};

/// Services per page of the console.
pub const PAGE_SERVICES: usize = 100;
/// Instances per page of one service's own view (`?service=`).
pub const PAGE_INSTANCES: usize = 500;
/// Instance rows shown under one service in the list (the rest are a link away).
pub const ROWS_PER_SERVICE: usize = 100;
/// A registry (or a filter's result) of at most this many instances shows them all
/// unfolded, as a small registry always has.
pub const EXPAND_ALL: usize = 300;
/// The JSON API's page size when `limit` is not given, and the largest it may ask for.
pub const API_LIMIT: usize = 500;
pub const API_LIMIT_MAX: usize = 5_000;
/// The filter's terms at most: its cost is terms × instances, paid on every request.
pub const MAX_TERMS: usize = 16;
/// The filter's length at most, in bytes (as decoded).
pub const MAX_Q_BYTES: usize = 256;
/// Services a view may name as unfolded (`open`) at most: every link on the page repeats
/// them (only those on the page, see `page::render`).
pub const MAX_OPEN: usize = 64;
/// `?token=` at most, in bytes (`xipgate.console.token` is held to the same bound).
pub const MAX_TOKEN_BYTES: usize = crate::config::MAX_CONSOLE_TOKEN_LEN;

/// How a view is ordered: by name, or the busiest, the most failing or the slowest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sort {
    #[default]
    Name,
    Rps,
    Errors,
    Latency,
}

impl Sort {
    pub const ALL: [(&'static str, Sort); 4] = [
        ("name", Sort::Name),
        ("rps", Sort::Rps),
        ("errors", Sort::Errors),
        ("latency", Sort::Latency),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("name", |(n, _)| n)
    }

    /// Busier, more failing or slower first; `None` when equal (then by name).
    fn order(self, a: &Summary, b: &Summary) -> std::cmp::Ordering {
        let desc = |x: f64, y: f64| y.total_cmp(&x);
        match self {
            Sort::Name => std::cmp::Ordering::Equal,
            Sort::Rps => desc(a.rps, b.rps),
            Sort::Errors => desc(a.error_ratio, b.error_ratio).then(b.errors.cmp(&a.errors)),
            Sort::Latency => desc(a.p99_ms.unwrap_or(0.0), b.p99_ms.unwrap_or(0.0)),
        }
    }
}

/// A query parameter the console cannot use, named.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum QueryError {
    #[error("query parameter 'sort' must be one of name, rps, errors, latency (got '{0}')")]
    Sort(String),
    #[error("query parameter '{0}' must be a whole number from 1 (got '{1}')")]
    Number(&'static str, String),
    #[error("query parameter 'limit' may be at most {API_LIMIT_MAX} (got {0})")]
    Limit(usize),
    #[error("query parameter 'q' may be at most {MAX_Q_BYTES} bytes (got {0})")]
    FilterLength(usize),
    #[error("query parameter 'q' may have at most {MAX_TERMS} terms (got {0})")]
    Terms(usize),
    #[error("query parameter 'open' may name at most {MAX_OPEN} services (got {0})")]
    Open(usize),
    #[error("query parameter 'token' may be at most {MAX_TOKEN_BYTES} bytes (got {0})")]
    Token(usize),
    #[error("query parameter '{0}' names labels of at most {MAX_LABEL_LEN} bytes (got {1})")]
    Label(&'static str, usize),
}

/// What a view asks for: `?q=&sort=&page=&open=&service=&limit=`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Query {
    /// The filter's terms, lower case; every one must occur.
    pub terms: Vec<String>,
    /// The filter as typed.
    pub q: String,
    pub sort: Sort,
    /// 1-based.
    pub page: usize,
    /// Services unfolded by the user (labels).
    pub open: BTreeSet<String>,
    /// One service's own view: its instances, paged.
    pub service: Option<String>,
    /// Page size the API asked for.
    pub limit: Option<usize>,
    /// `?token=`, kept in the page's links so they work without a header.
    pub token: Option<String>,
}

impl Query {
    pub fn parse(query: &str) -> Result<Query, QueryError> {
        let mut out = Query {
            page: 1,
            ..Query::default()
        };
        for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
            let number = |name: &'static str| match v.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(QueryError::Number(name, crate::names::printable(&v))),
            };
            match &*k {
                "q" => {
                    if v.len() > MAX_Q_BYTES {
                        return Err(QueryError::FilterLength(v.len()));
                    }
                    let terms: Vec<String> = v
                        .to_lowercase()
                        .split_whitespace()
                        .map(String::from)
                        .collect();
                    if terms.len() > MAX_TERMS {
                        return Err(QueryError::Terms(terms.len()));
                    }
                    out.q = v.to_string();
                    out.terms = terms;
                }
                "sort" => {
                    out.sort = Sort::ALL
                        .iter()
                        .find(|(n, _)| *n == v.trim())
                        .map(|(_, s)| *s)
                        .ok_or_else(|| QueryError::Sort(crate::names::printable(&v)))?;
                }
                "page" => out.page = number("page")?,
                "limit" => {
                    let n = number("limit")?;
                    if n > API_LIMIT_MAX {
                        return Err(QueryError::Limit(n));
                    }
                    out.limit = Some(n);
                }
                "open" => {
                    for label in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        if label.len() > MAX_LABEL_LEN {
                            return Err(QueryError::Label("open", label.len()));
                        }
                        out.open.insert(label.to_string());
                        // Counted as they come, so a long list stops at the bound.
                        if out.open.len() > MAX_OPEN {
                            let named = v.split(',').filter(|s| !s.trim().is_empty()).count();
                            return Err(QueryError::Open(out.open.len().max(named)));
                        }
                    }
                }
                "service" if !v.trim().is_empty() => {
                    let label = v.trim();
                    if label.len() > MAX_LABEL_LEN {
                        return Err(QueryError::Label("service", label.len()));
                    }
                    out.service = Some(label.to_string());
                }
                "token" if v.len() > MAX_TOKEN_BYTES => return Err(QueryError::Token(v.len())),
                "token" => out.token = Some(v.to_string()),
                _ => {}
            }
        }
        Ok(out)
    }
}

impl Query {
    /// The console page's link for this view (defaults left out).
    pub fn href(&self) -> String {
        match self.query_string() {
            s if s.is_empty() => "/".to_string(),
            s => format!("/?{s}"),
        }
    }

    /// This view's parameters as a query string (defaults left out).
    pub fn query_string(&self) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if !self.q.is_empty() {
            q.append_pair("q", &self.q);
        }
        if let Some(s) = &self.service {
            q.append_pair("service", s);
        }
        if self.sort != Sort::Name {
            q.append_pair("sort", self.sort.as_str());
        }
        if self.page > 1 {
            q.append_pair("page", &self.page.to_string());
        }
        if !self.open.is_empty() {
            let open: Vec<&str> = self.open.iter().map(String::as_str).collect();
            q.append_pair("open", &open.join(","));
        }
        if let Some(l) = self.limit {
            q.append_pair("limit", &l.to_string());
        }
        if let Some(t) = &self.token {
            q.append_pair("token", t);
        }
        q.finish()
    }
}

/// What the filter matches for a service (lower case).
pub fn service_key(s: &Service) -> String {
    format!("{} {}", s.app, s.label).to_lowercase()
}

/// `needle` (lower case) occurs in `hay`, ignoring ASCII case, without allocating.
fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// Whether one filter term (lower case, no whitespace) occurs in what the filter reads of
/// an instance: its label, instanceId, `ip:port`, status, zone and source. A term has no
/// space, so it cannot span two of them: each is searched alone, with no string built
/// (at 100,000 instances the filter runs once per instance per request).
fn instance_has(t: &Target, term: &str) -> bool {
    let i = &t.instance;
    let fields = [
        t.label.as_str(),
        i.instance_id.as_str(),
        i.ip_addr.as_str(),
        i.status.as_str(),
        i.zone().unwrap_or(""),
        &*i.source,
    ];
    if fields.iter().any(|f| contains_ci(f, term)) {
        return true;
    }
    // `ip:port`: the ip alone is searched above; the rest is the port, or a term that
    // runs from the ip's end over the colon into the port.
    let Some(port) = i.port else {
        return false;
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    match term.split_once(':') {
        None => digits(term) && port.to_string().contains(term),
        Some((left, right)) => {
            digits(right)
                && i.ip_addr.to_ascii_lowercase().ends_with(left)
                && port.to_string().starts_with(right)
        }
    }
}

fn matches(terms: &[String], text: &str) -> bool {
    terms.iter().all(|t| text.contains(t.as_str()))
}

/// Every term occurs in the service's key or in the instance.
fn instance_matches(terms: &[String], service_key: &str, t: &Target) -> bool {
    terms
        .iter()
        .all(|term| service_key.contains(term.as_str()) || instance_has(t, term))
}

/// One service in a view.
pub struct Listed {
    pub service: Arc<Service>,
    pub summary: Summary,
    /// Its instances the filter matches.
    pub matching: usize,
    /// Whether its rows are shown.
    pub expanded: bool,
    /// The rows shown (matching, sorted, at most a page).
    pub rows: Vec<Arc<Target>>,
    /// Matching instances not among `rows`.
    pub more: usize,
}

/// A service the filter matches, before paging.
struct Found {
    service: Arc<Service>,
    rows: Vec<Arc<Target>>,
    /// Known when the view is sorted by traffic (else read for the page's services only).
    summary: Option<Summary>,
}

/// A view: the services on this page and what the whole filtered list holds.
pub struct Listing {
    pub services: Vec<Listed>,
    pub matched_services: usize,
    pub matched_instances: usize,
    pub page: usize,
    pub pages: usize,
}

fn pages(n: usize, per: usize) -> usize {
    n.div_ceil(per).max(1)
}

fn sort_targets(rows: &mut [Arc<Target>], sort: Sort, traffic: &Traffic) {
    if sort == Sort::Name {
        return; // the table's order
    }
    let mut keyed: Vec<(Summary, Arc<Target>)> = rows
        .iter()
        .map(|t| (traffic.summary(Kind::Instance, &t.label), t.clone()))
        .collect();
    keyed.sort_by(|(a, x), (b, y)| sort.order(a, b).then_with(|| x.label.cmp(&y.label)));
    for (slot, (_, t)) in rows.iter_mut().zip(keyed) {
        *slot = t;
    }
}

/// The view `query` asks for over `services` (the table's, in name order).
pub fn list(services: &[Arc<Service>], traffic: &Traffic, query: &Query) -> Listing {
    // Every service the filter matches, with its matching instances.
    let mut found: Vec<Found> = services
        .iter()
        .filter(|s| query.service.as_deref().is_none_or(|l| s.label == l))
        .filter_map(|s| {
            let key = service_key(s);
            let all = query.terms.is_empty() || matches(&query.terms, &key);
            let rows: Vec<Arc<Target>> = if all {
                s.instances.clone()
            } else {
                s.instances
                    .iter()
                    .filter(|t| instance_matches(&query.terms, &key, t))
                    .cloned()
                    .collect()
            };
            (all || !rows.is_empty()).then(|| Found {
                summary: (query.sort != Sort::Name)
                    .then(|| traffic.summary(Kind::Service, &s.label)),
                service: s.clone(),
                rows,
            })
        })
        .collect();
    let matched_services = found.len();
    let matched_instances = found.iter().map(|f| f.rows.len()).sum();
    if query.sort != Sort::Name {
        found.sort_by(|a, b| {
            query
                .sort
                .order(
                    &a.summary.unwrap_or_default(),
                    &b.summary.unwrap_or_default(),
                )
                .then_with(|| a.service.label.cmp(&b.service.label))
        });
    }

    let one = query.service.is_some();
    let per = query
        .limit
        .unwrap_or(if one { PAGE_INSTANCES } else { PAGE_SERVICES });
    let total_pages = if one {
        pages(matched_instances, per)
    } else {
        pages(matched_services, per)
    };
    let page = query.page.min(total_pages);
    let skip = (page - 1) * per;
    let on_page = found
        .into_iter()
        .skip(if one { 0 } else { skip })
        .take(if one { 1 } else { per });
    let small = matched_instances <= EXPAND_ALL;
    let listed = on_page
        .map(
            |Found {
                 service,
                 mut rows,
                 summary,
             }| {
                let matching = rows.len();
                let expanded =
                    one || small || !query.terms.is_empty() || query.open.contains(&service.label);
                if expanded {
                    sort_targets(&mut rows, query.sort, traffic);
                }
                let rows: Vec<Arc<Target>> = match (expanded, one) {
                    (false, _) => Vec::new(),
                    (true, true) => rows.into_iter().skip(skip).take(per).collect(),
                    (true, false) => rows.into_iter().take(ROWS_PER_SERVICE).collect(),
                };
                let more = if one {
                    0
                } else {
                    matching - rows.len().min(matching)
                };
                Listed {
                    more: if expanded { more } else { 0 },
                    summary: summary
                        .unwrap_or_else(|| traffic.summary(Kind::Service, &service.label)),
                    service,
                    matching,
                    expanded,
                    rows,
                }
            },
        )
        .collect();
    Listing {
        services: listed,
        matched_services,
        matched_instances,
        page,
        pages: total_pages,
    }
}

/// Every instance the filter matches, across services, in `query.sort` order (by label
/// for `name`), a page of `query.limit` (or [`API_LIMIT`]): the page and how many match.
pub fn instances(
    services: &[Arc<Service>],
    traffic: &Traffic,
    query: &Query,
) -> (Vec<Arc<Target>>, usize) {
    let mut all: Vec<Arc<Target>> = services
        .iter()
        .flat_map(|s| {
            let key = service_key(s);
            let whole = query.terms.is_empty() || matches(&query.terms, &key);
            s.instances
                .iter()
                .filter(move |t| whole || instance_matches(&query.terms, &key, t))
                .cloned()
        })
        .collect();
    if query.sort == Sort::Name {
        all.sort_by(|a, b| a.label.cmp(&b.label));
    } else {
        sort_targets(&mut all, query.sort, traffic);
    }
    let total = all.len();
    let per = query.limit.unwrap_or(API_LIMIT);
    let page = query.page.min(pages(total, per));
    let rows = all.into_iter().skip((page - 1) * per).take(per).collect();
    (rows, total)
}

#[cfg(test)]
mod tests;
