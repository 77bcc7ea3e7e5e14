//! The built-in actuator policy against the real Spring Boot client (`it/spring-client`,
//! every actuator endpoint exposed, shutdown and heapdump included) registered in Spring
//! Cloud's own Eureka server: each instance's actuator base is read from its registration,
//! so the policy holds at `/actuator` and, for an application that moved its actuator, at
//! `/manage`, where `/actuator` is then an ordinary path; signed in with a bearer token of
//! the real OpenID provider (`it/auth-server`) where the policy asks for it. Both engines. And the base a Nacos
//! registration carries in the metadata Spring Cloud Alibaba writes, against rnacos.

mod common;
#[path = "common/rnacos.rs"]
mod rnacos;

use std::collections::BTreeSet;
use std::time::Duration;

use common::real::*;
use common::*;

/// Every endpoint the client has, exposed over HTTP (Boot 3.4+ gives heapdump and
/// shutdown no access unless asked).
const EVERY_ENDPOINT: [&str; 3] = [
    "--management.endpoints.web.exposure.include=*",
    "--management.endpoint.heapdump.access=unrestricted",
    "--management.endpoint.shutdown.access=unrestricted",
];

/// Spring Cloud Netflix registers `eureka.instance.*-url-path`, not the actuator's
/// base-path: an application that moves its actuator sets both.
const MANAGE: [&str; 3] = [
    "--management.endpoints.web.base-path=/manage",
    "--eureka.instance.health-check-url-path=/manage/health",
    "--eureka.instance.status-page-url-path=/manage/info",
];

/// One rule for everything else: loopback clients (the test) may reach the pods.
const RULES: &str =
    "  access:\n    rules:\n      - name: loopback\n        clients: [127.0.0.0/8]\n";

