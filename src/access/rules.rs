//! What a rule matches (domain, service, instance label, path, method) and what it
//! allows. Made from `xipgate.access.rules` by the config module, matched by [`super::decide`].

use ipnet::IpNet;

use super::path;

/// One rule: the first whose matcher takes a request decides it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// `name`, or `rules[i]`: shown wherever a decision is.
    pub name: String,
    pub matcher: Matcher,
    pub grant: Grant,
}

/// An empty list matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matcher {
    /// Lower-case domains from `xipgate.domains`.
    pub domains: Vec<String>,
    /// Service labels (`order-service`): the service host and every instance host of it.
    pub services: Vec<String>,
    /// Instance labels: only those instance hosts.
    pub instances: Vec<String>,
    pub paths: Vec<PathPattern>,
    /// Upper-case methods.
    pub methods: Vec<String>,
}

/// What a rule allows. Conditions given together must all hold: `clients` bounds the
/// address, and `users`/`groups`/`authenticated`/`basic`/`bearer` ask for an identity.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grant {
    pub public: bool,
    pub deny: bool,
    pub clients: Vec<IpNet>,
    pub users: Vec<String>,
    pub groups: Vec<String>,
    pub authenticated: bool,
    pub basic: bool,
    pub bearer: bool,
}

impl Grant {
    /// An identity must be shown (a session, a token or basic credentials).
    pub fn needs_identity(&self) -> bool {
        self.authenticated
            || self.basic
            || self.bearer
            || !self.users.is_empty()
            || !self.groups.is_empty()
    }

    /// An identity only the login or a token can give (users, groups, authenticated),
    /// unless the rule takes basic credentials.
    pub fn needs_identity_from_login(&self) -> bool {
        !self.basic && (self.authenticated || !self.users.is_empty() || !self.groups.is_empty())
    }
}

/// A path pattern: `/api/` or `/api` (that path and everything under it) or a glob
/// (`*` one segment or part of it, `**` any number of segments).
#[derive(Debug, Clone, PartialEq)]
pub enum PathPattern {
    Prefix(String),
    Glob(String),
}

impl PathPattern {
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let p = raw.trim();
        if !p.starts_with('/') {
            return Err("a path pattern starts with /");
        }
        if path::ambiguous(p).is_some() {
            return Err("a path pattern is written decoded, without //, . or .. segments, ; or \\");
        }
        if p.contains('*') {
            Ok(PathPattern::Glob(p.to_string()))
        } else {
            Ok(PathPattern::Prefix(p.trim_end_matches('/').to_string()))
        }
    }

    /// `path` is decoded and unambiguous (see [`path::ambiguous`]).
    pub fn matches(&self, path: &str) -> bool {
        match self {
            // "/api" takes /api, /api/ and /api/x, never /apix.
            PathPattern::Prefix(p) => {
                p.is_empty()
                    || path == p
                    || (path.starts_with(p.as_str()) && path.as_bytes()[p.len()] == b'/')
            }
            PathPattern::Glob(g) => glob(g.as_bytes(), path.as_bytes()),
        }
    }

    /// Every path this one matches, `other` matches too (for "a rule no request can reach").
    fn covers(&self, other: &PathPattern) -> bool {
        match (self, other) {
            (PathPattern::Prefix(a), PathPattern::Prefix(b)) => {
                PathPattern::Prefix(a.clone()).matches(b)
            }
            (PathPattern::Glob(a), PathPattern::Glob(b)) => a == b,
            (PathPattern::Prefix(a), PathPattern::Glob(b)) => {
                // The glob's literal start lies under the prefix.
                let lit = b.split('*').next().unwrap_or("");
                a.is_empty()
                    || (lit.starts_with(a.as_str()) && lit.as_bytes().get(a.len()) == Some(&b'/'))
            }
            (PathPattern::Glob(_), PathPattern::Prefix(_)) => false,
        }
    }
}

/// `*` matches within one segment, `**` across segments (as Spring's AntPathMatcher).
fn glob(pat: &[u8], s: &[u8]) -> bool {
    match pat.first() {
        None => s.is_empty(),
        Some(b'*') if pat.get(1) == Some(&b'*') => {
            let rest = &pat[2..];
            // `/**` at the end also matches the bare prefix: `/api/**` takes `/api`.
            (0..=s.len()).any(|i| glob(rest, &s[i..])) || (rest.is_empty() && s.is_empty())
        }
        Some(b'*') => {
            let rest = &pat[1..];
            let seg = s.iter().position(|&b| b == b'/').unwrap_or(s.len());
            (0..=seg).any(|i| glob(rest, &s[i..]))
        }
        Some(&c) => {
            if c == b'/' && pat[1..].starts_with(b"**") && pat.len() == 3 && s.is_empty() {
                return true;
            }
            s.first() == Some(&c) && glob(&pat[1..], &s[1..])
        }
    }
}

impl Matcher {
    pub fn matches(
        &self,
        domain: &str,
        service: &str,
        instance: Option<&str>,
        path: &str,
        method: &str,
    ) -> bool {
        (self.domains.is_empty() || self.domains.iter().any(|d| d == domain))
            && (self.services.is_empty() || self.services.iter().any(|s| s == service))
            && (self.instances.is_empty()
                || instance.is_some_and(|i| self.instances.iter().any(|x| x == i)))
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(path)))
            && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }

    /// Every request `other` matches, this one matches too.
    pub fn covers(&self, other: &Matcher) -> bool {
        fn list(mine: &[String], theirs: &[String]) -> bool {
            mine.is_empty() || (!theirs.is_empty() && theirs.iter().all(|t| mine.contains(t)))
        }
        list(&self.domains, &other.domains)
            && list(&self.services, &other.services)
            && list(&self.instances, &other.instances)
            && list(&self.methods, &other.methods)
            && (self.paths.is_empty()
                || (!other.paths.is_empty()
                    && other
                        .paths
                        .iter()
                        .all(|o| self.paths.iter().any(|p| p.covers(o)))))
    }

    /// The rule names paths: it may take an actuator path from the built-in policy.
    pub fn names_paths(&self) -> bool {
        !self.paths.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_patterns_match_at_segment_boundaries() {
        let cases = [
            ("/api", "/api", true),
            ("/api", "/api/", true),
            ("/api", "/api/x", true),
            ("/api", "/apix", false),
            ("/api/", "/api/x", true),
            ("/", "/anything", true),
            ("/api/*/x", "/api/a/x", true),
            ("/api/*/x", "/api/a/b/x", false),
            ("/api/**", "/api", true),
            ("/api/**", "/api/a/b", true),
            ("/api/**", "/apix", false),
            ("/**/env", "/actuator/env", true),
            ("/*.html", "/index.html", true),
            ("/*.html", "/a/index.html", false),
        ];
        for (pat, path, want) in cases {
            let p = PathPattern::parse(pat).unwrap();
            assert_eq!(p.matches(path), want, "{pat} against {path}");
        }
    }

    #[test]
    fn a_broader_matcher_covers_a_narrower_one() {
        let all = Matcher::default();
        let orders = Matcher {
            services: vec!["orders".into()],
            ..Default::default()
        };
        let orders_api = Matcher {
            services: vec!["orders".into()],
            paths: vec![PathPattern::parse("/api/v1").unwrap()],
            ..Default::default()
        };
        assert!(all.covers(&orders));
        assert!(orders.covers(&orders_api));
        assert!(!orders_api.covers(&orders));
        assert!(!orders.covers(&all));
    }
}
