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

/// A line's rhythm: the median length of the calls it took (s) and its inbound answer ratio.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rhythm {
    median: f64,
    asr: f64,
}

/// A line that is suspect on its own evidence, with the peer it serves and its rhythm: what
/// site grouping needs. Detection engines that each own part of the lines (the daemon's
/// workers, several sensors) exchange these so that a site spans all of them
/// ([`LineTable::set_remote_candidates`](crate::detect::LineTable::set_remote_candidates)).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SiteCandidate {
    pub line: std::net::IpAddr,
    pub peer: std::net::IpAddr,
    pub rhythm: Rhythm,
}

impl Rhythm {
    /// Same rhythm: medians within a factor 1.6 and answer ratios within 0.2.
    pub fn close(&self, o: &Rhythm) -> bool {
        let (a, b) = (self.median.max(1.0), o.median.max(1.0));
        a.max(b) / a.min(b) <= 1.6 && (self.asr - o.asr).abs() <= 0.2
    }
}
