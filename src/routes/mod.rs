//! The routing table: label → instance and label → service, in DashMaps that the proxy
//! reads on every request and the registry sync updates by diff.
//!
//! A request costs one normalisation of its label and one or two hash lookups, whatever
//! the registry's size. An update builds the new entries off to the side, then upserts
//! only what changed and removes only what is gone, so no request ever sees a live
//! instance missing.

mod allow;
mod feed;
mod labels;

pub use allow::{Allowlist, OwnListeners, Refusal};
pub use feed::{merge, Feed};

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;

use crate::balance::{self, Balance, Decision, Health, Keys, Member, Outcome, Plan, Weight};
use crate::instance::{Instance, InstanceKey, Status};
use crate::names;

/// One instance and where requests for it go.
#[derive(Debug)]
pub struct Target {
    /// Shared with the registry copy it came from (see [`Shared`]).
    pub instance: Arc<Instance>,
    /// The primary label (`order-service-7d9f8-x2k4q-8080`).
    pub label: String,
    /// Shared by the targets of one service made in one apply.
    pub service_label: Arc<str>,
    /// The upstream address, or why it is refused.
    pub upstream: Result<SocketAddr, Refusal>,
    /// Lease renewals change every 30 s without changing the route: kept apart so a
    /// renewal does not replace the entry.
    pub last_renewal_ms: AtomicU64,
    /// Where this instance serves its actuator (see [`crate::access::actuator_bases`]):
    /// worked out once here, from the registration, not per request.
    /// Shared by the targets with the same bases made in one apply (most have the same).
    pub actuator_bases: Arc<[String]>,
    /// Its weight in the service host's rotation (`xipgate.balance`'s weight key).
    pub weight: Weight,
    /// Passive health: failures in a row, ejected until when.
    pub health: Health,
}

impl Member for Arc<Target> {
    fn instance(&self) -> &Instance {
        &self.instance
    }
    fn label(&self) -> &str {
        &self.label
    }
    fn routable(&self) -> bool {
        self.upstream.is_ok()
    }
    fn weight(&self) -> Weight {
        self.weight
    }
    fn health(&self) -> &Health {
        &self.health
    }
}

impl Target {
    /// True when the instance is reached over TLS: it enables only its securePort.
    pub fn tls(&self) -> bool {
        self.instance.port.is_none() && self.instance.secure_port.is_some()
    }

    /// True when a new registration of this instance routes exactly as this target:
    /// equal in everything but the lease renewal.
    fn same_route(
        &self,
        label: &str,
        service_label: &str,
        upstream: &Result<SocketAddr, Refusal>,
        o: &Instance,
    ) -> bool {
        self.label == label
            && *self.service_label == *service_label
            && self.upstream == *upstream
            && self.instance.same_registration(o)
    }
}

/// An instance given to [`RouteTable::apply`] or [`RouteTable::apply_borrowed`]: owned
/// ones move into their new target; shared ones (`&Arc<Instance>`, the registry copy's)
/// are shared with it, not copied; borrowed plain ones are cloned only when their target
/// is new or changed (in a steady-state refresh, none is).
pub trait Shared {
    fn instance(&self) -> &Instance;
    fn share(self) -> Arc<Instance>;
}

impl Shared for Instance {
    fn instance(&self) -> &Instance {
        self
    }
    fn share(self) -> Arc<Instance> {
        Arc::new(self)
    }
}

impl Shared for &Instance {
    fn instance(&self) -> &Instance {
        self
    }
    fn share(self) -> Arc<Instance> {
        Arc::new(self.clone())
    }
}

impl Shared for &Arc<Instance> {
    fn instance(&self) -> &Instance {
        self
    }
    fn share(self) -> Arc<Instance> {
        Arc::clone(self)
    }
}

/// A target worked out for a new registry, not built yet.
struct Planned<T> {
    instance: T,
    label: String,
    service_label: Arc<str>,
    upstream: Result<SocketAddr, Refusal>,
}

/// One `Arc` for each distinct list of actuator bases made in one apply.
type BasesSeen = HashMap<Vec<String>, Arc<[String]>>;

impl<T: Shared> Planned<T> {
    fn into_target(self, balance: &Balance, bases_seen: &mut BasesSeen) -> Target {
        let instance = self.instance.share();
        let bases = crate::access::actuator_bases(
            instance.health_check_url.as_deref(),
            instance.status_page_url.as_deref(),
            &instance.metadata,
        );
        let actuator_bases = match bases_seen.get(&bases) {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared: Arc<[String]> = bases.clone().into();
                bases_seen.insert(bases, Arc::clone(&shared));
                shared
            }
        };
        Target {
            weight: balance.policy(&self.service_label).weight_of(&instance),
            health: Health::default(),
            actuator_bases,
            last_renewal_ms: AtomicU64::new(instance.last_renewal_ms.get().unwrap_or(0)),
            instance,
            label: self.label,
            service_label: self.service_label,
            upstream: self.upstream,
        }
    }
}

