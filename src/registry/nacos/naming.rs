//! Which host each Nacos service gets. Nacos keeps a service apart by namespace, group
//! and exact name, so xipgate does too: the public namespace's default group keeps the
//! plain name (`orders` → `orders.<domain>`), any other namespace or group is added to
//! the name (`orders.dev`, `orders.dev.PAYMENTS` → label `orders-dev`,
//! `orders-dev-payments`), in the same DNS label, so a `*.<domain>` certificate, which
//! covers one label only, still covers it. Host labels are case-insensitive and
//! sanitised, so two services may still want one label (`orders` and `ORDERS`, or a
//! public `orders-dev` and dev's `orders`): the first in a fixed order keeps it, each
//! later one gets a hash of where it lives appended, and is listed as renamed.
//!
//! Pure functions, tested table-style.

use std::collections::HashMap;

use crate::config::DEFAULT_NACOS_GROUP;
use crate::names;

/// Hex digits of the hash appended to a service whose label is taken.
const RENAME_HASH_HEX: usize = 6;

/// One service of a source, where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceRef<'a> {
    pub namespace: &'a str,
    pub group: &'a str,
    /// The service name as Nacos has it (without `group@@`).
    pub name: &'a str,
}

impl ServiceRef<'_> {
    /// `public/DEFAULT_GROUP/orders`: for messages, and what a rename's hash is of.
    pub fn identity(&self) -> String {
        format!(
            "{}/{}/{}",
            if is_public(self.namespace) {
                "public"
            } else {
                self.namespace
            },
            self.group,
            self.name
        )
    }
}

/// The public namespace: "" (Nacos 1.x's id) or "public" (2.x and later).
pub fn is_public(namespace: &str) -> bool {
    namespace.is_empty() || namespace == "public"
}

/// The application name of a service: its own name, then its namespace unless public,
/// then its group unless the default one, joined by `.` (which a label turns into `-`).
pub fn qualified(s: &ServiceRef) -> String {
    let mut app = s.name.to_string();
    if !is_public(s.namespace) {
        app.push('.');
        app.push_str(s.namespace);
    }
    if s.group != DEFAULT_NACOS_GROUP {
        app.push('.');
        app.push_str(s.group);
    }
    app
}

