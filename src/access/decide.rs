//! The one decision both engines take for every proxied request: which rule applies and
//! whether the request passes it. Pure: the engines gather the [`Facts`] and whatever
//! credentials the rule asks for ([`Presented`]), and act on the [`Decision`].

use std::net::IpAddr;

use super::actuator::{self, Need};
use super::path;
use super::rules::{Grant, Rule};
use super::Identity;

/// The access policy, as the proxy holds it.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub rules: Vec<Rule>,
    /// The operators' group of the built-in actuator policy; `None`: the policy is off.
    pub actuator_operators: Option<Vec<String>>,
    /// A login is configured: browsers are sent to it rather than answered 401.
    pub login: bool,
    /// Basic credentials are checked; the realm for `WWW-Authenticate`.
    pub basic_realm: Option<String>,
    /// Bearer tokens are checked.
    pub bearer: bool,
}

/// What is known of a request before any credential is looked at.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub domain: &'a str,
    pub service: &'a str,
    /// The instance label on an instance host.
    pub instance: Option<&'a str>,
    /// The request target's path, without the query, as the client sent it.
    pub path: &'a str,
    pub method: &'a str,
    /// After `trusted_proxies` (see [`super::client_address`]).
    pub client: IpAddr,
    /// A browser loading a page (may be sent to the login rather than answered 401).
    pub page_load: bool,
    /// The actuator base paths of the route's instances (see [`super::actuator_bases`];
    /// `routes::Route::actuator_bases` lists them).
    pub actuator_bases: &'a [String],
}

/// The credentials a request showed, looked at only when its rule needs an identity.
#[derive(Debug, Clone)]
pub enum Presented {
    Nothing,
    Identity(Identity),
    /// Credentials were shown and are bad: why (named for the client).
    Refused(String),
    /// A session cookie that does not open (tampered, foreign, sealed under a key since
    /// rotated out): a browser is sent to the login, which replaces it, rather than left
    /// with a 401 until the cookie expires; anyone else gets 401 with why.
    BadSession(String),
}

/// Which rule decided: a configured one by name, or a built-in one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleRef {
    Configured(String),
    /// The built-in actuator policy, for this endpoint.
    Actuator(String),
    /// No rule matched (refused once any rule exists).
    NoMatch,
    /// The path could be read differently by a backend.
    Path,
}

impl RuleRef {
    pub fn name(&self) -> String {
        match self {
            RuleRef::Configured(n) => n.clone(),
            RuleRef::Actuator(e) => format!("actuator:{e}"),
            RuleRef::NoMatch => "no-rule".into(),
            RuleRef::Path => "ambiguous-path".into(),
        }
    }

    /// [`RuleRef::name`] as a metric label: bounded by the configuration (an actuator
    /// endpoint Spring Boot does not define, which any client can name, is `actuator:other`).
    pub fn label(&self) -> std::borrow::Cow<'_, str> {
        match self {
            RuleRef::Configured(n) => std::borrow::Cow::Borrowed(n),
            RuleRef::Actuator(e) if !actuator::known(e) => "actuator:other".into(),
            other => other.name().into(),
        }
    }
}

/// The rule of a [`Decision::BadPath`].
static PATH_RULE: RuleRef = RuleRef::Path;

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// No rules are configured: the edge is open.
    Open,
    Allow {
        rule: RuleRef,
        who: Option<Identity>,
    },
    /// 403 with why.
    Deny { rule: RuleRef, why: String },
    /// 400: an ambiguous path where a path rule applies.
    BadPath { why: &'static str },
    /// A browser: send it to the login.
    SignIn { rule: RuleRef },
    /// 401 with `WWW-Authenticate` (bearer and/or basic).
    Unauthorized {
        rule: RuleRef,
        why: String,
        basic_realm: Option<String>,
        bearer: bool,
    },
}

impl Decision {
    /// The outcome's word in the access log and the metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            Decision::Open => "open",
            Decision::Allow { .. } => "allow",
            Decision::Deny { .. } => "deny",
            Decision::BadPath { .. } => "bad_path",
            Decision::SignIn { .. } => "login",
            Decision::Unauthorized { .. } => "unauthorized",
        }
    }

    /// The rule that decided (`None` on an open edge).
    pub fn rule(&self) -> Option<&RuleRef> {
        match self {
            Decision::Open => None,
            Decision::BadPath { .. } => Some(&PATH_RULE),
            Decision::Allow { rule, .. }
            | Decision::Deny { rule, .. }
            | Decision::SignIn { rule }
            | Decision::Unauthorized { rule, .. } => Some(rule),
        }
    }
}

/// What a rule asks for, before any credential is looked at.
#[derive(Debug, Clone)]
pub enum Step<'p> {
    /// Decided without credentials.
    Done(Decision),
    /// Look at the credentials (see [`Grant::needs_identity`]), then [`finish`].
    NeedsIdentity {
        rule: RuleRef,
        grant: std::borrow::Cow<'p, Grant>,
    },
}

