//! Steering (`xipgate.balance`) through both engines: sticky cookies, pins, hints, weight
//! 0 and canaries, each request compared (status, headers, which instance answered, the
//! `Set-Cookie` the edge adds, what the backend received).

use super::*;
use serde_json::json;

const SVC: &str = "bal-svc";

/// Instances of `bal-svc`, each at a recording backend of its own: `a` (hint blue) and
/// `d` in the stable rotation, `b` with weight 0, `c` the canary, `e` DOWN.
struct Fleet {
    recorders: Vec<Recorder>,
    insts: Vec<Inst>,
}

impl Fleet {
    fn start() -> Self {
        let metas = [
            ("a", "UP", json!({"hint": "blue"})),
            ("b", "UP", json!({"weight": "0"})),
            ("c", "UP", json!({"version": "canary"})),
            ("d", "UP", json!({"weight": "1"})),
            ("e", "DOWN", json!({})),
        ];
        let recorders: Vec<Recorder> = metas.iter().map(|_| Recorder::start(Vec::new())).collect();
        let insts = metas
            .iter()
            .zip(&recorders)
            .map(|((pod, status, meta), r)| {
                let mut i = Inst::up(SVC, pod, r.addr).status(status);
                i.metadata = meta.clone();
                i
            })
            .collect();
        Fleet { recorders, insts }
    }

    fn label(&self, pod: &str) -> String {
        self.inst(pod).label()
    }

    fn inst(&self, pod: &str) -> &Inst {
        self.insts
            .iter()
            .find(|i| i.id.starts_with(&format!("{pod}:")))
            .expect("a pod of the fleet")
    }

    /// Every request the backends received since the last call, by pod.
    fn take(&self, port: u16) -> Vec<(String, (String, BTreeSet<String>))> {
        self.recorders
            .iter()
            .zip(&self.insts)
            .flat_map(|(r, i)| {
                let pod = i.id.split(':').next().unwrap_or("").to_string();
                r.take()
                    .into_iter()
                    .map(move |x| (pod.clone(), normalise_request(&x, port)))
            })
            .collect()
    }
}

