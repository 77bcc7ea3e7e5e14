//! A small client for the Kubernetes API server: what the Kubernetes registry source and the
//! ACME store need, and nothing more.
//!
//! Why not kube-rs: xipgate reads two resource kinds and writes three, always as JSON, and
//! already carries reqwest (rustls) for its other HTTP; kube-rs with k8s-openapi would add
//! tower, hyper-util and the whole generated API (minutes of compile time in every CI run)
//! for a list, a watch and a replace. What kube-rs's `watcher` gets right is kept here: a
//! watch resumes from the last resourceVersion it saw (bookmarks included), and only a `410
//! Gone` (the version has been compacted away) makes it list again.
//!
//! - [`Connection`]: where the API server is and how to prove who we are (in-cluster service
//!   account by default, or an explicit URL, token file and CA).
//! - [`Client`]: get, list (paged), create, replace, delete and watch on a [`Resource`].
//! - [`Reflector`]: a list-then-watch copy of one resource, the loop every reader needs.
//! - [`KubeError`]: answers that name what was refused (verb, resource, namespace), so a
//!   missing RBAC rule reads as one on the console.

mod client;
mod connection;
mod error;
mod object;
mod reflector;
mod watch;

pub use client::{Client, ListParams};
pub use connection::{Connection, ConnectionError, IN_CLUSTER_DIR};
pub use error::KubeError;
pub use object::{
    List, ListMeta, Object, ObjectMeta, OwnerReference, Resource, Status, WatchEvent,
};
pub use reflector::{Reflector, ReflectorStatus, SharedStore, Store};
pub use watch::Watch;
