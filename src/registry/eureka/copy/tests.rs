use super::*;
use crate::instance::Status;

/// A grace time longer than any of these tests waits.
const GRACE: Duration = Duration::from_secs(60);

fn inst(app: &str, id: &str, status: Status) -> Instance {
    Instance::for_test(app, id, "10.0.0.1", status)
}

fn ups(n: usize) -> Vec<Instance> {
    (0..n)
        .map(|i| inst("A", &format!("a:{i}"), Status::Up))
        .collect()
}

fn routed_ids(c: &RegistryCopy) -> Vec<String> {
    let mut ids: Vec<String> = c.routed().map(|i| i.key().to_string()).collect();
    ids.sort();
    ids
}

fn delta(instances: Vec<Instance>, deleted: &[(&str, &str)], hash: &str) -> Snapshot {
    Snapshot {
        instances,
        skipped: vec![],
        deleted: deleted
            .iter()
            .map(|(a, i)| InstanceKey::new(a, i))
            .collect(),
        apps_hashcode: Some(hash.into()),
        unchanged: vec![],
    }
}

#[test]
fn a_full_fetch_holds_only_when_fewer_than_half_remain() {
    // (known before, listed now, hold starts)
    for (known, listed, holds) in [
        (0, 0, false),
        (1, 0, true),
        (2, 1, false),
        (2, 0, true),
        (3, 1, true),
        (3, 2, false),
        (4, 2, false),
        (4, 1, true),
        (10, 4, true),
        (10, 5, false),
    ] {
        let t0 = Instant::now();
        let mut c = RegistryCopy::default();
        assert_eq!(c.apply_full(ups(known), t0, GRACE), HoldChange::None);
        let change = c.apply_full(ups(listed), t0, GRACE);
        assert_eq!(
            matches!(change, HoldChange::Started { .. }),
            holds,
            "{known} -> {listed}: {change:?}"
        );
        let routed = c.routed().count();
        assert_eq!(routed, if holds { known } else { listed });
        assert_eq!(c.server_len(), listed, "the server's part is what it sent");
    }
}

#[test]
fn a_hold_ends_when_the_instances_return_or_the_grace_runs_out() {
    let t0 = Instant::now();
    let mut c = RegistryCopy::default();
    c.apply_full(ups(4), t0, GRACE);
    assert_eq!(
        c.apply_full(vec![], t0, GRACE),
        HoldChange::Started {
            listed: 0,
            known: 4,
            held: 4
        }
    );
    // A partial registry: two are back, two still held, all four routed.
    assert_eq!(
        c.apply_full(ups(2), t0 + Duration::from_secs(5), GRACE),
        HoldChange::Holding { held: 2 }
    );
    assert_eq!(routed_ids(&c).len(), 4);
    assert_eq!(
        c.expire(t0 + Duration::from_secs(59), GRACE),
        HoldChange::Holding { held: 2 }
    );
    // All back: the hold is over.
    assert_eq!(
        c.apply_full(ups(4), t0 + Duration::from_secs(20), GRACE),
        HoldChange::Recovered
    );
    assert_eq!(c.held_since(), None);

    // Never back: dropped once the grace has passed.
    c.apply_full(vec![], t0, GRACE);
    assert_eq!(
        c.expire(t0 + GRACE, GRACE),
        HoldChange::Expired { dropped: 4 }
    );
    assert_eq!(c.routed().count(), 0);
    assert_eq!(c.expire(t0 + GRACE * 2, GRACE), HoldChange::None);
    // A full fetch past the grace ends a hold too, instances still missing.
    c.apply_full(ups(4), t0, GRACE);
    c.apply_full(vec![], t0, GRACE);
    assert_eq!(
        c.apply_full(ups(1), t0 + GRACE, GRACE),
        HoldChange::Expired { dropped: 3 }
    );
}

#[test]
fn a_delta_applies_only_when_the_hash_matches_and_never_touches_held_ones_it_lists_not() {
    let t0 = Instant::now();
    let mut c = RegistryCopy::default();
    c.apply_full(ups(3), t0, GRACE);
    c.apply_full(vec![], t0, GRACE); // hold all three
    let b = inst("B", "b:1", Status::Up);
    // Wrong hash: nothing changes.
    let err = c
        .apply_delta(delta(vec![b.clone()], &[], "UP_9_"))
        .unwrap_err();
    assert_eq!(err.ours, "UP_1_");
    assert_eq!(c.server_len(), 0);
    // Right hash (over the server's part only): applied; a DELETED held one is let go.
    assert_eq!(
        c.apply_delta(delta(vec![b], &[("A", "a:0")], "UP_1_")),
        Ok(true)
    );
    assert_eq!(routed_ids(&c), ["A/a:1", "A/a:2", "B/b:1"]);
    // An empty delta with the right hash changes nothing.
    assert_eq!(c.apply_delta(delta(vec![], &[], "UP_1_")), Ok(false));
    // A delta without a hash is not trusted.
    let mut no_hash = delta(vec![], &[], "");
    no_hash.apps_hashcode = None;
    assert!(c.apply_delta(no_hash).is_err());
}

