//! Configuration: the bundled defaults, the environment overlay, and a set of broken
//! files whose messages must name the key and the problem, in the library and in `-t`.

use std::process::Command;

use xipgate::config::{self, load};

fn no_env(_: &str) -> Option<String> {
    None
}

fn check(yaml: &str) -> Result<config::Config, config::ConfigErrors> {
    let parsed = config::parse(yaml, "test.yaml")?;
    config::validate(parsed, "test.yaml")
}

#[test]
fn bundled_defaults_load() {
    let cfg = load(None, no_env).expect("the bundled conf/xipgate.yaml is valid");
    assert_eq!(cfg.listen[0].to_string(), "0.0.0.0:8080");
    assert_eq!(cfg.domains, vec!["127-0-0-1.sslip.io"]);
    assert_eq!(cfg.registry.urls[0].base, "http://127.0.0.1:8761/eureka");
    assert_eq!(cfg.registry.interval.as_secs(), 10);
    assert_eq!(cfg.upstream.allow.len(), 5);
    assert_eq!(
        cfg.console.listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9080")
    );
    assert!(cfg.dns.is_none());
}

/// Pingora's timeouts run on Tokio's timer unless the file says otherwise (Pingora's own
/// timer keeps a thread waking every 10 ms); a value the file gives, null included, is kept.
#[test]
fn pingora_timeouts_default_to_tokios_timer() {
    let threshold = |yaml: &str| {
        config::parse(yaml, "test.yaml")
            .expect("parses")
            .server
            .fast_timeout_to_tokio_threshold_seconds
    };
    assert_eq!(
        threshold("xipgate: {}\n"),
        Some(config::FAST_TIMEOUT_TO_TOKIO_THRESHOLD_SECONDS)
    );
    assert_eq!(
        threshold("fast_timeout_to_tokio_threshold_seconds: 120\nxipgate: {}\n"),
        Some(120)
    );
    assert_eq!(
        threshold("fast_timeout_to_tokio_threshold_seconds: null\nxipgate: {}\n"),
        None
    );
}

/// Loopback is where the edge itself lives, never a real instance: neither the bundled file
/// nor the built-in default allows it (a registrant could publish the console otherwise).
#[test]
fn loopback_is_not_allowed_by_default() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().expect("an address");
    let bundled = load(None, no_env).expect("bundled defaults");
    let built_in = check("").expect("no xipgate section");
    for cfg in [&bundled, &built_in] {
        let allowed = |a: &str| cfg.upstream.allow.iter().any(|n| n.contains(&ip(a)));
        for a in ["127.0.0.1", "127.1.2.3", "::1"] {
            assert!(!allowed(a), "{a} is allowed by {:?}", cfg.upstream.allow);
        }
        for a in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "fd00::1",
        ] {
            assert!(allowed(a), "{a} is not allowed by {:?}", cfg.upstream.allow);
        }
    }
}

#[test]
fn environment_overrides_the_file() {
    let env = |k: &str| match k {
        "REGISTRY_HOST" => Some("eureka.default.svc".to_string()),
        "REGISTRY_PORT" => Some("8762".to_string()),
        "XIP_DOMAIN" => Some("10-0-0-5.sslip.io".to_string()),
        "XIP_IP" => Some("10.0.0.5".to_string()),
        "WEB_DOMAIN" => Some("Console.10-0-0-5.sslip.io".to_string()),
        "XIPGATE_CONSOLE_TOKEN" => Some(" from-a-secret-0123456789 ".to_string()),
        _ => None,
    };
    // WEB_DOMAIN serves the console on the public listener: it needs an access rule.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("xipgate.yaml");
    std::fs::write(
        &file,
        "xipgate:\n  console:\n    allow_clients: [\"10.0.0.0/8\"]\n",
    )
    .expect("write");
    let cfg = load(Some(&file), env).unwrap();
    assert_eq!(
        cfg.registry.urls[0].base,
        "http://eureka.default.svc:8762/eureka"
    );
    assert_eq!(cfg.domains, vec!["10-0-0-5.sslip.io"]);
    assert_eq!(
        cfg.edge_ip.map(|i| i.to_string()).as_deref(),
        Some("10.0.0.5")
    );
    assert_eq!(
        cfg.console.host.as_deref(),
        Some("console.10-0-0-5.sslip.io")
    );
    assert_eq!(
        cfg.console.token.as_deref(),
        Some("from-a-secret-0123456789")
    );
}

