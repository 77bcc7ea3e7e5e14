//! The stand-in's documents (src/standin.rs) read by the real parser: what went in comes
//! back. Here rather than in standin.rs, so the stand-in does not import the registry that
//! imports it (tests/docs.rs keeps the module graph free of cycles).

use serde_json::Value;

use crate::instance::Status;
use crate::registry::parse::parse_apps;
use crate::standin::{full, template, Registration};

#[test]
fn stand_in_documents_parse_back_to_what_went_in() {
    let mut down = Registration::spring("order", "order-1", "10.0.0.1", 8080);
    down.status = Status::Down;
    down.overridden = Some(Status::Up);
    down.renewed_ms = 1_700_000_030_000;
    let up = Registration::spring("order", "order-2", "10.0.0.2", 8080);
    let body = full(&[down.clone(), up]);
    let snap = parse_apps(body.as_bytes()).expect("parses");
    assert_eq!(snap.apps_hashcode.as_deref(), Some("DOWN_1_UP_1_"));
    let i = &snap.instances[0];
    assert_eq!(i.instance_id, down.instance_id);
    assert_eq!(
        (i.status, i.overridden_status),
        (Status::Down, Some(Status::Up))
    );
    assert_eq!(i.last_renewal_ms.get(), Some(down.renewed_ms));
    // Every field the recording has, the stand-in has.
    let ours: Value = serde_json::from_str(&body).expect("json");
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(
        keys(&ours["applications"]["application"][0]["instance"][0]),
        keys(&Value::Object(template().clone()))
    );
    assert!(
        !template().is_empty(),
        "the recording has an instance template"
    );
}