/// Status and body of one request through the proxy, with a bearer token if given.
fn send(x: &Xipgate, label: &str, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let text = raw(
        x.proxy,
        format!(
            "{method} {path} HTTP/1.1\r\nHost: {label}.{DOMAIN}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("request through xipgate");
    let (status, _, body) = parse_response(&text);
    (status, body)
}

/// The endpoints the app's actuator lists at `base`, asked directly (not through the edge).
fn listed(app: &SpringClient, base: &str) -> BTreeSet<String> {
    let (s, body) = request(app.addr(), "GET", base, None).expect("the app's actuator");
    assert_eq!(s, 200, "{base}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("actuator JSON");
    v["_links"]
        .as_object()
        .map(|l| l.keys().cloned().collect())
        .unwrap_or_default()
}

/// The label of the one instance of `service`, from the console's API.
fn instance_label(x: &Xipgate, service: &str) -> String {
    let (_, v) = x.api(&format!("/api/v1/services/{service}"));
    v["instances"][0]["label"]
        .as_str()
        .unwrap_or_else(|| panic!("{service} has an instance: {v}"))
        .to_string()
}

#[test]
fn the_actuator_policy_holds_at_each_instance_s_real_base() {
    let eureka = EurekaServer::start(&[], 200);
    let plain = SpringClient::start_with(&eureka, "act-svc", &EVERY_ENDPOINT);
    let managed =
        SpringClient::start_with(&eureka, "manage-svc", &[EVERY_ENDPOINT, MANAGE].concat());
    // The endpoints are really there: whatever the edge refuses, it refuses for itself.
    for (app, base) in [(&plain, "/actuator"), (&managed, "/manage")] {
        let links = listed(app, base);
        for e in [
            "health",
            "info",
            "env",
            "heapdump",
            "shutdown",
            "threaddump",
            "refresh",
        ] {
            assert!(links.contains(e), "{base}/{e} is exposed: {links:?}");
        }
    }
    let registered = eureka.instances("MANAGE-SVC");
    assert!(
        registered.iter().any(|i| i["healthCheckUrl"]
            .as_str()
            .is_some_and(|u| u.ends_with("/manage/health"))),
        "the registration names the custom base: {registered:?}"
    );

    // Signed in: a client-credentials token of the real provider, for `robot`, whose
    // group `robots` is made the operators' group here.
    // (The login client is not used here; the provider needs a redirect URI for it.)
    let idp = common::idp::Idp::start(
        &["http://127.0.0.1/unused".to_string()],
        Duration::from_secs(600),
    );
    let robot = idp.client_credentials("robot", "robot-secret");
    let bearer = format!(
        "    bearer:\n      issuer: {}\n      audiences: [xipgate]\n    actuator:\n      operators: [robots]\n",
        idp.issuer()
    );
    for fast_path in [true, false] {
        let x = Xipgate::start(
            &eureka.url(),
            &format!("{RULES}{bearer}  downstream:\n    fast_path: {fast_path}\n"),
        );
        let engine = if fast_path { "fast path" } else { "Pingora" };
        eventually(Duration::from_secs(60), "both apps routed", || {
            x.get("act-svc", "/whoami").0 == 200 && x.get("manage-svc", "/whoami").0 == 200
        });
        let plain_label = instance_label(&x, "act-svc");
        let managed_label = instance_label(&x, "manage-svc");
        let (_, v) = x.api(&format!("/api/v1/instances/{managed_label}"));
        assert_eq!(v["actuator_bases"], serde_json::json!(["/manage"]), "{v}");

        let mut refused = 0;
        for (label, base, other) in [
            ("act-svc", "/actuator", "/manage"),
            (plain_label.as_str(), "/actuator", "/manage"),
            ("manage-svc", "/manage", "/actuator"),
            (managed_label.as_str(), "/manage", "/actuator"),
        ] {
            let t = Some(robot.as_str());
            let cases: Vec<(&str, String, Option<&str>, u16)> = vec![
                // Probes need health: public, and it reaches the app.
                ("GET", format!("{base}/health"), None, 200),
                // Signed in.
                ("GET", format!("{base}/info"), None, 401),
                ("GET", format!("{base}/info"), t, 200),
                ("GET", base.to_string(), None, 401),
                ("GET", base.to_string(), t, 200),
                // The operators' group.
                ("GET", format!("{base}/env"), None, 401),
                ("GET", format!("{base}/env"), t, 200),
                ("GET", format!("{base}/beans"), t, 200),
                // Refused unless a rule names them, operators or not.
                ("POST", format!("{base}/env"), t, 403),
                ("GET", format!("{base}/heapdump"), t, 403),
                ("GET", format!("{base}/heapdump"), None, 403),
                ("GET", format!("{base}/threaddump"), t, 403),
                ("POST", format!("{base}/shutdown"), t, 403),
                ("POST", format!("{base}/refresh"), t, 403),
                ("GET", format!("{base}/%68eapdump"), t, 403),
                // Paths Tomcat reads as the actuator's.
                ("GET", format!("{base};/heapdump"), t, 400),
                ("GET", format!("/{base}/heapdump"), t, 400),
                ("GET", format!("/x/..;{base}/heapdump"), t, 400),
                // The other base is an ordinary path here: the loopback rule lets it
                // through, and the app has nothing there.
                ("GET", format!("{other}/env"), None, 404),
                ("POST", format!("{other}/shutdown"), None, 404),
                // The application itself.
                ("GET", "/whoami".to_string(), None, 200),
            ];
            for (method, path, token, want) in cases {
                let (status, body) = send(&x, label, method, &path, token);
                let who = if token.is_some() { "robot" } else { "nobody" };
                assert_eq!(
                    status, want,
                    "{engine}: {method} {path} on {label} by {who}: {body}"
                );
                if matches!(want, 400 | 401 | 403) {
                    refused += 1;
                }
                if path.ends_with("/health") {
                    assert!(body.contains("UP"), "{engine}: health from the app: {body}");
                }
            }
        }

        // Refused at the edge: no try reached an app, and the log names the rule.
        eventually(Duration::from_secs(5), "every refusal logged", || {
            x.access()
                .iter()
                .filter(|r| matches!(r["status"].as_u64(), Some(400 | 401 | 403)))
                .count()
                >= refused
        });
        for r in x.access() {
            if matches!(r["status"].as_u64(), Some(400 | 401 | 403)) {
                assert_eq!(r["tries"], 0, "{engine}: refused, yet tried: {r}");
                assert!(r["rule"].is_string(), "{engine}: {r}");
            }
        }

        // The console explains the same decisions from the same registrations.
        let (s, e) = x.api(&format!(
            "/api/v1/access/explain?host=manage-svc.{DOMAIN}&path=/manage/heapdump"
        ));
        assert_eq!(s, 200, "{e}");
        assert_eq!(
            (e["rule"].as_str(), e["status"].as_u64()),
            (Some("actuator:heapdump"), Some(403)),
            "{e}"
        );
        let (_, e) = x.api(&format!(
            "/api/v1/access/explain?host=manage-svc.{DOMAIN}&path=/actuator/env&client=127.0.0.1"
        ));
        assert_eq!(
            (e["rule"].as_str(), e["decision"].as_str()),
            (Some("loopback"), Some("allow")),
            "{e}"
        );
    }

    // Neither shutdown reached an app.
    for (app, base) in [(&plain, "/actuator"), (&managed, "/manage")] {
        let (s, body) = request(app.addr(), "GET", &format!("{base}/health"), None)
            .expect("the app still answers");
        assert_eq!(s, 200, "{body}");
    }
}

/// Spring Cloud Alibaba's Nacos discovery writes `management.endpoints.web.base-path`
/// into the instance's metadata when the application sets it, and with a management port
/// of its own `management.port` and `management.context-path`: the policy follows them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_actuator_base_comes_from_nacos_metadata() {
    let nacos = rnacos::Rnacos::start(None).await;
    let manage = Backend::start("manage").await;
    let mgmt = Backend::start("mgmt").await;
    let register = |b: &Backend, metadata: &'static str| {
        let port = b.addr.port().to_string();
        let nacos = &nacos;
        async move {
            nacos
                .instance(
                    reqwest::Method::POST,
                    &[
                        ("serviceName", "orders"),
                        ("ip", "127.0.0.1"),
                        ("port", &port),
                        ("ephemeral", "false"),
                        ("metadata", metadata),
                    ],
                )
                .await
        }
    };
    register(
        &manage,
        r#"{"pod-name":"orders-a","management.endpoints.web.base-path":"/manage"}"#,
    )
    .await;
    register(
        &mgmt,
        r#"{"pod-name":"orders-b","management.port":"9001","management.context-path":"/mgmt"}"#,
    )
    .await;
    let x = Xipgate::start(
        &nacos.url(),
        &format!(
            "  registry:\n    eureka:\n      enabled: false\n    nacos:\n      - urls: [\"{}\"]\n        interval: 300ms\n{RULES}",
            nacos.url()
        ),
    );
    let a = format!("orders-a-{}", manage.addr.port());
    let b = format!("orders-b-{}", mgmt.addr.port());
    eventually(Duration::from_secs(20), "both instances routed", || {
        x.get(&a, "/").0 == 200 && x.get(&b, "/").0 == 200
    });
    let bases =
        |label: &str| x.api(&format!("/api/v1/instances/{label}")).1["actuator_bases"].clone();
    assert_eq!(bases(&a), serde_json::json!(["/manage"]));
    assert_eq!(bases(&b), serde_json::json!(["/mgmt/actuator"]));

    let before = (
        manage.hits.load(std::sync::atomic::Ordering::SeqCst),
        mgmt.hits.load(std::sync::atomic::Ordering::SeqCst),
    );
    for (label, path, want) in [
        (a.as_str(), "/manage/heapdump", 403),
        (a.as_str(), "/manage/env", 401),
        (b.as_str(), "/mgmt/actuator/heapdump", 403),
        (b.as_str(), "/mgmt/actuator/env", 401),
        // The service host reaches either instance: both bases are protected.
        ("orders", "/manage/heapdump", 403),
        ("orders", "/mgmt/actuator/shutdown", 403),
    ] {
        let (status, body) = send(&x, label, "GET", path, None);
        assert_eq!(status, want, "GET {path} on {label}: {body}");
    }
    let after = (
        manage.hits.load(std::sync::atomic::Ordering::SeqCst),
        mgmt.hits.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert_eq!(before, after, "no refused request reached a backend");
    // Health is public and reaches the instance; /actuator on `orders-a` is an ordinary
    // path there (the loopback rule lets it through).
    for (label, path) in [
        (a.as_str(), "/manage/health"),
        (b.as_str(), "/mgmt/actuator/health"),
        (a.as_str(), "/actuator/heapdump"),
    ] {
        let (status, body) = send(&x, label, "GET", path, None);
        assert_eq!(status, 200, "GET {path} on {label}: {body}");
    }
}
