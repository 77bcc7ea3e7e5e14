//! The Kubernetes objects the store writes, with only the fields it uses: a Secret (the
//! account, Opaque; a certificate, `kubernetes.io/tls`), the challenges ConfigMap and the
//! order Lease. Replacing one sends these fields and the metadata read (labels,
//! annotations, owners, resourceVersion), so what xipgate does not know is not its to keep.

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::kube::{Object, ObjectMeta};

/// Every object the store creates carries this label (`kubectl get secrets -l ...`).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "xipgate");
/// A certificate Secret names its domain here: a Secret of another domain with the same
/// name (`a-b.c` and `a.b-c`) is not served for this one.
pub const DOMAIN_ANNOTATION: &str = "xipgate.io/acme-domain";
/// A certificate's Secret type, which ingress controllers and pods mount as `tls.crt`/`tls.key`.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
pub const TLS_CRT: &str = "tls.crt";
pub const TLS_KEY: &str = "tls.key";
/// The account Secret's one key.
pub const ACCOUNT_KEY: &str = "account.json";
/// In the challenges ConfigMap, `issued.<domain>` holds the resourceVersion of the Secret
/// the ordering replica last wrote: a change tells every replica to read it.
pub const ISSUED_PREFIX: &str = "issued.";
/// And `_acme-challenge.<domain>` the pending values, one per line.
pub const CHALLENGE_PREFIX: &str = "_acme-challenge.";

