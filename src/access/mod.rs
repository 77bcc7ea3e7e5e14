//! Who may reach which service, instance and path (`xipgate.access`).
//!
//! One decision for both engines ([`decide`]): the first configured rule matching the
//! request's domain, service, instance label, path and method decides, after the built-in
//! actuator policy for actuator paths no rule names. A rule allows everyone, some client
//! addresses, or signed-in identities; identities come from the one login for every host
//! (a sealed session cookie), a bearer token, or basic credentials. An edge without rules
//! is open, as before rules existed, and says so.

mod actuator;
pub mod basic;
pub mod bearer;
mod client;
pub mod cookie;
mod decide;
mod explain;
mod gate;
mod jwks;
pub mod jwt;
mod login;
mod oidc;
mod path;
mod redirect;
mod rules;
pub mod session;
mod sign_in;
pub mod signed;
#[cfg(test)]
mod testkeys;

pub use actuator::{bases as actuator_bases, DEFAULT_BASE as DEFAULT_ACTUATOR_BASE};
pub use client::client_address;
pub use decide::{begin, decide, finish, Decision, Facts, Policy, Presented, RuleRef, Step};
pub use explain::{explain, lock, Explanation, Simulated, NEUTRAL_CLIENT};
pub use gate::{page_load, Gate, GateError, SessionCookie};
pub use login::{Login, LoginError, LoginRequest, LoginSettings, Reply};
pub use rules::{Grant, Matcher, PathPattern, Rule};
pub use sign_in::sign_in_location;

/// How an identity was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The login's session cookie.
    Session,
    /// `Authorization: Bearer` with a JWT.
    Bearer,
    /// `Authorization: Basic` checked against htpasswd.
    Basic,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Session => "a session",
            Via::Bearer => "bearer tokens",
            Via::Basic => "basic credentials",
        }
    }
}

/// Who is asking: what the edge tells backends and rules match on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user claim (`preferred_username`, else `sub`), the htpasswd user, or a token's
    /// `sub` (a client id for `client_credentials`).
    pub user: String,
    pub email: Option<String>,
    pub groups: Vec<String>,
    pub via: Via,
}
