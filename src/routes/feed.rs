//! Several registries feeding one routing table.
//!
//! Each source (Eureka, each Nacos server) publishes its whole current set of instances;
//! the feed keeps the last set of each and applies their union to the table. A source
//! that fails simply does not publish, so what it provided last stays, and it never
//! touches what another source provides.
//!
//! The rule where sources overlap, decided here once: sources are ranked in the order
//! the configuration lists them (Eureka first). A service host routes over the instances
//! of every source (a service registered in both registries during a migration is one
//! service); an instance registered in several sources under the same application and
//! instanceId is taken from the highest-ranked one only, and counted as shadowed.
//!
//! With one source the feed stores nothing: that source's instances go straight to the
//! table, borrowed, as before (a refresh costs what it cost without the feed).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::{ApplyReport, RouteTable, Shared};
use crate::instance::{Instance, InstanceKey};

pub struct Feed {
    table: Arc<RouteTable>,
    /// Source names, highest rank first.
    ranks: Vec<String>,
    /// The last set each source published (only with two or more sources).
    sets: Mutex<Vec<Option<Vec<Arc<Instance>>>>>,
    shadowed: Mutex<Vec<String>>,
}

/// The union of several sources' sets, in rank order: the first occurrence of an
/// (application, instanceId) wins. Returns the union and the shadowed ones, as
/// `source: APP/instanceId`.
pub fn merge<'a>(sets: &[(&'a str, &'a [Arc<Instance>])]) -> (Vec<&'a Arc<Instance>>, Vec<String>) {
    let mut seen: HashSet<InstanceKey> = HashSet::new();
    let mut out = Vec::new();
    let mut shadowed = Vec::new();
    for (source, set) in sets {
        for i in set.iter() {
            let key = InstanceKey::new(&i.app, &i.instance_id);
            if seen.insert(key.clone()) {
                out.push(i);
            } else {
                shadowed.push(format!("{source}: {key}"));
            }
        }
    }
    (out, shadowed)
}

impl Feed {
    pub fn new(table: Arc<RouteTable>, ranks: Vec<String>) -> Self {
        let n = ranks.len();
        Feed {
            table,
            ranks,
            sets: Mutex::new(vec![None; n]),
            shadowed: Mutex::new(Vec::new()),
        }
    }

    pub fn table(&self) -> &Arc<RouteTable> {
        &self.table
    }

    /// Instances present in several sources and taken from the higher-ranked one.
    pub fn shadowed(&self) -> Vec<String> {
        self.shadowed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// `source` publishes its whole current set.
    pub fn publish<T: Shared>(
        &self,
        source: &str,
        instances: impl IntoIterator<Item = T>,
    ) -> ApplyReport {
        if self.ranks.len() <= 1 {
            return self.table.apply_borrowed(instances);
        }
        let Some(rank) = self.ranks.iter().position(|r| r == source) else {
            log::error!("registry: unknown source {source} published; ignored");
            return ApplyReport::default();
        };
        let mut sets = self.sets.lock().unwrap_or_else(|p| p.into_inner());
        sets[rank] = Some(instances.into_iter().map(Shared::share).collect());
        let named: Vec<(&str, &[Arc<Instance>])> = self
            .ranks
            .iter()
            .zip(sets.iter())
            .filter_map(|(name, set)| Some((name.as_str(), set.as_deref()?)))
            .collect();
        let (union, shadowed) = merge(&named);
        *self.shadowed.lock().unwrap_or_else(|p| p.into_inner()) = shadowed;
        self.table.apply_borrowed(union)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instance::{SourceName, Status};
    use crate::routes::Allowlist;

    fn inst(source: &str, app: &str, id: &str, ip: &str) -> Arc<Instance> {
        Arc::new(Instance {
            source: SourceName::from(source),
            ..Instance::for_test(app, id, ip, Status::Up)
        })
    }

    #[test]
    fn the_higher_ranked_source_wins_a_shared_instance_and_services_are_joined() {
        let eureka = [
            inst("eureka", "ORDERS", "pod-a:orders:8080", "10.0.0.1"),
            inst("eureka", "ORDERS", "pod-b:orders:8080", "10.0.0.2"),
        ];
        let nacos = [
            inst("nacos", "ORDERS", "pod-b:orders:8080", "10.0.0.9"),
            inst("nacos", "orders", "pod-c:orders:8080", "10.0.0.3"),
            inst("nacos", "PAYMENTS", "pod-p:payments:8080", "10.0.0.4"),
        ];
        let (union, shadowed) = merge(&[("eureka", &eureka), ("nacos", &nacos)]);
        let got: Vec<(&str, &str)> = union
            .iter()
            .map(|i| (&*i.source, i.ip_addr.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("eureka", "10.0.0.1"),
                ("eureka", "10.0.0.2"),
                ("nacos", "10.0.0.3"),
                ("nacos", "10.0.0.4")
            ]
        );
        assert_eq!(shadowed, ["nacos: ORDERS/pod-b:orders:8080"]);
    }

    #[test]
    fn a_silent_source_keeps_what_it_published_and_never_empties_another() {
        let table = Arc::new(RouteTable::new(Allowlist::new(vec!["10.0.0.0/8"
            .parse()
            .expect("cidr")])));
        let feed = Feed::new(table.clone(), vec!["eureka".into(), "nacos".into()]);
        feed.publish("eureka", &[inst("eureka", "A", "a-1", "10.0.0.1")]);
        feed.publish("nacos", &[inst("nacos", "B", "b-1", "10.0.0.2")]);
        assert_eq!(table.instance_count(), 2);
        // Eureka publishes again (nacos is failing, publishes nothing): B stays.
        feed.publish("eureka", &[inst("eureka", "A", "a-2", "10.0.0.3")]);
        let ids: Vec<String> = table
            .instances()
            .iter()
            .map(|t| t.instance.instance_id.clone())
            .collect();
        assert_eq!(ids, ["a-2", "b-1"]);
        assert!(
            table.lookup("b").is_some(),
            "the service from nacos is routed"
        );
    }
}