/// The application names of `services` (in their order), each with its own service
/// label, and one note per service renamed because its label was taken. The order in
/// which labels are claimed does not depend on the order of `services` beyond ties: a
/// name that is its own label already (`orders`, not `ORDERS` or `orders.dev`) comes
/// first, then namespaces and groups in the order given, then the names' byte order.
pub fn name_services(services: &[(usize, ServiceRef)]) -> (Vec<String>, Vec<String>) {
    let apps: Vec<String> = services.iter().map(|(_, s)| qualified(s)).collect();
    let labels: Vec<String> = apps.iter().map(|a| names::service_label(a)).collect();
    let mut order: Vec<usize> = (0..services.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| {
            let (rank, s) = &services[i];
            (labels[i] != apps[i], *rank, s.name)
        };
        key(a).cmp(&key(b))
    });
    let mut out = apps.clone();
    let mut taken: HashMap<&str, usize> = HashMap::new();
    let mut renamed = Vec::new();
    for i in order {
        match taken.get(labels[i].as_str()) {
            None => {
                taken.insert(&labels[i], i);
            }
            Some(&owner) if apps[owner] == apps[i] => {
                // The same service listed twice ("" and "public" both configured): one.
            }
            Some(&owner) => {
                let id = services[i].1.identity();
                let hash = names::fnv1a(&id) & ((1 << (4 * RENAME_HASH_HEX)) - 1);
                out[i] = format!("{}.{hash:0width$x}", apps[i], width = RENAME_HASH_HEX);
                renamed.push(format!(
                    "{id}: {} ({} is {})",
                    names::service_label(&out[i]),
                    labels[i],
                    services[owner].1.identity()
                ));
            }
        }
    }
    renamed.sort();
    (out, renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s<'a>(namespace: &'a str, group: &'a str, name: &'a str) -> ServiceRef<'a> {
        ServiceRef {
            namespace,
            group,
            name,
        }
    }

    #[test]
    fn each_namespace_and_group_gets_its_own_label() {
        for (service, app, label) in [
            (s("", "DEFAULT_GROUP", "orders"), "orders", "orders"),
            (s("public", "DEFAULT_GROUP", "orders"), "orders", "orders"),
            (
                s("dev", "DEFAULT_GROUP", "orders"),
                "orders.dev",
                "orders-dev",
            ),
            (
                s("", "PAYMENTS", "billing"),
                "billing.PAYMENTS",
                "billing-payments",
            ),
            (
                s("dev", "PAYMENTS", "billing"),
                "billing.dev.PAYMENTS",
                "billing-dev-payments",
            ),
            (s("", "DEFAULT_GROUP", "Orders"), "Orders", "orders"),
        ] {
            assert_eq!(qualified(&service), app, "{service:?}");
            assert_eq!(names::service_label(app), label, "{service:?}");
        }
    }

    #[test]
    fn a_taken_label_goes_to_the_first_in_a_fixed_order_and_the_later_is_hashed() {
        // (services as (namespace rank, service), the labels they get)
        type Case<'a> = (Vec<(usize, ServiceRef<'a>)>, Vec<&'a str>);
        let cases: Vec<Case> = vec![
            // Different names, no clash.
            (
                vec![
                    (0, s("", "DEFAULT_GROUP", "a")),
                    (1, s("dev", "DEFAULT_GROUP", "a")),
                ],
                vec!["a", "a-dev"],
            ),
            // orders and ORDERS: the one that is its own label keeps it, in any order.
            (
                vec![
                    (0, s("", "DEFAULT_GROUP", "ORDERS")),
                    (0, s("", "DEFAULT_GROUP", "orders")),
                ],
                vec!["orders-63ec2e", "orders"],
            ),
            (
                vec![
                    (0, s("", "DEFAULT_GROUP", "orders")),
                    (0, s("", "DEFAULT_GROUP", "ORDERS")),
                ],
                vec!["orders", "orders-63ec2e"],
            ),
            // A public service named orders-dev beats dev's orders.
            (
                vec![
                    (1, s("dev", "DEFAULT_GROUP", "orders")),
                    (0, s("", "DEFAULT_GROUP", "orders-dev")),
                ],
                vec!["orders-dev-f5a4ba", "orders-dev"],
            ),
            // Neither is its own label: the earlier namespace, then byte order.
            (
                vec![
                    (0, s("", "DEFAULT_GROUP", "Orders")),
                    (0, s("", "DEFAULT_GROUP", "ORDERS")),
                ],
                vec!["orders-63098e", "orders"],
            ),
            // Listed twice ("" and "public" both configured): one service, not renamed.
            (
                vec![
                    (0, s("", "DEFAULT_GROUP", "orders")),
                    (1, s("public", "DEFAULT_GROUP", "orders")),
                ],
                vec!["orders", "orders"],
            ),
        ];
        for (services, want) in cases {
            let (apps, renamed) = name_services(&services);
            let labels: Vec<String> = apps.iter().map(|a| names::service_label(a)).collect();
            assert_eq!(labels, want, "{services:?}");
            let kept = services
                .iter()
                .zip(&labels)
                .filter(|((_, s), l)| names::service_label(&qualified(s)) == **l)
                .count();
            assert_eq!(renamed.len(), services.len() - kept, "{renamed:?}");
        }
    }

    #[test]
    fn a_rename_is_shown_with_what_took_the_label() {
        let (_, renamed) = name_services(&[
            (0, s("", "DEFAULT_GROUP", "orders")),
            (0, s("", "DEFAULT_GROUP", "ORDERS")),
        ]);
        assert_eq!(
            renamed,
            ["public/DEFAULT_GROUP/ORDERS: orders-63ec2e (orders is public/DEFAULT_GROUP/orders)"]
        );
    }
}
