//! Sites: lines of one premises share a softswitch and a rhythm.

use super::Ctx;
use crate::lines::Profile;

/// Rhythm of a line for site grouping: median session duration (s) and inbound answer ratio.
pub(crate) fn rhythm(p: &Profile, c: &Ctx) -> Rhythm {
    let w = p.window(c.now, c.params);
    let median = p
        .talk
        .quantile(0.5)
        .or(p.opaque_durations.quantile(0.5))
        .unwrap_or(0.0);
    let asr = if w.in_taken > 0 {
        f64::from(w.in_taken_answered) / f64::from(w.in_taken)
    } else {
        1.0
    };
    Rhythm { median, asr }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rhythm {
    median: f64,
    asr: f64,
}

impl Rhythm {
    /// Same rhythm: medians within a factor 1.6 and answer ratios within 0.2.
    pub(crate) fn close(&self, o: &Rhythm) -> bool {
        let (a, b) = (self.median.max(1.0), o.median.max(1.0));
        a.max(b) / a.min(b) <= 1.6 && (self.asr - o.asr).abs() <= 0.2
    }
}
