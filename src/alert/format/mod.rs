//! Alert formats for receivers: RFC 5424/3164 syslog text, ECS JSON (Elastic Common Schema) and
//! CEF (ArcSight, QRadar), plus the shared facts they name.
//!
//! Contract: pure functions from an [`Alert`] and its [`Origin`] (the sensor's name and the
//! simboxd version) to text. Every format carries the line, the peer (the softswitch feeding a
//! line, or the attacker of a threat), the sensor and the version in fields of their own, and
//! escapes every value per its format, so that no alert field can forge another field or break a
//! receiver's framing. Sizes are bounded by the caller's limit without cutting a format's syntax.

pub(crate) mod cef;
pub(crate) mod ecs;
pub(crate) mod rfc5424;

use super::{verdict_str, Alert, AlertKind, AlertState, Severity};
use simboxd_core::model::VerdictLevel;

/// The simboxd version in every alert.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Who made an alert: the sensor's name and the simboxd version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub sensor: String,
    pub version: String,
}

impl Origin {
    /// This build's version with `sensor` as the name.
    pub fn new(sensor: impl Into<String>) -> Origin {
        Origin {
            sensor: sensor.into(),
            version: VERSION.to_string(),
        }
    }

    /// `[alert] sensor`, or the host name.
    pub fn from_config(cfg: &super::AlertConfig) -> Origin {
        Origin::new(
            cfg.sensor
                .clone()
                .unwrap_or_else(super::syslog::system_hostname),
        )
    }
}

/// The detection rule an alert comes from: a stable id (CEF signature id, ECS `rule.id`) and
/// a name (CEF name, ECS `rule.name`).
pub fn signature(a: &Alert) -> (String, String) {
    match (a.kind, &a.threat) {
        (AlertKind::CompromisedPbx, _) => (
            "compromised-pbx".into(),
            "Compromised PBX relaying toll fraud".into(),
        ),
        (AlertKind::Threat, Some(t)) => (
            format!("threat-{}", t.kind.label()),
            format!("SIP {} by a remote peer", t.kind.label().replace('_', " ")),
        ),
        (AlertKind::Threat, None) => ("threat".into(), "SIP attack by a remote peer".into()),
        (AlertKind::Site, _) => ("site".into(), "SIM-box site: lines of one premises".into()),
        (AlertKind::Line, _) => match a.verdict {
            VerdictLevel::Gateway => ("line-gateway".into(), "SIM-box gateway line".into()),
            VerdictLevel::Suspect => ("line-suspect".into(), "SIM-box suspect line".into()),
            VerdictLevel::Normal => (
                format!("line-{}", verdict_str(a.verdict)),
                "SIM-box line".into(),
            ),
        },
    }
}

/// How urgent an alert is for a SIEM: a clear is low, otherwise the alert's severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Low,
    Medium,
    High,
}

pub fn level(a: &Alert) -> Level {
    match (a.state, a.severity) {
        (AlertState::Cleared, _) | (_, Severity::Notice) => Level::Low,
        (_, Severity::Warning) => Level::Medium,
        (_, Severity::Critical) => Level::High,
    }
}

/// Whether the alert's `line` is a subscriber line (for a `threat` it is the attacking peer).
pub fn line_is_target(a: &Alert) -> bool {
    a.kind != AlertKind::Threat
}

/// The longest prefix of `s` of at most `max` bytes ending on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.get(..cut).unwrap_or("")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::alert::AlertState;
    use simboxd_core::model::{Reason, Timestamp};

    /// An alert whose text fields hold everything a format must escape.
    pub(crate) fn hostile() -> Alert {
        Alert {
            id: "sbx-0011223344556677".into(),
            seq: 2,
            idempotency_key: "sbx-0011223344556677:2".into(),
            state: AlertState::Updated,
            severity: Severity::Critical,
            line: "100.64.7.9".parse().unwrap(),
            peer: Some("2001:db8::5".parse().unwrap()),
            site: Some("a|b=c\\d\ne\r\"]}\u{0}ü€𝄞".into()),
            verdict: VerdictLevel::Gateway,
            score: 0.9234,
            reasons: vec![Reason {
                signal: "inbound_many_numbers".into(),
                value: 198.0,
                strength: 0.9,
                detail: "x=1 | y\\2\nCEF:0|forged|".into(),
            }],
            first_seen: Timestamp(1_700_000_000_000_000),
            last_seen: Timestamp(1_700_000_060_000_000),
            flagged_at: Some(Timestamp(1_700_000_030_000_000)),
            created: Timestamp(1_700_000_060_500_000),
            kind: AlertKind::Line,
            threat: None,
            lines: Vec::new(),
        }
    }

    #[test]
    fn signatures_and_levels() {
        let mut a = hostile();
        assert_eq!(signature(&a).0, "line-gateway");
        assert_eq!(level(&a), Level::High);
        a.state = AlertState::Cleared;
        assert_eq!(level(&a), Level::Low);
        a.kind = AlertKind::CompromisedPbx;
        assert_eq!(signature(&a).0, "compromised-pbx");
        assert_eq!(prefix("é", 1), "");
        assert_eq!(prefix("aé", 2), "a");
    }

    /// Unescaped `|` in a CEF record: exactly the seven that end the header fields.
    fn header_pipes(m: &str) -> usize {
        let mut n = 0;
        let mut chars = m.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '|' => n += 1,
                _ => {}
            }
            if n == 7 {
                break;
            }
        }
        n
    }

    proptest::proptest! {
        #[test]
        fn no_value_breaks_a_record(site in "\\PC{0,40}|[|=\\\\\n\r\u{0}\"\\]{}]{0,20}", sensor in ".{1,30}", detail in ".{0,60}") {
            let mut a = hostile();
            a.site = Some(site.clone());
            a.reasons[0].detail = detail;
            let o = Origin::new(sensor.clone());
            let c = cef::format_cef(&a, &o);
            proptest::prop_assert!(!c.chars().any(char::is_control), "{}", c);
            // The name and version cannot add header fields: the 7th unescaped pipe ends the
            // severity, which is a digit.
            proptest::prop_assert_eq!(header_pipes(&c), 7);
            let sev = format!("|{}|rt=", cef::cef_severity(level(&a)));
            proptest::prop_assert!(c.contains(&sev), "{}", c);
            let e = ecs::format_ecs(&a, &o, usize::MAX);
            proptest::prop_assert!(!e.contains('\n'));
            let v: serde_json::Value = serde_json::from_str(&e).unwrap();
            proptest::prop_assert_eq!(v["simboxd"]["site"].as_str(), Some(site.as_str()));
            proptest::prop_assert_eq!(v["observer"]["name"].as_str(), Some(sensor.as_str()));
        }
    }
}