/// A service: every instance it has, and how a request to its host chooses one
/// ([`balance::Plan`]: the weighted round robin over UP, routable instances, pins,
/// sticky sessions, canaries, zones, passive health).
#[derive(Debug)]
pub struct Service {
    pub app: String,
    pub label: String,
    /// All instances, sorted by instanceId.
    pub instances: Vec<Arc<Target>>,
    plan: Plan,
    /// Every instance's actuator bases, once each: a request to the service host may
    /// reach any of them.
    actuator_bases: Vec<String>,
}

impl Service {
    /// The instance for a request with `keys`, or why none (`balance::Plan::decide`).
    pub fn decide(&self, keys: &Keys<'_>) -> Result<(Arc<Target>, balance::Via), balance::Refusal> {
        match self.plan.decide(&self.instances, keys, balance::now_ms) {
            Decision::Pick { index, via } => Ok((self.instances[index].clone(), via)),
            Decision::Refuse(r) => Err(r),
        }
    }

    /// The next instance in rotation, as for a request without keys.
    pub fn next(&self) -> Option<Arc<Target>> {
        self.decide(&Keys::default()).ok().map(|(t, _)| t)
    }

    /// The instance for a retry after the try at `last` failed (`balance::Plan::retry`).
    pub fn retry(&self, last: Option<SocketAddr>, tried: &[SocketAddr]) -> Option<Arc<Target>> {
        let last = last.and_then(|a| self.instances.iter().position(|t| t.upstream == Ok(a)));
        let tried = |i: usize| {
            self.instances[i]
                .upstream
                .as_ref()
                .is_ok_and(|a| tried.contains(a))
        };
        self.plan
            .retry(&self.instances, last, tried)
            .map(|i| self.instances[i].clone())
    }

    /// Counts a try's outcome at `target`; true when passive health ejected it now.
    pub fn observe(&self, target: &Target, outcome: Outcome) -> bool {
        if self.plan.policy().passive.is_none() {
            return false;
        }
        match self
            .instances
            .iter()
            .position(|t| std::ptr::eq(&**t, target))
        {
            Some(i) => self
                .plan
                .observe(&self.instances, i, outcome, balance::now_ms()),
            None => false,
        }
    }

    /// The steering plan (what the console shows of it).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Every instance's actuator bases, once each.
    pub fn actuator_bases(&self) -> &[String] {
        &self.actuator_bases
    }

    /// True when at least one instance may receive requests.
    pub fn has_eligible(&self) -> bool {
        self.plan.has_eligible()
    }

    pub fn up_count(&self) -> usize {
        self.instances
            .iter()
            .filter(|t| t.instance.status == Status::Up)
            .count()
    }

    fn same_members(&self, targets: &[Arc<Target>]) -> bool {
        self.instances.len() == targets.len()
            && self
                .instances
                .iter()
                .zip(targets)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

/// What an update changed, for the one summary log line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    /// (instanceId, old, new) for every status change.
    pub status_changes: Vec<(String, Status, Status)>,
    pub instances: usize,
    pub services: usize,
}

impl ApplyReport {
    pub fn is_noop(&self) -> bool {
        self.added == 0 && self.removed == 0 && self.changed == 0
    }
}

/// The result of looking a label up.
#[derive(Debug, Clone)]
pub enum Route {
    Instance(Arc<Target>),
    Service(Arc<Service>),
}

impl Route {
    /// The label of the service this route reaches (metrics and traffic count by it).
    pub fn service_label(&self) -> &str {
        match self {
            Route::Service(s) => &s.label,
            Route::Instance(t) => &t.service_label,
        }
    }

    /// Why no try can be made on this route any more (both proxy paths answer 503 with it).
    pub fn none_up(&self) -> String {
        let app = match self {
            Route::Service(s) => &s.app,
            Route::Instance(t) => &t.instance.app,
        };
        format!("service '{app}' has no UP instance")
    }

    /// The actuator base paths of the instances this route may reach (the access
    /// decision's `Facts::actuator_bases`).
    pub fn actuator_bases(&self) -> &[String] {
        match self {
            Route::Instance(t) => &t.actuator_bases,
            Route::Service(s) => s.actuator_bases(),
        }
    }

