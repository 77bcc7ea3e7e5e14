//! xipgate: one edge entry for a Spring Cloud cluster. Every service and every single
//! instance registered in Eureka or Nacos is reachable from outside by its own host name,
//! over HTTP or HTTPS, through one proxy built on Pingora.
//!
//! `main.rs` only wires; this crate is the program. How a request travels through it:
//!
//! - [`config`] reads the YAML file (file structs apart from the checked [`config::Config`],
//!   every problem named with its key path) and [`app`] assembles the Pingora server from it.
//! - [`registry`] keeps a copy of each source in the background: Eureka (full fetch, then
//!   `/apps/delta`, a hold when a registry suddenly shrinks) and Nacos (v1/v2/v3 open APIs,
//!   with login), and Kubernetes through the small API client in [`kube`]. Each source publishes its instances into the [`routes`] feed, which merges
//!   the sources into one routing table (DashMaps, updated by diff, never emptied by a failed
//!   fetch) and checks each address against `upstream.allow`.
//! - [`names`] turns services and instances into DNS labels and takes a request's Host apart
//!   again; [`instance`] is what is kept of an instance; [`balance`] decides which instance
//!   a request to a service host goes to (weights, pins, sticky sessions, canaries, zones,
//!   passive health: `xipgate.balance`).
//! - [`proxy`] answers on the public listeners: Pingora's `ProxyHttp` for everything, with a
//!   lean HTTP/1.1 fast path in front of it (`proxy::fast`); both engines take their HTTP rules
//!   from one place (`proxy::rules`). [`answer`] is an error or page the edge gives itself.
//! - [`tls`] serves certificates by SNI (HTTP/2 by ALPN) and reloads them; [`acme`] orders
//!   wildcard certificates over ACME DNS-01, answered by the built-in [`dns`] server, which
//!   also answers for the edge's own names.
//! - [`access`] decides who may reach which service, instance and path (`xipgate.access`):
//!   rules, the built-in actuator policy, and the identities a login, a bearer token or
//!   basic credentials show; one decision for both engines.
//! - [`console`] is the registry page, the JSON API, health endpoints and the Prometheus
//!   [`metrics`]; [`traffic`] keeps live requests per second, errors and latency per service
//!   and instance for it.
//! - [`standin`] is the one source of what a stand-in Eureka sends (the demo, tests and
//!   benchmarks), recorded from Spring Cloud's Eureka server; [`demo`] is `xipgate --demo`.
//!
//! docs/development.md has the module table (who imports whom, kept true by tests/docs.rs).

pub mod access;
mod acme;
mod answer;
pub mod app;
pub mod balance;
pub mod config;
mod console;
pub mod demo;
pub mod dns;
mod instance;
pub mod kube;
mod metrics;
pub mod names;
pub mod proxy;
pub mod registry;
pub mod routes;
pub mod standin;
pub mod tls;
mod traffic;
