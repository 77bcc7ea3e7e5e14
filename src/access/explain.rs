//! The policy as people read it: which rule decides a request, what it answers, why, and
//! what the rule asks for. The console's lock on every service and instance and its
//! `/api/v1/access/explain` (the "why was I refused" tool) both come from here, through
//! the same [`begin`]/[`finish`] the engines call, so what they say is what the edge does.

use std::net::{IpAddr, Ipv4Addr};

use super::actuator::{self, Need};
use super::decide::{begin, finish, Decision, Facts, Policy, Presented, RuleRef, Step};
use super::rules::Grant;
use super::{Identity, Via};

/// The client address the console's locks are worked out for: a `clients` list names it
/// only when it allows every address.
pub const NEUTRAL_CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// What the edge does with one request, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Explanation {
    /// The rule that decides: a configured rule's name, `actuator:<endpoint>`, `no-rule`
    /// or `ambiguous-path`; `None` on an open edge.
    pub rule: Option<String>,
    /// `open`, `allow`, `deny`, `bad_path`, `login` or `unauthorized`.
    pub decision: &'static str,
    /// The status the edge answers with (302 to the login, 200 when passed on).
    pub status: u16,
    pub why: String,
    /// What the deciding rule asks for, one condition a line (all must hold); empty when
    /// it asks nothing.
    pub needs: Vec<String>,
}

/// An identity to simulate: who the request would be from.
#[derive(Debug, Clone, Default)]
pub struct Simulated {
    pub user: Option<String>,
    pub groups: Vec<String>,
    /// How it is shown; `None`: the way the deciding rule takes identities.
    pub via: Option<Via>,
}

/// The decision for `f` when the request shows `who` (nothing when `who.user` is
/// `None`).
pub fn explain(policy: &Policy, f: &Facts<'_>, who: &Simulated) -> Explanation {
    let decision = match begin(policy, f) {
        Step::Done(d) => d,
        Step::NeedsIdentity { rule, grant } => {
            let presented = match &who.user {
                None => Presented::Nothing,
                Some(user) => Presented::Identity(Identity {
                    user: user.clone(),
                    email: None,
                    groups: who.groups.clone(),
                    via: who.via.unwrap_or_else(|| taken_via(&grant)),
                }),
            };
            finish(policy, rule, &grant, f, presented)
        }
    };
    described(policy, f, &decision)
}

/// The lock the console shows: what `GET /` from [`NEUTRAL_CLIENT`], with no
/// credentials, gets.
pub fn lock(policy: &Policy, f: &Facts<'_>) -> Explanation {
    let neutral = Facts {
        client: NEUTRAL_CLIENT,
        page_load: false,
        ..*f
    };
    explain(policy, &neutral, &Simulated::default())
}

/// The way a rule takes identities, the login's first.
fn taken_via(grant: &Grant) -> Via {
    if grant.authenticated || !grant.users.is_empty() || !grant.groups.is_empty() {
        Via::Session
    } else if grant.bearer {
        Via::Bearer
    } else {
        Via::Basic
    }
}

fn described(policy: &Policy, f: &Facts<'_>, d: &Decision) -> Explanation {
    let (rule, decision, status, why) = match d {
        Decision::Open => (
            None,
            "open",
            200,
            "no rules are configured: anyone who reaches the edge reaches every pod".to_string(),
        ),
        Decision::Allow { rule, who } => (
            Some(rule),
            "allow",
            200,
            match who {
                Some(w) => format!("rule '{}' allows user '{}'", rule.name(), w.user),
                None => format!("rule '{}' allows it", rule.name()),
            },
        ),
        Decision::Deny { rule, why } => (Some(rule), "deny", 403, why.clone()),
        Decision::BadPath { why } => (Some(&RuleRef::Path), "bad_path", 400, why.to_string()),
        Decision::SignIn { rule } => (
            Some(rule),
            "login",
            302,
            format!(
                "rule '{}' needs a signed-in user: a browser is sent to the login",
                rule.name()
            ),
        ),
        Decision::Unauthorized { rule, why, .. } => (
            Some(rule),
            "unauthorized",
            401,
            if why.is_empty() {
                format!(
                    "rule '{}' needs an identity and none was shown",
                    rule.name()
                )
            } else {
                why.clone()
            },
        ),
    };
    Explanation {
        rule: rule.map(RuleRef::name),
        decision,
        status,
        why,
        needs: rule.map(|r| needs(policy, f, r)).unwrap_or_default(),
    }
}

/// What the rule `r` asks of requests it decides.
fn needs(policy: &Policy, f: &Facts<'_>, r: &RuleRef) -> Vec<String> {
    match r {
        // Names are unique (the config checks it).
        RuleRef::Configured(name) => policy
            .rules
            .iter()
            .find(|rule| rule.name == *name)
            .map(|rule| grant_needs(policy, &rule.grant))
            .unwrap_or_default(),
        RuleRef::Actuator(endpoint) => {
            let need = actuator::need(endpoint, f.method);
            match super::decide::actuator_grant(policy, need) {
                Some(g) => grant_needs(policy, &g),
                None if need == Need::Refused => vec![format!(
                    "a rule in xipgate.access.rules whose paths name this endpoint ('{endpoint}' is refused by the built-in actuator policy)"
                )],
                None => Vec::new(),
            }
        }
        RuleRef::NoMatch => vec!["a rule in xipgate.access.rules that matches it".into()],
        RuleRef::Path => vec![
            "a path without ';', '\\', an encoded '/', '.' or '%', '//', '.' or '..' segments"
                .into(),
        ],
    }
}

/// A grant's conditions, in words.
fn grant_needs(policy: &Policy, g: &Grant) -> Vec<String> {
    if g.deny {
        return vec!["nothing passes: the rule refuses every request it matches".into()];
    }
    let mut out = Vec::new();
    if !g.clients.is_empty() {
        let nets: Vec<String> = g.clients.iter().map(ToString::to_string).collect();
        out.push(format!("a client address in {}", nets.join(", ")));
    }
    if g.needs_identity() {
        let claims = g.authenticated || !g.users.is_empty() || !g.groups.is_empty();
        let mut ways = Vec::new();
        if claims && policy.login {
            ways.push("a session from the login");
        }
        if (g.bearer || claims) && policy.bearer {
            ways.push("a bearer token");
        }
        if g.basic && policy.basic_realm.is_some() {
            ways.push("basic credentials");
        }
        out.push(if ways.is_empty() {
            "an identity, but none of the ways it could be shown is configured".into()
        } else {
            format!("an identity shown by {}", ways.join(" or "))
        });
        let mut named = Vec::new();
        if !g.users.is_empty() {
            named.push(format!("user {}", g.users.join(", ")));
        }
        if !g.groups.is_empty() {
            named.push(format!("a member of group {}", g.groups.join(", ")));
        }
        if !named.is_empty() {
            out.push(format!("being {}", named.join(" or ")));
        }
    }
    out
}

#[cfg(test)]
mod tests;