/// `console.host` serves the console on the proxy listener: where that listener is public,
/// it needs a token or allow_clients.
#[test]
fn a_public_console_host_needs_a_token_or_allowed_clients() {
    let host = "  console:\n    host: console.127-0-0-1.sslip.io\n";
    for (what, yaml, public_at) in [
        (
            "default listener (0.0.0.0:8080)",
            format!("xipgate:\n{host}"),
            Some("0.0.0.0:8080"),
        ),
        (
            "a public listener among loopback ones",
            format!("xipgate:\n  listen: [\"127.0.0.1:8080\", \"[::]:8081\"]\n{host}"),
            Some("[::]:8081"),
        ),
        (
            "an empty allow_clients list allows everyone",
            format!("xipgate:\n{host}    allow_clients: []\n"),
            Some("0.0.0.0:8080"),
        ),
        (
            "with a token",
            format!("xipgate:\n{host}    token: long-enough-token\n"),
            None,
        ),
        (
            "with allow_clients",
            format!("xipgate:\n{host}    allow_clients: [\"10.0.0.0/8\"]\n"),
            None,
        ),
        (
            "loopback listeners only",
            format!("xipgate:\n  listen: [\"127.0.0.1:8080\", \"[::1]:8080\"]\n{host}"),
            None,
        ),
        (
            "no console host",
            "xipgate:\n  console:\n    listen: 0.0.0.0:9080\n".to_string(),
            None,
        ),
    ] {
        match (check(&yaml), public_at) {
            (Ok(_), None) => {}
            (Err(err), Some(at)) => {
                let e = err
                    .errors
                    .iter()
                    .find(|e| e.key == "xipgate.console.host")
                    .unwrap_or_else(|| panic!("{what}: no error for console.host: {err}"));
                for words in [at, "xipgate.console.token", "xipgate.console.allow_clients"] {
                    assert!(
                        e.message.contains(words),
                        "{what}: '{}' lacks '{words}'",
                        e.message
                    );
                }
            }
            (Ok(_), Some(_)) => panic!("{what}: accepted"),
            (Err(err), None) => panic!("{what}: refused: {err}"),
        }
    }
    // WEB_DOMAIN alone over the bundled defaults is the same mistake.
    let env = |k: &str| (k == "WEB_DOMAIN").then(|| "console.127-0-0-1.sslip.io".to_string());
    let err = load(None, env).expect_err("WEB_DOMAIN without an access rule");
    assert!(
        err.errors.iter().any(|e| e.key == "xipgate.console.host"),
        "{err}"
    );
    // The token must fit the console's bound on `?token=`.
    let long = "t".repeat(config::MAX_CONSOLE_TOKEN_LEN + 1);
    let err = check(&format!("xipgate:\n  console:\n    token: {long}\n")).expect_err("long token");
    assert!(
        err.errors
            .iter()
            .any(|e| e.key == "xipgate.console.token" && e.message.contains("at most 256")),
        "{err}"
    );
}

#[test]
fn credentials_are_taken_out_of_urls() {
    let cfg = check("xipgate:\n  registry:\n    eureka:\n      urls: [\"http://user:s%40cret@eureka:8761/eureka/\"]\n").unwrap();
    let url = &cfg.registry.urls[0];
    assert_eq!(url.base, "http://eureka:8761/eureka");
    assert_eq!(url.auth, Some(("user".to_string(), "s@cret".to_string())));
    assert!(
        !format!("{url:?} {url}").contains("cret"),
        "the password never shows"
    );
}