#[test]
fn one_instance_id_under_two_apps_is_two_instances() {
    let mut c = RegistryCopy::default();
    c.apply_full(
        vec![
            inst("A", "10.0.0.1:8080", Status::Up),
            inst("B", "10.0.0.1:8080", Status::Down),
        ],
        Instant::now(),
        GRACE,
    );
    assert_eq!(routed_ids(&c), ["A/10.0.0.1:8080", "B/10.0.0.1:8080"]);
    // A delta deleting one leaves the other, and the hash counts both.
    assert_eq!(
        c.apply_delta(delta(vec![], &[("b", "10.0.0.1:8080")], "UP_1_")),
        Ok(true)
    );
    assert_eq!(routed_ids(&c), ["A/10.0.0.1:8080"]);
}

#[test]
fn a_second_sudden_shrink_during_a_hold_is_held_too() {
    // (registry sizes one full fetch after another, instances routed after the last)
    // Each fetch lists the first n of the same 1000 instances.
    for (sizes, routed) in [
        (&[1000, 0, 400, 10][..], 1000),
        (&[1000, 0, 400, 400][..], 1000),
        (&[1000, 400, 10][..], 1000),
        (&[1000, 600, 10][..], 600),
        (&[1000, 0, 1000, 10][..], 1000),
        (&[10, 0, 0, 0][..], 10),
    ] {
        let t0 = Instant::now();
        let mut c = RegistryCopy::default();
        for (i, n) in sizes.iter().enumerate() {
            c.apply_full(ups(*n), t0 + Duration::from_secs(i as u64), GRACE);
        }
        assert_eq!(c.routed().count(), routed, "{sizes:?}");
    }
}

#[test]
fn each_held_instance_has_its_own_grace() {
    let t0 = Instant::now();
    let s = Duration::from_secs;
    let mut c = RegistryCopy::default();
    c.apply_full(ups(1000), t0, GRACE);
    c.apply_full(ups(400), t0, GRACE); // 600 held from t0
    c.apply_full(ups(10), t0 + s(30), GRACE); // 390 more held from t0+30s
    assert_eq!(c.held_len(), 990);
    assert_eq!(
        c.expire(t0 + GRACE, GRACE),
        HoldChange::Expired { dropped: 600 }
    );
    assert_eq!(c.routed().count(), 400);
    assert_eq!(
        c.expire(t0 + GRACE + s(30), GRACE),
        HoldChange::Expired { dropped: 390 }
    );
    assert_eq!(c.held_since(), None);
}

#[test]
fn the_grace_counts_only_time_the_registry_answered() {
    let s = Duration::from_secs;
    // (seconds of each step: a full fetch listing n, or None for a failed sync,
    //  instances routed at the end)
    for (steps, routed) in [
        // Answered all along: the grace runs out.
        (
            &[(0, Some(4)), (0, Some(0)), (30, Some(0)), (60, Some(1))][..],
            1,
        ),
        // Unreachable from 10 s to 300 s: only 10 s + 40 s counted, still held.
        (
            &[
                (0, Some(4)),
                (0, Some(0)),
                (10, None),
                (200, None),
                (300, Some(1)),
                (340, Some(1)),
            ][..],
            4,
        ),
        // ... until 60 s of answers have passed since the hold began.
        (
            &[
                (0, Some(4)),
                (0, Some(0)),
                (10, None),
                (300, Some(1)),
                (350, Some(1)),
                (360, Some(1)),
            ][..],
            1,
        ),
    ] {
        let t0 = Instant::now();
        let mut c = RegistryCopy::default();
        for (at, listed) in steps {
            match listed {
                Some(n) => {
                    c.apply_full(ups(*n), t0 + s(*at), GRACE);
                }
                None => c.unanswered(),
            }
        }
        assert_eq!(c.routed().count(), routed, "{steps:?}");
    }
}

