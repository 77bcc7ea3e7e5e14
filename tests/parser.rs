//! The Eureka parser on the project's own fixtures (tests/fixtures), one per quirk real
//! servers show, and on the public samples in ../shared/reference/eureka-samples when
//! that folder exists.

use std::path::Path;

use xipgate::registry::parse::{parse_app, parse_apps, ParseError};
use xipgate::registry::{Instance, Status};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .expect("fixture exists")
}

fn find<'a>(all: &'a [Instance], id: &str) -> &'a Instance {
    all.iter()
        .find(|i| i.instance_id == id)
        .unwrap_or_else(|| panic!("{id} missing from {all:#?}"))
}

#[test]
fn old_servers_send_bare_objects_and_string_ports() {
    let snap = parse_apps(&fixture("old-single-objects.json")).unwrap();
    assert_eq!(snap.instances.len(), 1);
    let i = &snap.instances[0];
    // No instanceId: hostName (which already carries the port) is the identity.
    assert_eq!(i.instance_id, "10.1.2.3:7101");
    assert_eq!((i.port, i.secure_port), (Some(7101), None));
    assert_eq!(i.status, Status::Up);
    assert_eq!(i.metadata.get("owner"), Some("reports-team"));
    assert_eq!(i.last_renewal_ms.get(), Some(1402552694257));
    assert_eq!(snap.apps_hashcode.as_deref(), Some("UP_1_"));
}

#[test]
fn mixed_shapes_and_one_bad_instance() {
    let snap = parse_apps(&fixture("mixed-shapes.json")).unwrap();
    let all = &snap.instances;
    let ids: Vec<&str> = all.iter().map(|i| i.instance_id.as_str()).collect();
    assert_eq!(ids.len(), 6, "{ids:?}");
    // Two bad instances are skipped and noted; the others survive.
    assert_eq!(snap.skipped.len(), 2, "{:?}", snap.skipped);

    let up = find(all, "order-service-7d9f8-x2k4q:order-service:8080");
    assert_eq!(
        (up.port, up.secure_port, up.status),
        (Some(8080), Some(8443), Status::Up)
    );
    assert_eq!(up.zone(), Some("eu-west-1a"));
    assert_eq!(up.metadata.get("weight"), Some("3"));
    assert!(!up.metadata.contains_key("@class"));
    assert_eq!(up.last_renewal_ms.get(), Some(1700000030000));

    // `status` is taken as sent (a real server has already applied the override to
    // it); `overriddenStatus` is kept for the console only.
    let oos = find(all, "order-service-7d9f8-oos01:order-service:8080");
    assert_eq!(
        (oos.status, oos.overridden_status),
        (Status::Up, Some(Status::OutOfService))
    );
    // No instanceId: metadata.instanceId is used.
    let meta = find(all, "order-meta-id:order-service:8080");
    assert_eq!((meta.status, meta.port), (Status::Down, Some(8080)));
    // A single instance as a bare object; STARTING kept.
    assert_eq!(find(all, "payment-1").status, Status::Starting);
    // Unknown statuses are UNKNOWN; a disabled plain port is no port.
    let secure = find(all, "secure-1");
    assert_eq!(
        (secure.status, secure.port, secure.secure_port),
        (Status::Unknown, None, Some(443))
    );
    let disabled = find(all, "secure-2");
    assert_eq!((disabled.port, disabled.secure_port), (None, None));
}

#[test]
fn empty_registries_parse_to_nothing() {
    for name in ["empty.json", "no-application-key.json"] {
        let snap = parse_apps(&fixture(name)).unwrap();
        assert!(
            snap.instances.is_empty() && snap.skipped.is_empty(),
            "{name}"
        );
    }
    let xml = parse_apps(
        b"<applications><versions__delta>1</versions__delta><apps__hashcode/></applications>",
    )
    .unwrap();
    assert!(xml.instances.is_empty());
}

#[test]
fn xml_when_the_server_ignores_accept() {
    let snap = parse_apps(&fixture("registry.xml")).unwrap();
    assert_eq!(snap.instances.len(), 2, "{:?}", snap.skipped);
    let config = find(
        &snap.instances,
        "config-1.example.internal:config-service:8888",
    );
    assert_eq!((config.port, config.secure_port), (Some(8888), None));
    assert_eq!(config.zone(), Some("zone-b"));
    assert_eq!(config.app, "CONFIG-SERVICE");
    assert_eq!(config.last_renewal_ms.get(), Some(1596110179310));
    // No instanceId, no metadata id: hostName + port.
    let gw = find(&snap.instances, "gw-2:8080");
    assert_eq!(gw.status, Status::Up);
    assert_eq!(snap.apps_hashcode.as_deref(), Some("UP_2_"));
}

#[test]
fn deltas_split_deleted_from_upserted() {
    let snap = parse_apps(&fixture("delta.json")).unwrap();
    let gone: Vec<String> = snap.deleted.iter().map(ToString::to_string).collect();
    assert_eq!(gone, ["ORDER-SERVICE/gone-1"]);
    assert_eq!(snap.instances.len(), 1);
    assert_eq!(snap.instances[0].instance_id, "new-1");
}

#[test]
fn single_application_endpoint() {
    let body = br#"{"application": {"name": "PAY", "instance": [{"instanceId": "p1", "ipAddr": "10.0.0.1", "status": "UP", "port": 80}]}}"#;
    let snap = parse_app(body).unwrap();
    assert_eq!(snap.instances.len(), 1);
    assert_eq!(
        snap.instances[0].app, "PAY",
        "the app name comes from the application when instances omit it"
    );
}

#[test]
fn unusable_documents_are_errors_naming_the_problem() {
    for (body, want) in [
        (&b""[..], "empty body"),
        (b"<html><body>502 Bad Gateway</body>", "<html>"),
        (b"<?xml version=\"1.0\"?>\n<error>nope</error>", "<error>"),
        (b"Service Unavailable", "starts with"),
        (b"{\"applications\": {\"application\": [", "JSON"),
        (b"{\"something\": \"else\"}", "no \"applications\""),
        (b"[1, 2, 3]", "starts with"),
    ] {
        let err = parse_apps(body).expect_err(std::str::from_utf8(body).unwrap());
        let text = err.to_string();
        assert!(
            text.contains(want) || matches!((&err, want), (ParseError::Xml(_), "XML")),
            "{text} should mention {want}"
        );
    }
}

/// The public samples, when the shared reference folder is next to the project.
#[test]
fn public_samples_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/eureka-samples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!(
            "SKIPPED: {} not found; the public samples are not checked",
            dir.display()
        );
        return;
    };
    let mut checked = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if ext != "json" && ext != "xml" {
            continue;
        }
        let snap = parse_apps(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            snap.skipped.is_empty(),
            "{}: {:?}",
            path.display(),
            snap.skipped
        );
        let empty_sample = path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .contains("no-apps");
        assert_eq!(
            snap.instances.is_empty(),
            empty_sample,
            "{}",
            path.display()
        );
        for i in &snap.instances {
            assert!(
                !i.instance_id.is_empty() && !i.app.is_empty(),
                "{}: {i:?}",
                path.display()
            );
            assert!(
                i.port.is_some() || i.secure_port.is_some(),
                "{}: {i:?}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 5, "expected the six samples, checked {checked}");
}
