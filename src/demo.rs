//! `xipgate --demo`: a complete demo on one machine, without any Eureka installed.
//!
//! A stand-in Eureka (see [`world`]) with a few services, small backends on loopback
//! behind its instances, and xipgate pointed at it: proxy on 127.0.0.1:8080, console on
//! 127.0.0.1:9080 (the environment variables `XIPGATE_DEMO_PROXY_PORT` and
//! `XIPGATE_DEMO_CONSOLE_PORT` move them).

mod world;

use std::net::TcpListener as StdListener;
use std::process::ExitCode;
use std::sync::Mutex;

use pingora_core::server::configuration::Opt;

use crate::config::DEFAULT_DOMAIN;
use crate::names;
use world::{start_world, Registry, STARTING_FOR};

fn port_from_env(name: &str, default: u16) -> u16 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn demo_config(eureka: &str, proxy: u16, console: u16) -> Result<crate::config::Config, String> {
    let dir = std::env::temp_dir().join(format!("xipgate-demo-{}", std::process::id()));
    // The backends run on loopback, which `upstream.allow` leaves out by default.
    let yaml = format!(
        "version: 1\nthreads: 2\npid_file: {d}/xipgate.pid\nupgrade_sock: {d}/upgrade.sock\ngrace_period_seconds: 1\ngraceful_shutdown_timeout_seconds: 1\n\
         xipgate:\n  listen: [\"127.0.0.1:{proxy}\"]\n  domains: [\"{DEFAULT_DOMAIN}\"]\n  registry:\n    eureka:\n      urls: [\"{eureka}\"]\n      interval: 2s\n      timeout: 2s\n    startup_wait: 10s\n  upstream:\n    allow: [\"127.0.0.0/8\"]\n  console:\n    listen: 127.0.0.1:{console}\n    host: xipgate.{DEFAULT_DOMAIN}\n",
        d = dir.display()
    );
    let parsed = crate::config::parse(&yaml, "demo").map_err(|e| e.to_string())?;
    crate::config::validate(parsed, "demo").map_err(|e| e.to_string())
}

/// Runs the demo until interrupted.
pub fn run(opt: Opt) -> ExitCode {
    let (proxy, console) = (
        port_from_env("XIPGATE_DEMO_PROXY_PORT", 8080),
        port_from_env("XIPGATE_DEMO_CONSOLE_PORT", 9080),
    );
    for port in [proxy, console] {
        if let Err(e) = StdListener::bind(("127.0.0.1", port)) {
            eprintln!("xipgate --demo: port {port} is not free ({e}); stop what uses it, or set XIPGATE_DEMO_PROXY_PORT / XIPGATE_DEMO_CONSOLE_PORT");
            return ExitCode::FAILURE;
        }
    }
    if opt.conf.is_some() {
        eprintln!("xipgate --demo: -c is ignored, the demo builds its own configuration");
    }
    let (eureka, registry) = match start_world() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("xipgate --demo: cannot start the stand-in Eureka and backends: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cfg = match demo_config(&eureka, proxy, console) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("xipgate --demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    print_welcome(&eureka, &registry, proxy, console);
    match crate::app::build_server(Opt { conf: None, ..opt }, cfg) {
        Ok(server) => server.run_forever(),
        Err(e) => {
            eprintln!("xipgate --demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_welcome(eureka: &str, registry: &Mutex<Registry>, proxy: u16, console: u16) {
    let port = if proxy == 80 {
        String::new()
    } else {
        format!(":{proxy}")
    };
    let url = |label: &str| format!("http://{label}.{DEFAULT_DOMAIN}{port}");
    let reg = registry.lock().unwrap_or_else(|p| p.into_inner());
    let label = |pod: &str| {
        let i = reg
            .instances
            .iter()
            .find(|i| i.pod == pod)
            .expect("a demo pod");
        names::instance_label(&i.id(), i.app)
    };
    let services = reg
        .instances
        .iter()
        .map(|i| i.app)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    println!(
        "\nxipgate demo: {} instances of {services} services in a stand-in Eureka at {eureka}/apps",
        reg.instances.len()
    );
    println!("  USER-SERVICE turns from STARTING to UP after {} s; LEGACY-BILLING's address is outside the allowlist.\n", STARTING_FOR.as_secs());
    println!("  Console   http://127.0.0.1:{console}/");
    println!(
        "            {}/  (the same console through the proxy)",
        url("xipgate")
    );
    println!("  Proxy     127.0.0.1:{proxy}  (*.{DEFAULT_DOMAIN} resolves to 127.0.0.1 in public DNS)\n\nTry:");
    let tries = [
        (
            format!("curl {}/", url("order-service")),
            "a service: round robin over its UP instances",
        ),
        (
            format!("curl {}/", url(&label("order-7d9f8-x2k4q"))),
            "exactly that instance",
        ),
        (
            format!("curl {}/actuator/health", url(&label("order-7d9f8-q8wvn"))),
            "a DOWN instance, reachable by its own name",
        ),
        (
            format!("curl -H 'Host: payment-service.{DEFAULT_DOMAIN}' http://127.0.0.1:{proxy}/"),
            "the same without DNS",
        ),
        (
            format!("curl http://127.0.0.1:{console}/api/v1/services"),
            "the JSON API",
        ),
        (
            format!("curl http://127.0.0.1:{console}/metrics"),
            "Prometheus metrics",
        ),
    ];
    let width = tries.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (cmd, what) in tries {
        println!("  {cmd:width$}   # {what}");
    }
    println!();
}