/// The first step: which rule applies, and whether it needs to know who is asking.
pub fn begin<'p>(policy: &'p Policy, f: &Facts<'_>) -> Step<'p> {
    if policy.rules.is_empty() {
        return Step::Done(Decision::Open);
    }
    if let Some(why) = path::ambiguous(f.path) {
        return Step::Done(Decision::BadPath { why });
    }
    let decoded = path::decoded(f.path);
    let endpoint = policy
        .actuator_operators
        .as_ref()
        .and_then(|_| actuator::endpoint(&decoded, f.actuator_bases));
    for rule in &policy.rules {
        // On an actuator path only a rule that names paths overrides the built-in policy.
        if endpoint.is_some() && !rule.matcher.names_paths() {
            continue;
        }
        if rule
            .matcher
            .matches(f.domain, f.service, f.instance, &decoded, f.method)
        {
            return grant_step(
                RuleRef::Configured(rule.name.clone()),
                std::borrow::Cow::Borrowed(&rule.grant),
                f,
            );
        }
    }
    if let Some(endpoint) = endpoint {
        let rule = RuleRef::Actuator(endpoint.split('/').next().unwrap_or("").to_string());
        let Some(grant) = actuator_grant(policy, actuator::need(endpoint, f.method)) else {
            return Step::Done(Decision::Deny {
                rule,
                why: format!("actuator endpoint '{endpoint}' is refused at the edge unless a rule in xipgate.access.rules names its path"),
            });
        };
        return grant_step(rule, std::borrow::Cow::Owned(grant), f);
    }
    Step::Done(Decision::Deny {
        rule: RuleRef::NoMatch,
        why: "no rule in xipgate.access.rules allows this request".into(),
    })
}

/// What the built-in actuator policy grants for `need`; `None`: refused.
pub(super) fn actuator_grant(policy: &Policy, need: Need) -> Option<Grant> {
    let operators = policy.actuator_operators.as_ref()?;
    Some(match need {
        Need::Public => Grant {
            public: true,
            ..Default::default()
        },
        Need::SignedIn => Grant {
            authenticated: true,
            bearer: policy.bearer,
            ..Default::default()
        },
        Need::Operators => Grant {
            groups: operators.clone(),
            bearer: policy.bearer,
            ..Default::default()
        },
        Need::Refused => return None,
    })
}

fn grant_step<'p>(rule: RuleRef, grant: std::borrow::Cow<'p, Grant>, f: &Facts<'_>) -> Step<'p> {
    if grant.deny {
        return Step::Done(Decision::Deny {
            why: format!("refused by rule '{}'", rule.name()),
            rule,
        });
    }
    if grant.public {
        return Step::Done(Decision::Allow { rule, who: None });
    }
    if !grant.clients.is_empty() && !grant.clients.iter().any(|n| n.contains(&f.client)) {
        return Step::Done(Decision::Deny {
            why: format!(
                "client address {} is not among the clients rule '{}' allows",
                f.client,
                rule.name()
            ),
            rule,
        });
    }
    if !grant.needs_identity() {
        return Step::Done(Decision::Allow { rule, who: None });
    }
    Step::NeedsIdentity { rule, grant }
}

/// The second step, once the credentials were looked at.
pub fn finish(
    policy: &Policy,
    rule: RuleRef,
    grant: &Grant,
    f: &Facts<'_>,
    presented: Presented,
) -> Decision {
    let unauthorized = |rule: RuleRef, why: String, stale_session: bool| {
        let bearer = policy.bearer && (grant.bearer || !grant.basic);
        let basic_realm = policy.basic_realm.clone().filter(|_| grant.basic);
        // Only a rule a session can satisfy sends a browser to the login.
        let takes_session =
            grant.authenticated || !grant.users.is_empty() || !grant.groups.is_empty();
        if f.page_load && policy.login && takes_session && (why.is_empty() || stale_session) {
            Decision::SignIn { rule }
        } else {
            Decision::Unauthorized {
                rule,
                why,
                basic_realm,
                bearer,
            }
        }
    };
    match presented {
        Presented::Nothing => unauthorized(rule, String::new(), false),
        Presented::Refused(why) => unauthorized(rule, why, false),
        Presented::BadSession(why) => unauthorized(rule, why, true),
        Presented::Identity(who) => {
            let claims = grant.authenticated || !grant.users.is_empty() || !grant.groups.is_empty();
            let kind_ok = match who.via {
                super::Via::Session => claims,
                super::Via::Bearer => grant.bearer || claims,
                super::Via::Basic => grant.basic,
            };
            if !kind_ok {
                let why = format!("rule '{}' does not take {}", rule.name(), who.via.as_str());
                return unauthorized(rule, why, false);
            }
            let named = grant.users.is_empty() && grant.groups.is_empty();
            let listed = grant.users.contains(&who.user)
                || grant
                    .groups
                    .iter()
                    .any(|g| who.groups.iter().any(|h| h == g));
            if named || listed {
                Decision::Allow {
                    rule,
                    who: Some(who),
                }
            } else {
                Decision::Deny {
                    why: format!(
                        "user '{}' is not among the users or groups rule '{}' allows",
                        who.user,
                        rule.name()
                    ),
                    rule,
                }
            }
        }
    }
}

/// Both steps, for tests and the explain API: `presented` stands for whatever the
/// request would show.
pub fn decide(policy: &Policy, f: &Facts<'_>, presented: impl FnOnce() -> Presented) -> Decision {
    match begin(policy, f) {
        Step::Done(d) => d,
        Step::NeedsIdentity { rule, grant } => finish(policy, rule, &grant, f, presented()),
    }
}

#[cfg(test)]
mod tests;
