//! Which label each instance and service of a new registry copy gets.
//!
//! A name stays with its first holder: while an instance is registered, a later
//! registration that would make the same label (another instance, or an application
//! named like it) gets a unique label instead, so a host name that reached an instance
//! keeps reaching it. The table is the memory of who holds what: each copy is planned
//! against the labels the table holds now. When two claim a name in the same copy (no
//! holder yet), the service keeps it and colliding instances are made unique from their
//! instanceIds, so the outcome does not depend on the order they are listed in.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use super::{Planned, Refusal, RouteTable, Shared};
use crate::instance::Instance;
use crate::names;

impl RouteTable {
    /// True when `i` holds `label` now, as its primary label. Compared in place: this runs
    /// for every instance of every copy.
    fn holds(&self, label: &str, i: &Instance) -> bool {
        self.by_label.get(label).is_some_and(|t| {
            t.label == label
                && t.instance.instance_id == i.instance_id
                && t.instance.app.eq_ignore_ascii_case(&i.app)
        })
    }

    /// Labels (with collisions made unique) and upstream addresses for a new registry.
    pub(super) fn plan_targets<T: Shared>(&self, instances: Vec<T>) -> Vec<Planned<T>> {
        // The same (application, instanceId) twice in one document: keep the first.
        // One instanceId under two applications is two instances, as on the server.
        let keep: Vec<bool> = {
            let mut seen = HashSet::with_capacity(instances.len());
            instances
                .iter()
                .map(|i| seen.insert(i.instance().key()))
                .collect()
        };

        let instances: Vec<T> = instances
            .into_iter()
            .zip(keep)
            .filter_map(|(i, keep)| keep.then_some(i))
            .collect();

        let shared_ids: HashSet<String> = {
            let mut seen = HashSet::with_capacity(instances.len());
            instances
                .iter()
                .map(|i| i.instance().instance_id.as_str())
                .filter(|id| !seen.insert(*id))
                .map(str::to_string)
                .collect()
        };

        let labels: Vec<String> = instances
            .iter()
            .map(|i| names::instance_label(&i.instance().instance_id, &i.instance().app))
            .collect();
        // Instances that hold their label now keep it, whoever else claims it.
        let holder: Vec<bool> = instances
            .iter()
            .zip(&labels)
            .map(|(i, l)| self.holds(l, i.instance()))
            .collect();
        let held: HashSet<&str> = labels
            .iter()
            .zip(&holder)
            .filter(|(_, h)| **h)
            .map(|(l, _)| l.as_str())
            .collect();

        // Service labels once per application, not once per instance; an application
        // named like a label an instance holds gets a unique label instead.
        let mut by_app: HashMap<&str, Arc<str>> = HashMap::new();
        for i in &instances {
            let app = i.instance().app.as_str();
            by_app.entry(app).or_insert_with(|| {
                let label = names::service_label(app);
                if held.contains(label.as_str()) {
                    names::disambiguate(&label, app).into()
                } else {
                    label.into()
                }
            });
        }
        let service_labels: HashSet<&str> = by_app.values().map(|l| &**l).collect();
        let mut label_count: HashMap<&str, usize> = HashMap::with_capacity(labels.len());
        for l in &labels {
            *label_count.entry(l.as_str()).or_default() += 1;
        }
        // Collisions with another instance, or with a service label, are made unique
        // from the instanceId: the same id always gets the same label.
        let collides: Vec<bool> = labels
            .iter()
            .zip(&holder)
            .map(|(l, holds)| {
                !holds && (label_count[l.as_str()] > 1 || service_labels.contains(l.as_str()))
            })
            .collect();
        let service_of: Vec<Arc<str>> = instances
            .iter()
            .map(|i| by_app[i.instance().app.as_str()].clone())
            .collect();
        let upstreams: Vec<Result<SocketAddr, Refusal>> = instances
            .iter()
            .map(|i| self.upstream_of(i.instance()))
            .collect();

        instances
            .into_iter()
            .zip(labels)
            .zip(collides.into_iter().zip(service_of).zip(upstreams))
            .map(
                |((instance, label), ((collides, service_label), upstream))| {
                    let i = instance.instance();
                    let label = if !collides {
                        label
                    } else if shared_ids.contains(i.instance_id.as_str()) {
                        // Same id, so the id alone cannot tell them apart: the app too.
                        names::disambiguate(&label, &i.key().to_string())
                    } else {
                        names::disambiguate(&label, &i.instance_id)
                    };
                    Planned {
                        instance,
                        label,
                        service_label,
                        upstream,
                    }
                },
            )
            .collect()
    }
}
