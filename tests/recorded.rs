//! Answers of Spring Cloud's Eureka server (eureka-core 2.0.6), recorded byte for byte by
//! `it/record-fixtures.sh`, replayed through the parser. The registry behind them: see
//! it/README.md (an OUT_OF_SERVICE override, `status: DOWN` with `overriddenStatus: UP`,
//! one instanceId under two apps, a cancelled app that only the delta still names).

use std::collections::BTreeMap;
use std::io::Read;

use xipgate::registry::apps_hashcode;
use xipgate::registry::parse::{parse_app, parse_apps};
use xipgate::registry::{Instance, Snapshot, Status};

const VERSION: &str = "eureka-2.0.6";

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/{VERSION}-{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .expect("the recorded gzip body decompresses");
    out
}

/// (app, instanceId) → (status, overriddenStatus): what routing and the console use.
fn statuses(snap: &Snapshot) -> BTreeMap<(String, String), (Status, Option<Status>)> {
    snap.instances
        .iter()
        .map(|i| {
            (
                (i.app.clone(), i.instance_id.clone()),
                (i.status, i.overridden_status),
            )
        })
        .collect()
}

fn find<'a>(snap: &'a Snapshot, app: &str, id: &str) -> &'a Instance {
    snap.instances
        .iter()
        .find(|i| i.app == app && i.instance_id == id)
        .unwrap_or_else(|| panic!("{app}/{id} not parsed"))
}

#[test]
fn the_hashcode_the_server_sent_is_the_hashcode_of_our_parse() {
    for (name, body) in [
        ("apps.json", fixture("apps.json")),
        ("apps.json.gz", gunzip(&fixture("apps.json.gz"))),
        ("apps.xml", fixture("apps.xml")),
    ] {
        let snap = parse_apps(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(snap.skipped.is_empty(), "{name}: {:?}", snap.skipped);
        assert_eq!(snap.instances.len(), 7, "{name}");
        let theirs = snap.apps_hashcode.clone().expect("the server sends one");
        assert_eq!(theirs, "DOWN_2_OUT_OF_SERVICE_1_UP_4_", "{name}");
        assert_eq!(apps_hashcode(snap.instances.iter()), theirs, "{name}");
    }
}

#[test]
fn plain_gzip_and_xml_parse_alike() {
    let plain = parse_apps(&fixture("apps.json")).expect("json");
    let gz = parse_apps(&gunzip(&fixture("apps.json.gz"))).expect("gzip");
    let xml = parse_apps(&fixture("apps.xml")).expect("xml");
    assert_eq!(statuses(&plain), statuses(&gz));
    assert_eq!(statuses(&plain), statuses(&xml));
    let sorted = |s: &Snapshot| {
        let mut v = s.instances.clone();
        v.sort_by(|a, b| (&a.app, &a.instance_id).cmp(&(&b.app, &b.instance_id)));
        v
    };
    assert_eq!(sorted(&plain), sorted(&xml), "every field, XML as JSON");
}

#[test]
fn status_is_taken_as_the_server_folded_it() {
    let snap = parse_apps(&fixture("apps.json")).expect("json");
    // The override is already in `status`...
    let oos = find(&snap, "ALPHA-SVC", "127.0.0.1:alpha-svc:9103");
    assert_eq!(
        (oos.status, oos.overridden_status),
        (Status::OutOfService, Some(Status::OutOfService))
    );
    // ...and the instance's own DOWN wins over an override UP: never routed.
    let down = find(&snap, "ALPHA-SVC", "127.0.0.1:alpha-svc:9104");
    assert_eq!(
        (down.status, down.overridden_status),
        (Status::Down, Some(Status::Up))
    );
    let plain = find(&snap, "ALPHA-SVC", "127.0.0.1:alpha-svc:9101");
    assert_eq!((plain.status, plain.overridden_status), (Status::Up, None));
}

#[test]
fn one_instance_id_under_two_apps_is_two_instances() {
    let snap = parse_apps(&fixture("apps.json")).expect("json");
    let a = find(&snap, "ALPHA-SVC", "127.0.0.1:shared:9200");
    let b = find(&snap, "BETA-SVC", "127.0.0.1:shared:9200");
    assert_ne!(a.port, b.port);
    assert_ne!(a.key(), b.key());
}

#[test]
fn a_renewed_lease_is_read_back_from_now_plus_duration() {
    // The status PUT renewed 9103's lease: the server sent renewal + 90 s.
    let raw: serde_json::Value = serde_json::from_slice(&fixture("apps.json")).expect("json");
    let lease = raw["applications"]["application"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["instance"].as_array().into_iter().flatten())
        .find(|i| i["instanceId"] == "127.0.0.1:alpha-svc:9103")
        .map(|i| i["leaseInfo"].clone())
        .expect("9103's lease");
    let sent = lease["lastRenewalTimestamp"].as_u64().expect("ms");
    let duration_ms = lease["durationInSecs"].as_u64().expect("s") * 1000;
    assert!(sent > lease["registrationTimestamp"].as_u64().expect("ms") + duration_ms - 1000);
    let snap = parse_apps(&fixture("apps.json")).expect("json");
    let inst = find(&snap, "ALPHA-SVC", "127.0.0.1:alpha-svc:9103");
    assert_eq!(inst.last_renewal_ms.get(), Some(sent - duration_ms));
    // Never renewed: the registration time, as sent.
    let fresh = find(&snap, "ALPHA-SVC", "127.0.0.1:alpha-svc:9101");
    assert!(fresh.last_renewal_ms.get().is_some());
}

#[test]
fn the_delta_applied_to_the_full_registry_hashes_as_the_server_says() {
    let full = parse_apps(&fixture("apps.json")).expect("json");
    let delta = parse_apps(&fixture("delta.json")).expect("delta");
    let deleted: Vec<String> = delta.deleted.iter().map(ToString::to_string).collect();
    assert_eq!(deleted, ["GAMMA-SVC/127.0.0.1:gamma-svc:9301"]);
    let mut copy: BTreeMap<_, _> = full
        .instances
        .iter()
        .map(|i| (i.key(), i.clone()))
        .collect();
    for k in &delta.deleted {
        copy.remove(k);
    }
    for i in &delta.instances {
        copy.insert(i.key(), i.clone());
    }
    assert_eq!(
        Some(apps_hashcode(copy.values())),
        delta.apps_hashcode,
        "the delta's hashcode is the whole registry's"
    );
}

#[test]
fn one_application_and_an_unknown_one() {
    let app = parse_app(&fixture("app-ALPHA-SVC.json")).expect("app");
    assert_eq!(app.instances.len(), 5);
    assert!(app.instances.iter().all(|i| i.app == "ALPHA-SVC"));
    // An unknown app is a 404 with Spring's error JSON: not a registry document.
    let err = parse_app(&fixture("unknown-app-404.json")).expect_err("not an application");
    assert!(err.to_string().contains("application"), "{err}");
}
