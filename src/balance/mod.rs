//! Traffic steering on a service host: which instance a request goes to.
//!
//! One decision for both engines ([`Plan::decide`]), a pure function of the service's
//! instances (status, weight, metadata, zone), the request's keys ([`Keys`]: pin header,
//! hint header, sticky cookie, canary header or cookie), the passive-health state
//! ([`Health`]) and the service's [`Policy`] (`xipgate.balance`, docs/steering.md). In
//! order: a pin names one instance (or answers 503 naming it), a hint picks the instances
//! whose metadata `hint` matches, a sticky cookie keeps a session on its instance while it
//! is in rotation, and everything else follows the smooth weighted round robin of the
//! canary or the stable group, in the edge's zone when it has an instance there.
//!
//! The plain case costs what the round robin always cost: one atomic increment on a
//! precomputed rotation, no lock, no allocation.

mod health;
mod plan;
mod sticky;
mod weight;

pub use health::{
    now_ms, wall_time, Health, Outcome, Passive, DEFAULT_CONSECUTIVE_FAILURES, DEFAULT_COUNT_5XX,
    DEFAULT_EJECTION, DEFAULT_MAX_EJECTED_PERCENT, DEFAULT_MAX_EJECTION,
};
pub use plan::{Decision, Plan, Refusal, Via};
pub use sticky::{set_cookie, valid_label, SPRING_COOKIE};
pub use weight::{smooth_sequence, Weight, WeightProblem, MAX_ROTATION, MAX_WEIGHT, UNIT};

use std::collections::HashMap;
use std::sync::Arc;

use crate::instance::Instance;

/// The request header that pins an instance by label or instanceId.
pub const DEFAULT_PIN_HEADER: &str = "x-xipgate-instance";
/// Spring Cloud LoadBalancer's hint header, matched against metadata [`HINT_KEY`].
pub const DEFAULT_HINT_HEADER: &str = "x-sc-lb-hint";
/// The metadata key a hint is matched against (Spring Cloud LoadBalancer's).
pub const HINT_KEY: &str = "hint";
/// The cookie the edge sets on a sticky service host.
pub const DEFAULT_STICKY_COOKIE: &str = "xipgate-instance";
/// The header whose value sends a request to a service's canaries.
pub const DEFAULT_CANARY_HEADER: &str = "x-xipgate-canary";
/// The cookie whose value sends a request to a service's canaries.
pub const DEFAULT_CANARY_COOKIE: &str = "xipgate-canary";
/// Where a Nacos instance's own weight is kept (`registry::nacos`).
pub const NACOS_WEIGHT_KEY: &str = "nacos.weight";
/// The metadata key an instance's weight is read from.
pub const DEFAULT_WEIGHT_KEY: &str = "weight";
/// A canary share is given in percent with two decimals: basis points.
pub const SHARE_SCALE: u32 = 10_000;

/// What a pin or hint that names nothing in rotation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// 503, naming the pin (default: never silently elsewhere).
    #[default]
    Answer,
    /// The request is balanced as if it had no pin.
    Balance,
}

/// The canary rule of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canary {
    /// An instance is a canary when its metadata has all these pairs.
    pub metadata: Vec<(String, String)>,
    /// The share of requests without other keys sent to canaries, in basis points.
    pub share: u32,
    /// Values of the canary header or cookie that send a request to canaries.
    pub values: Vec<String>,
}

impl Canary {
    pub fn matches(&self, instance: &Instance) -> bool {
        self.metadata
            .iter()
            .all(|(k, v)| instance.metadata.get(k) == Some(v.as_str()))
    }
}

/// How one service host chooses its instance (`xipgate.balance` and its `services`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub weight_key: String,
    /// The cookie set and read when sticky is on.
    pub sticky_cookie: Option<String>,
    /// Spring Cloud LoadBalancer's `sc-lb-instance-id` cookie (an instanceId) is read too.
    pub spring_cookie: bool,
    /// Pins are looked up (a pin header is configured).
    pub pins: bool,
    pub fallback: Fallback,
    /// The edge's zone, when this service prefers it.
    pub zone: Option<String>,
    pub canary: Option<Canary>,
    /// The canary cookie's name (with a canary rule).
    pub canary_cookie: Option<String>,
    pub passive: Option<Passive>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            weight_key: DEFAULT_WEIGHT_KEY.to_string(),
            sticky_cookie: None,
            spring_cookie: false,
            pins: true,
            fallback: Fallback::Answer,
            zone: None,
            canary: None,
            canary_cookie: None,
            passive: None,
        }
    }
}