    /// True when a try on this route may go over TLS (only Pingora's engine does TLS
    /// upstream; the fast path leaves such routes to it).
    pub fn may_use_tls(&self) -> bool {
        match self {
            Route::Instance(t) => t.tls(),
            Route::Service(s) => s.instances.iter().any(|t| t.tls()),
        }
    }
}

pub struct RouteTable {
    /// How service hosts choose their instance (`xipgate.balance`).
    balance: Arc<Balance>,
    /// Primary labels and aliases → instance.
    by_label: DashMap<String, Arc<Target>>,
    services: DashMap<String, Arc<Service>>,
    /// instanceId → instance: the diff's view of what is live.
    by_id: DashMap<InstanceKey, Arc<Target>>,
    allow: Allowlist,
    loaded: AtomicBool,
    /// Bumped after every apply, so a cached lookup can tell it may be stale.
    generation: AtomicU64,
}

impl RouteTable {
    pub fn new(allow: Allowlist) -> Self {
        Self::with_balance(allow, Arc::default())
    }

    /// A table whose service hosts steer by `balance`.
    pub fn with_balance(allow: Allowlist, balance: Arc<Balance>) -> Self {
        RouteTable {
            balance,
            by_label: DashMap::new(),
            services: DashMap::new(),
            by_id: DashMap::new(),
            allow,
            loaded: AtomicBool::new(false),
            generation: AtomicU64::new(0),
        }
    }

    /// How service hosts choose their instance.
    pub fn balance(&self) -> &Balance {
        &self.balance
    }

    /// True once a registry has been applied (even an empty one).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Changes after every apply: a lookup made under the same generation is current.
    /// Read it before the lookup it vouches for.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn lookup(&self, label: &str) -> Option<Route> {
        if let Some(t) = self.by_label.get(label) {
            return Some(Route::Instance(t.clone()));
        }
        self.services.get(label).map(|s| Route::Service(s.clone()))
    }

    pub fn instance_count(&self) -> usize {
        self.by_id.len()
    }

    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Every service, sorted by label.
    pub fn services(&self) -> Vec<Arc<Service>> {
        let mut all: Vec<_> = self.services.iter().map(|e| e.value().clone()).collect();
        all.sort_by(|a, b| a.label.cmp(&b.label));
        all
    }

    /// All instances of the registry, sorted by instanceId.
    pub fn instances(&self) -> Vec<Arc<Target>> {
        let mut all: Vec<_> = self.by_id.iter().map(|e| e.value().clone()).collect();
        all.sort_by(|a, b| a.instance.instance_id.cmp(&b.instance.instance_id));
        all
    }

    /// The upstream addresses of every instance, in no order: what the fast path's pool
    /// sweep keeps connections to. Unlike [`RouteTable::instances`] nothing is sorted or
    /// cloned per instance (at 100,000 instances the sweep asks after every change).
    pub fn upstream_addrs(&self) -> HashSet<SocketAddr> {
        self.by_id
            .iter()
            .filter_map(|e| e.value().upstream.as_ref().ok().copied())
            .collect()
    }

    /// Replaces the table's content with `instances`, touching only what changed.
    pub fn apply(&self, instances: Vec<Instance>) -> ApplyReport {
        let report = self.apply_all(instances);
        self.generation.fetch_add(1, Ordering::Release);
        report
    }

    /// [`RouteTable::apply`] for instances the caller keeps (the registry sync's copy):
    /// shared ones are shared, borrowed ones cloned only where their target is new or
    /// changed.
    pub fn apply_borrowed<T: Shared>(&self, instances: impl IntoIterator<Item = T>) -> ApplyReport {
        let report = self.apply_all(instances.into_iter().collect());
        self.generation.fetch_add(1, Ordering::Release);
        report
    }

    fn apply_all<T: Shared>(&self, instances: Vec<T>) -> ApplyReport {
        let mut report = ApplyReport::default();
        let planned = self.plan_targets(instances);

        // 1. Upsert instances by id, keeping the old Arc where nothing routing-relevant changed.
        let mut live: Vec<Arc<Target>> = Vec::with_capacity(planned.len());
        let mut bases_seen = BasesSeen::new();
        for p in planned {
            let new: &Instance = p.instance.instance();
            let kept = match self.by_id.get(&new.key()) {
                Some(old) if old.same_route(&p.label, &p.service_label, &p.upstream, new) => {
                    old.last_renewal_ms
                        .store(new.last_renewal_ms.get().unwrap_or(0), Ordering::Relaxed);
                    old.clone()
                }
                Some(old) => {
                    if old.instance.status != new.status {
                        report.status_changes.push((
                            new.instance_id.clone(),
                            old.instance.status,
                            new.status,
                        ));
                    }
                    report.changed += 1;
                    Arc::new(p.into_target(&self.balance, &mut bases_seen))
                }
                None => {
                    report.added += 1;
                    Arc::new(p.into_target(&self.balance, &mut bases_seen))
                }
            };
            live.push(kept);
        }

        // Nothing added or changed and as many instances as before: every live instance
        // is the very one already in the table (ids are unique), so labels, services and
        // ids are already what steps 2 to 4 would make them. This is every refresh of a
        // registry that did not change.
        let unchanged = report.added == 0 && report.changed == 0 && live.len() == self.by_id.len();
        if !unchanged {
            self.rebuild_indexes(&live, &mut report);
        }
        report.instances = self.by_id.len();
        report.services = self.services.len();
        self.loaded.store(true, Ordering::Release);
        report
    }

