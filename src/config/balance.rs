//! `xipgate.balance`: how a service host chooses its instance (docs/steering.md), as
//! written in the file and checked into [`crate::balance::Balance`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Deserialize;

use super::validate::Checker;
use crate::balance::{
    Balance, Canary, Fallback, Passive, Policy, DEFAULT_CANARY_COOKIE, DEFAULT_CANARY_HEADER,
    DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_COUNT_5XX, DEFAULT_EJECTION, DEFAULT_HINT_HEADER,
    DEFAULT_MAX_EJECTED_PERCENT, DEFAULT_MAX_EJECTION, DEFAULT_PIN_HEADER, DEFAULT_STICKY_COOKIE,
    DEFAULT_WEIGHT_KEY, SHARE_SCALE,
};
use crate::names;

/// What a canary header or cookie must say, unless `values` says otherwise.
pub const DEFAULT_CANARY_VALUES: [&str; 1] = ["true"];

/// `xipgate.balance`: the names every service shares, then the defaults of every
/// service (each overridden per service under `services`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BalanceFile {
    /// The header that pins an instance by label or instanceId ("" turns pins off).
    pub pin_header: Option<String>,
    /// Spring Cloud LoadBalancer's hint header, matched against metadata `hint` ("" off).
    pub hint_header: Option<String>,
    /// The header whose value sends a request to the canaries.
    pub canary_header: Option<String>,
    /// The cookie a sticky service host sets.
    pub sticky_cookie: Option<String>,
    /// The cookie whose value sends a request to the canaries.
    pub canary_cookie: Option<String>,
    /// The edge's own zone: services prefer instances in it.
    pub zone: Option<String>,
    /// Per service (by name or host label): what differs from the defaults here.
    pub services: Option<BTreeMap<String, ServiceBalanceFile>>,
    // Every service's defaults: the keys of [`ServiceBalanceFile`] (written out, as
    // `deny_unknown_fields` does not work with `flatten`).
    pub sticky: Option<bool>,
    pub spring_cookie: Option<bool>,
    pub pin_fallback: Option<String>,
    pub weight_key: Option<String>,
    pub prefer_zone: Option<bool>,
    pub canary: Option<CanaryFile>,
    pub passive: Option<PassiveFile>,
}

impl BalanceFile {
    fn defaults(&self) -> ServiceBalanceFile {
        ServiceBalanceFile {
            sticky: self.sticky,
            spring_cookie: self.spring_cookie,
            pin_fallback: self.pin_fallback.clone(),
            weight_key: self.weight_key.clone(),
            prefer_zone: self.prefer_zone,
            canary: self.canary.clone(),
            passive: self.passive.clone(),
        }
    }
}

