//! What the engines hold: the policy, and the sources that say who a request is (the
//! session cookie, and the bearer and basic checks). Built once from `xipgate.access`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::session::{self, Sealer};
use super::{client_address, cookie, Policy, Presented};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("xipgate.access.login.keys_file: {0}")]
    Keys(#[from] session::KeyError),
}

/// The login's session cookie: its name and the keys that seal it.
pub struct SessionCookie {
    pub name: String,
    pub sealer: Sealer,
}

pub struct Gate {
    policy: Policy,
    trusted_proxies: Vec<IpNet>,
    /// Lower-case names of the identity headers: deleted from every request, then set.
    identity_headers: [String; 3],
    session: Option<SessionCookie>,
}

impl Gate {
    /// Made by the config module (`AccessConfig::gate`), which knows the file's keys.
    pub fn new(
        policy: Policy,
        trusted_proxies: Vec<IpNet>,
        identity_headers: [&str; 3],
        session: Option<SessionCookie>,
    ) -> Self {
        Gate {
            policy,
            trusted_proxies,
            identity_headers: identity_headers.map(str::to_ascii_lowercase),
            session,
        }
    }

    /// No rules: every request passes, as before rules existed.
    pub fn is_open(&self) -> bool {
        self.policy.rules.is_empty()
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The client's address as rules see it (`trusted_proxies`).
    pub fn client<'a>(&self, peer: IpAddr, xff: impl IntoIterator<Item = &'a [u8]>) -> IpAddr {
        client_address(peer, xff, &self.trusted_proxies)
    }

    /// The session cookie's name, when a login is configured.
    pub fn session_cookie(&self) -> Option<&SessionCookie> {
        self.session.as_ref()
    }

    /// The identity headers (user, email, groups), lower-case.
    pub fn identity_headers(&self) -> &[String; 3] {
        &self.identity_headers
    }

    /// A header the edge sets itself, so the client's copy is deleted.
    pub fn is_identity_header(&self, name: &str) -> bool {
        self.identity_headers
            .iter()
            .any(|h| h.eq_ignore_ascii_case(name))
    }

    /// What the request's credentials say, when that needs no I/O: the session cookie.
    /// `None` when the request carries credentials only an asynchronous check can judge
    /// (a bearer token or basic credentials); the engine then calls [`Gate::present`].
    pub fn present_local<'h>(
        &self,
        authorization: Option<&[u8]>,
        cookies: impl IntoIterator<Item = &'h [u8]>,
        now: u64,
    ) -> Option<Presented> {
        if authorization.is_some() {
            return None;
        }
        Some(self.session_in(cookies, now))
    }

    /// What the request's credentials say.
    pub async fn present<'h>(
        &self,
        authorization: Option<&[u8]>,
        cookies: impl IntoIterator<Item = &'h [u8]>,
        now: u64,
    ) -> Presented {
        // Bearer and basic credentials are judged by `xipgate.access.bearer` and `.basic`
        // (not configured here yet: the session decides).
        let _ = authorization;
        self.session_in(cookies, now)
    }

    fn session_in<'h>(&self, cookies: impl IntoIterator<Item = &'h [u8]>, now: u64) -> Presented {
        let Some(s) = &self.session else {
            return Presented::Nothing;
        };
        match cookie::find(cookies, &s.name) {
            None => Presented::Nothing,
            Some(v) => match s.sealer.open(&s.name, v, now) {
                Ok(session) => Presented::Identity(session.identity()),
                // An expired session goes back to the login, like no session.
                Err(session::SessionError::Expired) => Presented::Nothing,
                Err(e) => Presented::Refused(e.to_string()),
            },
        }
    }
}

/// A browser loading a page: it may be sent to the login. Anything else (XHR, fetch, an
/// API client, a request with an `Authorization` header) gets 401 instead of a redirect it
/// could not follow.
pub fn page_load(
    method: &str,
    accept: Option<&[u8]>,
    has_authorization: bool,
    x_requested_with: bool,
) -> bool {
    (method == "GET" || method == "HEAD")
        && !has_authorization
        && !x_requested_with
        && accept.is_some_and(|a| {
            String::from_utf8_lossy(a)
                .to_ascii_lowercase()
                .contains("text/html")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_browser_page_load_is_sent_to_the_login() {
        let html: &[u8] = b"text/html,application/xhtml+xml";
        assert!(page_load("GET", Some(html), false, false));
        assert!(!page_load("POST", Some(html), false, false));
        assert!(!page_load("GET", Some(b"application/json"), false, false));
        assert!(!page_load("GET", None, false, false));
        assert!(!page_load("GET", Some(html), true, false));
        assert!(!page_load("GET", Some(html), false, true));
    }
}
