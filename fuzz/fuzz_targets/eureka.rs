//! Arbitrary bytes as a Eureka answer: `/apps` (full or delta, JSON or XML) and
//! `/apps/{APP}`. The parser must never panic, and whatever it accepts must go into the
//! routing table: every instance is found again by its label, and applying the same
//! document twice changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xipgate::registry::parse::{parse_app, parse_apps};
use xipgate::routes::{Allowlist, RouteTable};

fuzz_target!(|data: &[u8]| {
    for parsed in [parse_apps(data), parse_app(data)] {
        let Ok(snap) = parsed else { continue };
        let _ = format!("{snap:?}");
        let table = RouteTable::new(Allowlist::new(vec![
            "0.0.0.0/0".parse().unwrap(),
            "::/0".parse().unwrap(),
        ]));
        table.apply(snap.instances.clone());
        for t in table.instances() {
            assert!(
                !t.label.is_empty() && t.label.len() <= xipgate::names::MAX_LABEL_LEN,
                "{:?}",
                t.label
            );
            assert!(
                table.lookup(&t.label).is_some(),
                "instance label {:?} not found",
                t.label
            );
        }
        for s in table.services() {
            assert!(
                table.lookup(&s.label).is_some() || s.label.is_empty(),
                "service label {:?} not found",
                s.label
            );
        }
        let again = table.apply(snap.instances);
        assert!(
            again.is_noop(),
            "applying the same document twice changed {again:?}"
        );
    }
});
