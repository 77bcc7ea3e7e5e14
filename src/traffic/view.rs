//! A series as the console shows it: the numbers as text and each chart as the `points`
//! of an SVG polyline. Both the page and `/api/v1/traffic` use this one rendering, so
//! the page's first paint and its live updates cannot differ.

use serde::Serialize;

use super::window::{Point, Summary, Window};

/// Chart size in SVG user units (the page scales it).
pub const SPARK_WIDTH: f64 = 118.0;
pub const SPARK_HEIGHT: f64 = 20.0;

/// One chart: its polyline, and the largest value it is scaled to.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Spark {
    pub points: String,
    pub max: f64,
}

/// What the console shows of a series.
#[derive(Clone, Debug, Serialize)]
pub struct SeriesView {
    pub summary: Summary,
    /// The summary as shown: `12.5/s`, `0.8%`, `3.1 ms`.
    pub text: Texts,
    /// Requests per second, error ratio and p99 latency (ms), one value per point; named
    /// as in `text`, so the page updates a cell by one name.
    pub rps: Spark,
    pub errors: Spark,
    pub latency: Spark,
}

#[derive(Clone, Debug, Serialize)]
pub struct Texts {
    pub rps: String,
    pub errors: String,
    pub latency: String,
}

/// Requests per second as shown.
pub fn rate_text(rps: f64) -> String {
    match rps {
        r if r <= 0.0 => "–".to_string(),
        r if r < 0.1 => "<0.1/s".to_string(),
        r if r < 10.0 => format!("{r:.1}/s"),
        r => format!("{r:.0}/s"),
    }
}

/// An error ratio as shown (nothing without errors).
pub fn ratio_text(errors: u64, ratio: f64) -> String {
    match errors {
        0 => "–".to_string(),
        _ if ratio < 0.001 => "<0.1%".to_string(),
        _ => format!("{:.1}%", ratio * 100.0),
    }
}

/// Milliseconds as shown.
pub fn ms_text(ms: f64) -> String {
    match ms {
        m if m < 10.0 => format!("{m:.1} ms"),
        m if m < 10_000.0 => format!("{m:.0} ms"),
        m => format!("{:.0} s", m / 1000.0),
    }
}

/// The polyline of `values`, oldest at the left, scaled to the largest (a flat line at
/// the bottom when all are 0).
pub fn spark(values: &[f64]) -> Spark {
    let max = values.iter().copied().fold(0.0, f64::max);
    let step = SPARK_WIDTH / (values.len().max(2) - 1) as f64;
    let points = values
        .iter()
        .enumerate()
        .map(|(k, v)| {
            let y = if max > 0.0 {
                SPARK_HEIGHT - v / max * (SPARK_HEIGHT - 1.0)
            } else {
                SPARK_HEIGHT
            };
            format!("{:.1},{:.1}", k as f64 * step, y)
        })
        .collect::<Vec<_>>()
        .join(" ");
    Spark { points, max }
}

impl SeriesView {
    pub fn new(points: &[Point], summary: Summary, now_ms: u64) -> Self {
        let points = if points.is_empty() {
            vec![Point::default(); super::POINTS]
        } else {
            points.to_vec()
        };
        let rates = Window::rates(&points, now_ms);
        let errors: Vec<f64> = points
            .iter()
            .map(|p| match p.requests {
                0 => 0.0,
                n => f64::from(p.errors) / f64::from(n),
            })
            .collect();
        let p99: Vec<f64> = points
            .iter()
            .map(|p| f64::from(p.p99_us) / 1000.0)
            .collect();
        let latency = match (summary.p50_ms, summary.p99_ms) {
            (Some(p50), Some(p99)) => format!("{} / {}", ms_text(p50), ms_text(p99)),
            _ => "–".to_string(),
        };
        SeriesView {
            text: Texts {
                rps: rate_text(summary.rps),
                errors: ratio_text(summary.errors, summary.error_ratio),
                latency,
            },
            summary,
            rps: spark(&rates),
            errors: spark(&errors),
            latency: spark(&p99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts() {
        for (rps, want) in [
            (0.0, "–"),
            (0.05, "<0.1/s"),
            (2.345, "2.3/s"),
            (123.6, "124/s"),
        ] {
            assert_eq!(rate_text(rps), want);
        }
        for (errors, ratio, want) in [(0, 0.0, "–"), (1, 0.0001, "<0.1%"), (3, 0.25, "25.0%")] {
            assert_eq!(ratio_text(errors, ratio), want);
        }
        for (ms, want) in [(0.42, "0.4 ms"), (12.4, "12 ms"), (25_000.0, "25 s")] {
            assert_eq!(ms_text(ms), want);
        }
    }

    #[test]
    fn spark_scales_to_the_largest_value() {
        let s = spark(&[0.0, 5.0, 10.0]);
        assert_eq!(s.max, 10.0);
        assert_eq!(s.points, "0.0,20.0 59.0,10.5 118.0,1.0");
        let flat = spark(&[0.0, 0.0]);
        assert_eq!(flat.points, "0.0,20.0 118.0,20.0");
    }
}
