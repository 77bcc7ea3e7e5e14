//! xipgate: every Eureka service and every instance reachable by its own host name,
//! through one edge proxy built on Pingora.
//!
//! `main.rs` only wires these together: [`config`] reads the file, [`registry`] keeps a
//! copy of Eureka in the [`routes`] table, [`proxy`] routes by [`names`], [`console`]
//! shows it all, [`dns`] answers for the edge's own names, and [`app`] assembles the
//! Pingora server. [`standin`] is the one source of what a stand-in Eureka sends (demo,
//! tests, benchmarks).

mod acme;
mod answer;
pub mod app;
pub mod config;
mod console;
pub mod demo;
pub mod dns;
mod instance;
mod metrics;
pub mod names;
pub mod proxy;
pub mod registry;
pub mod routes;
pub mod standin;
pub mod tls;
mod traffic;