/// Userinfo is percent-encoded, not form data: `+` stays a plus, `&` and `=` stay.
#[test]
fn credentials_keep_every_character() {
    // (userinfo as written in the URL, user, password)
    let cases = [
        ("user:s%40cret", "user", "s@cret"),
        ("user:pa+ss", "user", "pa+ss"),
        ("user:a&b=c", "user", "a&b=c"),
        ("user:p%2Bs%20x", "user", "p+s x"),
        ("us+er%3A1:pw", "us+er:1", "pw"),
        ("user:", "user", ""),
        ("user", "user", ""),
    ];
    for (userinfo, user, pass) in cases {
        let yaml = format!(
            "xipgate:\n  registry:\n    eureka:\n      urls: [\"http://{userinfo}@eureka:8761/eureka\"]\n"
        );
        let cfg = check(&yaml).unwrap_or_else(|e| panic!("{userinfo}: {e}"));
        assert_eq!(
            cfg.registry.urls[0].auth,
            Some((user.to_string(), pass.to_string())),
            "{userinfo}"
        );
    }
}

/// A URL that is refused is shown without its password, parsable or not.
#[test]
fn a_refused_url_never_shows_its_password() {
    for raw in [
        "http://user:hunter2@eureka:notaport/eureka",
        "http://user:hunter2@eu reka:8761/eureka",
        "user:hunter2@eureka:8761/eureka",
        "ftp://user:hunter2@eureka/eureka",
        "http://user:hunter2@/eureka",
    ] {
        let yaml = format!("xipgate:\n  registry:\n    eureka:\n      urls: [\"{raw}\"]\n");
        let err = check(&yaml).expect_err(raw).to_string();
        assert!(
            err.contains("xipgate.registry.eureka.urls[0]"),
            "{raw}: {err}"
        );
        assert!(!err.contains("hunter2"), "{raw}: {err}");
    }
}

#[test]
fn broken_files_name_key_and_problem() {
    for (yaml, key, words) in [
        (
            "xipgate:\n  lisen: [\"0.0.0.0:8080\"]\n",
            "xipgate.lisen",
            "unknown field `lisen`",
        ),
        (
            "xipgate:\n  registry:\n    eureka:\n      intervall: 5s\n",
            "xipgate.registry.eureka.intervall",
            "unknown field `intervall`",
        ),
        ("thread: 4\n", "thread", "unknown key"),
        (
            "xipgate:\n  upstream:\n    allow: [\"10.0.0.0/33\"]\n",
            "xipgate.upstream.allow[0]",
            "not a CIDR",
        ),
        (
            "xipgate:\n  registry:\n    eureka:\n      urls: [\"eureka:8761\"]\n",
            "xipgate.registry.eureka.urls[0]",
            "http",
        ),
        (
            "xipgate:\n  registry:\n    eureka:\n      urls: [\"not a url\"]\n",
            "xipgate.registry.eureka.urls[0]",
            "not a URL",
        ),
        (
            "xipgate:\n  domains: []\n",
            "xipgate.domains",
            "at least one",
        ),
        (
            "xipgate:\n  domains: [\"bad_domain!.io\"]\n",
            "xipgate.domains[0]",
            "not a valid domain",
        ),
        (
            "xipgate:\n  registry:\n    eureka:\n      interval: soon\n",
            "xipgate.registry.eureka.interval",
            "not a duration",
        ),
        (
            "xipgate:\n  registry:\n    eureka:\n      timeout: 0s\n",
            "xipgate.registry.eureka.timeout",
            "longer than zero",
        ),
        (
            "xipgate:\n  listen: [\"8080\"]\n",
            "xipgate.listen[0]",
            "not an address",
        ),
        (
            "xipgate:\n  upstream:\n    max_tries: 50\n",
            "xipgate.upstream.max_tries",
            "out of range",
        ),
        (
            "xipgate:\n  dns:\n    listen: [\"127.0.0.1:5353\"]\n",
            "xipgate.dns.edge_ips",
            "required",
        ),
        (
            "xipgate:\n  cors:\n    allow_origins: [\"*\"]\n",
            "xipgate.cors.allow_origins",
            "every web page",
        ),
        (
            "xipgate:\n  cors:\n    allow_origins: [\"https://ui.example.com\", \"ui.example.com/app\"]\n",
            "xipgate.cors.allow_origins[1]",
            "not an origin",
        ),
        ("xipgate: [1, 2]\n", "xipgate", "invalid type"),
        ("version: [\n", "(yaml)", ""),
    ] {
        let err = check(yaml).expect_err(yaml);
        let hit = err.errors.iter().find(|e| e.key == key);
        let e = hit.unwrap_or_else(|| panic!("{yaml:?}: no error for key {key}: {err}"));
        assert!(
            e.message.contains(words),
            "{yaml:?}: '{}' should contain '{words}'",
            e.message
        );
        assert!(
            err.to_string().starts_with("test.yaml: "),
            "the file is named: {err}"
        );
    }
}