/// What each service may set for itself.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceBalanceFile {
    /// Set a cookie naming the instance and keep the session on it.
    pub sticky: Option<bool>,
    /// Read Spring Cloud LoadBalancer's `sc-lb-instance-id` cookie too.
    pub spring_cookie: Option<bool>,
    /// A pin or hint nothing in rotation answers to: `answer` (503) or `balance`.
    pub pin_fallback: Option<String>,
    /// The metadata key of an instance's weight.
    pub weight_key: Option<String>,
    /// Prefer instances in `xipgate.balance.zone` (default: on when a zone is set).
    pub prefer_zone: Option<bool>,
    pub canary: Option<CanaryFile>,
    pub passive: Option<PassiveFile>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryFile {
    /// An instance is a canary when its metadata has all these pairs.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Percent of the requests without other keys sent to canaries (two decimals).
    pub share: Option<f64>,
    /// Canary header or cookie values that send a request to canaries.
    pub values: Option<Vec<String>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveFile {
    /// On when the section is there, unless false.
    pub enabled: Option<bool>,
    pub consecutive_failures: Option<u32>,
    pub count_5xx: Option<bool>,
    pub ejection: Option<String>,
    pub max_ejection: Option<String>,
    pub max_ejected_percent: Option<u32>,
}

impl PassiveFile {
    /// `self` with `over`'s keys laid over it.
    fn merged(&self, over: &PassiveFile) -> PassiveFile {
        PassiveFile {
            enabled: over.enabled.or(self.enabled),
            consecutive_failures: over.consecutive_failures.or(self.consecutive_failures),
            count_5xx: over.count_5xx.or(self.count_5xx),
            ejection: over.ejection.clone().or_else(|| self.ejection.clone()),
            max_ejection: over
                .max_ejection
                .clone()
                .or_else(|| self.max_ejection.clone()),
            max_ejected_percent: over.max_ejected_percent.or(self.max_ejected_percent),
        }
    }
}

impl ServiceBalanceFile {
    /// The service's own keys over the defaults (`passive` key by key).
    fn over(&self, d: &ServiceBalanceFile) -> ServiceBalanceFile {
        let passive = match (&d.passive, &self.passive) {
            (Some(a), Some(b)) => Some(a.merged(b)),
            (a, b) => b.clone().or_else(|| a.clone()),
        };
        ServiceBalanceFile {
            sticky: self.sticky.or(d.sticky),
            spring_cookie: self.spring_cookie.or(d.spring_cookie),
            pin_fallback: self.pin_fallback.clone().or_else(|| d.pin_fallback.clone()),
            weight_key: self.weight_key.clone().or_else(|| d.weight_key.clone()),
            prefer_zone: self.prefer_zone.or(d.prefer_zone),
            canary: self.canary.clone().or_else(|| d.canary.clone()),
            passive,
        }
    }
}

/// A header name, lower-case; `None` when turned off with "".
fn header(c: &mut Checker, key: &str, raw: Option<&String>, default: &str) -> Option<String> {
    let raw = raw.map_or(default, |s| s.trim());
    if raw.is_empty() {
        return None;
    }
    match http::HeaderName::from_bytes(raw.as_bytes()) {
        Ok(n) => Some(n.as_str().to_string()),
        Err(_) => {
            c.err(key, format!("'{raw}' is not a header name"));
            None
        }
    }
}

/// A cookie name (an RFC 6265 token).
fn cookie(c: &mut Checker, key: &str, raw: Option<&String>, default: &str) -> String {
    let raw = raw.map_or(default, |s| s.trim());
    let token = !raw.is_empty()
        && raw
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if !token {
        c.err(key, format!("'{raw}' is not a cookie name"));
        return default.to_string();
    }
    raw.to_string()
}

struct Shared {
    sticky_cookie: String,
    canary_cookie: String,
    zone: Option<String>,
    pins: bool,
}

fn passive(c: &mut Checker, key: &str, p: &PassiveFile) -> Option<Passive> {
    if p.enabled == Some(false) {
        return None;
    }
    let failures = p
        .consecutive_failures
        .unwrap_or(DEFAULT_CONSECUTIVE_FAILURES);
    if failures == 0 {
        c.err(&format!("{key}.consecutive_failures"), "must be at least 1");
    }
    let percent = p.max_ejected_percent.unwrap_or(DEFAULT_MAX_EJECTED_PERCENT);
    if percent > 100 {
        c.err(
            &format!("{key}.max_ejected_percent"),
            format!("{percent} is more than 100"),
        );
    }
    let ejection = c.duration(
        &format!("{key}.ejection"),
        p.ejection.as_ref(),
        DEFAULT_EJECTION,
    );
    let max_ejection: Duration = c.duration(
        &format!("{key}.max_ejection"),
        p.max_ejection.as_ref(),
        DEFAULT_MAX_EJECTION.max(ejection),
    );
    if max_ejection < ejection {
        c.err(
            &format!("{key}.max_ejection"),
            "is shorter than the first ejection (ejection)",
        );
    }
    Some(Passive {
        consecutive_failures: failures.max(1),
        count_5xx: p.count_5xx.unwrap_or(DEFAULT_COUNT_5XX),
        ejection,
        max_ejection: max_ejection.max(ejection),
        max_ejected_percent: percent.min(100),
    })
}

fn canary(c: &mut Checker, key: &str, f: &CanaryFile) -> Option<Canary> {
    let metadata: Vec<(String, String)> =
        f.metadata.clone().unwrap_or_default().into_iter().collect();
    if metadata.is_empty() {
        c.err(
            &format!("{key}.metadata"),
            "names no metadata: which instances are canaries (e.g. version: canary)?",
        );
        return None;
    }
    let share = f.share.unwrap_or(0.0);
    if !(0.0..=100.0).contains(&share) {
        c.err(
            &format!("{key}.share"),
            format!("{share} is not a percentage from 0 to 100"),
        );
    }
    let values = f.values.clone().unwrap_or_else(|| {
        DEFAULT_CANARY_VALUES
            .iter()
            .map(|s| s.to_string())
            .collect()
    });
    if values.iter().any(|v| v.trim().is_empty()) {
        c.err(
            &format!("{key}.values"),
            "an empty value would match every request",
        );
    }
    Some(Canary {
        metadata,
        share: (share.clamp(0.0, 100.0) * f64::from(SHARE_SCALE) / 100.0).round() as u32,
        values: values.iter().map(|v| v.trim().to_string()).collect(),
    })
}

fn policy(c: &mut Checker, key: &str, f: &ServiceBalanceFile, shared: &Shared) -> Policy {
    let fallback = match f.pin_fallback.as_deref().map(str::trim) {
        None | Some("answer") => Fallback::Answer,
        Some("balance") => Fallback::Balance,
        Some(other) => {
            c.err(
                &format!("{key}.pin_fallback"),
                format!("'{other}' must be answer (503 naming the pin) or balance"),
            );
            Fallback::Answer
        }
    };
    let weight_key = f
        .weight_key
        .as_deref()
        .map_or(DEFAULT_WEIGHT_KEY, str::trim);
    if weight_key.is_empty() {
        c.err(&format!("{key}.weight_key"), "must name a metadata key");
    }
    let canary = f
        .canary
        .as_ref()
        .and_then(|k| canary(c, &format!("{key}.canary"), k));
    Policy {
        weight_key: weight_key.to_string(),
        sticky_cookie: f
            .sticky
            .unwrap_or(false)
            .then(|| shared.sticky_cookie.clone()),
        spring_cookie: f.spring_cookie.unwrap_or(false),
        pins: shared.pins,
        fallback,
        zone: shared
            .zone
            .clone()
            .filter(|_| f.prefer_zone.unwrap_or(true)),
        canary_cookie: canary.as_ref().map(|_| shared.canary_cookie.clone()),
        canary,
        passive: f
            .passive
            .as_ref()
            .and_then(|p| passive(c, &format!("{key}.passive"), p)),
    }
}

/// Checks `xipgate.balance`; every problem is named with its key.
pub(super) fn check_balance(c: &mut Checker, f: Option<&BalanceFile>) -> Balance {
    let default_file = BalanceFile::default();
    let f = f.unwrap_or(&default_file);
    const KEY: &str = "xipgate.balance";
    let pin_header = header(
        c,
        &format!("{KEY}.pin_header"),
        f.pin_header.as_ref(),
        DEFAULT_PIN_HEADER,
    );
    let hint_header = header(
        c,
        &format!("{KEY}.hint_header"),
        f.hint_header.as_ref(),
        DEFAULT_HINT_HEADER,
    );
    let canary_header = header(
        c,
        &format!("{KEY}.canary_header"),
        f.canary_header.as_ref(),
        DEFAULT_CANARY_HEADER,
    );
    let zone = f.zone.as_deref().map(str::trim);
    if zone == Some("") {
        c.err(
            &format!("{KEY}.zone"),
            "is empty: leave it out for no zone preference",
        );
    }
    let shared = Shared {
        sticky_cookie: cookie(
            c,
            &format!("{KEY}.sticky_cookie"),
            f.sticky_cookie.as_ref(),
            DEFAULT_STICKY_COOKIE,
        ),
        canary_cookie: cookie(
            c,
            &format!("{KEY}.canary_cookie"),
            f.canary_cookie.as_ref(),
            DEFAULT_CANARY_COOKIE,
        ),
        zone: zone.filter(|z| !z.is_empty()).map(String::from),
        pins: pin_header.is_some(),
    };
    let defaults = f.defaults();
    let default = policy(c, KEY, &defaults, &shared);
    let mut services = HashMap::new();
    for (name, own) in f.services.iter().flatten() {
        let label = names::service_label(name);
        let key = format!("{KEY}.services.{name}");
        if label.is_empty() {
            c.err(&key, "names no service");
            continue;
        }
        if services.contains_key(&label) {
            c.err(&key, format!("names the service '{label}' again"));
            continue;
        }
        let p = policy(c, &key, &own.over(&defaults), &shared);
        services.insert(label, p);
    }
    let any_canary =
        default.canary.is_some() || services.values().any(|p: &Policy| p.canary.is_some());
    Balance::new(
        pin_header,
        hint_header,
        // Looked for only when some service has canaries.
        canary_header.filter(|_| any_canary),
        default,
        services,
    )
}

#[cfg(test)]
mod tests;
