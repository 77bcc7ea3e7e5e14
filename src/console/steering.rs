//! What the console shows of a service host's steering (`xipgate.balance`): the policy in
//! force, the canaries, the weights and the instances passive health has ejected.

use serde_json::{json, Value};

use super::api::format_time;
use crate::balance::{self, SHARE_SCALE, UNIT};
use crate::routes::{Service, Target};

/// A canary share in percent (`5`, `2.5`).
fn percent(share: u32) -> f64 {
    f64::from(share) * 100.0 / f64::from(SHARE_SCALE)
}

/// True when the instances in rotation do not all have the same weight.
fn weighted(s: &Service) -> bool {
    let mut w = s
        .instances
        .iter()
        .enumerate()
        .filter(|(i, _)| s.plan().in_rotation(*i))
        .map(|(_, t)| t.weight.units);
    let first = w.next();
    w.any(|u| Some(u) != first)
}

/// When passive health lets `t` back into its service host's rotation, if it is out.
fn ejected_until(t: &Target) -> Option<String> {
    t.health
        .ejected_until(balance::now_ms())
        .map(|u| format_time(balance::wall_time(u)))
}

/// The `balance` object of a service in `/api/v1/services`.
pub fn service_json(s: &Service) -> Value {
    let plan = s.plan();
    let p = plan.policy();
    let ids = |idx: &[u32]| -> Vec<&str> {
        idx.iter()
            .filter_map(|&i| s.instances.get(i as usize))
            .map(|t| t.instance.instance_id.as_str())
            .collect()
    };
    let ejected: Vec<Value> = s
        .instances
        .iter()
        .filter_map(|t| {
            ejected_until(t)
                .map(|until| json!({"instance_id": t.instance.instance_id, "until": until}))
        })
        .collect();
    json!({
        "in_rotation": (0..s.instances.len()).filter(|&i| plan.in_rotation(i)).count(),
        "weighted": weighted(s),
        "sticky": p.sticky_cookie.is_some(),
        "sticky_cookie": p.sticky_cookie,
        "spring_cookie": p.spring_cookie,
        "pin_fallback": match p.fallback {
            balance::Fallback::Answer => "answer",
            balance::Fallback::Balance => "balance",
        },
        "zone": p.zone,
        "canary": p.canary.as_ref().map(|c| json!({
            "metadata": c.metadata.iter().cloned().collect::<std::collections::BTreeMap<_, _>>(),
            "share_percent": percent(c.share),
            "values": c.values,
            "instances": ids(plan.canaries()),
        })),
        "passive": p.passive.as_ref().map(|x| json!({
            "consecutive_failures": x.consecutive_failures,
            "count_5xx": x.count_5xx,
            "ejection": humantime::format_duration(x.ejection).to_string(),
            "max_ejection": humantime::format_duration(x.max_ejection).to_string(),
            "max_ejected_percent": x.max_ejected_percent,
        })),
        "ejected": ejected,
    })
}

/// The service row's steering tags: `sticky`, `canary 5% (1)`, `weighted`, ...
pub fn service_tags(s: &Service) -> Vec<String> {
    let plan = s.plan();
    let p = plan.policy();
    let mut tags = Vec::new();
    if p.sticky_cookie.is_some() {
        tags.push("sticky".to_string());
    }
    if let Some(c) = &p.canary {
        tags.push(format!(
            "canary {}% ({})",
            percent(c.share),
            plan.canaries().len()
        ));
    }
    if weighted(s) {
        tags.push("weighted".to_string());
    }
    if let Some(z) = &p.zone {
        tags.push(format!("zone {z}"));
    }
    let out = s
        .instances
        .iter()
        .filter(|t| ejected_until(t).is_some())
        .count();
    if out > 0 {
        tags.push(format!("{out} ejected"));
    }
    tags
}

/// An instance row's weight, when it is not the default one or has a problem.
pub fn instance_weight(t: &Target) -> Option<String> {
    match t.weight.problem {
        Some(p) => Some(format!("weight: {p}")),
        None if t.weight.units == 0 => Some("weight 0: out of the service host's rotation".into()),
        None if t.weight.units != UNIT => Some(format!("weight {}", t.weight.shares())),
        None => None,
    }
}

/// An instance row's ejection, while it lasts.
pub fn instance_ejected(t: &Target) -> Option<String> {
    ejected_until(t).map(|u| format!("ejected until {u}"))
}

/// When an instance's ejection ends, for its JSON.
pub fn instance_ejected_until(t: &Target) -> Option<String> {
    ejected_until(t)
}