impl Policy {
    /// The instance's weight: a Nacos instance's own (kept as metadata
    /// [`NACOS_WEIGHT_KEY`]), else its metadata under this policy's key.
    pub fn weight_of(&self, instance: &Instance) -> Weight {
        let m = &instance.metadata;
        Weight::parse(m.get(NACOS_WEIGHT_KEY).or_else(|| m.get(&self.weight_key)))
    }

    /// True when a request's cookies may matter.
    pub fn reads_cookies(&self) -> bool {
        self.sticky_cookie.is_some() || self.spring_cookie || self.canary_cookie.is_some()
    }
}

/// `xipgate.balance`, checked: the header names (the same for every service, so both
/// engines find them before the host is routed) and each service's policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// Lower-case header names; `None` when turned off.
    pub pin_header: Option<String>,
    pub hint_header: Option<String>,
    pub canary_header: Option<String>,
    /// The sticky cookie's name, when some service is sticky: it is taken out of the
    /// request before it reaches any backend.
    pub sticky_cookie: Option<String>,
    /// Some service reads cookies: the fast path captures the `Cookie` header.
    pub reads_cookies: bool,
    default: Arc<Policy>,
    /// By service label.
    services: HashMap<String, Arc<Policy>>,
}

impl Default for Balance {
    fn default() -> Self {
        Balance::new(
            Some(DEFAULT_PIN_HEADER.to_string()),
            Some(DEFAULT_HINT_HEADER.to_string()),
            None,
            Policy::default(),
            HashMap::new(),
        )
    }
}

impl Balance {
    /// Header names lower-case; `services` by service label.
    pub fn new(
        pin_header: Option<String>,
        hint_header: Option<String>,
        canary_header: Option<String>,
        default: Policy,
        services: HashMap<String, Policy>,
    ) -> Self {
        let services: HashMap<String, Arc<Policy>> = services
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        let all = || std::iter::once(&default).chain(services.values().map(|p| &**p));
        let sticky_cookie = all().find_map(|p| p.sticky_cookie.clone());
        let reads_cookies = all().any(Policy::reads_cookies);
        Balance {
            pin_header,
            hint_header,
            canary_header,
            sticky_cookie,
            reads_cookies,
            default: Arc::new(default),
            services,
        }
    }

    /// Services with a policy of their own, by label.
    pub fn services(&self) -> impl Iterator<Item = (&str, &Arc<Policy>)> {
        self.services.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The policy of the service with this label.
    pub fn policy(&self, service_label: &str) -> &Arc<Policy> {
        self.services.get(service_label).unwrap_or(&self.default)
    }
}

/// What of a request steers it (each as the client sent it; absent when not sent).
#[derive(Debug, Clone, Copy, Default)]
pub struct Keys<'a> {
    pub pin: Option<&'a [u8]>,
    pub hint: Option<&'a [u8]>,
    pub canary: Option<&'a [u8]>,
    /// The `Cookie` header values.
    pub cookies: &'a [&'a [u8]],
}

impl Keys<'_> {
    /// No key at all: the plain round robin decides.
    pub fn is_empty(&self) -> bool {
        self.pin.is_none()
            && self.hint.is_none()
            && self.canary.is_none()
            && self.cookies.is_empty()
    }
}

/// An instance as the decision sees it (the routing table's target).
pub trait Member {
    fn instance(&self) -> &Instance;
    /// The primary host label: what the sticky cookie holds.
    fn label(&self) -> &str;
    /// Its address may be proxied (inside `upstream.allow`).
    fn routable(&self) -> bool;
    fn weight(&self) -> Weight;
    fn health(&self) -> &Health;
}

#[cfg(test)]
mod tests;