/// `xipgate.access`: each check names the rule (and its key) and says what is wrong.
#[test]
fn access_rules_are_checked_naming_the_rule() {
    let rules = |r: &str| format!("xipgate:\n  access:\n    rules:\n{r}");
    for (yaml, key, words) in [
        (
            rules("      - public: true\n        pahts: [\"/x\"]\n"),
            "xipgate.access.rules[0].pahts",
            "unknown field `pahts`",
        ),
        (
            rules("      - public: true\n      - services: [orders]\n        deny: true\n"),
            "xipgate.access.rules[1]",
            "no request can reach it: rules[0]",
        ),
        (
            rules("      - services: [orders]\n        paths: [/api]\n        public: true\n      - services: [orders]\n        paths: [/api/v1]\n        deny: true\n"),
            "xipgate.access.rules[1]",
            "no request can reach it",
        ),
        (
            rules("      - groups: [devs]\n"),
            "xipgate.access.rules[0]",
            "neither xipgate.access.login nor xipgate.access.bearer",
        ),
        (
            rules("      - authenticated: true\n"),
            "xipgate.access.rules[0]",
            "neither xipgate.access.login nor xipgate.access.bearer",
        ),
        (
            rules("      - deny: true\n        public: true\n"),
            "xipgate.access.rules[0]",
            "deny: true cannot also allow",
        ),
        (
            rules("      - public: true\n        clients: [10.0.0.0/8]\n"),
            "xipgate.access.rules[0]",
            "public: true allows everyone",
        ),
        (
            rules("      - services: [orders]\n"),
            "xipgate.access.rules[0]",
            "allows nobody",
        ),
        (
            rules("      - paths: [\"/a/../b\"]\n        public: true\n"),
            "xipgate.access.rules[0].paths[0]",
            "written decoded",
        ),
        (
            rules("      - paths: [api]\n        public: true\n"),
            "xipgate.access.rules[0].paths[0]",
            "starts with /",
        ),
        (
            rules("      - clients: [10.0.0.0/33]\n"),
            "xipgate.access.rules[0].clients[0]",
            "not a CIDR",
        ),
        (
            rules("      - methods: [\"GE T\"]\n        public: true\n"),
            "xipgate.access.rules[0].methods[0]",
            "not a method",
        ),
        (
            rules("      - basic: true\n"),
            "xipgate.access.rules[0]",
            "xipgate.access.basic is not configured",
        ),
        (
            rules("      - name: office\n        services: [a]\n        public: true\n      - name: office\n        services: [b]\n        public: true\n"),
            "xipgate.access.rules[1].name",
            "rules[0]'s name too",
        ),
        (
            rules("      - name: \"actuator:env\"\n        public: true\n"),
            "xipgate.access.rules[0].name",
            "built-in rule",
        ),
        (
            "xipgate:\n  access:\n    trusted_proxies: [10.0.0.300/8]\n".to_string(),
            "xipgate.access.trusted_proxies[0]",
            "not a CIDR",
        ),
    ] {
        let err = check(&yaml).expect_err(&yaml);
        let hit = err.errors.iter().find(|e| e.key == key);
        let e = hit.unwrap_or_else(|| panic!("{yaml}: no error for key {key}: {err}"));
        assert!(
            e.message.contains(words),
            "{yaml}: '{}' should contain '{words}'",
            e.message
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let yaml = "xipgate:\n  listen: [\"nope\"]\n  domains: [\"-bad-\"]\n  upstream:\n    allow: [\"x\"]\n    connect_timeout: forever\n";
    let err = check(yaml).unwrap_err();
    let keys: Vec<&str> = err.errors.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "xipgate.listen[0]",
            "xipgate.domains[0]",
            "xipgate.upstream.allow[0]",
            "xipgate.upstream.connect_timeout"
        ]
    );
}

