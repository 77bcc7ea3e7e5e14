//! What can go wrong talking to the API server, with enough said to fix it.

use super::object::Status;

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The answer was an HTTP error with a `Status` body (or without one).
    #[error("{}", describe(.verb, .resource, .namespace.as_deref(), .status))]
    Api {
        /// The RBAC verb of the request: get, list, watch, create, update, delete.
        verb: &'static str,
        /// As RBAC names it: `endpointslices.discovery.k8s.io`, `secrets`.
        resource: String,
        namespace: Option<String>,
        /// Boxed: the other variants are small and errors travel through every `Result`.
        status: Box<Status>,
    },
    #[error("{url}: cannot connect: {reason}")]
    Connect { url: String, reason: String },
    #[error("{url}: no answer within {secs}s")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: the answer could not be read: {reason}")]
    Body { url: String, reason: String },
    /// The connection of a watch ended before the server ended the watch (the API server
    /// stopped, a proxy or the network cut it): it is opened again from the last version.
    #[error("{url}: the watch was cut before the server ended it ({reason}); it is opened again from the last version seen")]
    WatchCut { url: String, reason: String },
    #[error("{url}: the answer is not the JSON expected: {reason}")]
    Decode { url: String, reason: String },
    #[error("{url}: a line of the watch is larger than {limit} bytes")]
    TooLarge { url: String, limit: usize },
    #[error("the service-account token {path} cannot be read: {reason}")]
    Token { path: String, reason: String },
}

impl KubeError {
    /// The HTTP status of an API answer.
    pub fn code(&self) -> Option<u16> {
        match self {
            KubeError::Api { status, .. } => Some(status.code),
            _ => None,
        }
    }

    /// The resourceVersion is older than what etcd keeps: list again.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }

    /// Someone else wrote the object since we read it: read again and retry.
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409)
    }

    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }
}

fn describe(verb: &str, resource: &str, namespace: Option<&str>, status: &Status) -> String {
    let place = match namespace {
        Some(ns) => format!("in namespace {ns:?}"),
        None => "in all namespaces".to_string(),
    };
    let detail = if status.message.is_empty() {
        String::new()
    } else {
        format!(": {}", status.message)
    };
    match status.code {
        403 => format!(
            "forbidden: {verb} {resource} {place} (HTTP 403): the service account needs a Role granting verb {verb:?} on {resource:?}{detail}"
        ),
        401 => format!(
            "unauthorized: {verb} {resource} {place} (HTTP 401): the API server does not accept the token{detail}"
        ),
        code => format!("{verb} {resource} {place}: HTTP {code} {}{detail}", status.reason),
    }
}

/// reqwest's error and its causes on one line (the cause says "certificate unknown" or
/// "connection refused"; the top error only "error sending request").
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forbidden_answer_names_the_verb_and_the_resource() {
        let e = KubeError::Api {
            verb: "watch",
            resource: "endpointslices.discovery.k8s.io".into(),
            namespace: Some("shop".into()),
            status: Box::new(Status {
                code: 403,
                reason: "Forbidden".into(),
                ..Status::default()
            }),
        };
        let text = e.to_string();
        assert!(text.contains("verb \"watch\""), "{text}");
        assert!(
            text.contains("\"endpointslices.discovery.k8s.io\""),
            "{text}"
        );
        assert!(text.contains("namespace \"shop\""), "{text}");
    }
}
