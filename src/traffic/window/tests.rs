use proptest::prelude::*;

use super::*;

const S: u64 = STEP_MS;

#[test]
fn buckets_hold_their_bounds() {
    // (latency µs, bucket): bucket i holds (upper(i-1), upper(i)].
    for (us, bucket) in [
        (0, 0),
        (100, 0),
        (101, 1),
        (150, 1),
        (151, 2),
        (225, 2),
        (226, 3),
        (u64::MAX, BUCKETS - 1),
    ] {
        assert_eq!(Histogram::bucket(us), bucket, "{us} µs");
    }
}

#[test]
fn quantiles_of_known_samples() {
    // (samples, q, expected µs within a bucket: a factor of GROWTH)
    let table: &[(&[u64], f64, f64)] = &[
        (&[1000; 10], 0.5, 1000.0),
        (&[1000; 10], 0.99, 1000.0),
        (
            &[200, 200, 200, 200, 200, 200, 200, 200, 200, 50_000],
            0.5,
            200.0,
        ),
        (
            &[200, 200, 200, 200, 200, 200, 200, 200, 200, 50_000],
            0.99,
            50_000.0,
        ),
        (&[50], 0.5, 100.0), // the first bucket starts at 0: its top
        (&[3_000_000], 0.99, 3_000_000.0),
    ];
    for (samples, q, want) in table {
        let mut h = Histogram::EMPTY;
        for &s in *samples {
            h.add(s);
        }
        let got = f64::from(h.quantile(*q));
        assert!(
            got <= want * GROWTH + 1.0 && got >= want / GROWTH - 1.0,
            "q{q} of {samples:?}: {got} µs, want ≈ {want}"
        );
    }
    assert_eq!(Histogram::EMPTY.quantile(0.5), 0, "no samples, no latency");
}

#[test]
fn a_step_counts_requests_and_errors_and_closes_its_percentiles() {
    let mut w = Window::default();
    let t0 = 1_000 * S;
    for k in 0..10 {
        w.record(t0 + k, k == 0, Some(2_000));
    }
    w.record(t0 + S, false, Some(8_000)); // the next step
    let p = w.points(t0 + S + 1);
    let (older, newest) = (p[POINTS - 2], p[POINTS - 1]);
    assert_eq!((older.requests, older.errors), (10, 1));
    assert!((1_700..=2_300).contains(&older.p50_us), "{older:?}");
    assert_eq!(newest.requests, 1);
    assert!((6_500..=9_500).contains(&newest.p99_us), "{newest:?}");
}

#[test]
fn quiet_steps_are_empty_and_a_long_gap_empties_the_window() {
    let mut w = Window::default();
    let t0 = 1_000 * S;
    w.record(t0, true, Some(1_000));
    let p = w.points(t0 + 3 * S);
    assert_eq!(p[POINTS - 4].requests, 1, "three steps back");
    assert!(p[POINTS - 3..].iter().all(|p| p.requests == 0));
    let later = w.points(t0 + (POINTS as u64 + 5) * S);
    assert!(later.iter().all(|p| *p == Point::default()), "{later:?}");
    assert_eq!(w.summary(t0 + (POINTS as u64 + 5) * S), Summary::default());
}

#[test]
fn summary_covers_the_last_minute_only() {
    let mut w = Window::default();
    let t0 = 1_000 * S;
    // 10 requests a step for 20 steps; each step's first one is an error.
    for step in 0..20 {
        for k in 0..10 {
            w.record(t0 + step * S + k, k == 0, Some(1_000 + 1_000 * (k % 2)));
        }
    }
    let now = t0 + 19 * S + S / 2; // half way through the 20th step
    let s = w.summary(now);
    assert_eq!(s.requests, 120, "12 steps × 10");
    assert_eq!(s.errors, 12);
    assert!((s.error_ratio - 0.1).abs() < 1e-9);
    let secs = (11 * STEP_SECS) as f64 + STEP_SECS as f64 / 2.0;
    assert!((s.rps - 120.0 / secs).abs() < 1e-9, "{}", s.rps);
    let p50 = s.p50_ms.expect("answers");
    let p99 = s.p99_ms.expect("answers");
    assert!((1.0 / GROWTH..=GROWTH).contains(&p50), "{p50}");
    assert!((2.0 / GROWTH..=2.0 * GROWTH).contains(&p99), "{p99}");
}

#[test]
fn requests_without_an_upstream_answer_have_no_latency() {
    let mut w = Window::default();
    w.record(5 * S, true, None);
    let s = w.summary(5 * S + 10);
    assert_eq!((s.requests, s.errors), (1, 1));
    assert_eq!((s.p50_ms, s.p99_ms), (None, None));
}

#[test]
fn the_step_in_progress_rates_over_its_elapsed_part() {
    let points = [Point {
        requests: 10,
        ..Point::default()
    }; 3];
    let now = 7 * S + 2_000; // two seconds into the newest step
    let r = Window::rates(&points, now);
    assert_eq!(r, vec![2.0, 2.0, 5.0]);
}

#[test]
fn a_late_record_counts_in_the_newest_step() {
    let mut w = Window::default();
    w.record(10 * S, false, None);
    w.record(9 * S, false, None); // timed before another thread moved on
    assert_eq!(w.points(10 * S)[POINTS - 1].requests, 2);
}

proptest! {
    /// Whatever the order of steps, the window holds exactly the requests of its last
    /// POINTS steps, and the summary exactly those of the last SUMMARY_POINTS.
    #[test]
    fn counts_match_a_naive_model(steps in proptest::collection::vec((0u64..200, 0u32..5, any::<bool>()), 1..80)) {
        let mut w = Window::default();
        let mut model: std::collections::BTreeMap<u64, (u32, u32)> = Default::default();
        let mut tick = 1_000u64;
        for (advance, n, err) in steps {
            tick += advance % 7; // time only moves forward
            for _ in 0..n {
                w.record(tick * S, err, Some(500));
                let e = model.entry(tick).or_default();
                e.0 += 1;
                e.1 += u32::from(err);
            }
        }
        let now = tick * S;
        let points = w.points(now);
        for (k, p) in points.iter().enumerate() {
            let t = tick - (POINTS as u64 - 1 - k as u64);
            let want = model.get(&t).copied().unwrap_or_default();
            prop_assert_eq!((p.requests, p.errors), want, "step {}", t);
        }
        let s = w.summary(now);
        let want: u64 = model
            .range(tick + 1 - SUMMARY_POINTS as u64..)
            .map(|(_, (r, _))| u64::from(*r))
            .sum();
        prop_assert_eq!(s.requests, want);
    }

    /// A quantile lies within the bucket of a sample at that rank.
    #[test]
    fn quantile_is_within_a_bucket_of_the_exact_one(mut samples in proptest::collection::vec(prop_oneof![1u64..200, 1u64..30_000_000], 1..300), q in 0.01f64..1.0) {
        let mut h = Histogram::EMPTY;
        for &s in &samples {
            h.add(s);
        }
        samples.sort_unstable();
        let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        let exact = samples[rank - 1] as f64;
        let got = f64::from(h.quantile(q));
        let within = if exact <= FIRST_BOUND_US {
            got <= FIRST_BOUND_US // the first bucket has no lower bound
        } else {
            got <= exact * GROWTH + 1.0 && got >= exact / GROWTH - 1.0
        };
        prop_assert!(within,
            "q{} exact {} got {}", q, exact, got);
    }
}