fn xipgate(args: &[&str]) -> (i32, String) {
    xipgate_with(args, &[])
}

fn xipgate_with(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xipgate"))
        .args(args)
        .env_remove("REGISTRY_HOST")
        .env_remove("XIPGATE_CONSOLE_TOKEN")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn dash_t_checks_files_and_exits_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "xipgate:\n  upstream:\n    allow: [\"300.0.0.0/8\"]\n  registry:\n    eureka:\n      interval: 10 parsecs\n").unwrap();
    let (code, out) = xipgate(&["-t", "-c", bad.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(
        out.contains("bad.yaml") && out.contains("2 problems"),
        "{out}"
    );
    assert!(
        out.contains("xipgate.upstream.allow[0]")
            && out.contains("xipgate.registry.eureka.interval"),
        "{out}"
    );

    let (code, out) = xipgate(&[
        "-t",
        "-c",
        dir.path().join("missing.yaml").to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        out.contains("missing.yaml") && out.contains("cannot read"),
        "{out}"
    );

    let (code, out) = xipgate(&["-t"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("access: open: no rules, anyone who reaches the edge reaches every pod"),
        "{out}"
    );

    // With rules, the one line says how many, how identities are shown and the actuator
    // policy.
    let ruled = dir.path().join("ruled.yaml");
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(&htpasswd, "").unwrap();
    std::fs::write(
        &ruled,
        format!("xipgate:\n  access:\n    rules:\n      - services: [batch]\n        basic: true\n      - name: office\n        clients: [10.0.0.0/8]\n    basic:\n      htpasswd: {}\n", htpasswd.display()),
    )
    .unwrap();
    let (code, out) = xipgate(&["-t", "-c", ruled.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("xipgate: access: "))
        .unwrap_or_else(|| panic!("no access line: {out}"));
    assert_eq!(
        line,
        format!("xipgate: access: 2 rules; basic credentials from {}; actuator policy on (operators: operators)", htpasswd.display())
    );
}

#[test]
fn every_shipped_config_passes_dash_t() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut files = vec![format!("{root}/conf/xipgate.yaml")];
    if let Ok(dir) = std::fs::read_dir(format!("{root}/k8s")) {
        for e in dir.flatten() {
            let p = e.path();
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            // The ConfigMap's source file is an xipgate config; manifests are not.
            if text.lines().any(|l| l.starts_with("xipgate:")) {
                files.push(p.display().to_string());
            }
        }
    }
    assert!(
        files.len() >= 2,
        "expected conf/ and k8s/ configs: {files:?}"
    );
    // The YAML examples the docs quote are configs too.
    let dir = tempfile::tempdir().expect("tempdir");
    for doc in [
        "README.md",
        "docs/configuration.md",
        "docs/https.md",
        "docs/nacos.md",
        "docs/kubernetes.md",
    ] {
        let text = std::fs::read_to_string(format!("{root}/{doc}")).unwrap_or_default();
        for (i, block) in text.split("```yaml\n").skip(1).enumerate() {
            let yaml = block.split("```").next().unwrap_or("");
            if !yaml.lines().any(|l| l.starts_with("xipgate:")) {
                continue;
            }
            let path = dir
                .path()
                .join(format!("{}-{i}.yaml", doc.replace('/', "-")));
            std::fs::write(&path, yaml).expect("write");
            files.push(path.display().to_string());
        }
    }
    assert!(
        files.iter().any(|f| f.contains("README.md")),
        "README's minimal configuration is checked: {files:?}"
    );
    for f in files {
        // k8s/deployment.yaml gives the console token from a Secret (checked by
        // .ci/k8s-check); the file alone is refused, as it should be.
        let env: &[(&str, &str)] = if f.contains("/k8s/") {
            let (code, out) = xipgate(&["-t", "-c", &f]);
            assert_ne!(code, 0, "{f} serves the console publicly without a token");
            assert!(out.contains("XIPGATE_CONSOLE_TOKEN"), "{f}: {out}");
            &[("XIPGATE_CONSOLE_TOKEN", "a-token-from-the-secret")]
        } else {
            &[]
        };
        let (code, out) = xipgate_with(&["-t", "-c", &f], env);
        assert_eq!(code, 0, "{f}: {out}");
    }
}

/// Every key of the shipped, commented config is in docs/configuration.md's table, so the
/// reference cannot silently lose a key the program reads.
#[test]
fn every_shipped_key_is_documented() {
    fn leaves(v: &serde_yaml::Value, path: String, out: &mut Vec<String>) {
        match v {
            serde_yaml::Value::Mapping(m) => {
                for (k, v) in m {
                    let k = k.as_str().unwrap_or_default();
                    leaves(v, format!("{path}.{k}"), out);
                }
            }
            _ => out.push(path),
        }
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let conf: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(format!("{root}/conf/xipgate.yaml")).expect("conf"),
    )
    .expect("yaml");
    let docs = std::fs::read_to_string(format!("{root}/docs/configuration.md")).expect("docs");
    let mut keys = Vec::new();
    leaves(&conf["xipgate"], "xipgate".into(), &mut keys);
    assert!(keys.len() > 15, "{keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !docs.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in docs/configuration.md: {missing:?}"
    );
}

#[test]
fn bearer_and_basic_settings_name_key_and_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let md5 = dir.path().join("md5.htpasswd");
    std::fs::write(&md5, "# users\nann:$apr1$x$y\n").expect("write");
    let rule = "    rules: [{name: r, bearer: true}]\n";
    let bearer = |extra: &str| {
        format!(
            "xipgate:\n  access:\n{rule}    bearer:\n      issuer: https://idp.example\n{extra}"
        )
    };
    for (yaml, key, words) in [
        (
            bearer("      audiences: [xipgate]\n      algorithms: [RS256, HS256]\n"),
            "xipgate.access.bearer.algorithms[1]",
            "'HS256' is not allowed",
        ),
        (
            bearer("      audiences: [xipgate]\n      algorithms: [none]\n"),
            "xipgate.access.bearer.algorithms[0]",
            "never none",
        ),
        (
            bearer("      audiences: [xipgate]\n      jwks_url: file:///etc/jwks\n"),
            "xipgate.access.bearer.jwks_url",
            "must be an http:// or https:// URL",
        ),
        (bearer(""), "xipgate.access.bearer.audiences", "is required"),
        (
            bearer("      audiences: [xipgate]\n      jwks_max_age: soon\n"),
            "xipgate.access.bearer.jwks_max_age",
            "",
        ),
        (
            bearer("      audiences: [xipgate]\n      groups_claim: \" \"\n"),
            "xipgate.access.bearer.groups_claim",
            "is empty",
        ),
        (
            format!(
                "xipgate:\n  access:\n    rules: [{{name: r, basic: true}}]\n    basic:\n      htpasswd: {}\n",
                md5.display()
            ),
            "xipgate.access.basic.htpasswd",
            "line 2: user 'ann': Apache MD5 ($apr1$); only bcrypt is accepted",
        ),
        (
            "xipgate:\n  access:\n    identity:\n      jwt: {ttl: 1m}\n".to_string(),
            "xipgate.access.identity.jwt.key_file",
            "is required",
        ),
        (
            format!("xipgate:\n  access:\n    identity:\n      jwt: {{key_file: {}}}\n", md5.display()),
            "xipgate.access.identity.jwt.key_file",
            "no PEM 'PRIVATE KEY' block",
        ),
        (
            "xipgate:\n  access:\n    identity:\n      jwt: {key_file: /k, header: \"a b\"}\n".to_string(),
            "xipgate.access.identity.jwt.header",
            "is not a header name",
        ),
        (
            "xipgate:\n  access:\n    rules: [{name: r, basic: true}]\n    basic:\n      htpasswd: /nonexistent/htpasswd\n".to_string(),
            "xipgate.access.basic.htpasswd",
            "/nonexistent/htpasswd: No such file",
        ),
    ] {
        let err = check(&yaml).expect_err(&yaml);
        let hit = err.errors.iter().find(|e| e.key == key);
        let e = hit.unwrap_or_else(|| panic!("{yaml}: no error for key {key}: {err}"));
        assert!(e.message.contains(words), "{yaml}: '{}' should contain '{words}'", e.message);
    }
    let good = bearer("      audiences: [xipgate]\n      user_claim: sub\n");
    let cfg = check(&good).expect("a good bearer config");
    let b = cfg.access.bearer.expect("bearer");
    assert_eq!(b.user_claim, "sub");
    assert_eq!(b.groups_claim, config::access::DEFAULT_GROUPS_CLAIM);
    assert_eq!(
        b.jwks_max_age,
        xipgate::access::bearer::DEFAULT_JWKS_MAX_AGE
    );
}

#[test]
fn kubernetes_settings_name_key_and_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = dir.path().join("empty-token");
    std::fs::write(&empty, "\n").expect("write");
    let not_pem = dir.path().join("ca.txt");
    std::fs::write(&not_pem, "not a certificate\n").expect("write");
    let k8s = |body: &str| format!("xipgate:\n  registry:\n    kubernetes:\n{body}");
    for (yaml, key, words) in [
        (
            k8s("      namespace: [shop]\n"),
            "xipgate.registry.kubernetes.namespace",
            "unknown field `namespace`",
        ),
        (
            k8s("      api_url: https://127.0.0.1:6443\n"),
            "xipgate.registry.kubernetes.namespaces",
            "is required",
        ),
        (
            k8s("      namespaces: []\n"),
            "xipgate.registry.kubernetes.namespaces",
            "is required",
        ),
        (
            k8s("      namespaces: [shop, Shop_1]\n"),
            "xipgate.registry.kubernetes.namespaces[1]",
            "'Shop_1' is not a namespace name",
        ),
        (
            k8s("      namespaces: [shop, shop]\n"),
            "xipgate.registry.kubernetes.namespaces[1]",
            "listed twice",
        ),
        (
            k8s("      namespaces: [shop]\n      api_url: ftp://127.0.0.1:6443\n"),
            "xipgate.registry.kubernetes.api_url",
            "http",
        ),
        (
            k8s("      namespaces: [shop]\n      api_url: https://u:p@127.0.0.1:6443\n"),
            "xipgate.registry.kubernetes.api_url",
            "bearer token",
        ),
        (
            k8s("      namespaces: [shop]\n      token_file: /nonexistent/token\n"),
            "xipgate.registry.kubernetes.token_file",
            "/nonexistent/token cannot be read",
        ),
        (
            k8s(&format!(
                "      namespaces: [shop]\n      token_file: {}\n",
                empty.display()
            )),
            "xipgate.registry.kubernetes.token_file",
            "is empty",
        ),
        (
            k8s(&format!(
                "      namespaces: [shop]\n      ca_file: {}\n",
                not_pem.display()
            )),
            "xipgate.registry.kubernetes.ca_file",
            "no PEM certificate",
        ),
        (
            k8s("      namespaces: [shop]\n      label_selector: \" \"\n"),
            "xipgate.registry.kubernetes.label_selector",
            "is empty",
        ),
        (
            k8s("      namespaces: [shop]\n      primary_port_name: HTTP\n"),
            "xipgate.registry.kubernetes.primary_port_name",
            "not a port name",
        ),
        (
            k8s("      namespaces: [shop]\n      name: eureka\n"),
            "xipgate.registry.kubernetes.name",
            "names another source",
        ),
        (
            "xipgate:\n  registry:\n    nacos: [{urls: [\"http://n:8848/nacos\"]}]\n    kubernetes: {name: nacos, namespaces: [shop]}\n".to_string(),
            "xipgate.registry.kubernetes.name",
            "names another source",
        ),
    ] {
        let err = check(&yaml).expect_err(&yaml);
        let hit = err.errors.iter().find(|e| e.key == key);
        let e = hit.unwrap_or_else(|| panic!("{yaml}: no error for key {key}: {err}"));
        assert!(
            e.message.contains(words),
            "{yaml}: '{}' should contain '{words}'",
            e.message
        );
    }

    // Every key, and the defaults.
    let token = dir.path().join("token");
    std::fs::write(&token, "abc\n").expect("write");
    let ca = dir.path().join("ca.crt");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    let full = k8s(&format!(
        "      name: k8s\n      api_url: https://127.0.0.1:6443/\n      token_file: {}\n      ca_file: {}\n      namespaces: [shop, pay]\n      label_selector: \"app.kubernetes.io/part-of=shop\"\n      primary_port_name: web\n",
        token.display(),
        ca.display()
    ));
    let k = check(&full)
        .expect("a full kubernetes config")
        .registry
        .kubernetes
        .expect("kubernetes");
    assert_eq!(k.name, "k8s");
    assert_eq!(k.api_url.as_deref(), Some("https://127.0.0.1:6443"));
    assert_eq!(k.token_file.as_deref(), Some(token.as_path()));
    assert_eq!(k.ca_file.as_deref(), Some(ca.as_path()));
    assert_eq!(
        k.namespaces,
        config::Namespaces::Listed(vec!["shop".into(), "pay".into()])
    );
    assert_eq!(
        k.label_selector.as_deref(),
        Some("app.kubernetes.io/part-of=shop")
    );
    assert_eq!(k.primary_port_name.as_deref(), Some("web"));

    // Kubernetes alone is a registry; `*` leaves kube-system out unless it is listed.
    let only = "xipgate:\n  registry:\n    eureka: {enabled: false}\n    kubernetes: {namespaces: [\"*\"]}\n";
    let cfg = check(only).expect("kubernetes alone");
    let k = cfg.registry.kubernetes.expect("kubernetes");
    assert_eq!(k.name, config::DEFAULT_KUBERNETES_NAME);
    assert_eq!(k.api_url, None);
    assert_eq!(k.namespaces, config::Namespaces::All { kube_system: false });
    let with_system = "xipgate:\n  registry:\n    kubernetes: {namespaces: [\"*\", kube-system]}\n";
    let k = check(with_system)
        .expect("with kube-system")
        .registry
        .kubernetes
        .expect("kubernetes");
    assert_eq!(k.namespaces, config::Namespaces::All { kube_system: true });

    // `-t` reads the files it is given.
    let file = dir.path().join("k8s.yaml");
    std::fs::write(
        &file,
        k8s("      namespaces: [shop]\n      token_file: /nonexistent/token\n"),
    )
    .expect("write");
    let (code, out) = xipgate(&["-t", "-c", file.to_str().expect("utf-8")]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("xipgate.registry.kubernetes.token_file"),
        "{out}"
    );
}
