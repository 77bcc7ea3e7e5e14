//! The parts of Kubernetes objects every kind shares: metadata, lists, watch events and the
//! `Status` the API server answers errors with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which collection a request is about: `group`/`version`/`plural`, optionally namespaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Empty for the core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
}

impl Resource {
    pub const ENDPOINT_SLICES: Resource = Resource {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
    };
    pub const SERVICES: Resource = Resource {
        group: "",
        version: "v1",
        plural: "services",
    };
    pub const SECRETS: Resource = Resource {
        group: "",
        version: "v1",
        plural: "secrets",
    };
    pub const CONFIG_MAPS: Resource = Resource {
        group: "",
        version: "v1",
        plural: "configmaps",
    };
    pub const LEASES: Resource = Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
    };

    /// The collection's path: in one namespace, or across all of them when `None`.
    pub fn path(&self, namespace: Option<&str>) -> String {
        let base = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) => format!("{base}/namespaces/{ns}/{}", self.plural),
            None => format!("{base}/{}", self.plural),
        }
    }

    /// `endpointslices.discovery.k8s.io`, `secrets`: as RBAC and kubectl name it.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owner_references: Vec<OwnerReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnerReference {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub uid: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMeta {
    #[serde(default)]
    pub resource_version: String,
    /// Set when the server has more items than `limit` asked for.
    #[serde(default, rename = "continue")]
    pub continue_token: Option<String>,
}

/// A list answer (`EndpointSliceList`, `ServiceList`, ...).
#[derive(Debug, Clone, Deserialize)]
#[serde(bound = "T: serde::de::DeserializeOwned")]
pub struct List<T> {
    #[serde(default)]
    pub metadata: ListMeta,
    #[serde(default = "Vec::new")]
    pub items: Vec<T>,
}

/// The API server's error answer (`kind: Status`), also sent as a watch `ERROR` event.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: String,
    /// `Forbidden`, `NotFound`, `Conflict`, `Expired`, `Gone`...
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub code: u16,
}

/// One event of a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent<T> {
    Added(T),
    Modified(T),
    Deleted(T),
    /// The server's note that everything up to this version has been sent: a watch cut
    /// after it resumes from here instead of from the last object event.
    Bookmark {
        resource_version: String,
    },
    /// The watch ended with an error; `code: 410` means its resourceVersion is too old.
    Error(Status),
}

/// A kind the [`Reflector`](super::Reflector) can keep: any object with metadata.
pub trait Object: serde::de::DeserializeOwned + Clone + Send + Sync + 'static {
    fn meta(&self) -> &ObjectMeta;
}
