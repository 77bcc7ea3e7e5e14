//! A copy of one resource kept by list-then-watch, the loop client-go's reflector and
//! kube-rs's watcher run:
//!
//! 1. list (in pages) and replace the copy; remember the list's resourceVersion;
//! 2. watch from it; apply each event; remember each event's version, bookmarks included;
//! 3. when the watch ends (the server's timeout, a restart, a cut connection), watch again
//!    from the last version: nothing is listed again and nothing is missed;
//! 4. only `410 Gone` (that version has been compacted away) lists again;
//! 5. any other error waits (growing backoff) and goes back to 2, or to 1 before the first
//!    successful list. The copy is never emptied by an error: the last good set stays.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime};

use pingora_core::server::ShutdownWatch;

use super::client::{Client, ListParams};
use super::error::KubeError;
use super::object::{Object, Resource, WatchEvent};

/// First wait after an error; doubled on each further one up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The objects of one resource, by (namespace, name).
#[derive(Debug, Clone)]
pub struct Store<T> {
    pub objects: BTreeMap<(String, String), T>,
    /// The version the copy is complete up to.
    pub resource_version: String,
}

impl<T> Default for Store<T> {
    fn default() -> Self {
        Store {
            objects: BTreeMap::new(),
            resource_version: String::new(),
        }
    }
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The set of objects changed.
    Changed,
    /// Only the version moved (a bookmark).
    Version,
    /// The watch's version is too old: list again.
    Gone,
    /// Another error event from the server.
    Failed(String),
}

impl<T: Object> Store<T> {
    fn key(o: &T) -> (String, String) {
        (o.meta().namespace.clone(), o.meta().name.clone())
    }

    /// Applies one watch event (pure: the loop below and the unit tests both use it).
    pub fn apply(&mut self, event: WatchEvent<T>) -> Applied {
        match event {
            WatchEvent::Added(o) | WatchEvent::Modified(o) => {
                self.note_version(&o);
                self.objects.insert(Self::key(&o), o);
                Applied::Changed
            }
            WatchEvent::Deleted(o) => {
                self.note_version(&o);
                self.objects.remove(&Self::key(&o));
                Applied::Changed
            }
            WatchEvent::Bookmark { resource_version } => {
                if !resource_version.is_empty() {
                    self.resource_version = resource_version;
                }
                Applied::Version
            }
            WatchEvent::Error(s) if s.code == 410 => Applied::Gone,
            WatchEvent::Error(s) => {
                Applied::Failed(format!("HTTP {} {}: {}", s.code, s.reason, s.message))
            }
        }
    }

    fn note_version(&mut self, o: &T) {
        let v = &o.meta().resource_version;
        if !v.is_empty() {
            self.resource_version = v.clone();
        }
    }
}

/// What the console and the API show of one reflector.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ReflectorStatus {
    /// `endpointslices.discovery.k8s.io in shop`.
    pub what: String,
    pub objects: usize,
    pub resource_version: String,
    pub lists: u64,
    pub watches: u64,
    pub events: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
    pub consecutive_failures: u64,
    pub last_event_at: Option<SystemTime>,
}

/// A reflector's copy, readable by others while it runs (each event is applied under a
/// short write lock, so a reader sees the copy between two events, never inside one).
pub type SharedStore<T> = Arc<RwLock<Store<T>>>;

pub struct Reflector<T> {
    client: Client,
    resource: Resource,
    namespace: Option<String>,
    params: ListParams,
    store: SharedStore<T>,
    listed: bool,
    status: Arc<Mutex<ReflectorStatus>>,
}

impl<T: Object> Reflector<T> {
    pub fn new(
        client: Client,
        resource: Resource,
        namespace: Option<String>,
        params: ListParams,
    ) -> Self {
        let what = match &namespace {
            Some(ns) => format!("{} in {ns}", resource.qualified()),
            None => format!("{} in all namespaces", resource.qualified()),
        };
        Reflector {
            client,
            resource,
            namespace,
            params,
            store: Arc::new(RwLock::new(Store::default())),
            listed: false,
            status: Arc::new(Mutex::new(ReflectorStatus {
                what,
                ..ReflectorStatus::default()
            })),
        }
    }

    /// Shared with whoever shows it; updated as the reflector runs.
    pub fn status(&self) -> Arc<Mutex<ReflectorStatus>> {
        self.status.clone()
    }

