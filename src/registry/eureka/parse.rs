//! Parses what real Eureka servers send for `/apps`, `/apps/delta` and `/apps/{APP}`.
//!
//! Servers differ: old XStream/Jettison servers send a bare object where there is one
//! element and strings for numbers, Jackson servers send arrays and numbers, and some
//! answer XML whatever the Accept header says. The parser is lenient about shapes and
//! strict about isolation: each application and each instance is decoded on its own (the
//! outer document is split with `RawValue`, which only records byte ranges), so one bad
//! instance is skipped and noted instead of failing the whole fetch.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::model::Snapshot;
use super::one_pass::OnePass;
use crate::instance::{Instance, InstanceKey, Status};

/// Why a registry document could not be used at all (one bad instance is not one).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not a Eureka registry document: {0}")]
    Shape(String),
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("invalid XML: {0}")]
    Xml(String),
}

/// Parses a full or delta `/apps` document, JSON or XML (sniffed from the first byte).
pub fn parse_apps(body: &[u8]) -> Result<Snapshot, ParseError> {
    match first_byte(body) {
        Some(b'{') => parse_apps_json(body),
        Some(b'<') => parse_apps_xml(body),
        Some(_) => Err(ParseError::Shape(describe_start(body))),
        None => Err(ParseError::Shape("empty body".into())),
    }
}

/// Parses `/apps/{APP}` (`{"application": {...}}`), JSON or XML.
pub fn parse_app(body: &[u8]) -> Result<Snapshot, ParseError> {
    match first_byte(body) {
        Some(b'{') => {
            #[derive(Deserialize)]
            struct Root<'a> {
                #[serde(borrow)]
                application: Option<&'a RawValue>,
            }
            let root: Root =
                serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
            let app = root
                .application
                .ok_or_else(|| ParseError::Shape("no \"application\" key".into()))?;
            let mut snap = Snapshot::default();
            add_application_json(app, &mut snap);
            Ok(snap)
        }
        Some(b'<') => {
            expect_root(&String::from_utf8_lossy(body), "application")?;
            let app: XmlApplication = quick_xml::de::from_str(&String::from_utf8_lossy(body))
                .map_err(|e| ParseError::Xml(e.to_string()))?;
            let mut snap = Snapshot::default();
            add_application_xml(app, &mut snap);
            Ok(snap)
        }
        Some(_) => Err(ParseError::Shape(describe_start(body))),
        None => Err(ParseError::Shape("empty body".into())),
    }
}

fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF)
}

fn describe_start(body: &[u8]) -> String {
    let head: String = String::from_utf8_lossy(&body[..body.len().min(40)])
        .chars()
        .flat_map(char::escape_default)
        .collect();
    format!("body starts with \"{head}\"")
}

fn parse_apps_json(body: &[u8]) -> Result<Snapshot, ParseError> {
    match parse_apps_json_in_one_pass(body) {
        Some(snap) => Ok(snap),
        None => parse_apps_json_isolated(body),
    }
}

/// The common case in one pass: a well-formed document whose `application` and
/// `instance` lists are arrays (Jackson servers) and where every instance decodes.
/// `None` for anything else, which then goes through [`parse_apps_json_isolated`]: that
/// path gives the same result for a good document, and the isolation and messages for a
/// bad one. Splitting at every level with `RawValue` scans the body once per level (six
/// times for an instance); at 10,000 instances that was most of a refresh.
pub(super) fn parse_apps_json_in_one_pass(body: &[u8]) -> Option<Snapshot> {
    // The isolated path rejects invalid UTF-8 anywhere (RawValue checks it); a typed
    // parse skips ignored fields without looking, so check it up front.
    let text = std::str::from_utf8(body).ok()?;
    serde_json::from_str::<OnePass>(text).ok().map(|d| d.0)
}

