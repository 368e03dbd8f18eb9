//! The headline figures of a line, defined once for every output built from records (text,
//! JSON `lines`, the report's tables and charts).
//!
//! Contract:
//! - **Concurrency** counts the line's calls (INVITE dialogs) in progress at one instant: a call
//!   occupies its channel from its first INVITE to its end (BYE, CANCEL or final failure); a call
//!   still open when the capture ends occupies it until the capture's last packet. A call that
//!   ends at the instant another starts does not overlap it (back-to-back calls on one channel).
//! - **Medians** are exact, over the recorded durations (never interpolated in a histogram).
//! - Figures here are counts over the records: exact. An estimate (a sketch's figure) is never
//!   printed as one of these; where one is shown it carries its error (`Estimate`).

use simboxd_core::model::Timestamp;
use serde::Serialize;

/// One call as concurrency sees it: start and end (`None`: still open at the end of the capture).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Span {
    pub start: Timestamp,
    pub end: Option<Timestamp>,
}

/// The exact number of calls in progress over time: `(time, level)` at every change, first point
/// at `from` (level 0 before any call), so the level holds until the next point (a step function
/// carried forward). Calls are clipped to `[from, to]`; open calls last until `to`.
pub fn concurrency_steps(spans: &[Span], from: Timestamp, to: Timestamp) -> Vec<(Timestamp, u32)> {
    let mut edges: Vec<(Timestamp, i8)> = Vec::with_capacity(spans.len() * 2);
    for s in spans {
        let start = s.start.max(from);
        let end = s.end.unwrap_or(to).min(to).max(start);
        if end <= start && s.end.is_some() {
            // Zero-length call: occupies no time, never overlaps another.
            continue;
        }
        edges.push((start, 1));
        edges.push((end, -1));
    }
    // Ends (-1) sort before starts (+1) at the same instant.
    edges.sort();
    let mut out: Vec<(Timestamp, u32)> = Vec::with_capacity(edges.len() + 1);
    out.push((from, 0));
    let mut level: i64 = 0;
    let mut i = 0;
    while i < edges.len() {
        let t = edges[i].0;
        while i < edges.len() && edges[i].0 == t {
            level += i64::from(edges[i].1);
            i += 1;
        }
        let v = level.max(0) as u32;
        match out.last_mut() {
            Some(last) if last.0 == t => last.1 = v,
            Some(last) if last.1 == v => {}
            _ => out.push((t, v)),
        }
    }
    out
}

/// The most calls in progress at once (see the module contract).
pub fn max_concurrent(spans: &[Span], capture_end: Option<Timestamp>) -> u32 {
    let Some(first) = spans.iter().map(|s| s.start).min() else {
        return 0;
    };
    let last = spans
        .iter()
        .filter_map(|s| s.end)
        .chain(capture_end)
        .chain(spans.iter().map(|s| s.start))
        .max()
        .unwrap_or(first);
    concurrency_steps(spans, first, last)
        .iter()
        .map(|p| p.1)
        .max()
        .unwrap_or(0)
}

/// Exact median (mean of the two middle values for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let m = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(m)
}

/// A figure that is estimated rather than counted (live sketches): the value, its relative
/// standard error, and the exact count it estimates a part of (it is never shown above it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    /// Relative standard error (e.g. 0.13 for a 64-register HyperLogLog).
    pub relative_error: f64,
    pub estimated: bool,
}

impl Estimate {
    /// An estimate of a number of distinct items among `count` items: capped at `count`.
    pub fn distinct(value: f64, relative_error: f64, count: u64) -> Self {
        Estimate {
            value: value.round().clamp(0.0, count as f64),
            relative_error,
            estimated: true,
        }
    }

    /// "~7 (estimate, ±13 %)".
    pub fn text(&self) -> String {
        if self.estimated {
            format!(
                "~{:.0} (estimate, ±{:.0} %)",
                self.value,
                self.relative_error * 100.0
            )
        } else {
            format!("{:.0}", self.value)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> Timestamp {
        Timestamp::from_secs_f64(1_000.0 + s)
    }

    fn span(a: f64, b: Option<f64>) -> Span {
        Span {
            start: t(a),
            end: b.map(t),
        }
    }

    #[test]
    fn back_to_back_calls_do_not_overlap() {
        let s = [span(0.0, Some(10.0)), span(10.0, Some(20.0))];
        assert_eq!(max_concurrent(&s, Some(t(30.0))), 1);
    }

    #[test]
    fn open_call_lasts_to_the_capture_end() {
        let s = [span(0.0, None), span(50.0, Some(60.0))];
        assert_eq!(max_concurrent(&s, Some(t(100.0))), 2);
        let steps = concurrency_steps(&s, t(0.0), t(100.0));
        assert_eq!(
            steps,
            vec![(t(0.0), 1), (t(50.0), 2), (t(60.0), 1), (t(100.0), 0)]
        );
    }

    #[test]
    fn steps_start_at_zero_and_merge_equal_levels() {
        let s = [span(5.0, Some(10.0)), span(10.0, Some(15.0))];
        let steps = concurrency_steps(&s, t(0.0), t(20.0));
        assert_eq!(steps, vec![(t(0.0), 0), (t(5.0), 1), (t(15.0), 0)]);
    }

    #[test]
    fn median_is_exact() {
        assert_eq!(median(&[10.2, 3.0, 75.0]), Some(10.2));
        assert_eq!(median(&[1.0, 2.0, 3.0, 10.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn estimate_never_exceeds_its_count() {
        let e = Estimate::distinct(974.4, 0.13, 913);
        assert_eq!(e.value, 913.0);
        assert!(e.text().contains("estimate"));
    }
}
