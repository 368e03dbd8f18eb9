//! CEF (ArcSight Common Event Format, read by ArcSight, QRadar and most SIEMs):
//! `CEF:0|simboxd|simboxd|<version>|<signature id>|<name>|<severity 0-10>|<extension>`.
//!
//! Contract: header fields escape `\` and `|`; extension values escape `\` and `=` and write
//! newlines as `\n` and `\r` (the CEF rules); other control characters become spaces. Keys:
//! `rt`/`start`/`end` (ms since the epoch), `src`/`dst` (IPv4) or `c6a2`/`c6a3` (IPv6) for the
//! peer and the line, `dvchost` the sensor, `act` the state, `msg` the summary, `cat` the type,
//! `externalId` the idempotency key, `cs1`..`cs6` with labels (verdict, site, signals, alert id,
//! threat kind, simboxd version), `cfp1` the score, `cn1` the seq. The record stays well below
//! 8 KiB: `msg` is cut at 1023 bytes and the other free-text values at 255.

use super::super::syslog::TEXT_REASONS;
use super::super::{verdict_str, Alert};
use super::{level, line_is_target, prefix, signature, Level, Origin};
use std::net::IpAddr;

/// CEF severity: low 3, medium 6, high 9.
pub fn cef_severity(l: Level) -> u8 {
    match l {
        Level::Low => 3,
        Level::Medium => 6,
        Level::High => 9,
    }
}

/// A header field: `\` and `|` escaped, control characters as spaces.
pub fn escape_header(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' | '|' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// An extension value: `\` and `=` escaped, CR and LF as `\r` and `\n`, other control
/// characters as spaces.
pub fn escape_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

struct Ext(String);

impl Ext {
    fn put(&mut self, key: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        self.0.push_str(key);
        self.0.push('=');
        self.0.push_str(&escape_value(value));
    }
    /// A custom field with its label (`cs1Label=verdict cs1=gateway`).
    fn custom(&mut self, key: &str, label: &str, value: &str) {
        self.put(&format!("{key}Label"), label);
        self.put(key, value);
    }
    /// An address as `src`/`dst` (IPv4) or the IPv6 custom address with its label.
    fn addr(&mut self, ip: IpAddr, v4: &str, v6: &str, v6_label: &str) {
        match ip {
            IpAddr::V4(_) => self.put(v4, &ip.to_string()),
            IpAddr::V6(_) => self.custom(v6, v6_label, &ip.to_string()),
        }
    }
}

/// The alert as one CEF record.
pub fn format_cef(alert: &Alert, origin: &Origin) -> String {
    let (sig, name) = signature(alert);
    let mut x = Ext(String::new());
    x.put("rt", &(alert.created.micros() / 1000).to_string());
    x.put("start", &(alert.first_seen.micros() / 1000).to_string());
    x.put("end", &(alert.last_seen.micros() / 1000).to_string());
    if let Some(p) = alert.peer {
        x.addr(p, "src", "c6a2", "Source IPv6 Address");
    }
    if line_is_target(alert) {
        x.addr(alert.line, "dst", "c6a3", "Destination IPv6 Address");
    }
    x.put("dvchost", prefix(&origin.sensor, 255));
    x.put("act", alert.state.as_str());
    x.put("cat", alert.kind.as_str());
    x.put("externalId", &alert.idempotency_key);
    x.custom("cs1", "verdict", verdict_str(alert.verdict));
    if let Some(site) = &alert.site {
        x.custom("cs2", "site", prefix(site, 255));
    }
    let signals: Vec<&str> = alert.reasons.iter().map(|r| r.signal.as_str()).collect();
    if !signals.is_empty() {
        x.custom("cs3", "signals", prefix(&signals.join(","), 255));
    }
    x.custom("cs4", "alertId", &alert.id);
    if let Some(t) = &alert.threat {
        x.custom("cs5", "threatKind", t.kind.label());
        x.custom("cn2", "targetLines", &t.lines_total.to_string());
    }
    x.custom("cs6", "simboxdVersion", prefix(&origin.version, 64));
    x.custom("cfp1", "score", &format!("{:.3}", alert.score));
    x.custom("cn1", "seq", &alert.seq.to_string());
    x.put("msg", prefix(&alert.summary(TEXT_REASONS), 1023));
    format!(
        "CEF:0|simboxd|simboxd|{}|{}|{}|{}|{}",
        escape_header(prefix(&origin.version, 64)),
        escape_header(&sig),
        escape_header(&name),
        cef_severity(level(alert)),
        x.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::format::tests::hostile;

    #[test]
    fn escaping_per_the_cef_rules() {
        assert_eq!(escape_header("a|b\\c\nd"), "a\\|b\\\\c d");
        assert_eq!(escape_value("a=b\\c\nd\re|f\u{0}"), "a\\=b\\\\c\\nd\\re|f ");
    }

    #[test]
    fn layout() {
        let m = format_cef(&hostile(), &Origin::new("tap=01"));
        assert!(
            m.starts_with(&format!(
                "CEF:0|simboxd|simboxd|{}|line-gateway|SIM-box gateway line|9|rt=1700000060500 ",
                crate::alert::format::VERSION
            )),
            "{m}"
        );
        assert!(m.contains(" c6a2Label=Source IPv6 Address c6a2=2001:db8::5 dst=100.64.7.9 dvchost=tap\\=01 act=updated "), "{m}");
        assert!(m.contains(" cs2=a|b\\=c\\\\d\\ne\\r\"]}"), "{m}");
        assert!(!m.contains('\n') && !m.contains('\r') && !m.contains('\0'));
    }
}
