//! Alerts with hostile text in every free field, and the independent reader of the SIEM formats
//! (tests/data/siem_parse.py: Python's json module and a CEF reader of its own), shared by the
//! syslog and webhook format tests.

// Each test binary includes this module and uses only some of it.
#![allow(dead_code)]

use simboxd::alert::{Alert, AlertConfig, AlertManager};
use simboxd_core::model::{LineVerdict, Reason, Timestamp, VerdictLevel};
use std::path::Path;
use std::process::Command;

pub const PYTHON: &str = "/usr/bin/python3";

/// Text that every format must carry through intact or escape: delimiters of CEF (`|`, `=`,
/// `\`), of RFC 5424 structured data (`"`, `]`), JSON (`"`, `}`), newlines, NUL and non-ASCII.
pub const HOSTILE_SITE: &str = "cottage |A| =x\\y \"q\" [east] {}\u{0} ü€𝄞\nCEF:0|forged|\r end=1";
pub const HOSTILE_DETAIL: &str = "212 calls | to=198 numbers \\ \"x\"]\nsecond line";
/// Sensor names may not hold control characters (config validation); the rest is allowed.
pub const HOSTILE_SENSOR: &str = "tap|01 =\\ \"east\" ]ü€";

/// A wire text as every receiver gets it: alerts carry no raw control characters (issue 17),
/// control and bidi characters arrive as visible escapes (`\x00`, `\n`, `\r`).
pub fn sent(s: &str) -> String {
    simboxd::text::escape(s).into_owned()
}

/// A line's episode and a threat (IPv6 attacker), with hostile text in every free field.
pub fn hostile_alerts() -> Vec<Alert> {
    use simboxd_core::threats::{Threat, ThreatKind, ThreatTarget};
    let t0 = 1_764_500_000_000_000i64;
    let v = |level, score, secs: i64, calls| LineVerdict {
        line: "100.64.7.9".parse().unwrap(),
        verdict: level,
        score,
        flagged_at: None,
        site: Some(HOSTILE_SITE.into()),
        reasons: vec![Reason {
            signal: "inbound_many_numbers".into(),
            value: 198.0,
            strength: 0.9,
            detail: HOSTILE_DETAIL.into(),
        }],
        updated: Timestamp(t0 + secs * 1_000_000),
        calls,
        max_concurrent_calls: 8,
        peer: Some("203.0.113.10".parse().unwrap()),
    };
    let mut m = AlertManager::new(AlertConfig {
        clear_after_secs: 600,
        ..Default::default()
    });
    let mut out = m.on_verdict(&v(VerdictLevel::Suspect, 0.55, 0, 40));
    out.extend(m.on_verdict(&v(VerdictLevel::Gateway, 0.91, 300, 120)));
    out.extend(m.expire(Timestamp(t0 + 1200 * 1_000_000)));
    let peer: std::net::IpAddr = "2001:db8::66".parse().unwrap();
    let threat = Threat {
        peer,
        kind: ThreatKind::Scan,
        severity: ThreatKind::Scan.severity(),
        lines: (1..=3)
            .map(|i| ThreatTarget {
                line: format!("100.64.9.{i}").parse().unwrap(),
                requests: 1,
                answers: Default::default(),
                first_seen: Timestamp(t0),
                last_seen: Timestamp(t0),
            })
            .collect(),
        lines_total: 3,
        requests: 3,
        first_seen: Timestamp(t0),
        last_seen: Timestamp(t0 + 1),
        user_agents: vec!["friendly|scanner=1".into()],
        answers: Default::default(),
        reasons: vec![Reason {
            signal: "scan".into(),
            value: 3.0,
            strength: 1.0,
            detail: HOSTILE_DETAIL.into(),
        }],
        numbers: Vec::new(),
        sources: Vec::new(),
        sources_total: 0,
        ended: None,
    };
    out.extend(m.on_threat(
        &threat,
        Timestamp(t0 + 5),
        &simboxd::privacy::Pseudonymizer::disabled(),
    ));
    assert_eq!(out.len(), 4);
    out
}

/// Runs tests/data/siem_parse.py (Python's json module and a CEF reader of its own) on `path`.
pub fn parse_independently(kind: &str, path: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/siem_parse.py");
    let out = Command::new(PYTHON)
        .arg(script)
        .arg(kind)
        .arg(path)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "siem_parse.py {kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("parser output")
}

/// What CEF keeps of a value: CR and LF (escaped as `\r`, `\n`), other control characters as
/// spaces.
pub fn cef_kept(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\r' {
                ' '
            } else {
                c
            }
        })
        .collect()
}
