//! Alert episodes for the delivery and store tests: `n` distinct alerts, from lines that are
//! each raised `suspect`, updated to `gateway` and cleared, shared by the disk-fault, delivery
//! and syslog tests.

// Each test binary includes this module and uses only some of it.
#![allow(dead_code)]

use simboxd::alert::{Alert, AlertConfig, AlertManager};
use simboxd_core::model::{LineVerdict, Reason, Timestamp, VerdictLevel};

/// `n` alerts from `n / 3` lines (100.64.0.1, 100.64.0.2, ...), each raised, updated and
/// cleared; `detail(signal, i)` is the text of signal `signal` on the `i`-th line.
pub fn episode_alerts(n: usize, detail: impl Fn(&str, u32) -> String) -> Vec<Alert> {
    let t0 = 1_764_400_000_000_000i64;
    let mut m = AlertManager::new(AlertConfig {
        clear_after_secs: 60,
        ..Default::default()
    });
    let mut out = Vec::new();
    let mut i = 0u32;
    while out.len() < n {
        i += 1;
        let mk = |level, score, secs: i64, signals: &[&str]| LineVerdict {
            line: format!("100.64.{}.{}", i / 200, i % 200 + 1)
                .parse()
                .unwrap(),
            verdict: level,
            score,
            flagged_at: None,
            site: None,
            peer: None,
            reasons: signals
                .iter()
                .map(|s| Reason {
                    signal: s.to_string(),
                    value: 1.0,
                    strength: 0.7,
                    detail: detail(s, i),
                })
                .collect(),
            updated: Timestamp(t0 + (i64::from(i) * 1000 + secs) * 1_000_000),
            calls: secs as u64,
            max_concurrent_calls: 4,
        };
        out.extend(m.on_verdict(&mk(VerdictLevel::Suspect, 0.5, 0, &["a"])));
        out.extend(m.on_verdict(&mk(VerdictLevel::Gateway, 0.9, 10, &["a", "b"])));
        out.extend(m.expire(Timestamp(t0 + (i64::from(i) * 1000 + 100) * 1_000_000)));
    }
    out.truncate(n);
    out
}
