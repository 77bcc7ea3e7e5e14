//! `xipgate.console`, typed and checked. A console host served to the public without
//! any access rule is refused here: `console.host` serves the console (every instance's
//! address, the registry's state) on the proxy listener, to everyone who reaches the edge.

use std::net::SocketAddr;

use super::file::ConsoleFile;
use super::validate::Checker;
use super::{ConsoleConfig, CONSOLE_TOKEN_ENV, DEFAULT_CONSOLE_LISTEN, MAX_CONSOLE_TOKEN_LEN};

/// The console section, checked. `proxy_listeners` are the HTTP and HTTPS listeners
/// `console.host` is served on.
pub(super) fn check_console(
    c: &mut Checker,
    co: &ConsoleFile,
    proxy_listeners: &[SocketAddr],
) -> ConsoleConfig {
    let listen_raw = co
        .listen
        .clone()
        .unwrap_or_else(|| DEFAULT_CONSOLE_LISTEN.to_string());
    let listen = if listen_raw.trim() == "off" {
        None
    } else {
        c.addr("xipgate.console.listen", &listen_raw)
    };
    let host = co
        .host
        .as_deref()
        .and_then(|h| c.domain("xipgate.console.host", h));
    if let Some(token) = &co.token {
        if token.trim().len() < 8 {
            c.err("xipgate.console.token", "must be at least 8 characters");
        }
        // The console bounds `?token=` so its links stay small; the token must fit.
        if token.len() > MAX_CONSOLE_TOKEN_LEN {
            c.err(
                "xipgate.console.token",
                format!("must be at most {MAX_CONSOLE_TOKEN_LEN} characters"),
            );
        }
    }
    let allow_clients = co
        .allow_clients
        .as_deref()
        .map(|a| c.cidrs("xipgate.console.allow_clients", a))
        .unwrap_or_default();
    // Public: some proxy listener takes connections from beyond this machine. (An empty
    // allow_clients list allows everyone, as no list does.)
    let public = proxy_listeners.iter().find(|a| !a.ip().is_loopback());
    if let (Some(_), Some(at), None, true) = (&host, public, &co.token, allow_clients.is_empty()) {
        c.err(
            "xipgate.console.host",
            format!(
                "serves the console on the public proxy listener {at}, to everyone who reaches \
                 the edge: set xipgate.console.token (or the environment variable \
                 {CONSOLE_TOKEN_ENV}, e.g. from a Kubernetes Secret) or \
                 xipgate.console.allow_clients too (or leave console.host out and use the \
                 console's own listener)"
            ),
        );
    }
    ConsoleConfig {
        listen,
        host,
        public_port: co.public_port,
        token: co.token.clone(),
        allow_clients,
    }
}