fn new_meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: name.to_string(),
        namespace: namespace.to_string(),
        labels: [(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into(),
        ..ObjectMeta::default()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    #[serde(default = "v1")]
    pub api_version: String,
    #[serde(default = "secret_kind")]
    pub kind: String,
    pub metadata: ObjectMeta,
    /// Set at creation only: the API server refuses to change a Secret's type.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Base64, as the API server sends and takes it.
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

fn v1() -> String {
    "v1".into()
}
fn secret_kind() -> String {
    "Secret".into()
}
fn config_map_kind() -> String {
    "ConfigMap".into()
}
fn coordination_v1() -> String {
    "coordination.k8s.io/v1".into()
}
fn lease_kind() -> String {
    "Lease".into()
}

impl Secret {
    pub fn new(name: &str, namespace: &str, type_: &str) -> Self {
        Secret {
            api_version: v1(),
            kind: secret_kind(),
            metadata: new_meta(name, namespace),
            type_: Some(type_.to_string()),
            data: BTreeMap::new(),
        }
    }

    /// One key's bytes as text; `Err` says why not (absent, not base64, not UTF-8).
    pub fn text(&self, key: &str) -> Result<String, String> {
        let raw = self.data.get(key).ok_or_else(|| format!("no key {key}"))?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(raw.trim())
            .map_err(|e| format!("{key} is not base64: {e}"))?;
        String::from_utf8(bytes).map_err(|_| format!("{key} is not UTF-8 text"))
    }

    pub fn set_text(&mut self, key: &str, text: &str) {
        self.data.insert(
            key.to_string(),
            base64::engine::general_purpose::STANDARD.encode(text),
        );
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    #[serde(default = "v1")]
    pub api_version: String,
    #[serde(default = "config_map_kind")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

impl ConfigMap {
    pub fn new(name: &str, namespace: &str) -> Self {
        ConfigMap {
            api_version: v1(),
            kind: config_map_kind(),
            metadata: new_meta(name, namespace),
            data: BTreeMap::new(),
        }
    }

    /// The pending challenge values: name → values.
    pub fn challenges(&self) -> BTreeMap<String, Vec<String>> {
        self.data
            .iter()
            .filter(|(k, _)| k.starts_with(CHALLENGE_PREFIX))
            .map(|(k, v)| (k.to_ascii_lowercase(), split_values(v)))
            .collect()
    }

    /// Domain → the resourceVersion of its Secret as last written by an ordering replica.
    pub fn issued(&self) -> BTreeMap<String, String> {
        self.data
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(ISSUED_PREFIX)?.to_string(), v.clone())))
            .collect()
    }
}

impl Object for ConfigMap {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
}

/// One value a line, as the directory store writes them.
pub fn join_values(values: &[String]) -> String {
    let mut text = values.join("\n");
    text.push('\n');
    text
}

pub fn split_values(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Lease {
    #[serde(default = "coordination_v1")]
    pub api_version: String,
    #[serde(default = "lease_kind")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: LeaseSpec,
}

/// As client-go's leader election writes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaseSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_identity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i64>,
    /// RFC 3339 with microseconds (`MicroTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquire_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_transitions: Option<i64>,
}

impl Lease {
    pub fn new(name: &str, namespace: &str, spec: LeaseSpec) -> Self {
        Lease {
            api_version: coordination_v1(),
            kind: lease_kind(),
            metadata: new_meta(name, namespace),
            spec,
        }
    }
}

/// A `MicroTime` as the API server writes it: `2025-01-02T03:04:05.123456Z`.
pub fn micro_time(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

/// A `MicroTime` (or a `Time`, without fractions); `None` when it is not one.
pub fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(s.trim()).ok()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_round_trip_to_the_microsecond() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_micros(1_760_000_000_123_456);
        let s = micro_time(t);
        assert_eq!(s, "2025-10-09T08:53:20.123456Z");
        assert_eq!(parse_time(&s), Some(t));
        assert_eq!(
            parse_time("2025-10-09T08:53:20Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_760_000_000))
        );
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn secret_text_is_base64_both_ways_and_says_what_is_wrong() {
        let mut s = Secret::new("x", "ns", TLS_SECRET_TYPE);
        s.set_text(TLS_CRT, "-----BEGIN CERTIFICATE-----\n");
        assert_eq!(s.data[TLS_CRT], "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==");
        assert_eq!(
            s.text(TLS_CRT).as_deref(),
            Ok("-----BEGIN CERTIFICATE-----\n")
        );
        assert!(s.text(TLS_KEY).unwrap_err().contains("no key tls.key"));
        s.data.insert(TLS_KEY.into(), "***".into());
        assert!(s.text(TLS_KEY).unwrap_err().contains("not base64"));
    }

    #[test]
    fn the_config_map_holds_challenges_and_issue_notes_apart() {
        let mut cm = ConfigMap::new("xipgate-acme-challenges", "ns");
        cm.data.insert(
            "_acme-challenge.a.example.com".into(),
            join_values(&["v1".into(), "v2".into()]),
        );
        cm.data.insert("issued.a.example.com".into(), "812".into());
        assert_eq!(
            cm.challenges(),
            BTreeMap::from([(
                "_acme-challenge.a.example.com".to_string(),
                vec!["v1".to_string(), "v2".to_string()]
            )])
        );
        assert_eq!(
            cm.issued(),
            BTreeMap::from([("a.example.com".to_string(), "812".to_string())])
        );
    }

    #[test]
    fn the_real_api_servers_answers_parse() {
        // Recorded from kube-apiserver v1.37.2 (tests/kube_record.rs).
        let secret: Secret = serde_json::from_str(include_str!(
            "../../../../tests/fixtures/kube/secret-tls.json"
        ))
        .expect("a TLS Secret");
        assert_eq!(secret.type_.as_deref(), Some(TLS_SECRET_TYPE));
        assert_eq!(secret.metadata.resource_version, "226");
        assert!(secret
            .text(TLS_CRT)
            .expect("tls.crt")
            .starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(secret
            .text(TLS_KEY)
            .expect("tls.key")
            .contains("PRIVATE KEY"));
        let lease: Lease =
            serde_json::from_str(include_str!("../../../../tests/fixtures/kube/lease.json"))
                .expect("a Lease");
        assert_eq!(
            lease.spec,
            LeaseSpec {
                holder_identity: Some("xipgate-7f6d5c4b3-abcde".into()),
                lease_duration_seconds: Some(30),
                acquire_time: Some("2026-01-02T03:04:05.000000Z".into()),
                renew_time: Some("2026-01-02T03:04:25.000000Z".into()),
                lease_transitions: Some(0),
            }
        );
        assert!(lease
            .spec
            .renew_time
            .as_deref()
            .and_then(parse_time)
            .is_some());
    }
}