/// [`parse_apps_json_in_one_pass`] reading the document from `reader` (a decompressor),
/// so the whole body is never held: `None` where that function gives `None`, and for
/// any read error. The reader must fail on invalid UTF-8 itself (see
/// [`super::stream`]), as the slice version checks it up front.
/// With `known`, each instance it already holds goes to [`Snapshot::unchanged`].
pub(super) fn parse_apps_json_in_one_pass_from(
    reader: impl std::io::Read,
    known: Option<&dyn super::model::Known>,
) -> Option<Snapshot> {
    super::one_pass::parse_from(reader, known)
}

/// Every application and every instance decoded on its own, so one bad one is skipped
/// with a note instead of failing the fetch.
fn parse_apps_json_isolated(body: &[u8]) -> Result<Snapshot, ParseError> {
    #[derive(Deserialize)]
    struct Root<'a> {
        #[serde(borrow)]
        applications: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Applications<'a> {
        #[serde(borrow)]
        application: Option<&'a RawValue>,
        #[serde(rename = "apps__hashcode")]
        apps_hashcode: Option<Scalar>,
    }
    let root: Root = serde_json::from_slice(body).map_err(|e| ParseError::Json(e.to_string()))?;
    let apps_raw = root
        .applications
        .ok_or_else(|| ParseError::Shape("no \"applications\" key".into()))?;
    let apps: Applications = serde_json::from_str(apps_raw.get())
        .map_err(|e| ParseError::Shape(format!("\"applications\" is not an object: {e}")))?;
    let mut snap = Snapshot {
        apps_hashcode: apps.apps_hashcode.map(|s| s.0),
        ..Snapshot::default()
    };
    for app in one_or_many(apps.application) {
        add_application_json(app, &mut snap);
    }
    Ok(snap)
}

/// `null`/absent → nothing, `[...]` → its elements, `{...}` → itself.
fn one_or_many(raw: Option<&RawValue>) -> Vec<&RawValue> {
    let Some(raw) = raw else { return Vec::new() };
    match raw.get().as_bytes().first() {
        Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(raw.get()).unwrap_or_default(),
        Some(b'{') => vec![raw],
        _ => Vec::new(),
    }
}

fn add_application_json(raw: &RawValue, snap: &mut Snapshot) {
    #[derive(Deserialize)]
    struct Application<'a> {
        name: Option<Scalar>,
        #[serde(borrow)]
        instance: Option<&'a RawValue>,
    }
    let app: Application = match serde_json::from_str(raw.get()) {
        Ok(app) => app,
        Err(e) => {
            snap.skipped.push(format!("application skipped: {e}"));
            return;
        }
    };
    let name = app.name.map(|s| s.0).unwrap_or_default();
    for inst in one_or_many(app.instance) {
        match serde_json::from_str::<RawInstance>(inst.get()) {
            Ok(raw) => add_instance(raw, &name, snap),
            Err(e) => snap.skipped.push(format!("{name}: instance skipped: {e}")),
        }
    }
}

#[derive(Deserialize)]
struct XmlApplications {
    #[serde(default)]
    application: Vec<XmlApplication>,
    #[serde(rename = "apps__hashcode")]
    apps_hashcode: Option<Scalar>,
}

#[derive(Deserialize)]
struct XmlApplication {
    name: Option<Scalar>,
    #[serde(default)]
    instance: Vec<RawInstance>,
}

/// The name of the first element, past any `<?xml ...?>` declaration and comments.
fn xml_root(text: &str) -> &str {
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    while rest.starts_with("<?") || rest.starts_with("<!--") {
        let end = if rest.starts_with("<?") {
            rest.find("?>").map(|i| i + 2)
        } else {
            rest.find("-->").map(|i| i + 3)
        };
        rest = end.map_or("", |i| rest[i..].trim_start());
    }
    let name = rest.strip_prefix('<').unwrap_or("");
    &name[..name
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(name.len())]
}

/// An HTML error page or any other XML is not a registry, even if it parses.
fn expect_root(text: &str, wanted: &str) -> Result<(), ParseError> {
    match xml_root(text) {
        root if root == wanted => Ok(()),
        root => Err(ParseError::Shape(format!(
            "the XML root is <{}>, not <{wanted}>",
            crate::names::printable(root)
        ))),
    }
}

