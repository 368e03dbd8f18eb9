//! Sites: lines of one premises share a softswitch and a rhythm.
//!
//! Contract: [`group`] is the one site rule, used by a sensor's [`super::LineTable`] and by the
//! central correlator over the lines of many sensors: candidates (lines suspect on their own
//! evidence) are grouped by their top peer, then by rhythm (each joins the first group whose
//! first member it is close to); groups of `min_lines` or more are sites.

use super::Ctx;
use crate::lines::Profile;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

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

/// A line's rhythm: median session seconds and the answer ratio of inbound calls it took.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rhythm {
    /// Median talk time of answered inbound calls in seconds, else of opaque flows; 0 when none.
    pub median: f64,
    /// Share of the inbound calls the line took part in that it answered (1 when none).
    pub asr: f64,
}

/// A line that is suspect on its own evidence, with the peer it serves and its rhythm: what
/// site grouping needs. Detection engines that each own part of the lines (the daemon's
/// workers) exchange these so that a site spans all of them
/// ([`LineTable::set_remote_candidates`](crate::detect::LineTable::set_remote_candidates)).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SiteCandidate {
    /// The suspect line.
    pub line: IpAddr,
    /// The peer feeding it (its top peer).
    pub peer: IpAddr,
    /// The line's rhythm.
    pub rhythm: Rhythm,
}

impl Rhythm {
    /// Same rhythm: medians within a factor 1.6 and answer ratios within 0.2.
    pub(crate) fn close(&self, o: &Rhythm) -> bool {
        let (a, b) = (self.median.max(1.0), o.median.max(1.0));
        a.max(b) / a.min(b) <= 1.6 && (self.asr - o.asr).abs() <= 0.2
    }
}

/// Groups site candidates (line -> top peer, rhythm): line -> (site name, site size) for every
/// line in a group of `min_lines` (at least 2) or more. Names are `site-PEER`, then
/// `site-PEER-2`, ... for further rhythm groups of one peer.
pub fn group(
    candidates: &BTreeMap<IpAddr, (IpAddr, Rhythm)>,
    min_lines: usize,
) -> BTreeMap<IpAddr, (String, usize)> {
    let mut by_peer: BTreeMap<IpAddr, Vec<(Rhythm, Vec<IpAddr>)>> = BTreeMap::new();
    for (ip, (peer, r)) in candidates {
        let groups = by_peer.entry(*peer).or_default();
        match groups.iter_mut().find(|(anchor, _)| anchor.close(r)) {
            Some((_, members)) => members.push(*ip),
            None => groups.push((*r, vec![*ip])),
        }
    }
    let mut out = BTreeMap::new();
    for (peer, groups) in by_peer {
        let mut k = 0;
        for (_, members) in groups {
            if members.len() < min_lines.max(2) {
                continue;
            }
            k += 1;
            let name = if k == 1 {
                format!("site-{peer}")
            } else {
                format!("site-{peer}-{k}")
            };
            for m in &members {
                out.insert(*m, (name.clone(), members.len()));
            }
        }
    }
    out
}

/// The `site` signal of a member of a site of `size` lines (the same on a sensor and centrally).
pub fn site_signal(name: &str, size: usize, peer: &str) -> super::Signal {
    super::Signal {
        name: "site",
        value: size as f64,
        strength: super::ramp(size as f64, 1.0, 3.0),
        detail: format!(
            "one of {size} lines in {name} taking traffic from {peer} with the same rhythm"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn groups_by_peer_then_rhythm() {
        let r = Rhythm {
            median: 40.0,
            asr: 0.4,
        };
        let slow = Rhythm {
            median: 400.0,
            asr: 0.9,
        };
        let mut c = BTreeMap::new();
        c.insert(ip("10.0.0.1"), (ip("203.0.113.1"), r));
        c.insert(ip("10.0.0.2"), (ip("203.0.113.1"), r));
        c.insert(ip("10.0.0.3"), (ip("203.0.113.1"), slow));
        c.insert(ip("10.0.0.4"), (ip("203.0.113.2"), r));
        let s = group(&c, 2);
        assert_eq!(s.len(), 2);
        assert_eq!(s[&ip("10.0.0.1")], ("site-203.0.113.1".to_string(), 2));
        assert!(!s.contains_key(&ip("10.0.0.3")));
        assert!(group(&c, 3).is_empty());
    }
}
