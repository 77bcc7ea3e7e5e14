//! Traffic steering for both engines: a request's keys in, the instance of each try out
//! (`balance::Plan` decides), the sticky cookie back, and what each try came to fed to
//! passive health.

use std::net::SocketAddr;
use std::sync::Arc;

use super::rules::RouteKind;
use super::ProxyShared;
use crate::answer::Answer;
use crate::balance::{self, Keys, Outcome, Refusal, Via};
use crate::routes::{Route, Target};

/// How a request was steered: kept for all of its tries.
#[derive(Debug, Default, Clone)]
pub struct Steer {
    /// The first try's instance (service hosts).
    first: Option<Arc<Target>>,
    /// Pinned: every try goes to `first`, with an instance host's retry rule.
    pinned: bool,
    /// Sticky is on: the instance the request's cookie named (when it was in rotation).
    /// An answer from any other instance sets the cookie.
    sticky: Option<Option<Arc<Target>>>,
}

impl Steer {
    /// Whether the tries follow a service host's or an instance host's rules.
    pub fn kind(&self, route: &Route) -> RouteKind {
        if self.pinned {
            RouteKind::Instance
        } else {
            RouteKind::of(route)
        }
    }

    /// The `Set-Cookie` value for an answer from `served`, when sticky is on and the
    /// request's cookie did not already name it (absent, forged, gone, or a retry went
    /// elsewhere).
    pub fn set_cookie(&self, route: &Route, served: &Target, tls: bool) -> Option<String> {
        let named = self.sticky.as_ref()?;
        if named.as_deref().is_some_and(|t| std::ptr::eq(t, served)) {
            return None;
        }
        let Route::Service(s) = route else {
            return None;
        };
        let name = s.plan().policy().sticky_cookie.as_deref()?;
        Some(balance::set_cookie(name, &served.label, tls))
    }
}

/// Steers a request on `route` with `keys`: the instance of its first try, or the 503
/// that names a pin or hint nothing in rotation answers to.
pub fn steer(route: &Route, keys: &Keys<'_>) -> Result<Steer, Answer> {
    let Route::Service(s) = route else {
        return Ok(Steer::default());
    };
    match s.decide(keys) {
        Ok((t, via)) => {
            let sticky = s
                .plan()
                .policy()
                .sticky_cookie
                .is_some()
                .then(|| (via == Via::Sticky).then(|| t.clone()));
            Ok(Steer {
                pinned: via == Via::Pin,
                first: Some(t),
                sticky,
            })
        }
        Err(Refusal::NoneUp) => Err(Answer::text(503, route.none_up()).retry_after(5)),
        Err(r) => {
            let header = match r {
                Refusal::NoHint(_) => "hint",
                _ => "pin",
            };
            Err(Answer::text(
                503,
                format!(
                    "service '{}': {r} (the request's {header} header; docs/steering.md)",
                    s.app
                ),
            ))
        }
    }
}

/// The instance for the next try of a request on `route`, given the addresses tried.
/// (The first try takes its instance out of `steer`: no reference count moves twice.)
pub fn pick_target(route: &Route, steer: &mut Steer, tried: &[SocketAddr]) -> Option<Arc<Target>> {
    let s = match route {
        Route::Instance(t) => return Some(t.clone()),
        Route::Service(s) => s,
    };
    if steer.pinned {
        return steer.first.clone();
    }
    match tried.last() {
        None => steer.first.take().or_else(|| s.next()),
        // A retry leaves the round robin alone (`balance::Plan::retry`).
        Some(&last) => s.retry(Some(last), tried),
    }
}

/// Counts what a try at `target` came to for passive health (service hosts only: an
/// instance host reaches its instance whatever its health).
pub fn observe(shared: &ProxyShared, route: &Route, target: &Target, outcome: Outcome) {
    if let Route::Service(s) = route {
        if s.observe(target, outcome) {
            shared.metrics.count_ejection(&s.label);
            log::warn!(
                "passive health: instance {} of {} is out of the service host's rotation for a while after failing (docs/steering.md)",
                target.instance.instance_id,
                s.app
            );
        }
    }
}

/// Pingora's engine: the keys of a request's headers (`cookies`: its `Cookie` values,
/// when the service reads cookies).
pub fn header_keys<'a>(
    balance: &crate::balance::Balance,
    headers: &'a http::HeaderMap,
    cookies: &'a [&'a [u8]],
) -> Keys<'a> {
    let get = |name: &Option<String>| {
        name.as_deref()
            .and_then(|n| headers.get(n))
            .map(|v| v.as_bytes())
    };
    Keys {
        pin: get(&balance.pin_header),
        hint: get(&balance.hint_header),
        canary: get(&balance.canary_header),
        cookies,
    }
}