    /// Steps 2 to 4 of [`RouteTable::apply`]: services, labels and ids for `live`.
    /// Keys are borrowed from the targets while working out what changed; only entries
    /// that are inserted are copied.
    fn rebuild_indexes(&self, live: &[Arc<Target>], report: &mut ApplyReport) {
        // 2. Services, rebuilt only where their members changed. Before the labels: a
        // request that already sees an instance's new state on its instance host must not
        // find the old one in its service's rotation (a DOWN instance still served there;
        // real_eureka caught it on a busy machine).
        let mut by_service: HashMap<&str, Vec<Arc<Target>>> = HashMap::new();
        for t in live {
            by_service
                .entry(&*t.service_label)
                .or_default()
                .push(t.clone());
        }
        let service_labels: HashSet<&str> = by_service.keys().copied().collect();
        for (label, mut members) in by_service {
            members.sort_by(|a, b| a.instance.instance_id.cmp(&b.instance.instance_id));
            let unchanged = self
                .services
                .get(label)
                .is_some_and(|s| s.same_members(&members));
            if !unchanged {
                let policy = self.balance.policy(label).clone();
                let service = build_service(label.to_string(), members, policy);
                self.services.insert(label.to_string(), Arc::new(service));
            }
        }
        self.services
            .retain(|label, _| service_labels.contains(label.as_str()));

        // 3. Labels: primary label and the full-instanceId alias (where different).
        let aliases: Vec<String> = live
            .iter()
            .map(|t| names::full_instance_label(&t.instance.instance_id))
            .collect();
        let mut labels: HashMap<&str, &Arc<Target>> = HashMap::with_capacity(live.len() * 2);
        // An alias two instances share (one instanceId under two applications) would
        // pick one at random: neither gets it.
        let mut alias_count: HashMap<&str, usize> = HashMap::new();
        for alias in &aliases {
            *alias_count.entry(alias.as_str()).or_default() += 1;
        }
        for (t, alias) in live.iter().zip(&aliases) {
            if *alias != t.label && alias_count[alias.as_str()] == 1 {
                labels.entry(alias.as_str()).or_insert(t);
            }
        }
        // Primary labels win over aliases.
        for t in live {
            labels.insert(t.label.as_str(), t);
        }
        for (label, t) in &labels {
            let unchanged = self
                .by_label
                .get(*label)
                .is_some_and(|old| Arc::ptr_eq(&old, t));
            if !unchanged {
                self.by_label.insert(label.to_string(), Arc::clone(t));
            }
        }
        self.by_label
            .retain(|label, _| labels.contains_key(label.as_str()));

        // 4. Finally drop instances that are gone.
        let before = self.by_id.len();
        let keys: HashSet<InstanceKey> = live.iter().map(|t| t.instance.key()).collect();
        for t in live {
            let key = t.instance.key();
            let unchanged = self.by_id.get(&key).is_some_and(|old| Arc::ptr_eq(&old, t));
            if !unchanged {
                self.by_id.insert(key, t.clone());
            }
        }
        self.by_id.retain(|key, _| keys.contains(key));
        report.removed = (before + report.added).saturating_sub(self.by_id.len());
    }

    fn upstream_of(&self, instance: &Instance) -> Result<SocketAddr, Refusal> {
        let ip: IpAddr = instance
            .ip_addr
            .trim()
            .parse()
            .map_err(|_| Refusal::NotAnIp(instance.ip_addr.clone()))?;
        self.allow.check(ip)?;
        let addr = match (instance.port, instance.secure_port) {
            (Some(port), _) => SocketAddr::new(ip, port),
            // Reached over TLS (`Target::tls`).
            (None, Some(secure)) => SocketAddr::new(ip, secure),
            (None, None) => return Err(Refusal::NoPort),
        };
        self.allow.check_upstream(addr)?;
        Ok(addr)
    }
}

fn build_service(
    label: String,
    instances: Vec<Arc<Target>>,
    policy: Arc<balance::Policy>,
) -> Service {
    let app = instances
        .first()
        .map(|t| t.instance.app.clone())
        .unwrap_or_default();
    let plan = Plan::build(&instances, policy);
    let mut actuator_bases: Vec<String> = instances
        .iter()
        .flat_map(|t| t.actuator_bases.iter().cloned())
        .collect();
    actuator_bases.sort_unstable();
    actuator_bases.dedup();
    Service {
        app,
        label,
        instances,
        plan,
        actuator_bases,
    }
}

#[cfg(test)]
mod tests;
