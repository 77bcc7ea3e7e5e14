//! What the engines hold: the policy, and the sources that say who a request is (the
//! session cookie, and the bearer and basic checks). Built once from `xipgate.access`.

use std::net::IpAddr;

use ipnet::IpNet;

use super::basic::{Basic, HtpasswdError};
use super::bearer::Bearer;
use super::session::{self, Sealer};
use super::{client_address, cookie, Policy, Presented};

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error("xipgate.access.login.keys_file: {0}")]
    Keys(#[from] session::KeyError),
    #[error("xipgate.access.basic.htpasswd: {0}")]
    Htpasswd(#[from] HtpasswdError),
    #[error("xipgate.access.identity.jwt.key_file: {0}")]
    IdentityKey(#[from] super::signed::SignerError),
}

/// The credentials of an `Authorization` header the edge checks itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown<'a> {
    Bearer(&'a str),
    Basic(&'a str),
}

/// `Bearer x` / `Basic x` (the scheme in any case, RFC 9110 11.1).
fn shown(authorization: &[u8]) -> Option<Shown<'_>> {
    let v = std::str::from_utf8(authorization).ok()?.trim();
    let (scheme, rest) = v.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        Some(Shown::Bearer(rest))
    } else if scheme.eq_ignore_ascii_case("basic") {
        Some(Shown::Basic(rest))
    } else {
        None
    }
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
    bearer: Option<Bearer>,
    basic: Option<Basic>,
    /// The login host's label under each domain, when a login is configured.
    login_label: Option<String>,
    /// The identity as a JWT the edge signs, and its header (lower-case).
    signer: Option<(super::signed::Signer, String)>,
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
            bearer: None,
            basic: None,
            login_label: None,
            signer: None,
        }
    }

    /// Backends get the identity as a JWT the edge signs, in `header`.
    pub fn with_signer(mut self, signer: super::signed::Signer, header: &str) -> Self {
        self.signer = Some((signer, header.to_ascii_lowercase()));
        self
    }

    /// The signed identity header for `who` asking for `host`: (lower-case name, token).
    /// The client's own copy of that header is deleted like the other identity headers.
    pub fn identity_token(
        &self,
        who: &super::Identity,
        host: &str,
        now: u64,
    ) -> Option<(&str, String)> {
        let (signer, header) = self.signer.as_ref()?;
        Some((header.as_str(), signer.sign(who, host, now)?))
    }

    /// The JWKS backends verify the signed identity with, when the edge signs one.
    pub fn identity_jwks(&self) -> Option<&str> {
        self.signer.as_ref().map(|(s, _)| s.jwks())
    }

    /// Bearer tokens are checked (`xipgate.access.bearer`).
    pub fn with_bearer(mut self, bearer: Bearer) -> Self {
        self.bearer = Some(bearer);
        self
    }

    /// Basic credentials are checked (`xipgate.access.basic`).
    pub fn with_basic(mut self, basic: Basic) -> Self {
        self.basic = Some(basic);
        self
    }

    /// The basic check's counters (bcrypt runs, cache answers, refusals).
    pub fn basic_stats(&self) -> Option<std::sync::Arc<super::basic::BasicStats>> {
        self.basic.as_ref().map(|b| b.stats.clone())
    }

    /// The bearer check's counters (signatures verified, cache answers, refusals).
    pub fn bearer_stats(&self) -> Option<std::sync::Arc<super::bearer::BearerStats>> {
        self.bearer.as_ref().map(|b| b.stats.clone())
    }

    /// The credentials in `authorization` that this edge checks, if any.
    fn checked<'a>(&self, authorization: Option<&'a [u8]>) -> Option<Shown<'a>> {
        match shown(authorization?)? {
            s @ Shown::Bearer(_) if self.bearer.is_some() => Some(s),
            s @ Shown::Basic(_) if self.basic.is_some() => Some(s),
            _ => None,
        }
    }

    /// Browsers without a session are sent to `<label>.<domain>` (the login host).
    pub fn with_login_label(mut self, label: &str) -> Self {
        self.login_label = Some(label.to_ascii_lowercase());
        self
    }

    /// The login host's label, when a login is configured.
    pub fn login_label(&self) -> Option<&str> {
        self.login_label.as_deref()
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

    /// A header the edge sets itself, so the client's copy is deleted: in any spelling
    /// that reads as one (`_` counts as `-`, as CGI-style servers read both alike).
    pub fn is_identity_header(&self, name: &str) -> bool {
        self.identity_headers
            .iter()
            .chain(self.signer.as_ref().map(|(_, h)| h))
            .any(|h| {
                h.len() == name.len()
                    && h.bytes()
                        .zip(name.bytes())
                        .all(|(h, n)| h == n.to_ascii_lowercase() || (h == b'-' && n == b'_'))
            })
    }

    /// What the request's credentials say, when that needs no I/O: the session cookie, or
    /// a bearer token that verified before (the bearer check's cache). `None` when the
    /// request carries credentials only an asynchronous check can judge (a bearer token
    /// not in that cache, basic credentials this edge checks); the engine then calls
    /// [`Gate::present`].
    pub fn present_local<'h>(
        &self,
        authorization: Option<&[u8]>,
        cookies: impl IntoIterator<Item = &'h [u8]>,
        now: u64,
    ) -> Option<Presented> {
        match (self.checked(authorization), &self.bearer) {
            (None, _) => Some(self.session_in(cookies, now)),
            (Some(Shown::Bearer(t)), Some(b)) => b.cached(t, now).map(Presented::Identity),
            (Some(_), _) => None,
        }
    }

    /// What the request's credentials say: a bearer token or basic credentials when this
    /// edge checks that kind, else the session cookie (an `Authorization` of another kind
    /// is the backend's business).
    pub async fn present<'h>(
        &self,
        authorization: Option<&[u8]>,
        cookies: impl IntoIterator<Item = &'h [u8]>,
        now: u64,
    ) -> Presented {
        let verdict = match (self.checked(authorization), &self.bearer, &self.basic) {
            (Some(Shown::Bearer(t)), Some(b), _) => {
                b.check(t, now).await.map_err(|e| e.to_string())
            }
            (Some(Shown::Basic(c)), _, Some(b)) => b.check(c).await.map_err(|e| e.to_string()),
            _ => return self.session_in(cookies, now),
        };
        match verdict {
            Ok(who) => Presented::Identity(who),
            Err(why) => Presented::Refused(why),
        }
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
                Err(e) => Presented::BadSession(e.to_string()),
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
    fn identity_headers_are_known_in_every_spelling() {
        let g = Gate::new(
            Policy::default(),
            Vec::new(),
            ["X-Forwarded-User", "X-Forwarded-Email", "X-Auth-Groups"],
            None,
        );
        for name in [
            "x-forwarded-user",
            "X_Forwarded_User",
            "X-FORWARDED-EMAIL",
            "x_auth-groups",
        ] {
            assert!(g.is_identity_header(name), "{name}");
        }
        for name in ["x-forwarded-users", "x-forwarded-for", "x-forwarded"] {
            assert!(!g.is_identity_header(name), "{name}");
        }
    }

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

    #[test]
    fn only_the_schemes_this_edge_checks_are_taken_from_authorization() {
        assert_eq!(shown(b"Bearer abc"), Some(Shown::Bearer("abc")));
        assert_eq!(shown(b"bearer  abc "), Some(Shown::Bearer("abc")));
        assert_eq!(shown(b"BASIC YTpi"), Some(Shown::Basic("YTpi")));
        assert_eq!(shown(b"Digest x"), None);
        assert_eq!(shown(b"Bearer"), None);
        assert_eq!(shown(&[0xff, b' ', b'x']), None);
    }

    #[tokio::test]
    async fn basic_credentials_are_judged_and_other_authorization_is_left_to_the_cookie() {
        use base64::Engine;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let line = format!("ann:{}\n", bcrypt::hash("pw", 4).unwrap());
        std::io::Write::write_all(&mut f, line.as_bytes()).unwrap();
        let gate = Gate::new(Policy::default(), Vec::new(), ["a", "b", "c"], None)
            .with_basic(Basic::load(f.path()).unwrap());
        let good = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ann:pw")
        );
        let bad = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("ann:no")
        );
        let none: [&[u8]; 0] = [];
        assert!(gate.present_local(Some(good.as_bytes()), none, 0).is_none());
        match gate.present(Some(good.as_bytes()), none, 0).await {
            Presented::Identity(who) => assert_eq!(
                (who.user.as_str(), who.via),
                ("ann", super::super::Via::Basic)
            ),
            other => panic!("{other:?}"),
        }
        match gate.present(Some(bad.as_bytes()), none, 0).await {
            Presented::Refused(why) => assert_eq!(why, "wrong user or password"),
            other => panic!("{other:?}"),
        }
        // Bearer is not configured here: the header is the backend's, the cookie decides.
        assert!(matches!(
            gate.present_local(Some(b"Bearer x"), none, 0),
            Some(Presented::Nothing)
        ));
        assert!(matches!(
            gate.present(Some(b"Bearer x"), none, 0).await,
            Presented::Nothing
        ));
    }
}
