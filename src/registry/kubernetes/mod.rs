//! A Kubernetes API server as a registry source: the pods behind Services, from
//! EndpointSlices (`discovery.k8s.io/v1`) and Services (`v1`) kept by list-then-watch
//! [`Reflector`](crate::kube::Reflector)s, mapped to instances by [`mapping`] and
//! published through the [`Feed`](crate::routes::Feed) like every other source.

// Until the running source lands (next commit), only the tests use the mapping.
#![allow(dead_code)]

mod mapping;
mod model;
