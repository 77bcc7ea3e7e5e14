//! Instance weights and the smooth weighted round robin built from them.
//!
//! A weight is a decimal number from metadata (`weight` by default; Nacos instances carry
//! their own `weight` there too): `1` is the default share, `0` takes the instance out of
//! the service host's rotation, `0.5` is half a share, `2` two. It is kept in hundredths
//! ([`UNIT`] per share), so Nacos's float weights keep two decimals (`0.25` is 25 units, a
//! positive weight below `0.01` is one unit, never zero); above [`MAX_WEIGHT`] it is
//! clamped, so a typo cannot flood a service. Negative or non-numeric weights count as
//! the default and are shown as a problem of the instance.

use std::fmt;

/// Units per share: a weight of `1` is this many units.
pub const UNIT: u32 = 100;
/// The highest weight honoured (a share of 100).
pub const MAX_WEIGHT: u32 = 100;
/// The longest precomputed rotation: weights whose reduced sum is longer are scaled down
/// to fit (each still at least one), which moves any instance's share by less than
/// `instances / MAX_ROTATION` of the traffic.
pub const MAX_ROTATION: u32 = 10_000;

/// An instance's weight, in hundredths of a share, and what was wrong with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Weight {
    pub units: u32,
    pub problem: Option<WeightProblem>,
}

/// Why an instance's weight value was not taken as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightProblem {
    /// Not a number (the default weight applies).
    NotANumber,
    /// Below zero (the default weight applies).
    Negative,
    /// Above [`MAX_WEIGHT`] (clamped to it).
    TooLarge,
}

impl fmt::Display for WeightProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WeightProblem::NotANumber => "the weight is not a number: the default 1 applies",
            WeightProblem::Negative => "the weight is negative: the default 1 applies",
            WeightProblem::TooLarge => "the weight is above 100: 100 applies",
        })
    }
}

impl Weight {
    pub const DEFAULT: Weight = Weight {
        units: UNIT,
        problem: None,
    };

    /// The weight a metadata value gives (`None`: no such key, the default).
    pub fn parse(raw: Option<&str>) -> Weight {
        let Some(raw) = raw else {
            return Weight::DEFAULT;
        };
        let problem = |p| Weight {
            units: UNIT,
            problem: Some(p),
        };
        let w: f64 = match raw.trim().parse() {
            Ok(w) if f64::is_finite(w) => w,
            _ => return problem(WeightProblem::NotANumber),
        };
        if w < 0.0 {
            return problem(WeightProblem::Negative);
        }
        if w > f64::from(MAX_WEIGHT) {
            return Weight {
                units: MAX_WEIGHT * UNIT,
                problem: Some(WeightProblem::TooLarge),
            };
        }
        let units = (w * f64::from(UNIT)).round() as u32;
        Weight {
            // A positive weight is never rounded to zero (out of rotation).
            units: if w > 0.0 { units.max(1) } else { 0 },
            problem: None,
        }
    }

    /// The weight as a number of shares, as it is shown (`0.5`, `1`, `2`).
    pub fn shares(&self) -> f64 {
        f64::from(self.units) / f64::from(UNIT)
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Weights reduced to their smallest equal proportions (divided by their common divisor),
/// then scaled down to sum at most [`MAX_ROTATION`] when they still sum more.
pub fn reduce(units: &[u32]) -> Vec<u32> {
    let g = units.iter().copied().fold(0, gcd).max(1);
    let mut w: Vec<u32> = units.iter().map(|u| u / g).collect();
    let sum: u64 = w.iter().map(|&u| u64::from(u)).sum();
    if sum > u64::from(MAX_ROTATION) {
        for u in &mut w {
            if *u > 0 {
                let scaled = u64::from(*u) * u64::from(MAX_ROTATION) / sum;
                *u = scaled.max(1) as u32;
            }
        }
    }
    w
}

/// One period of nginx's smooth weighted round robin over `weights` (indices into it):
/// each pick adds every weight to its current value, takes the highest (the first of
/// equals) and subtracts the total from it. After `sum(weights)` picks the current values
/// are all zero again, so repeating this sequence is exactly nginx's order. Zero weights
/// never appear; equal weights give `0, 1, 2, ...` (plain round robin).
pub fn smooth_sequence(weights: &[u32]) -> Vec<u32> {
    let w = reduce(weights);
    let total: i64 = w.iter().map(|&u| i64::from(u)).sum();
    let mut current = vec![0i64; w.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, &u) in w.iter().enumerate() {
            current[i] += i64::from(u);
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(best as u32);
    }
    out
}