fn parse_apps_xml(body: &[u8]) -> Result<Snapshot, ParseError> {
    let text = String::from_utf8_lossy(body);
    expect_root(&text, "applications")?;
    let apps: XmlApplications =
        quick_xml::de::from_str(&text).map_err(|e| ParseError::Xml(e.to_string()))?;
    let mut snap = Snapshot {
        apps_hashcode: apps.apps_hashcode.map(|s| s.0),
        ..Snapshot::default()
    };
    for app in apps.application {
        add_application_xml(app, &mut snap);
    }
    Ok(snap)
}

fn add_application_xml(app: XmlApplication, snap: &mut Snapshot) {
    let name = app.name.map(|s| s.0).unwrap_or_default();
    for raw in app.instance {
        add_instance(raw, &name, snap);
    }
}

/// An instance as the wire has it, every field optional and leniently typed.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawInstance {
    instance_id: Option<Scalar>,
    host_name: Option<Scalar>,
    app: Option<Scalar>,
    ip_addr: Option<Scalar>,
    status: Option<Scalar>,
    #[serde(alias = "overriddenstatus")]
    overridden_status: Option<Scalar>,
    port: Option<Port>,
    secure_port: Option<Port>,
    metadata: Option<Metadata>,
    home_page_url: Option<Scalar>,
    status_page_url: Option<Scalar>,
    health_check_url: Option<Scalar>,
    lease_info: Option<LeaseInfo>,
    last_dirty_timestamp: Option<Scalar>,
    action_type: Option<Scalar>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct LeaseInfo {
    last_renewal_timestamp: Option<Scalar>,
    registration_timestamp: Option<Scalar>,
    duration_in_secs: Option<Scalar>,
}

/// When the instance really last renewed, from its `leaseInfo`.
///
/// Eureka's `Lease.renew()` stores `now + duration` as the last update (a bug its
/// authors kept for compatibility: eviction then waits two durations), and that value
/// is what the server sends as `lastRenewalTimestamp`. Taken as is, every instance
/// renewed "in the future", ~90 s ahead. So: a timestamp that lies a whole duration or
/// more after the registration is a renewal, and the duration comes off; one closer to
/// the registration (right after registering, before any heartbeat, the lease holds
/// the registration time itself) is taken as sent.
fn renewal_time(lease: &LeaseInfo) -> Option<u64> {
    let num = |s: &Option<Scalar>| s.as_ref().and_then(|s| s.0.trim().parse::<u64>().ok());
    let last = num(&lease.last_renewal_timestamp)?;
    let (Some(registered), Some(duration)) = (
        num(&lease.registration_timestamp),
        num(&lease.duration_in_secs),
    ) else {
        return Some(last);
    };
    let duration_ms = duration.saturating_mul(1000);
    match last.checked_sub(duration_ms) {
        Some(renewed) if duration_ms > 0 && renewed >= registered => Some(renewed),
        _ => Some(last),
    }
}