#[test]
fn both_engines_steer_alike() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let fleet = Fleet::start();
    let eureka = rt.block_on(StubEureka::start());
    rt.block_on(eureka.serve(&fleet.insts));
    let balance = "  balance:\n    services:\n      bal-svc:\n        sticky: true\n        spring_cookie: true\n        canary:\n          metadata: {version: canary}\n          share: 0\n";
    let fast = Xipgate::start(
        &eureka.url(),
        &format!("  downstream:\n    fast_path: true\n{balance}"),
    );
    let pingora = Xipgate::start(
        &eureka.url(),
        &format!("  downstream:\n    fast_path: false\n{balance}"),
    );
    let (a, b, d) = (fleet.label("a"), fleet.label("b"), fleet.label("d"));
    let a_id = fleet.inst("a").id.clone();
    let d_id = fleet.inst("d").id.clone();
    let c_id = fleet.inst("c").id.clone();
    let set = |label: &str| {
        Some(format!(
            "xipgate-instance={label}; Path=/; HttpOnly; SameSite=Lax"
        ))
    };
    // (name, extra request headers, status, the instance that answers, Set-Cookie, what
    // of the request's cookies the backend gets)
    type Expect = (
        &'static str,
        String,
        &'static str,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let cases: Vec<Expect> = vec![
        (
            "rotation-1",
            String::new(),
            "200",
            Some(a_id.clone()),
            set(&a),
            None,
        ),
        (
            "rotation-2",
            String::new(),
            "200",
            Some(d_id.clone()),
            set(&d),
            None,
        ),
        (
            "sticky",
            format!("Cookie: x=1; xipgate-instance={d}\r\n"),
            "200",
            Some(d_id.clone()),
            None,
            Some("x=1".into()),
        ),
        (
            "sticky-alone",
            format!("Cookie: xipgate-instance={d}\r\n"),
            "200",
            Some(d_id.clone()),
            None,
            None,
        ),
        (
            "sticky-malformed",
            "Cookie: xipgate-instance=%%%; y=2\r\n".into(),
            "200",
            Some(a_id.clone()),
            set(&a),
            Some("y=2".into()),
        ),
        (
            "sticky-weight-0",
            format!("Cookie: xipgate-instance={b}\r\n"),
            "200",
            Some(d_id.clone()),
            set(&d),
            None,
        ),
        (
            "sticky-down",
            format!("Cookie: xipgate-instance={}\r\n", fleet.label("e")),
            "200",
            Some(a_id.clone()),
            set(&a),
            None,
        ),
        (
            "spring-cookie",
            format!("Cookie: sc-lb-instance-id={d_id}\r\n"),
            "200",
            Some(d_id.clone()),
            set(&d),
            Some(format!("sc-lb-instance-id={d_id}")),
        ),
        (
            "pin-label",
            format!("X-Xipgate-Instance: {d}\r\n"),
            "200",
            Some(d_id.clone()),
            set(&d),
            None,
        ),
        (
            "pin-id",
            format!("X-Xipgate-Instance: {a_id}\r\n"),
            "200",
            Some(a_id.clone()),
            set(&a),
            None,
        ),
        (
            "pin-over-sticky",
            format!("X-Xipgate-Instance: {a}\r\nCookie: xipgate-instance={d}\r\n"),
            "200",
            Some(a_id.clone()),
            set(&a),
            None,
        ),
        (
            "pin-unknown",
            "X-Xipgate-Instance: nobody-1\r\n".into(),
            "503",
            None,
            None,
            None,
        ),
        (
            "pin-weight-0",
            format!("X-Xipgate-Instance: {b}\r\n"),
            "503",
            None,
            None,
            None,
        ),
        (
            "pin-down",
            format!("X-Xipgate-Instance: {}\r\n", fleet.label("e")),
            "503",
            None,
            None,
            None,
        ),
        (
            "hint",
            "X-SC-LB-Hint: blue\r\n".into(),
            "200",
            Some(a_id.clone()),
            set(&a),
            None,
        ),
        (
            "hint-unknown",
            "X-SC-LB-Hint: green\r\n".into(),
            "503",
            None,
            None,
            None,
        ),
        (
            "canary-header",
            "X-Xipgate-Canary: true\r\n".into(),
            "200",
            Some(c_id.clone()),
            set(&fleet.label("c")),
            None,
        ),
        (
            "canary-cookie",
            "Cookie: xipgate-canary=true\r\n".into(),
            "200",
            Some(c_id.clone()),
            set(&fleet.label("c")),
            Some("xipgate-canary=true".into()),
        ),
        (
            "canary-other-value",
            "X-Xipgate-Canary: no\r\n".into(),
            "200",
            Some(d_id.clone()),
            set(&d),
            None,
        ),
        (
            "rotation-3",
            String::new(),
            "200",
            Some(a_id.clone()),
            set(&a),
            None,
        ),
    ];
    let mut differences = Vec::new();
    for (name, extra, status, served, set_cookie, cookie) in &cases {
        let answer = |x: &Xipgate| {
            let port = x.proxy.port();
            let request =
                format!("GET /{name} HTTP/1.1\r\nHost: {SVC}.{DOMAIN}:{port}\r\n{extra}\r\n");
            let a = send(x.proxy, &request).replace(&port.to_string(), "PORT");
            (normalise_response(&a), fleet.take(port))
        };
        fleet.take(0);
        let (ra, seen_a) = answer(&fast);
        let (rb, seen_b) = answer(&pingora);
        if ra != rb {
            differences.push(format!(
                "{name}: client saw\n  fast:    {ra:?}\n  pingora: {rb:?}"
            ));
        }
        if seen_a != seen_b {
            differences.push(format!(
                "{name}: backends got\n  fast:    {seen_a:?}\n  pingora: {seen_b:?}"
            ));
        }
        let (line, headers, body) = &ra;
        assert_eq!(
            line.split_whitespace().nth(1),
            Some(*status),
            "{name}: {ra:?}"
        );
        let get = |n: &str| {
            headers
                .iter()
                .find_map(|h| h.strip_prefix(&format!("{n}: ")).map(String::from))
        };
        assert_eq!(get("x-served-by"), *served, "{name}: {ra:?}");
        assert_eq!(get("set-cookie"), *set_cookie, "{name}: {ra:?}");
        if *status == "503" {
            assert!(
                seen_a.is_empty(),
                "{name}: a refused pin reaches no backend"
            );
            assert!(
                body.contains("pinned instance") || body.contains("hint"),
                "{name}: {body}"
            );
            continue;
        }
        assert_eq!(seen_a.len(), 1, "{name}: {seen_a:?}");
        let (_, (_, got)) = &seen_a[0];
        let cookies: Vec<&String> = got.iter().filter(|h| h.starts_with("cookie:")).collect();
        assert_eq!(
            cookies
                .first()
                .map(|c| c.trim_start_matches("cookie: ").to_string()),
            *cookie,
            "{name}: the edge's sticky cookie goes to no backend: {got:?}"
        );
        assert!(
            !got.iter().any(|h| h.starts_with("x-xipgate-instance")),
            "{name}: the pin header goes to no backend: {got:?}"
        );
    }
    assert!(
        differences.is_empty(),
        "{} difference(s):\n{}",
        differences.len(),
        differences.join("\n")
    );
}
