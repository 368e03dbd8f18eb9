//! Syslog text: RFC 5424 with the alert in structured data, and RFC 3164.
//!
//! Contract: one line per alert (control characters become spaces); SD-PARAM values escaped per
//! RFC 5424 section 6.3.3; header fields printable US-ASCII without spaces.

use super::super::syslog::{Facility, SyslogFormatter, TEXT_REASONS};
use super::super::{one_line, verdict_str, Alert};
use std::num::NonZeroU32;

/// The RFC 5612 documentation enterprise number: the default SD-ID is `simboxd@32473`. A
/// deployment should set the Private Enterprise Number its organisation registered with IANA.
pub const DEFAULT_SD_ENTERPRISE: NonZeroU32 = NonZeroU32::MIN.saturating_add(32472);

/// The SD-ID of the alert element.
pub fn sd_id(enterprise: NonZeroU32) -> String {
    format!("simboxd@{enterprise}")
}

/// A header field: printable US-ASCII without spaces, at most `max` bytes, `-` when empty.
pub(crate) fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() {
        "-".to_string()
    } else {
        v
    }
}

/// RFC 5424 section 6.3.3: `"`, `\` and `]` are escaped with a backslash, after control and bidi
/// characters became visible escapes.
pub fn escape_sd_value(v: &str) -> String {
    // Control and bidi characters first become visible escapes (`crate::text::escape`), so a
    // value can never break a receiver's line framing; then RFC 5424's own escaping.
    let v = crate::text::escape(v);
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn pri(alert: &Alert, facility: Facility) -> u8 {
    facility.code() * 8 + alert.syslog_severity()
}

/// `<PRI>1 TIMESTAMP HOST simboxd PROCID MSGID`: the header every RFC 5424 format shares.
pub fn header(alert: &Alert, f: &SyslogFormatter) -> String {
    format!(
        "<{}>1 {} {} simboxd {} {}",
        pri(alert, f.facility),
        alert.created.to_rfc3339(),
        header_field(&f.hostname, 255),
        f.procid,
        alert.state.as_str(),
    )
}

/// `<PRI>1 TIMESTAMP HOST simboxd PROCID MSGID [simboxd@PEN ...] MSG`.
pub fn format_rfc5424(alert: &Alert, f: &SyslogFormatter) -> String {
    let mut sd = format!("[{}", sd_id(f.sd_enterprise));
    let mut param = |name: &str, value: &str| {
        sd.push(' ');
        sd.push_str(name);
        sd.push_str("=\"");
        sd.push_str(&escape_sd_value(value));
        sd.push('"');
    };
    param("id", &alert.id);
    param("seq", &alert.seq.to_string());
    param("key", &alert.idempotency_key);
    param("state", alert.state.as_str());
    param("severity", alert.severity.as_str());
    param("type", alert.kind.as_str());
    param("line", &alert.line.to_string());
    if let Some(peer) = alert.peer {
        param("peer", &peer.to_string());
    }
    if let Some(site) = &alert.site {
        param("site", site);
    }
    param("verdict", verdict_str(alert.verdict));
    param("score", &format!("{:.3}", alert.score));
    if let Some(t) = &alert.threat {
        param("threat", t.kind.label());
    }
    param("first_seen", &alert.first_seen.to_rfc3339());
    param("last_seen", &alert.last_seen.to_rfc3339());
    if let Some(flagged) = alert.flagged_at {
        param("flagged_at", &flagged.to_rfc3339());
    }
    let signals: Vec<&str> = alert.reasons.iter().map(|r| r.signal.as_str()).collect();
    if !signals.is_empty() {
        param("signals", &signals.join(","));
    }
    param("sensor", &f.origin.sensor);
    param("version", &f.origin.version);
    sd.push(']');
    format!(
        "{} {} {}",
        header(alert, f),
        sd,
        alert.summary(TEXT_REASONS)
    )
}

/// `<PRI>Mmm dd hh:mm:ss HOST simboxd[PID]: [ID key=.. severity=.. peer=.. sensor=..
/// version=..] MSG` (time in UTC; RFC 3164 has no zone, nor structured data: the bracket holds
/// space-free tokens).
pub fn format_rfc3164(alert: &Alert, f: &SyslogFormatter) -> String {
    let secs = alert.created.micros().div_euclid(1_000_000);
    let stamp = chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%b %e %H:%M:%S").to_string())
        .unwrap_or_else(|| "Jan  1 00:00:00".to_string());
    let peer = alert
        .peer
        .map_or_else(|| "-".to_string(), |p| p.to_string());
    format!(
        "<{}>{} {} simboxd[{}]: [{} key={} severity={} peer={peer} sensor={} version={}] {}",
        pri(alert, f.facility),
        stamp,
        header_field(&f.hostname, 255),
        f.procid,
        alert.id,
        alert.idempotency_key,
        alert.severity.as_str(),
        header_field(&f.origin.sensor, 255).replace(']', "_"),
        header_field(&f.origin.version, 64).replace(']', "_"),
        one_line(&alert.summary(TEXT_REASONS))
    )
}