pub(super) fn add_instance(raw: RawInstance, app_name: &str, snap: &mut Snapshot) {
    let app = raw
        .app
        .map(|s| s.0)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| app_name.to_string());
    let host_name = raw.host_name.map(|s| s.0).unwrap_or_default();
    let ip_addr = raw.ip_addr.map(|s| s.0).unwrap_or_default();
    let mut metadata = raw.metadata.map(|m| m.0).unwrap_or_default();
    let port = raw.port.and_then(Port::enabled_value);
    let secure_port = raw.secure_port.and_then(Port::enabled_value);
    // Eureka 1.x servers omit instanceId; Spring puts it in metadata too.
    let instance_id = raw
        .instance_id
        .map(|s| s.0)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            metadata
                .get("instanceId")
                .cloned()
                .filter(|s| !s.is_empty())
        })
        .or_else(|| fallback_id(&host_name, port.or(secure_port)));
    let Some(instance_id) = instance_id else {
        snap.skipped.push(format!(
            "{app}: instance skipped: no instanceId, hostName or port"
        ));
        return;
    };
    if app.is_empty() {
        snap.skipped
            .push(format!("{instance_id}: instance skipped: no app name"));
        return;
    }
    metadata.remove("instanceId");
    let action = raw.action_type.map(|s| s.0);
    if action
        .as_deref()
        .is_some_and(|a| a.eq_ignore_ascii_case("DELETED"))
    {
        snap.deleted.push(InstanceKey::new(&app, &instance_id));
        return;
    }
    // `status` as sent: the server has already applied the override rules to it.
    let status = raw.status.map_or(Status::Unknown, |s| Status::parse(&s.0));
    let overridden_status = raw
        .overridden_status
        .map(|s| Status::parse(&s.0))
        .filter(|o| *o != Status::Unknown);
    snap.instances.push(Instance {
        source: crate::instance::eureka_source(),
        app,
        instance_id,
        host_name,
        ip_addr,
        port,
        secure_port,
        status,
        overridden_status,
        metadata: metadata.into(),
        home_page_url: raw.home_page_url.map(|s| s.0),
        status_page_url: raw.status_page_url.map(|s| s.0),
        health_check_url: raw.health_check_url.map(|s| s.0),
        last_renewal_ms: raw.lease_info.as_ref().and_then(renewal_time).into(),
        last_dirty_ms: raw.last_dirty_timestamp.and_then(|s| s.0.parse().ok()),
    });
}

/// `hostName` + port, the identity Eureka 1.x used. An old server's hostName may already
/// carry the port (`192.168.40.94:7101`); it is not repeated then.
fn fallback_id(host_name: &str, port: Option<u16>) -> Option<String> {
    if host_name.is_empty() {
        return None;
    }
    match port {
        Some(p) if !host_name.ends_with(&format!(":{p}")) => Some(format!("{host_name}:{p}")),
        _ => Some(host_name.to_string()),
    }
}

/// Any JSON/XML scalar (string, number, bool) as its text; `null` is rejected by
/// `Option<Scalar>` as absent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scalar(pub(super) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // An empty XML element (`<apps__hashcode/>`) is an empty string.
        Ok(d.deserialize_any(ScalarVisitor { strict: true })?
            .unwrap_or_else(|| Scalar(String::new())))
    }
}

/// Scalars become `Some(text)`. Objects and arrays are skipped as `None`, or, when
/// `strict`, rejected (a field that must be a scalar holding an object is a bad instance).
struct ScalarVisitor {
    strict: bool,
}

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Option<Scalar>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean")
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Scalar(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Some(Scalar(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(Scalar(v.to_string())))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(Scalar(v.to_string())))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(Scalar(v.to_string())))
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Some(Scalar(v.to_string())))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // An XML element with attributes arrives as a map; its text is under `$text`.
        let (mut text, mut other) = (None, false);
        while let Some(key) = map.next_key::<String>()? {
            if key == "$text" || key == "$value" || key == "$" {
                text = map.next_value_seed(AnySeed)?;
            } else {
                other |= !key.starts_with('@');
                map.next_value::<IgnoredAny>()?;
            }
        }
        match (text, other && self.strict) {
            (Some(t), _) => Ok(Some(t)),
            (None, true) => Err(de::Error::custom(
                "expected a string, number or boolean, found an object",
            )),
            (None, false) => Ok(None),
        }
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        if self.strict {
            return Err(de::Error::custom(
                "expected a string, number or boolean, found an array",
            ));
        }
        Ok(None)
    }
}

/// Deserialises any value through `ScalarVisitor` (objects and arrays become `None`).
struct AnySeed;

impl<'de> de::DeserializeSeed<'de> for AnySeed {
    type Value = Option<Scalar>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ScalarVisitor { strict: false })
    }
}