    pub fn store(&self) -> RwLockReadGuard<'_, Store<T>> {
        self.store.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The copy, for readers that want the whole set when they need it instead of a
    /// clone on every change (the registry source publishes at most every 200 ms).
    pub fn shared(&self) -> SharedStore<T> {
        self.store.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Store<T>> {
        self.store.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists and replaces the copy.
    pub async fn list(&mut self) -> Result<(), KubeError> {
        let list = self
            .client
            .list::<T>(&self.resource, self.namespace.as_deref(), &self.params)
            .await?;
        let mut store = Store {
            objects: BTreeMap::new(),
            resource_version: list.metadata.resource_version,
        };
        for o in list.items {
            store.objects.insert(Store::key(&o), o);
        }
        let (objects, version) = (store.objects.len(), store.resource_version.clone());
        *self.write() = store;
        self.listed = true;
        let mut s = self.lock();
        s.lists += 1;
        s.objects = objects;
        s.resource_version = version;
        // The API server answered: whatever failed before works again.
        s.consecutive_failures = 0;
        s.last_error = None;
        Ok(())
    }

    /// Runs until shutdown: `on_change` is called with the whole copy after the first list
    /// and after every change; `on_error` with each error (the copy stays as it was).
    pub async fn run(
        mut self,
        mut on_change: impl FnMut(&Store<T>) + Send,
        mut on_error: impl FnMut(&KubeError) + Send,
        mut shutdown: ShutdownWatch,
    ) {
        let mut backoff = BACKOFF_MIN;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let step = async {
                if !self.listed {
                    self.list().await?;
                    on_change(&self.store());
                }
                self.watch(&mut on_change).await
            };
            let result = tokio::select! {
                r = step => r,
                _ = shutdown.changed() => return,
            };
            match result {
                Ok(()) => {
                    backoff = BACKOFF_MIN;
                    self.lock().consecutive_failures = 0;
                }
                Err(e) => {
                    if e.is_gone() {
                        // Not a failure: etcd compacted the version away; list again now.
                        self.listed = false;
                        continue;
                    }
                    on_error(&e);
                    {
                        let mut s = self.lock();
                        s.last_error = Some(e.to_string());
                        s.last_error_at = Some(SystemTime::now());
                        s.consecutive_failures += 1;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => return,
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One watch, until the server ends it (`Ok`) or it fails.
    async fn watch(
        &mut self,
        on_change: &mut (impl FnMut(&Store<T>) + Send),
    ) -> Result<(), KubeError> {
        let version = self.store().resource_version.clone();
        let mut w = self
            .client
            .watch::<T>(
                &self.resource,
                self.namespace.as_deref(),
                &self.params,
                &version,
            )
            .await?;
        {
            // The watch is open (HTTP 200): the API server works again, so an error shown
            // since clears now, not at the next event (a quiet namespace has one a minute).
            let mut s = self.lock();
            s.watches += 1;
            s.consecutive_failures = 0;
            s.last_error = None;
        }
        while let Some(event) = w.next().await? {
            if let WatchEvent::Error(s) = &event {
                if s.code == 410 {
                    return Err(KubeError::Api {
                        verb: "watch",
                        resource: self.resource.qualified(),
                        namespace: self.namespace.clone(),
                        status: Box::new(s.clone()),
                    });
                }
            }
            let (applied, objects, version) = {
                let mut store = self.write();
                let applied = store.apply(event);
                (applied, store.objects.len(), store.resource_version.clone())
            };
            {
                let mut s = self.lock();
                s.events += 1;
                s.last_event_at = Some(SystemTime::now());
                s.objects = objects;
                s.resource_version = version;
            }
            match applied {
                Applied::Changed => on_change(&self.store()),
                Applied::Version => {}
                Applied::Gone => self.listed = false,
                Applied::Failed(why) => {
                    return Err(KubeError::Decode {
                        url: self.client.url().to_string(),
                        reason: why,
                    })
                }
            }
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReflectorStatus> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::object::{ObjectMeta, Status};

    #[derive(Debug, Clone, PartialEq, serde::Deserialize)]
    struct Thing {
        metadata: ObjectMeta,
    }
    impl Object for Thing {
        fn meta(&self) -> &ObjectMeta {
            &self.metadata
        }
    }
    fn thing(ns: &str, name: &str, rv: &str) -> Thing {
        Thing {
            metadata: ObjectMeta {
                name: name.into(),
                namespace: ns.into(),
                resource_version: rv.into(),
                ..ObjectMeta::default()
            },
        }
    }

    #[test]
    fn events_change_the_copy_and_move_its_version() {
        let mut s = Store::<Thing>::default();
        assert_eq!(
            s.apply(WatchEvent::Added(thing("a", "x", "5"))),
            Applied::Changed
        );
        assert_eq!(
            s.apply(WatchEvent::Added(thing("b", "x", "6"))),
            Applied::Changed
        );
        assert_eq!(
            s.objects.len(),
            2,
            "the same name in two namespaces is two objects"
        );
        assert_eq!(
            s.apply(WatchEvent::Modified(thing("a", "x", "7"))),
            Applied::Changed
        );
        assert_eq!(s.objects.len(), 2);
        assert_eq!(
            s.apply(WatchEvent::Bookmark {
                resource_version: "9".into()
            }),
            Applied::Version
        );
        assert_eq!(s.resource_version, "9");
        assert_eq!(
            s.apply(WatchEvent::Deleted(thing("a", "x", "10"))),
            Applied::Changed
        );
        assert_eq!(s.objects.len(), 1);
        assert_eq!(s.resource_version, "10");
        let gone = Status {
            code: 410,
            reason: "Expired".into(),
            ..Status::default()
        };
        assert_eq!(s.apply(WatchEvent::Error(gone)), Applied::Gone);
        assert_eq!(s.objects.len(), 1, "an error never empties the copy");
        assert_eq!(s.resource_version, "10");
    }
}
