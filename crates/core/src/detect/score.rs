//! The score: a noisy-OR of weighted signal strengths, and the level it earns.

use super::{DetectionConfig, Signal, Weights};
use crate::model::VerdictLevel;

pub(crate) fn weight(w: &Weights, name: &str) -> f64 {
    match name {
        "foreign_inbound" => w.foreign_inbound,
        "distinct_called" => w.distinct_called,
        "concurrency_ceiling" => w.concurrency_ceiling,
        "machine_rhythm" => w.machine_rhythm,
        "gap_regularity" => w.gap_regularity,
        "registrations" => w.registrations,
        "fingerprint" => w.fingerprint,
        "opaque_media" => w.opaque_media,
        "site" => w.site,
        _ => 0.0,
    }
}

/// Noisy-OR of weighted strengths, and the level it earns.
pub fn combine(sigs: &[Signal], cfg: &DetectionConfig) -> (f64, VerdictLevel) {
    let mut keep = 1.0;
    let mut strong = 0usize;
    for s in sigs {
        let ws = (weight(&cfg.weights, s.name) * s.strength).clamp(0.0, 1.0);
        keep *= 1.0 - ws;
        if s.strength >= 0.5 && weight(&cfg.weights, s.name) > 0.0 {
            strong += 1;
        }
    }
    let score = (1.0 - keep).clamp(0.0, 1.0);
    let level = if score >= cfg.gateway_score && strong >= cfg.gateway_min_signals {
        VerdictLevel::Gateway
    } else if score >= cfg.suspect_score {
        VerdictLevel::Suspect
    } else {
        VerdictLevel::Normal
    };
    (score, level)
}