/// `{"$": 8080, "@enabled": "true"}` (JSON), `<port enabled="true">8080</port>` (XML), or a
/// bare number.
#[derive(Default)]
struct Port {
    value: Option<String>,
    enabled: Option<String>,
}

impl Port {
    /// The port when it is enabled (absent `@enabled` counts as enabled) and valid.
    fn enabled_value(self) -> Option<u16> {
        let enabled = self
            .enabled
            .as_deref()
            .is_none_or(|e| e.trim().eq_ignore_ascii_case("true"));
        let port: u16 = self.value?.trim().parse().ok()?;
        (enabled && port != 0).then_some(port)
    }
}

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl<'de> Visitor<'de> for PortVisitor {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port object or number")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Port, A::Error> {
                let mut port = Port::default();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value_seed(AnySeed)?.map(|s| s.0);
                    match key.as_str() {
                        "$" | "$text" | "$value" => port.value = value,
                        "@enabled" | "enabled" => port.enabled = value,
                        _ => {}
                    }
                }
                Ok(port)
            }
            fn visit_u64<E>(self, v: u64) -> Result<Port, E> {
                Ok(Port {
                    value: Some(v.to_string()),
                    enabled: None,
                })
            }
            fn visit_i64<E>(self, v: i64) -> Result<Port, E> {
                Ok(Port {
                    value: Some(v.to_string()),
                    enabled: None,
                })
            }
            fn visit_str<E>(self, v: &str) -> Result<Port, E> {
                Ok(Port {
                    value: Some(v.to_string()),
                    enabled: None,
                })
            }
            fn visit_unit<E>(self) -> Result<Port, E> {
                Ok(Port::default())
            }
        }
        d.deserialize_any(PortVisitor)
    }
}