#[test]
fn a_full_fetch_keeps_sharing_unchanged_registrations_and_takes_their_renewal() {
    let now = Instant::now();
    let renewed = |i: &Instance, ms: u64| Instance {
        last_renewal_ms: Some(ms).into(),
        ..i.clone()
    };
    let mut c = RegistryCopy::default();
    let first = ups(3);
    c.apply_full(first.clone(), now, GRACE);
    let before: HashMap<InstanceKey, Arc<Instance>> =
        c.routed().map(|i| (i.key(), Arc::clone(i))).collect();
    // The same three again: a:0 only renewed, a:1 changed (DOWN), a:2 exactly the same.
    let mut down = first[1].clone();
    down.status = Status::Down;
    c.apply_full(
        vec![renewed(&first[0], 77), down, first[2].clone()],
        now,
        GRACE,
    );
    for i in c.routed() {
        let old = &before[&i.key()];
        let kept = Arc::ptr_eq(old, i);
        match i.instance_id.as_str() {
            "a:0" => {
                assert!(kept, "renewed only: the same instance");
                assert_eq!(i.last_renewal_ms.get(), Some(77));
            }
            "a:1" => {
                assert!(!kept, "changed: a new instance");
                assert_eq!(i.status, Status::Down);
            }
            _ => assert!(kept),
        }
    }
    // What the routing table is given shares the copy's instances.
    let table = crate::routes::RouteTable::new(crate::routes::Allowlist::new(vec!["10.0.0.0/8"
        .parse()
        .expect("cidr")]));
    table.apply_borrowed(c.routed());
    for t in table.instances() {
        assert!(
            Arc::ptr_eq(&t.instance, &before[&t.instance.key()]) || t.instance.instance_id == "a:1"
        );
    }
}

#[test]
fn a_full_fetch_parsed_against_the_copy_gives_what_the_plain_parse_gives() {
    use crate::registry::eureka::stream::parse_apps_gzip;
    use crate::standin::{self, Registration};
    use std::io::Write;
    let now = Instant::now();
    let regs = |renewed: u64, down: &[usize]| -> Vec<u8> {
        let regs: Vec<Registration> = (0..40)
            .map(|i| {
                let mut r = Registration::spring("svc", &format!("pod{i}"), "10.1.2.3", 8080);
                r.renewed_ms = renewed;
                if down.contains(&i) {
                    r.status = Status::Down;
                }
                r
            })
            .collect();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(standin::full(&regs).as_bytes()).expect("write");
        e.finish().expect("gzip")
    };
    let first = regs(1_700_000_000_000, &[]);
    // Renewed later, two instances DOWN now.
    let second = regs(1_700_000_500_000, &[3, 17]);
    let (snap, _) = parse_apps_gzip(&first, usize::MAX, None).expect("parsed");
    let mut plain = RegistryCopy::default();
    plain.apply_full(snap.instances.clone(), now, GRACE);
    let mut known = RegistryCopy::default();
    known.apply_full(snap.instances, now, GRACE);
    let before: HashMap<InstanceKey, Arc<Instance>> =
        known.routed().map(|i| (i.key(), Arc::clone(i))).collect();

    let (all, _) = parse_apps_gzip(&second, usize::MAX, None).expect("parsed");
    let (deduped, _) = parse_apps_gzip(&second, usize::MAX, Some(&known)).expect("parsed");
    assert_eq!(all.unchanged.len(), 0);
    assert_eq!(
        deduped.instances.len(),
        2,
        "only the two changed ones are parsed anew"
    );
    assert_eq!(deduped.unchanged.len(), 38);
    plain.apply_full(all.instances, now, GRACE);
    known.apply_full_with(deduped.instances, deduped.unchanged, now, GRACE);
    let sorted = |c: &RegistryCopy| {
        let mut v: Vec<Instance> = c.routed().map(|i| (**i).clone()).collect();
        v.sort_by_key(Instance::key);
        v
    };
    // The same instances, renewals included; the unchanged ones still the same Arcs.
    assert_eq!(sorted(&plain), sorted(&known));
    for i in known.routed() {
        let changed = i.status == Status::Down;
        assert_eq!(
            Arc::ptr_eq(i, &before[&i.key()]),
            !changed,
            "{}",
            i.instance_id
        );
    }
    // The document's order decides between two same keys, as in a plain parse: the
    // changed one listed last wins, and so does the unchanged one listed last.
    let a = inst("A", "a:0", Status::Up);
    let mut copy = RegistryCopy::default();
    copy.apply_full(vec![a.clone()], now, GRACE);
    let held = Arc::clone(copy.routed().next().expect("one"));
    let mut down = a.clone();
    down.status = Status::Down;
    let unchanged_at = |at| Unchanged {
        at,
        instance: Arc::clone(&held),
        renewal: None,
    };
    copy.apply_full_with(vec![down.clone()], vec![unchanged_at(0)], now, GRACE);
    assert_eq!(copy.routed().next().map(|i| i.status), Some(Status::Down));
    let mut copy = RegistryCopy::default();
    copy.apply_full(vec![a], now, GRACE);
    let held = Arc::clone(copy.routed().next().expect("one"));
    copy.apply_full_with(
        vec![down],
        vec![Unchanged {
            at: 1,
            instance: Arc::clone(&held),
            renewal: None,
        }],
        now,
        GRACE,
    );
    assert_eq!(copy.routed().next().map(|i| i.status), Some(Status::Up));
}