/// Metadata: string values kept, `@class` (Jackson's type tag) and nested values dropped.
#[derive(Default)]
struct Metadata(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MetaVisitor;
        impl<'de> Visitor<'de> for MetaVisitor {
            type Value = Metadata;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a metadata map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Metadata, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value_seed(AnySeed)?;
                    if let (false, Some(v)) = (key.starts_with('@'), value) {
                        out.insert(key, v.0);
                    }
                }
                Ok(Metadata(out))
            }
            fn visit_str<E>(self, _: &str) -> Result<Metadata, E> {
                Ok(Metadata::default())
            }
            fn visit_unit<E>(self) -> Result<Metadata, E> {
                Ok(Metadata::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Metadata, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Metadata::default())
            }
        }
        d.deserialize_any(MetaVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass path, where it applies, gives exactly what the isolated path gives.
    fn same_as_isolated(body: &[u8]) -> bool {
        let Some(fast) = parse_apps_json_in_one_pass(body) else {
            return false;
        };
        let slow = parse_apps_json_isolated(body).expect("the isolated path parses it too");
        assert_eq!(fast.instances, slow.instances);
        assert_eq!(fast.skipped, slow.skipped);
        assert_eq!(fast.deleted, slow.deleted);
        assert_eq!(fast.apps_hashcode, slow.apps_hashcode);
        true
    }

    #[test]
    fn one_pass_path_matches_the_isolated_path() {
        let inst = |id: &str, extra: &str| {
            format!(
                r#"{{"instanceId":"{id}","hostName":"h","app":"A","ipAddr":"10.0.0.1","status":"UP","overriddenStatus":"DOWN","port":{{"$":8080,"@enabled":"true"}},"securePort":{{"$":443,"@enabled":"false"}},"metadata":{{"@class":"x","zone":"z","instanceId":"m"}},"leaseInfo":{{"lastRenewalTimestamp":17}},"lastDirtyTimestamp":"5","dataCenterInfo":{{"name":"MyOwn"}}{extra}}}"#
            )
        };
        let doc = |apps: &str| {
            format!(
                r#"{{"applications":{{"versions__delta":"1","apps__hashcode":"UP_2_","application":{apps}}}}}"#
            )
        };
        // Taken: arrays everywhere, including instances the parser skips with a note
        // (no id) or files as deleted.
        for body in [
            doc(&format!(
                r#"[{{"name":"A","instance":[{},{}]}}]"#,
                inst("a:1", ""),
                inst("a:2", r#","actionType":"DELETED""#)
            )),
            doc(&format!(
                r#"[{{"name":"A","instance":[{{"hostName":"","app":"A"}}, {}]}}, {{"name":"B","instance":null}}, {{"name":"C"}}]"#,
                inst("b\u{e9}:1", "")
            )),
            doc("[]"),
            doc("null"),
            // The instances before the name (converted once the name is read), and
            // keys nobody reads around them.
            doc(&format!(
                r#"[{{"x":{{"y":[1]}},"instance":[{{"instanceId":"n:1","hostName":"h"}},{}],"name":"LATE"}}]"#,
                inst("a:1", "")
            )),
            doc(r#"[{"name":null,"instance":[{"instanceId":"n:1","hostName":"h"}]}]"#),
        ] {
            assert!(same_as_isolated(body.as_bytes()), "{body}");
        }
        let late = doc(r#"[{"instance":[{"instanceId":"n:1","hostName":"h"}],"name":"LATE"}]"#);
        let snap = parse_apps_json_in_one_pass(late.as_bytes()).expect("taken");
        assert_eq!(snap.instances[0].app, "LATE");
        // Left to the isolated path: single objects, shapes it notes, broken input.
        for body in [
            doc(&format!(r#"{{"name":"A","instance":{}}}"#, inst("a:1", ""))),
            doc(&format!(
                r#"[{{"name":"A","instance":{}}}]"#,
                inst("a:1", "")
            )),
            doc(&format!(
                r#"[{{"name":"A","instance":[{}, 5]}}]"#,
                inst("a:1", "")
            )),
            doc(&format!(
                r#"[{{"name":"A","instance":[{}]}}, 7]"#,
                inst("a:1", "")
            )),
            doc(&format!(
                r#"[{{"name":"A","instance":[{}]}}]"#,
                inst("a:1", r#","status":{"x":1}"#)
            )),
            doc(r#""nothing""#),
            // Repeated fields at each level, and a struct given as an array.
            doc(&format!(
                r#"[{{"name":"A","name":"B","instance":[{}]}}]"#,
                inst("a:1", "")
            )),
            doc(&format!(
                r#"[{{"name":"A","instance":[],"instance":[{}]}}]"#,
                inst("a:1", "")
            )),
            r#"{"applications":{"application":[]},"applications":{"application":[]}}"#.to_string(),
            r#"{"applications":{"application":[],"application":[]}}"#.to_string(),
            r#"{"applications":["UP_1_",[]]}"#.to_string(),
            r#"{"applications":null}"#.to_string(),
            r#"{"other":1}"#.to_string(),
        ] {
            assert!(
                parse_apps_json_in_one_pass(body.as_bytes()).is_none(),
                "{body}"
            );
        }
        // Invalid UTF-8 inside a field nobody reads is still an invalid document.
        let mut bad = doc(&format!(
            r#"[{{"name":"A","instance":[{}]}}]"#,
            inst("a:1", r#","vipAddress":"XX""#)
        ))
        .into_bytes();
        let at = bad.windows(2).position(|w| w == b"XX").unwrap();
        bad[at] = 0xff;
        assert!(parse_apps_json_in_one_pass(&bad).is_none());
        assert!(matches!(parse_apps(&bad), Err(ParseError::Json(_))));
    }

    #[test]
    fn fixtures_parse_the_same_either_way() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        for entry in std::fs::read_dir(dir).expect("fixtures").flatten() {
            // Folders hold other registries' fixtures (`kube/`).
            if !entry.path().is_file() {
                continue;
            }
            let body = std::fs::read(entry.path()).expect("fixture");
            if body.first() == Some(&b'{') {
                // Either path may take it; where the one-pass path does, it must agree.
                let _ = same_as_isolated(&body);
            }
        }
    }
}
